"""`idp users`: add, change and list users; enrol or reset their second factor."""

from __future__ import annotations

import json

import click

from idp.extensions import db
from idp.services import users as users_svc

from ._common import fail, passwords, read_password_stdin, unit_of_work


@click.group("users", help="Manage users.")
def users_group() -> None:
    pass


@users_group.command("add")
@click.argument("username")
@click.option("--email", required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@click.option("--first-name", default="")
@click.option("--last-name", default="")
@click.option("--group", "groups", multiple=True)
@click.option("--admin", is_flag=True)
@unit_of_work
def users_add(username: str, email: str, password_stdin: bool, first_name: str, last_name: str,
              groups: tuple[str, ...], admin: bool) -> None:
    pw_hash = passwords().hash(read_password_stdin()) if password_stdin else None
    users_svc.add_user(username, email=email, password_hash=pw_hash, first_name=first_name,
                       last_name=last_name, groups=list(groups), is_admin=admin)
    click.echo(f"user {username} added")


@users_group.command("set")
@click.argument("username")
@click.option("--group", "groups", multiple=True)
@click.option("--remove-group", "remove_groups", multiple=True)
@click.option("--disabled/--enabled", default=None)
@click.option("--password-stdin", is_flag=True)
@unit_of_work
def users_set(username: str, groups: tuple[str, ...], remove_groups: tuple[str, ...], disabled: bool | None,
              password_stdin: bool) -> None:
    user = users_svc.get_user(username)
    pw_hash = passwords().hash(read_password_stdin()) if password_stdin else None
    users_svc.set_user(user, add_groups=list(groups), remove_groups=list(remove_groups), disabled=disabled,
                       password_hash=pw_hash)
    click.echo(f"user {username} updated")


@users_group.command("mfa-enroll", help="Enrol a TOTP second factor; prints the otpauth:// URI (shown once).")
@click.argument("username")
@unit_of_work
def users_mfa_enroll(username: str) -> None:
    from idp.auth import totp
    user = users_svc.get_user(username)
    if totp.is_enrolled(user):
        fail(f"{username} already has a second factor; reset it first with `idp users mfa-reset {username}`")
    from idp.services import accounts
    secret = totp.start_enrolment(user)
    user.totp_confirmed = True  # the admin hands the URI over out of band
    accounts.end_sessions_for_factor_change(user)
    click.echo(totp.provisioning_uri(user, secret))


@users_group.command("mfa-reset", help="Remove a user's second factors (TOTP and passkeys) and end their sessions "
                                        "(they enrol again when a policy asks).")
@click.argument("username")
@unit_of_work
def users_mfa_reset(username: str) -> None:
    from idp.auth import passkeys
    from idp.services import accounts
    user = users_svc.get_user(username)
    keys = len(passkeys.passkeys_of(user))
    ended = accounts.reset_mfa(user)
    click.echo(f"second factor of {username} removed ({keys} passkey(s) included); {ended} session(s) ended")


@users_group.command("mfa-unsuspend",
                     help="Let a TOTP factor suspended after too many wrong codes work again (the count starts over).")
@click.argument("username")
@unit_of_work
def users_mfa_unsuspend(username: str) -> None:
    from idp.auth import totp_guard
    if totp_guard.unsuspend(users_svc.get_user(username)):
        click.echo(f"second factor of {username} restored")
    else:
        click.echo(f"second factor of {username} was not suspended")


@users_group.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@unit_of_work
def users_list(fmt: str) -> None:
    from sqlalchemy import select

    from idp.models import User
    rows = list(db.session.scalars(select(User).order_by(User.username)))
    data = [{"username": u.username, "email": u.email, "first_name": u.first_name, "last_name": u.last_name,
             "groups": u.group_names, "admin": u.is_admin, "disabled": u.disabled} for u in rows]
    if fmt == "json":
        click.echo(json.dumps(data, indent=2))
        return
    for d in data:
        flags = ",".join(f for f in ("admin" if d["admin"] else "", "disabled" if d["disabled"] else "") if f)
        groups = ",".join(d["groups"])  # type: ignore[arg-type]
        click.echo(f"{d['username']:<24} {d['email']:<32} {groups:<24} {flags}")
