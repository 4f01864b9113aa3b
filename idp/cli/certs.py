"""`idp certs`: the signing key life cycle (generate, rotate, activate, retire, import) and its status."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from idp.certs.generate import DEFAULT_KEY_TYPE, KEY_TYPES
from idp.certs.keystore import KeyStoreError
from idp.services import apps as apps_svc
from idp.services.admin_queries import activate_keys, audit_key_operation, retire_keys, rotate_keys

from ._common import fail, keystore, settings, unit_of_work


@click.group("certs", help="Signing keys and certificates.")
def certs_group() -> None:
    pass


def _audit(action: str, target: str, after: dict[str, Any] | None = None) -> None:
    if not audit_key_operation(action, target, after):
        click.echo("note: not recorded in the audit trail (database not initialised; run `idp db init`)", err=True)


@certs_group.command("generate", help="Create the first signing key pair; refuses when keys exist.")
@click.option("--key-type", type=click.Choice(KEY_TYPES), default=DEFAULT_KEY_TYPE.value)
@click.option("--days", type=click.IntRange(1, 3650), default=730)
@click.option("--if-empty", is_flag=True, help="Do nothing (exit 0) when keys already exist.")
@unit_of_work
def certs_generate(key_type: str, days: int, if_empty: bool) -> None:
    store = keystore()
    with store.mutation():
        if if_empty and not store.is_empty():
            click.echo("signing keys already present; nothing generated")
            return
        try:
            kid = store.generate_first(settings().entity_id, key_type, days)
        except KeyStoreError as exc:
            fail(str(exc))
    _audit("certs.generate", kid, {"key_type": key_type, "days": days})
    click.echo(f"generated active signing key {kid} in {store.cert_dir}")


@certs_group.command("rotate", help="Stage the next key pair: published in metadata, not yet signing.")
@click.option("--key-type", type=click.Choice(KEY_TYPES), default=DEFAULT_KEY_TYPE.value)
@click.option("--days", type=click.IntRange(1, 3650), default=730)
@unit_of_work
def certs_rotate(key_type: str, days: int) -> None:
    try:
        kid = rotate_keys(keystore(), settings().entity_id, key_type, days)
    except KeyStoreError as exc:
        fail(str(exc))
    click.echo(f"staged next signing key {kid}; metadata now publishes it next to the active key.")
    click.echo("Tell SP owners to refresh the IdP metadata, wait for them, then run `make activate-certs`.")


@certs_group.command("activate", help="The next key becomes active; the old one stays published as retiring.")
@unit_of_work
def certs_activate() -> None:
    try:
        new, old = activate_keys(keystore())
    except KeyStoreError as exc:
        fail(str(exc))
    click.echo(f"key {new} is now active" + (f"; {old} is retiring (still published)" if old else ""))
    click.echo("When every SP has refreshed the metadata, run `make retire-certs`.")


@certs_group.command("retire", help="The retiring key leaves the metadata and is archived.")
@unit_of_work
def certs_retire() -> None:
    store = keystore()
    try:
        kid = retire_keys(store)
    except KeyStoreError as exc:
        fail(str(exc))
    click.echo(f"key {kid} retired and moved to {store.cert_dir / 'archive'}")


@certs_group.command("import", help="Register an externally issued key pair (next, or active on an empty store).")
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--cert", "cert_path", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@unit_of_work
def certs_import(key_path: Path, cert_path: Path) -> None:
    store = keystore()
    try:
        if key_path.stat().st_size > 64 * 1024 or cert_path.stat().st_size > 64 * 1024:
            raise KeyStoreError("key and certificate files must be PEM files under 64 KiB")
        with store.mutation():
            kid, state = store.import_pair(key_path.read_bytes(), cert_path.read_bytes())
    except (KeyStoreError, OSError) as exc:
        fail(str(exc))
    _audit("certs.import", kid, {"state": state})
    click.echo(f"imported key {kid} as {state}")


@certs_group.command("status", help="Every key with state, SHA-256 fingerprint, expiry; warnings. Exit 1 on errors.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@unit_of_work
def certs_status(fmt: str) -> None:
    store = keystore()
    try:
        rows = store.status()
    except KeyStoreError as exc:
        fail(str(exc))
    warnings = store.warnings(rows)
    pins = apps_svc.pinned_keys()
    if fmt == "json":
        click.echo(json.dumps({"keys": rows, "warnings": warnings, "pinned_by": pins}, indent=2))
    else:
        _print_status(rows, warnings, pins)
    if any(r.get("error") for r in rows) or not any(r["state"] == "active" for r in rows):
        sys.exit(1)


def _print_status(rows: list[dict[str, Any]], warnings: list[str], pins: dict[str, list[str]]) -> None:
    click.echo(f"{'KEY':<20} {'STATE':<9} {'TYPE':<9} {'NOT AFTER':<11} {'DAYS':>5}  SHA-256 FINGERPRINT")
    for r in rows:
        if r.get("error"):
            click.echo(f"{r['kid']:<20} {r['state']:<9} {str(r.get('key_type')):<9} ERROR: {r['error']}")
            continue
        pinned = f"  (pinned by {', '.join(pins[r['kid']])})" if r["kid"] in pins else ""
        click.echo(f"{r['kid']:<20} {r['state']:<9} {str(r.get('key_type')):<9} {r['not_after'][:10]:<11} "
                   f"{r['days_left']:>5}  {r['fingerprint_sha256']}{pinned}")
    for w in warnings:
        click.echo(f"WARNING: {w}")
