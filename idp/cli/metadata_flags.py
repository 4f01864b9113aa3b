"""`idp apps set` metadata refresh options (--metadata-url, --mdq, --refresh, --trust-anchor, --max-interval) and
`idp apps refresh` (fetch now, or every due app with --due)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from idp.extensions import db
from idp.models import ConnectedApp
from idp.services import ServiceError
from idp.services import apps as apps_svc
from idp.services import metadata_refresh as refresh_svc

from ._common import fail, unit_of_work

_FLAGS = ("metadata_url", "no_metadata_url", "mdq", "refresh_mode", "trust_anchor", "no_trust_anchor",
          "max_interval")


def refresh_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The metadata refresh options of `idp apps set`, collected into one `refresh_flags` dict."""
    options = [
        click.option("--metadata-url", help="Fetch this app's metadata from this http(s) URL and refresh it "
                                            "automatically (see --refresh)."),
        click.option("--no-metadata-url", is_flag=True, help="Stop fetching from a URL / MDQ service."),
        click.option("--mdq", help="An MDQ service's base URL (Metadata Query Protocol) to fetch this app's "
                                   "metadata from instead of a URL: BASE/entities/<percent-encoded entityID>."),
        click.option("--refresh", "refresh_mode", type=click.Choice(refresh_svc.MODES),
                     help="auto: apply fetched changes (audited with their diff); approve: hold each change for an "
                          "admin; off: fetch only on `idp apps refresh`. A change removing every ACS or every "
                          "signing certificate (now or in the last approved metadata) is always held; without a "
                          "trust anchor so is one adding an ACS host or a signing certificate, and over plain "
                          "http:// every change."),
        click.option("--trust-anchor", type=click.Path(dir_okay=False, path_type=Path),
                     help="A PEM certificate that must have signed the metadata (enveloped signature over the "
                          "root, SHA-256 or stronger); unsigned or badly signed metadata is then refused."),
        click.option("--no-trust-anchor", is_flag=True, help="Remove the trust anchor."),
        click.option("--max-interval", help="The longest time between two refreshes, such as 6h or 1d (default "
                                            "and maximum: IDP_METADATA_REFRESH_MAX_INTERVAL)."),
    ]

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        kwargs["refresh_flags"] = {name: kwargs.pop(name) for name in _FLAGS}
        return command(*args, **kwargs)

    for option in reversed(options):
        run = option(run)
    return run


def apply_refresh_flags(app: Any, flags: dict[str, Any]) -> bool:
    """Configure the app's metadata source from the flags; False when none was given."""
    if not any(v not in (None, False) for v in flags.values()):
        return False
    if flags["metadata_url"] and flags["no_metadata_url"]:
        fail("give --metadata-url or --no-metadata-url, not both")
    if flags["trust_anchor"] and flags["no_trust_anchor"]:
        fail("give --trust-anchor or --no-trust-anchor, not both")
    if flags["metadata_url"] and flags["mdq"]:
        fail("give --metadata-url or --mdq, not both")
    anchor: Any = None
    if flags["trust_anchor"] is not None:
        path: Path = flags["trust_anchor"]
        try:
            if path.stat().st_size > 64 * 1024:
                raise ServiceError("the trust anchor file is larger than 64 KiB", field="trust_anchor")
            anchor = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            why = getattr(exc, "strerror", None) or exc.__class__.__name__
            raise ServiceError(f"cannot read the trust anchor {path}: {why}", field="trust_anchor") from None
    elif flags["no_trust_anchor"]:
        anchor = apps_svc.CLEAR
    max_interval = None
    if flags["max_interval"] is not None:
        max_interval = apps_svc.parse_duration(flags["max_interval"], field="max_interval")
    url: Any = flags["metadata_url"] or (apps_svc.CLEAR if flags["no_metadata_url"] else None)
    mdq: Any = flags["mdq"] or (apps_svc.CLEAR if flags["no_metadata_url"] else None)
    src = refresh_svc.configure(app, url=url, mdq=mdq, mode=flags["refresh_mode"], trust_anchor_pem=anchor,
                                max_interval_s=max_interval)
    d = refresh_svc.describe(src)
    click.echo(f"app {app.slug}: metadata from {d['request_url'] or '(no URL)'}, refresh {d['refresh']}, "
               f"at most every {d['max_interval']}"
               + (f", trust anchor SHA-256 {d['trust_anchor_sha256']}" if d["trust_anchor_sha256"] else
                  ", no trust anchor"))
    if d.get("warning"):
        click.echo(f"Warning: app {app.slug}: {d['warning']}", err=True)
    return True


def echo_result(slug: str, result: refresh_svc.RefreshResult) -> None:
    click.echo(f"{slug}: {result.outcome}: {result.message}")
    for item in result.diff:
        click.echo(f"  {item['label']}:")
        for x in item.get("removed") or ():
            click.echo(f"    - {x}")
        for x in item.get("added") or ():
            click.echo(f"    + {x}")
        if item.get("before") is not None or item.get("after") is not None:
            click.echo(f"    {item.get('before')} -> {item.get('after')}")
        if item.get("note"):
            click.echo(f"    ({item['note']})")
    for warning in result.warnings:
        click.echo(f"Warning: app {slug}: {warning}", err=True)


@click.command("refresh")
@click.argument("slug", required=False)
@click.option("--yes", is_flag=True, help="Apply the held change (the one whose diff `idp apps show` and the last "
                                          "refresh printed), whatever the refresh mode; nothing is fetched. With "
                                          "nothing held, refresh as usual (a change is then held, not applied).")
@click.option("--sha256", "sha256", metavar="HASH", help="With --yes: apply the held change only if its document "
                                                         "has this SHA-256 (held_sha256 in `idp apps show`).")
@click.option("--due", is_flag=True, help="Refresh every app whose refresh is due (for cron); exit 1 if any was "
                                          "refused.")
@unit_of_work
def apps_refresh(slug: str | None, yes: bool, sha256: str | None, due: bool) -> None:
    """Fetch an app's metadata from its URL / MDQ service now: applied, held for approval, unchanged or refused
    (exit 1)."""
    if due == (slug is not None):
        fail("give an app's SLUG or --due (not both)")
    if sha256 is not None and not yes:
        fail("--sha256 goes with --yes")
    if due:
        if yes:
            fail("--yes goes with one app's SLUG")
        _refresh_due()
        return
    assert slug is not None
    app = apps_svc.get_app(slug)
    src = refresh_svc.source_of(app)
    if yes and src is not None and src.held_xml:
        result = refresh_svc.approve_held(app, sha256=sha256)
    else:
        if yes and sha256 is not None:
            fail(f"app {slug} has no held metadata change")
        result = refresh_svc.refresh(app)
    echo_result(slug, result)
    if result.outcome == "held":
        held = refresh_svc.held_sha256(refresh_svc.source_of(app))   # type: ignore[arg-type]
        if yes:
            click.echo("Nothing was held before: this change was fetched now and is held, not applied. Review the "
                       "diff above, then apply it with:", err=True)
        else:
            click.echo("Apply it with:", err=True)
        click.echo(f"  idp apps refresh {slug} --yes --sha256 {held}", err=True)
    stale = apps_svc.stale_metadata_warning(app.sp) if result.outcome == "applied" else None
    if stale:
        click.echo(f"Warning: app {slug}: {stale}", err=True)
    if result.outcome == "refused":
        sys.exit(1)


def _refresh_due() -> None:
    """Every due app, each in its own transaction (committed per app: the SQLite write lock is not held across
    the other apps' fetches, and one app's failure leaves the others' outcomes)."""
    refused = 0
    ids = [app.id for app in refresh_svc.due_apps()]
    db.session.commit()
    for app_id in ids:
        app = db.session.get(ConnectedApp, app_id)
        if app is None:   # removed meanwhile
            continue
        slug = app.slug
        result: refresh_svc.RefreshResult | None
        try:
            result = refresh_svc.refresh_by_id(app_id)
            db.session.commit()
        except ServiceError as exc:
            db.session.rollback()
            result = refresh_svc.RefreshResult("refused", str(exc), reason="error")
        if result is None:
            continue
        refused += result.outcome == "refused"
        echo_result(slug, result)
    click.echo(f"{len(ids)} app(s) refreshed, {refused} refused")
    if refused:
        sys.exit(1)
