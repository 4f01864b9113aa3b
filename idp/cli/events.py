"""`idp events`: the SSO event log, filtered, as a table, JSON or CSV."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from idp.events import EventFilter, query_events, to_csv, to_json
from idp.reasons import Outcome
from idp.saml.constants import values

from ._common import unit_of_work


def _parse_since(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter("use ISO 8601, e.g. 2026-11-28T09:00:00Z", param_hint="--since") from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


@click.command("events", help="Show the SSO event log, newest first.")
@click.option("--app", "app_slug")
@click.option("--user", "username")
@click.option("--outcome", type=click.Choice(values(Outcome)))
@click.option("--reason")
@click.option("--protocol", type=click.Choice(["saml", "oidc", "scim"]),
              help="Only SAML, OIDC/OAuth or SCIM (outbound provisioning) events.")
@click.option("--type", "event_type", help="Only events of this type (sso, signin, logout, admin, account, "
                                           "provision, ...).")
@click.option("--since")
@click.option("--limit", type=click.IntRange(1, 1_000_000), default=100, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
@unit_of_work
def events_cmd(app_slug: str | None, username: str | None, outcome: str | None, reason: str | None,
               protocol: str | None, event_type: str | None, since: str | None, limit: int, fmt: str) -> None:
    f = EventFilter(app_slug=app_slug, username=username, outcome=outcome, reason=reason, protocol=protocol,
                    event_type=event_type, since=_parse_since(since))
    rows = query_events(f, limit=limit)
    if fmt == "json":
        click.echo(to_json(rows))
    elif fmt == "csv":
        click.echo(to_csv(rows), nl=False)
    else:
        click.echo(f"{'AT':<21} {'APP':<20} {'USER':<16} {'OUTCOME':<8} {'REASON':<22} {'BY':<4} IP")
        for e in rows:
            click.echo(f"{e.at.strftime('%Y-%m-%d %H:%M:%SZ'):<21} {(e.app_slug or '-')[:20]:<20} "
                       f"{(e.username or '-')[:16]:<16} {e.outcome:<8} {e.reason:<22} {(e.initiated_by or '-'):<4} "
                       f"{e.client_ip or '-'}")
