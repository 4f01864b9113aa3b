"""`idp audit`: the admin audit trail (CLI and console changes), newest first."""

from __future__ import annotations

import json

import click

from idp import audit

from ._common import unit_of_work


@click.command("audit", help="Show the admin audit trail (CLI and console changes), newest first.")
@click.option("--limit", type=click.IntRange(1, 100000), default=50, show_default=True)
@click.option("--target", help="Only changes to this app slug, username, group or setting.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@unit_of_work
def audit_cmd(limit: int, target: str | None, fmt: str) -> None:
    rows = audit.recent(limit, target=target)
    if fmt == "json":
        click.echo(json.dumps([{"at": r.at.isoformat(), "actor": r.actor, "action": r.action,
                                "target_type": r.target_type, "target": r.target, "before": r.before,
                                "after": r.after} for r in rows], indent=2, default=str))
        return
    for r in rows:
        click.echo(f"{r.at.strftime('%Y-%m-%d %H:%M:%SZ')}  {r.actor:<20} {r.action:<16} {r.target_type}:{r.target}"
                   f"  {json.dumps(r.before, default=str) if r.before is not None else '-'} -> "
                   f"{json.dumps(r.after, default=str) if r.after is not None else '-'}")
