"""`idp feeds`: federation feeds (signed metadata aggregates whose selected SPs become connected apps): add, list,
sync, remove."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from idp.extensions import db
from idp.models import Feed
from idp.services import ServiceError
from idp.services import feeds as feeds_svc
from idp.services.apps.oidc_settings import parse_duration

from ._common import fail, unit_of_work


@click.group("feeds", help="Federation feeds: signed SAML metadata aggregates whose selected SPs become apps.")
def feeds_group() -> None:
    pass


def _read_anchor(path: Path) -> str:
    try:
        if path.stat().st_size > 64 * 1024:
            raise ServiceError("the trust anchor file is larger than 64 KiB", field="trust_anchor")
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or exc.__class__.__name__
        raise ServiceError(f"cannot read the trust anchor {path}: {why}", field="trust_anchor") from None


@feeds_group.command("add")
@click.argument("url")
@click.option("--trust-anchor", "trust_anchor", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="PEM certificate that must have signed the aggregate (enveloped signature on its root).")
@click.option("--select", "select_", multiple=True, metavar="ENTITY-ATTRIBUTE=VALUE",
              help="Take the SPs carrying this entity attribute (repeatable: any of them), e.g. "
                   "http://macedir.org/entity-category=http://refeds.org/category/research-and-scholarship.")
@click.option("--entity", "entities", multiple=True, metavar="ENTITYID", help="Take this SP (repeatable).")
@click.option("--name", help="The feed's name (default: from the URL's host).")
@click.option("--max-interval", help="Sync at least this often (default and ceiling: "
                                     "IDP_METADATA_REFRESH_MAX_INTERVAL), e.g. 6h.")
@click.option("--sync/--no-sync", "sync_now", default=True, show_default=True, help="Sync it right away.")
@unit_of_work
def feeds_add(url: str, trust_anchor: Path, select_: tuple[str, ...], entities: tuple[str, ...], name: str | None,
              max_interval: str | None, sync_now: bool) -> None:
    """Register a feed. Without --select or --entity every SP of the aggregate becomes an app."""
    interval = parse_duration(max_interval, field="max_interval") if max_interval else None
    feed = feeds_svc.add_feed(url, trust_anchor_pem=_read_anchor(trust_anchor), name=name,
                              selection=feeds_svc.parse_selection(select_), entities=list(entities),
                              max_interval_s=interval)
    click.echo(f"Added feed {feed.name} (id {feed.id})")
    if sync_now:
        db.session.commit()   # the feed exists whatever the first sync says
        _sync(feed, dry_run=False, yes=False, force=False)


def _sync(feed: Feed, *, dry_run: bool, yes: bool, force: bool) -> None:
    name = feed.name
    result = feeds_svc.sync(feed, dry_run=dry_run, approve=yes, force=force,
                            commit=None if dry_run else db.session.commit)
    click.echo(f"feed {name}: {result.outcome}: {result.message}")
    if dry_run:
        for category, ids in result.diff.items():
            for entity_id in ids:
                click.echo(f"  would be {category}: {entity_id}")
    for error in result.errors:
        click.echo(f"  {error}", err=True)
    if result.counts.get("held"):
        click.echo(f"Changes held for approval (they remove every ACS or signing certificate); apply them with: "
                   f"idp feeds sync {name} --yes", err=True)
    if dry_run:
        db.session.rollback()
    if result.outcome == "refused":
        sys.exit(1)


@feeds_group.command("sync")
@click.argument("ref", required=False, metavar="[NAME|ID]")
@click.option("--dry-run", is_flag=True, help="Fetch and verify; say what would change; write nothing.")
@click.option("--yes", is_flag=True, help="Apply the changes held for approval.")
@click.option("--force", is_flag=True, help="Fetch unconditionally and re-read an unchanged document.")
@unit_of_work
def feeds_sync(ref: str | None, dry_run: bool, yes: bool, force: bool) -> None:
    """Sync one feed now (every feed without NAME|ID); exit 1 if one was refused."""
    feeds = [feeds_svc.get_feed(ref)] if ref else feeds_svc.list_feeds()
    if not feeds:
        fail("no feeds (idp feeds add URL --trust-anchor CERT.pem)")
    refused = 0
    for feed in feeds:
        try:
            _sync(feed, dry_run=dry_run, yes=yes, force=force)
        except SystemExit:
            refused += 1
    if refused:
        sys.exit(1)


@feeds_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@unit_of_work
def feeds_list(as_json: bool) -> None:
    """The feeds: URL, anchor, selection, last sync and its counts."""
    rows = [feeds_svc.describe(f) for f in feeds_svc.list_feeds()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("No feeds.")
        return
    for d in rows:
        click.echo(f"{d['id']}  {d['name']}  {d['url']}")
        click.echo(f"    trust anchor SHA-256: {d['trust_anchor_sha256']}")
        sel = [f"{s['attribute']}={s['value']}" for s in d["select"]] + [f"entity {e}" for e in d["entities"]]
        click.echo(f"    selection: {'; '.join(sel) if sel else 'every SP'}")
        counts = ", ".join(f"{v} {k}" for k, v in d["counts"].items() if v)
        click.echo(f"    apps: {d['apps']} ({d['held']} with a held change); last sync: {d['last_synced'] or 'never'}"
                   f" ({d['last_outcome'] or '-'}); next: {d['next_due'] or '-'}")
        if counts:
            click.echo(f"    last counts: {counts}")
        if d["last_error"]:
            click.echo(f"    last error: {d['last_error']}")


@feeds_group.command("remove")
@click.argument("ref", metavar="NAME|ID")
@click.option("--remove-apps", is_flag=True, help="Also remove the apps it created (default: keep them as manual "
                                                  "apps).")
@unit_of_work
def feeds_remove(ref: str, remove_apps: bool) -> None:
    """Remove a feed; its apps are kept as manual apps unless --remove-apps."""
    feed = feeds_svc.get_feed(ref)
    name = feed.name
    n = feeds_svc.remove_feed(feed, remove_apps=remove_apps)
    click.echo(f"Removed feed {name}; {n} app(s) {'removed' if remove_apps else 'kept as manual apps'}")
