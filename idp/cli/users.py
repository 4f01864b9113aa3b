"""`idp users`: add, change and list users; enrol or reset their second factor."""

from __future__ import annotations

import json
import os
import sys
from typing import IO

import click

from idp.extensions import db
from idp.services import user_fields as fields_svc
from idp.services import users as users_svc

from ._common import fail, passwords, read_password_stdin, unit_of_work

FIELD_HELP = "Set a user field: NAME=VALUE (repeatable; an empty VALUE clears it; see `idp fields list`)."


def _field_values(pairs: tuple[str, ...], clear: tuple[str, ...] = ()) -> dict[str, str | None]:
    """--field NAME=VALUE and --clear-field NAME as one {name: raw or None} change."""
    values: dict[str, str | None] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            fail(f"--field takes NAME=VALUE, not {pair[:60]!r}")
        if name.strip() in values:
            fail(f"field {name.strip()!r} is given more than once")
        values[name.strip()] = value
    for name in clear:
        if name in values:
            fail(f"field {name!r} is both set and cleared")
        values[name] = None
    return values


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
@click.option("--field", "fields", multiple=True, metavar="NAME=VALUE", help=FIELD_HELP)
@unit_of_work
def users_add(username: str, email: str, password_stdin: bool, first_name: str, last_name: str,
              groups: tuple[str, ...], admin: bool, fields: tuple[str, ...]) -> None:
    values = _field_values(fields)
    pw_hash = passwords().hash(read_password_stdin()) if password_stdin else None
    user = users_svc.add_user(username, email=email, password_hash=pw_hash, first_name=first_name,
                              last_name=last_name, groups=list(groups), is_admin=admin)
    fields_svc.set_user_fields(user, values)
    click.echo(f"user {username} added")


@users_group.command("set")
@click.argument("username")
@click.option("--group", "groups", multiple=True)
@click.option("--remove-group", "remove_groups", multiple=True)
@click.option("--disabled/--enabled", default=None)
@click.option("--password-stdin", is_flag=True)
@click.option("--field", "fields", multiple=True, metavar="NAME=VALUE", help=FIELD_HELP)
@click.option("--clear-field", "clear_fields", multiple=True, metavar="NAME", help="Clear a user field (repeatable).")
@unit_of_work
def users_set(username: str, groups: tuple[str, ...], remove_groups: tuple[str, ...], disabled: bool | None,
              password_stdin: bool, fields: tuple[str, ...], clear_fields: tuple[str, ...]) -> None:
    values = _field_values(fields, clear_fields)
    user = users_svc.get_user(username)
    pw_hash = passwords().hash(read_password_stdin()) if password_stdin else None
    users_svc.set_user(user, add_groups=list(groups), remove_groups=list(remove_groups), disabled=disabled,
                       password_hash=pw_hash)
    fields_svc.set_user_fields(user, values)
    click.echo(f"user {username} updated")


@users_group.command("show", help="A user's profile, groups, status and user fields.")
@click.argument("username")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@unit_of_work
def users_show(username: str, fmt: str) -> None:
    user = users_svc.get_user(username)
    custom = user.custom_fields or {}
    defined = fields_svc.list_fields()
    if fmt == "json":
        click.echo(json.dumps({
            "username": user.username, "email": user.email, "first_name": user.first_name,
            "last_name": user.last_name, "groups": user.group_names, "admin": user.is_admin,
            "disabled": user.disabled, "has_password": user.password_hash is not None,
            "fields": {f.name: custom[f.name] for f in defined if f.name in custom},
        }, indent=2, ensure_ascii=False))
        return
    rows = [("username", user.username), ("email", user.email), ("first name", user.first_name),
            ("last name", user.last_name), ("groups", ", ".join(user.group_names) or "-"),
            ("status", ", ".join(x for x in ("admin" if user.is_admin else "",
                                             "disabled" if user.disabled else "enabled") if x)),
            ("password", "set" if user.password_hash is not None else "none")]
    for label, value in rows:
        click.echo(f"{label:<20} {value}")
    if defined:
        click.echo("user fields:")
        for f in defined:
            text = fields_svc.format_value(f.type, custom.get(f.name)) if f.name in custom else "(not set)"
            click.echo(f"  {f.name:<18} {text}")


@users_group.command("import", help="Create and update users from a CSV file (header row; username is the key; "
                                     "email, first_name, last_name, groups separated by ';', and user fields by "
                                     "name). An empty cell leaves a value unchanged. All or nothing unless "
                                     "--skip-invalid; exit status 1 when a line is refused.")
@click.argument("file", type=click.File("rb"))
@click.option("--dry-run", is_flag=True, help="Report what would happen; write nothing.")
@click.option("--skip-invalid", is_flag=True, help="Write the valid lines even when others are refused.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@unit_of_work
def users_import(file: IO[bytes], dry_run: bool, skip_invalid: bool, fmt: str) -> None:
    from idp.services import user_import
    data = file.read(user_import.MAX_BYTES + 1)
    report = user_import.import_users(data)
    refused = report.refused
    written = not dry_run and (refused == 0 or skip_invalid)
    if not written:
        db.session.rollback()
    summary = report.summary()
    if fmt == "json":
        click.echo(json.dumps({"dry_run": dry_run, "written": written, "summary": summary,
                               "lines": [r.to_dict() for r in report.lines]}, indent=2, ensure_ascii=False))
    else:
        click.echo(f"{'LINE':<6} {'USERNAME':<28} {'RESULT':<10} DETAIL")
        for r in report.lines:
            detail = r.reason or ", ".join(r.changes)
            click.echo(f"{r.line:<6} {r.username[:28]:<28} {r.result:<10} {detail}".rstrip())
        click.echo(", ".join(f"{n} {k}" for k, n in summary.items()))
    if dry_run:
        outcome = "dry run: nothing written"
    elif written:
        outcome = "written" + (f"; {refused} refused line{'s' if refused != 1 else ''} skipped" if refused else "")
    else:
        outcome = (f"nothing written: {refused} line{'s' if refused != 1 else ''} refused (all or nothing; "
                   "--skip-invalid writes the valid lines)")
    click.echo(outcome, err=fmt == "json" or refused > 0)
    if refused:
        sys.exit(1)   # unit_of_work commits what `written` kept (nothing, after the rollback above, otherwise)


@users_group.command("export", help="Write every user with built-in and user fields (never passwords or second "
                                     "factors); `idp users import` reads the CSV back unchanged.")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv")
@click.option("--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write to this file (created readable by you only) instead of standard output.")
@unit_of_work
def users_export(fmt: str, output: str | None) -> None:
    from idp.services import user_import
    columns, rows = user_import.export_rows()
    text = user_import.to_csv(columns, rows) if fmt == "csv" else user_import.to_json(rows)
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror}")
    click.echo(f"{len(rows)} user{'s' if len(rows) != 1 else ''} written to {output}", err=True)


@users_group.command("mfa-enroll", help="Enrol a TOTP second factor; prints the otpauth:// URI (shown once) on "
                                         "standard output and, for a first factor, the ten recovery codes (shown "
                                         "once) on standard error. Prefer `enrolment-link`: the user enrols on "
                                         "their own device.")
@click.argument("username")
@unit_of_work
def users_mfa_enroll(username: str) -> None:
    from idp.auth import totp
    from idp.flows.authorize import Client
    from idp.flows.enrolment import EnrolmentRefused, finish_first_enrolment, record_enrolled
    from idp.models import utcnow
    user = users_svc.get_user(username)
    if totp.is_enrolled(user):
        fail(f"{username} already has a second factor; reset it first with `idp users mfa-reset {username}`")
    from idp.services import accounts
    first = not user.mfa_enrolled   # no passkey either: this is the first factor, recovery codes come with it
    secret = totp.start_enrolment(user)
    user.totp_confirmed = True  # the admin hands the URI over out of band
    user.totp_enrolled_at = utcnow()
    client = Client(ip=None, user_agent="idp cli")
    codes: list[str] = []
    if first:
        done = finish_first_enrolment(user, "totp", client, "cli")   # also ends every session and open link
        if isinstance(done, EnrolmentRefused):
            fail(f"{username} got a second factor meanwhile; nothing was changed ({done.message})")
        codes = done.recovery_codes
    else:
        accounts.end_sessions_for_factor_change(user)
        record_enrolled(user, "totp", client, {"via": "cli"})
    click.echo(totp.provisioning_uri(user, secret))
    if codes:
        click.echo(f"recovery codes for {username} (each works once in place of the second factor; shown only "
                   "now: hand them over with the URI):", err=True)
        for code in codes:
            click.echo(f"  {code}", err=True)


@users_group.command("enrolment-link", help="Print a one-time URL with which the user sets up a first second factor "
                                             "(whatever the org's enrolment mode); shown once, older links stop "
                                             "working.")
@click.argument("username")
@click.option("--valid-hours", type=click.IntRange(1, 720), default=72, show_default=True)
@click.option("--email", "email", is_flag=True,
              help="Email the link to the user's address (through the outbox) instead of printing it.")
@unit_of_work
def users_enrolment_link(username: str, valid_hours: int, email: bool) -> None:
    from idp.auth.enrolment_links import PATH
    from idp.services import accounts, notify_email

    from ._common import settings
    user = users_svc.get_user(username)
    token = accounts.issue_enrolment_link(user, valid_hours)
    if email:
        address = notify_email.send_enrolment_link(user, settings().url(PATH + token), valid_hours)
        click.echo(f"enrolment link for {username} emailed to {address} (valid for {valid_hours} hours, once; "
                   "the worker sends it)")
        return
    click.echo(settings().url(PATH + token))
    click.echo(f"(valid for {valid_hours} hours, once; shown only now: send it to {username} through a channel "
               "you trust)", err=True)


@users_group.command("factors", help="List a user's second factors (and recovery codes left).")
@click.argument("username")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@unit_of_work
def users_factors(username: str, fmt: str) -> None:
    from idp.auth.factors import list_factors
    factors = list_factors(users_svc.get_user(username))
    if fmt == "json":
        click.echo(json.dumps([f.to_dict() for f in factors], indent=2))
        return
    if not factors:
        click.echo(f"{username} has no second factor")
    for f in factors:
        d = f.to_dict()
        click.echo(f"{f.kind:<16} {f.name:<28} created {d['created_at'] or '-':<22} "
                   f"last used {d['last_used_at'] or '-':<22} {f.detail}".rstrip())


@users_group.command("sessions", help="A user's live IdP sessions: handle, device, address, when, apps signed into.")
@click.argument("username")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@unit_of_work
def users_sessions(username: str, fmt: str) -> None:
    from idp.services import user_sessions
    found = user_sessions.live_sessions(users_svc.get_user(username))
    if fmt == "json":
        click.echo(json.dumps([s.to_dict() for s in found], indent=2))
        return
    if not found:
        click.echo(f"{username} has no live session")
    for s in found:
        d = s.to_dict()
        click.echo(f"{s.handle}  {s.device:<22} {s.client_ip or '-':<16} since {d['created_at']}  "
                   f"last {d['last_seen']}  {', '.join(s.apps) or '-'}")


@users_group.command("end-sessions", help="End a user's IdP sessions (all, or one named by --session): OIDC apps "
                                           "and SAML apps with a SOAP logout endpoint are told over the back "
                                           "channel; other SAML apps keep their own session.")
@click.argument("username")
@click.option("--session", "handle", help="The handle `idp users sessions` shows (default: every session).")
@unit_of_work
def users_end_sessions(username: str, handle: str | None) -> None:
    from idp import audit
    from idp.certs.keystore import KeyStoreError
    from idp.flows.authorize import Client
    from idp.flows.session_end import end_remotely
    from idp.services import user_sessions

    from ._common import keystore, settings
    user = users_svc.get_user(username)
    targets = [user_sessions.find_live_session(user, handle)] if handle else user_sessions.all_live_sessions(user)
    try:
        keys = keystore().current()
    except KeyStoreError as exc:
        fail(f"the signing keys are unavailable ({exc}): OIDC apps could not be told; nothing was ended")
    live = [t for t in targets if t.ended_at is None]
    # audited with the sessions' end (committed before the back-channel exchanges, which then take their time)
    audit.record("user.sessions_end", "user", user.username,
                 after={"sessions": [user_sessions.handle_of(t.id) for t in live], "ended": len(live)})
    ended = end_remotely(live, settings(), keys, Client(ip=None, user_agent="idp cli"), initiated_by="admin",
                         checkpoint=db.session.commit)
    click.echo(f"{ended} session(s) of {username} ended")


@users_group.command("mfa-reset", help="Remove a user's second factors (TOTP, passkeys) and recovery codes and end "
                                        "their sessions (a new enrolment follows the org's enrolment rules).")
@click.argument("username")
@unit_of_work
def users_mfa_reset(username: str) -> None:
    from idp.auth import passkeys
    from idp.flows.authorize import Client
    from idp.flows.enrolment import record_reset
    from idp.services import accounts
    user = users_svc.get_user(username)
    keys = len(passkeys.passkeys_of(user))
    ended = accounts.reset_mfa(user)
    record_reset(user, Client(ip=None, user_agent="idp cli"), {"by": "admin"})
    click.echo(f"second factors of {username} removed (TOTP, {keys} passkey(s), recovery codes); "
               f"{ended} session(s) ended")


@users_group.command("mfa-unsuspend",
                     help="Let a TOTP factor suspended after too many wrong codes work again (the count starts over).")
@click.argument("username")
@unit_of_work
def users_mfa_unsuspend(username: str) -> None:
    from idp.auth import totp_guard
    from idp.flows.authorize import Client
    from idp.flows.enrolment import record_unsuspended
    user = users_svc.get_user(username)
    if totp_guard.unsuspend(user):
        record_unsuspended(user, Client(ip=None, user_agent="idp cli"), "admin")
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
