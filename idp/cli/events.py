"""`idp events`: the SSO event log, filtered, as a table, JSON or CSV."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import click
from flask.cli import with_appcontext

from idp import audit
from idp.events import EventFilter, query_events, to_csv, to_json
from idp.extensions import db
from idp.models import utcnow
from idp.reasons import Outcome
from idp.saml.constants import values

from ._common import command_actor, settings, unit_of_work


def _parse_since(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter("use ISO 8601, e.g. 2026-11-28T09:00:00Z", param_hint="--since") from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


@click.group("events", invoke_without_command=True,
             help="Show the SSO event log, newest first; `idp events purge` applies the retention settings now.")
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
@click.pass_context
def events_cmd(ctx: click.Context, app_slug: str | None, username: str | None, outcome: str | None,
               reason: str | None, protocol: str | None, event_type: str | None, since: str | None, limit: int,
               fmt: str) -> None:
    if ctx.invoked_subcommand is None:
        _list_events(app_slug, username, outcome, reason, protocol, event_type, since, limit, fmt)


@unit_of_work
def _list_events(app_slug: str | None, username: str | None, outcome: str | None, reason: str | None,
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


@events_cmd.command("purge", help="Delete what the retention settings say is old (events, audit rows if "
                                  "IDP_AUDIT_RETENTION_DAYS is set, ended throttles, expired state, dead "
                                  "sessions, old enrolment links, unseen devices) in batches, each committed "
                                  "alone; print counts.")
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
@with_appcontext
def events_purge(dry_run: bool) -> None:
    from idp.services import retention
    now = utcnow()
    with audit.acting_as(command_actor()):
        if dry_run:
            counts = retention.count_purgeable(now=now)
            db.session.rollback()
            for name, n in counts.items():
                click.echo(f"{name:<20} {n:>10} would be deleted")
            return
        totals: dict[str, int] = {}
        try:
            for name in retention.RULE_NAMES:
                while True:     # one batch, one commit, then a pause: no long lock, sign-ins go on meanwhile
                    started = time.monotonic()
                    n = retention.purge_batch(name, now=now)
                    db.session.commit()
                    totals[name] = totals.get(name, 0) + n
                    if n < settings().retention_batch:
                        break
                    time.sleep(retention.pause_after(timedelta(seconds=time.monotonic() - started))
                               .total_seconds())
            retention.record_purge(totals, "cli")
            db.session.commit()
        except BaseException:
            db.session.rollback()
            raise
    for name, n in totals.items():
        click.echo(f"{name:<20} {n:>10} deleted")
