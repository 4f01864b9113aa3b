"""`idp tokens`: list and revoke users' OIDC/OAuth grants and their refresh tokens; `idp tokens api`: the bearer
tokens of REST API and SCIM clients.

One row is one live grant: a user's authorization of an app, with its refresh-token families (offline or bound to
an IdP session). `--id` is that grant's id (the first column of `idp tokens list`); revoking a grant revokes all its
refresh tokens and makes its access tokens inactive at userinfo and introspection.
"""

from __future__ import annotations

import json

import click

from idp.services import api_tokens, oauth_usage
from idp.services import apps as apps_svc
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


# ---------------------------------------------------------------- API tokens (REST API and SCIM clients)

@tokens_group.group("api", help="Bearer tokens for the admin REST API (/api/v1) and SCIM (/scim/v2) clients.")
def api_tokens_group() -> None:
    pass


@api_tokens_group.command("create")
@click.argument("name")
@click.option("--scope", "scopes", multiple=True, required=True, metavar="SCOPE",
              help="A scope the token holds; repeat, or separate with commas. One of: "
                   + ", ".join(api_tokens.SCOPES) + ".")
@click.option("--expires", "expires_days", type=int, metavar="DAYS",
              help=f"Days until the token stops working (1-{api_tokens.MAX_DAYS}); default: until revoked.")
@unit_of_work
def api_token_create(name: str, scopes: tuple[str, ...], expires_days: int | None) -> None:
    """Issue a token NAME: its secret is printed once (only its SHA-256 is stored); changes made with it are
    audited as api:NAME."""
    wanted = [s.strip() for value in scopes for s in value.split(",") if s.strip()]
    row, secret = api_tokens.create_token(name, wanted, expires_days=expires_days)
    click.echo(secret)
    until = f"until {row.expires_at.strftime('%Y-%m-%d %H:%M')} UTC" if row.expires_at else "until revoked"
    click.echo(f"API token {row.name} created (scopes: {' '.join(row.scopes)}; valid {until}). The secret above is "
               "shown only now and stored hashed: hand it to the client now.", err=True)


@api_tokens_group.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@unit_of_work
def api_token_list(fmt: str) -> None:
    """Every API token: name, prefix, scopes, status, created, expires, last use (time and address), revoked."""
    rows = [api_tokens.token_dict(r) for r in api_tokens.list_tokens()]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no API tokens (create one with `idp tokens api create NAME --scope SCOPE`)")
        return
    click.echo("NAME\tPREFIX\tSCOPES\tSTATUS\tCREATED\tEXPIRES\tLAST USED\tREVOKED")
    for r in rows:
        last = f"{_iso(r['last_used_at'])} from {r['last_used_ip'] or '-'}" if r["last_used_at"] else "never"
        click.echo(f"{r['name']}\t{r['prefix']}…\t{' '.join(r['scopes'])}\t{r['status']}\t{_iso(r['created_at'])}\t"
                   f"{_iso(r['expires_at']) if r['expires_at'] else 'never'}\t{last}\t{_iso(r['revoked_at'])}")


def _iso(text: str | None) -> str:
    return text[:16].replace("T", " ") if text else "-"


@api_tokens_group.command("revoke")
@click.argument("name")
@unit_of_work
def api_token_revoke(name: str) -> None:
    """Revoke a token: every request with it is refused from now on (401)."""
    api_tokens.revoke_token(name)
    click.echo(f"API token {name} revoked")
