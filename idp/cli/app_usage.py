"""`idp apps usage`: one app's sign-ins per UTC day, users, denials and errors (with SLUG), or every app's activity
with the dormant ones (without SLUG, or --all), read from the event log (services.app_usage)."""

from __future__ import annotations

import json
from datetime import datetime

import click

from idp.services import app_usage
from idp.services.app_usage import AppUsage, Period, UsageOverview

from ._common import fail, unit_of_work

BAR_WIDTH = 40


def _when(d: datetime | None) -> str:
    return d.strftime("%Y-%m-%d %H:%MZ") if d is not None else "never"


def _period(p: Period) -> str:
    dates = p.dates
    return f"last {p.days} day{'s' if p.days != 1 else ''} ({dates[0]} to {dates[-1]}, UTC days)"


def _reasons(rows: tuple[app_usage.ReasonCount, ...]) -> str:
    return ", ".join(f"{r.reason} {r.count}" for r in rows) or "none"


def _echo_usage(u: AppUsage) -> None:
    click.echo(f"App: {u.app_slug} ({u.app_name}), {_period(u.period)}")
    click.echo(f"Sign-ins: {u.sign_ins} (SAML {u.by_protocol['saml']}, OIDC {u.by_protocol['oidc']}); "
               f"users: {u.distinct_users}")
    click.echo(f"Denials: {_reasons(u.denials)}")
    click.echo(f"Errors: {_reasons(u.errors)}")
    click.echo("")
    if u.users:
        width = max(16, *(len(r.username) for r in u.users))
        click.echo(f"{'USER':<{width}}  {'SIGN-INS':>8}  LAST USE")
        for r in u.users:
            click.echo(f"{r.username:<{width}}  {r.sign_ins:>8}  {_when(r.last_use)}")
    else:
        click.echo("no sign-ins in this period")
    click.echo("")
    click.echo(f"{'DAY':<10}  {'SIGN-INS':>8}")
    peak = u.peak
    for d in u.per_day:
        bar = "#" * (-(-d.sign_ins * BAR_WIDTH // peak) if peak else 0)
        click.echo(f"{d.day.isoformat():<10}  {d.sign_ins:>8}  {bar}".rstrip())


def _echo_overview(o: UsageOverview) -> None:
    click.echo(f"Usage of every app, {_period(o.period)}")
    if not o.apps:
        click.echo("no apps registered")
        return
    width = max(20, *(len(a.app_slug) for a in o.apps))
    click.echo(f"{'APP':<{width}}  {'SIGN-INS':>8}  {'USERS':>5}  {'LAST USE':<17}  STATUS")
    for a in o.apps:
        status = ["dormant (never used)" if a.never_used else "dormant"] if a.dormant else []
        if not a.enabled:
            status.append("disabled")
        click.echo(f"{a.app_slug:<{width}}  {a.sign_ins:>8}  {a.distinct_users:>5}  {_when(a.last_use):<17}  "
                   f"{', '.join(status)}".rstrip())


@click.command("usage")
@click.argument("slug", required=False)
@click.option("--all", "all_apps", is_flag=True, help="Every app (the same as giving no SLUG).")
@click.option("--days", "days_text", metavar="N", default=str(app_usage.DEFAULT_DAYS), show_default=True,
              help=f"The period: the last N UTC days, today included ({app_usage.MIN_DAYS} to "
                   f"{app_usage.MAX_DAYS}).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@unit_of_work
def usage_cmd(slug: str | None, all_apps: bool, days_text: str, fmt: str) -> None:
    """Sign-ins from the event log. With SLUG: that app's sign-ins per day (SAML assertions and OIDC authorization
    codes issued), distinct users, denials and errors by reason and each user's last use. Without SLUG (or with
    --all): every app's sign-ins, users and last use, the dormant ones (no sign-in in the period) last."""
    if slug is not None and all_apps:
        fail("give an app SLUG or --all, not both")
    days = app_usage.parse_days(days_text)
    if slug is None:
        o = app_usage.overview(days)
        if fmt == "json":
            click.echo(json.dumps(o.to_dict(), indent=2))
        else:
            _echo_overview(o)
        return
    u = app_usage.usage(slug, days)
    if fmt == "json":
        click.echo(json.dumps(u.to_dict(), indent=2))
    else:
        _echo_usage(u)
