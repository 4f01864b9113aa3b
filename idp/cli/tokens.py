"""`idp tokens`: list and revoke users' OIDC/OAuth grants and their refresh tokens.

One row is one live grant: a user's authorization of an app, with its refresh-token families (offline or bound to
an IdP session). `--id` is that grant's id (the first column of `idp tokens list`); revoking a grant revokes all its
refresh tokens and makes its access tokens inactive at userinfo and introspection.
"""

from __future__ import annotations

import json

import click

from idp.services import apps as apps_svc
from idp.services import oauth_usage
from idp.services import users as users_svc
from idp.services.oauth_usage import GrantRow

from ._common import fail, unit_of_work


@click.group("tokens", help="List and revoke users' OIDC/OAuth grants and refresh tokens.")
def tokens_group() -> None:
    pass


def _when(d: object) -> str:
    return d.strftime("%Y-%m-%d %H:%M") if d is not None else "-"  # type: ignore[attr-defined]


def _select(app: str | None, user: str | None, grant_id: int | None) -> list[GrantRow]:
    app_id = apps_svc.get_app(app).id if app else None
    user_id = users_svc.get_user(user).id if user else None
    return oauth_usage.list_grants(app_id=app_id, user_id=user_id, grant_id=grant_id)


@tokens_group.command("list")
@click.option("--app", "app", metavar="SLUG", help="Only this app's grants.")
@click.option("--user", "user", metavar="U", help="Only this user's grants.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@unit_of_work
def tokens_list(app: str | None, user: str | None, fmt: str) -> None:
    """One row per live grant: its id (for `idp tokens revoke --id`), app, user, scopes, created, last used, when
    its refresh tokens expire, and whether they are offline (offline_access) or bound to the user's IdP session."""
    rows = _select(app, user, None)
    if fmt == "json":
        click.echo(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    if not rows:
        click.echo("no live grants")
        return
    click.echo("ID\tAPP\tUSER\tSCOPES\tCREATED\tLAST USED\tEXPIRES\tREFRESH")
    for r in rows:
        refresh = f"{r.kind} ({r.refresh_tokens})" if r.refresh_tokens else "none"
        expires = _when(r.expires_at) if r.expires_at else ("until revoked" if r.refresh_tokens else "-")
        click.echo(f"{r.id}\t{r.app_slug}\t{r.username}\t{' '.join(r.scopes)}\t{_when(r.created_at)}\t"
                   f"{_when(r.last_used_at)}\t{expires}\t{refresh}")


@tokens_group.command("revoke")
@click.option("--app", "app", metavar="SLUG", help="Every grant of this app.")
@click.option("--user", "user", metavar="U", help="Every grant of this user.")
@click.option("--id", "grant_id", type=click.IntRange(1), metavar="ID",
              help="One grant: its id as `idp tokens list` shows it.")
@unit_of_work
def tokens_revoke(app: str | None, user: str | None, grant_id: int | None) -> None:
    """Revoke grants and all their refresh tokens: give exactly one of --app, --user or --id (a grant id). Each
    revoked grant is an event token_revoked and an audit row."""
    if sum(x is not None for x in (app, user, grant_id)) != 1:
        fail("give exactly one of --app SLUG, --user U or --id ID")
    rows = _select(app, user, grant_id)
    if grant_id is not None and not rows:
        fail(f"no live grant with id {grant_id}")
    done = oauth_usage.revoke_grants(rows, by="cli")
    for r in done:
        click.echo(f"revoked grant {r.id}: app {r.app_slug}, user {r.username}, scopes {' '.join(r.scopes) or '-'}, "
                   f"{r.refresh_tokens} refresh token(s)")
    if not done:
        click.echo("nothing to revoke: no live grants")
