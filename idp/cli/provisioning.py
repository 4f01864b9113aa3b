"""`idp apps provisioning SLUG`: configure outbound SCIM provisioning of an app, show it, import the app's existing
accounts and reconcile (each with --dry-run)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from idp.services import apps as apps_svc
from idp.services import provisioning as prov

from ._common import fail, unit_of_work


def _read_secret(what: str) -> str:
    value = sys.stdin.readline().rstrip("\r\n")
    if not value.strip():
        fail(f"no {what} on standard input")
    return value


def _parse_maps(items: tuple[str, ...]) -> dict[str, str] | None:
    if not items:
        return None
    out: dict[str, str] = {}
    for item in items:
        path, sep, source = item.partition("=")
        if not sep or not path.strip():
            fail(f"--map takes SCIMPATH=field:NAME or SCIMPATH=formula:EXPR (or SCIMPATH= to remove), got {item!r}")
        out[path.strip()] = source.strip()
    return out


@click.command("provisioning")
@click.argument("slug")
@click.option("--scim-url", help="The app's SCIM 2.0 base URL (…/Users lives under it).")
@click.option("--token-stdin", is_flag=True, help="Read a bearer token from standard input.")
@click.option("--client-id", help="OAuth client credentials: the client id (with --token-url and --secret-stdin).")
@click.option("--token-url", help="OAuth client credentials: the token endpoint.")
@click.option("--secret-stdin", is_flag=True, help="Read the OAuth client secret from standard input.")
@click.option("--operations", help=f"Comma-separated, from {','.join(prov.OPERATIONS)} "
                                   f"(default {','.join(prov.DEFAULT_OPERATIONS)}).")
@click.option("--map", "maps", multiple=True, metavar="SCIMPATH=SOURCE",
              help='A mapping entry: SCIMPATH=field:NAME or SCIMPATH=formula:EXPR (SCIMPATH= removes it); repeat.')
@click.option("--deprovision", type=click.Choice(prov.DEPROVISION_MODES),
              help="What losing access means at the app.")
@click.option("--enable/--disable", "enabled", default=None, help="Turn provisioning on or off.")
@click.option("--show", is_flag=True, help="Show the settings (never the secret) and the accounts.")
@click.option("--import", "do_import", is_flag=True,
              help="Match the app's existing accounts to the permitted users, report, then link the matches.")
@click.option("--reconcile", is_flag=True, help="Compare with the app now and enqueue the changes.")
@click.option("--dry-run", is_flag=True, help="With --import or --reconcile: report only, write nothing.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@unit_of_work
def provisioning_cmd(slug: str, scim_url: str | None, token_stdin: bool, client_id: str | None,
                     token_url: str | None, secret_stdin: bool, operations: str | None, maps: tuple[str, ...],
                     deprovision: str | None, enabled: bool | None, show: bool, do_import: bool, reconcile: bool,
                     dry_run: bool, fmt: str) -> None:
    """Configure outbound provisioning of an app (SCIM 2.0), or show, import, reconcile."""
    app = apps_svc.get_app(slug)
    configuring = any(v is not None for v in (scim_url, client_id, token_url, operations, deprovision, enabled)) \
        or token_stdin or secret_stdin or bool(maps)
    modes = [name for name, on in (("--show", show), ("--import", do_import), ("--reconcile", reconcile)) if on]
    if len(modes) > 1 or (modes and configuring):
        fail("use one of --show, --import, --reconcile, or settings to change")
    if dry_run and not (do_import or reconcile):
        fail("--dry-run goes with --import or --reconcile")
    if token_stdin and secret_stdin:
        fail("give --token-stdin (a bearer token) or --secret-stdin (client credentials), not both")
    if do_import:
        _import(app.id, dry_run, fmt)
        return
    if reconcile:
        _reconcile(app.id, dry_run, fmt)
        return
    if configuring:
        token = _read_secret("bearer token") if token_stdin else None
        secret = _read_secret("client secret") if secret_stdin else None
        ops = [o.strip() for o in operations.split(",") if o.strip()] if operations is not None else None
        prov.configure(app, scim_url=scim_url, token=token, client_id=client_id, token_url=token_url,
                       client_secret=secret, operations=ops, mapping=_parse_maps(maps), deprovision=deprovision,
                       enabled=enabled)
    cfg = prov.get_config(app.id)
    if cfg is None:
        fail(f"provisioning is not configured for {slug}: give --scim-url and a credential")
    _show(prov.show_config(cfg), prov.account_counts(app.id), fmt)


def _show(config: dict[str, Any], accounts: dict[str, int], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps({**config, "accounts": accounts}, indent=2))
        return
    click.echo(f"enabled:      {'yes' if config['enabled'] else 'no'}")
    click.echo(f"SCIM URL:     {config['scim_url']}")
    auth = config["auth"] if config["auth"] == "bearer" else \
        f"client credentials (client id {config['client_id']}, token URL {config['token_url']})"
    click.echo(f"credential:   {auth}, {'set' if config['has_secret'] else 'missing'} (never shown)")
    click.echo(f"operations:   {', '.join(config['operations']) or '-'}")
    click.echo(f"deprovision:  {config['deprovision']}")
    click.echo("mapping:")
    for path, source in config["mapping"].items():
        click.echo(f"  {path} <- {source}")
    click.echo("  active <- (permitted and not disabled)")
    click.echo("accounts:     " + (", ".join(f"{n} {state}" for state, n in sorted(accounts.items())) or "none"))


def _import(app_id: int, dry_run: bool, fmt: str) -> None:
    try:
        report = prov.import_plan(app_id)
    except (prov.RemoteError, prov.RemoteRefused) as exc:
        fail(f"could not list the app's accounts: {exc}")
    if fmt == "json":
        click.echo(json.dumps({**report.as_dict(), "dry_run": dry_run}, indent=2))
    else:
        for username, rid, by in report.matches:
            click.echo(f"match     {username} -> {rid} (by {', '.join(by)})")
        for subject, why in report.conflicts:
            click.echo(f"conflict  {subject}: {why}")
        for username in report.already_linked:
            click.echo(f"linked    {username} (already)")
        for username in report.unmatched_local:
            click.echo(f"create    {username} (no account at the app)")
        for rid in report.unmatched_remote:
            click.echo(f"remote    {rid} (not matched; left alone)")
        click.echo(f"{len(report.matches)} match(es), {len(report.conflicts)} conflict(s), "
                   f"{len(report.unmatched_local)} to create, {len(report.unmatched_remote)} remote only"
                   + (" - dry run, nothing written" if dry_run else " - matches linked, conflicts left alone"))
    if not dry_run:
        prov.apply_import(app_id, report)


def _reconcile(app_id: int, dry_run: bool, fmt: str) -> None:
    try:
        plan = prov.reconcile_plan(app_id)
    except (prov.RemoteError, prov.RemoteRefused) as exc:
        fail(f"could not compare with the app: {exc}")
    if fmt == "json":
        click.echo(json.dumps({"dry_run": dry_run, "changes": [
            {"group": i.username, "action": i.action, "why": i.why} if i.group_id is not None else
            {"username": i.username, "action": i.action, "why": i.why} for i in plan]}, indent=2))
    else:
        for item in plan:
            subject = f"group {item.username}" if item.group_id is not None else item.username
            click.echo(f"{item.action:<10} {subject}: {item.why}")
        click.echo(f"{len(plan)} change(s)" + (" - dry run, nothing written" if dry_run else " enqueued"))
    if not dry_run:
        prov.apply_plan(app_id, plan)
