"""The `idp` command: database, users, groups, connected apps, events and certificates.

Commands call services only; every change goes to the database (or the key store), so a
running server picks it up without restart.
"""

from __future__ import annotations

import json
import secrets
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext

from idp.certs.keystore import KeyStoreError
from idp.config import PROJECT_ROOT, load_settings
from idp.events import EventFilter, query_events, to_csv, to_json
from idp.extensions import MIGRATIONS_DIR, db
from idp.services import ServiceError
from idp.services import apps as apps_svc
from idp.services import users as users_svc
from idp.services.fetch import fetch_metadata


def _settings() -> Any:
    return current_app.extensions["idp.settings"]


def _fail(message: str) -> None:
    raise click.ClickException(message)


# ---------------------------------------------------------------- db

@click.group("db", help="Database schema.")
def db_group() -> None:
    pass


def _schema_state() -> str:
    """"empty", "versioned" (under Alembic) or "unversioned" (tables but no alembic_version)."""
    from sqlalchemy import inspect
    tables = set(inspect(db.engine).get_table_names())
    if not tables - {"alembic_version"}:
        return "empty"
    return "versioned" if "alembic_version" in tables else "unversioned"


def _matches_models() -> bool:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with db.engine.connect() as conn:
        return not compare_metadata(MigrationContext.configure(conn), db.metadata)


@db_group.command("upgrade", help="Apply schema migrations up to the latest revision.")
@with_appcontext
def db_upgrade() -> None:
    import flask_migrate

    state = _schema_state()
    if state == "unversioned":
        _fail("the database has tables but no migration history; back it up, then stamp it with "
              "`FLASK_APP=idp.wsgi flask db stamp -d idp/migrations <revision>`")
    flask_migrate.upgrade(directory=MIGRATIONS_DIR)
    click.echo("database schema is at the latest revision")


@db_group.command("init", help="Create the schema at the latest revision (or upgrade it) and the first admin.")
@with_appcontext
def db_init() -> None:
    import flask_migrate

    from idp.models import User

    state = _schema_state()
    if state == "empty":
        db.create_all()
        flask_migrate.stamp(directory=MIGRATIONS_DIR, revision="head")
    elif state == "versioned":
        flask_migrate.upgrade(directory=MIGRATIONS_DIR)
    elif _matches_models():
        # created by create_all (an early release or a test); it is exactly the latest schema
        flask_migrate.stamp(directory=MIGRATIONS_DIR, revision="head")
    else:
        _fail("the database has tables but no migration history and differs from the current schema; "
              "refusing to guess (restore a backup or stamp the right revision by hand)")
    click.echo("database ready")
    if db.session.query(User.id).first() is None:
        s = _settings()
        password = s.admin_password
        if password is not None:
            try:
                users_svc.validate_password(password)
            except ServiceError as exc:
                _fail(f"IDP_ADMIN_PASSWORD: {exc}")
        generated = password is None
        if generated:
            password = secrets.token_urlsafe(12)
        pw = current_app.extensions["idp.passwords"]
        users_svc.add_user("admin", email="admin@localhost.localdomain", password_hash=pw.hash(password),
                           first_name="Admin", is_admin=True)
        if generated:
            click.echo(f"created admin user 'admin' with password: {password}")
            click.echo("(shown once; change it after signing in)")
        else:
            click.echo("created admin user 'admin' with the password from IDP_ADMIN_PASSWORD")


# ---------------------------------------------------------------- users and groups

@click.group("users", help="Manage users.")
def users_group() -> None:
    pass


def _read_password_stdin() -> str:
    line = sys.stdin.readline()
    password = line.rstrip("\r\n")
    try:
        users_svc.validate_password(password)
    except ServiceError as exc:
        _fail(str(exc))
    return password


@users_group.command("add")
@click.argument("username")
@click.option("--email", required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@click.option("--first-name", default="")
@click.option("--last-name", default="")
@click.option("--group", "groups", multiple=True)
@click.option("--admin", is_flag=True)
@with_appcontext
def users_add(username: str, email: str, password_stdin: bool, first_name: str, last_name: str,
              groups: tuple[str, ...], admin: bool) -> None:
    pw_hash = None
    if password_stdin:
        pw_hash = current_app.extensions["idp.passwords"].hash(_read_password_stdin())
    try:
        users_svc.add_user(username, email=email, password_hash=pw_hash, first_name=first_name,
                           last_name=last_name, groups=list(groups), is_admin=admin)
    except ServiceError as exc:
        _fail(str(exc))
    click.echo(f"user {username} added")


@users_group.command("set")
@click.argument("username")
@click.option("--group", "groups", multiple=True)
@click.option("--remove-group", "remove_groups", multiple=True)
@click.option("--disabled/--enabled", default=None)
@click.option("--password-stdin", is_flag=True)
@with_appcontext
def users_set(username: str, groups: tuple[str, ...], remove_groups: tuple[str, ...], disabled: bool | None,
              password_stdin: bool) -> None:
    try:
        user = users_svc.get_user(username)
        pw_hash = None
        if password_stdin:
            pw_hash = current_app.extensions["idp.passwords"].hash(_read_password_stdin())
        users_svc.set_user(user, add_groups=list(groups), remove_groups=list(remove_groups), disabled=disabled,
                           password_hash=pw_hash)
    except ServiceError as exc:
        _fail(str(exc))
    click.echo(f"user {username} updated")


@users_group.command("mfa-enroll", help="Enrol a TOTP second factor; prints the otpauth:// URI (shown once).")
@click.argument("username")
@with_appcontext
def users_mfa_enroll(username: str) -> None:
    from idp.auth import totp
    try:
        user = users_svc.get_user(username)
    except ServiceError as exc:
        _fail(str(exc))
    if totp.is_enrolled(user):
        _fail(f"{username} already has a second factor; reset it first with `idp users mfa-reset {username}`")
    secret = totp.start_enrolment(user)
    user.totp_confirmed = True  # the admin hands the URI over out of band
    db.session.commit()
    click.echo(totp.provisioning_uri(user, secret))


@users_group.command("mfa-reset", help="Remove a user's second factor (they enrol again when a policy asks).")
@click.argument("username")
@with_appcontext
def users_mfa_reset(username: str) -> None:
    from idp.auth import totp
    try:
        user = users_svc.get_user(username)
    except ServiceError as exc:
        _fail(str(exc))
    totp.reset(user)
    click.echo(f"second factor of {username} removed")


@users_group.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@with_appcontext
def users_list(fmt: str) -> None:
    from sqlalchemy import select

    from idp.models import User
    rows = list(db.session.scalars(select(User).order_by(User.username)))
    data = [{"username": u.username, "email": u.email, "first_name": u.first_name, "last_name": u.last_name,
             "groups": u.group_names, "admin": u.is_admin, "disabled": u.disabled} for u in rows]
    if fmt == "json":
        click.echo(json.dumps(data, indent=2))
        return
    for d in data:
        flags = ",".join(f for f in ("admin" if d["admin"] else "", "disabled" if d["disabled"] else "") if f)
        groups = ",".join(d["groups"])  # type: ignore[arg-type]
        click.echo(f"{d['username']:<24} {d['email']:<32} {groups:<24} {flags}")


@click.group("groups", help="Manage groups.")
def groups_group() -> None:
    pass


@groups_group.command("add")
@click.argument("name")
@with_appcontext
def groups_add(name: str) -> None:
    try:
        users_svc.add_group(name)
    except ServiceError as exc:
        _fail(str(exc))
    click.echo(f"group {name} added")


@groups_group.command("remove")
@click.argument("name")
@with_appcontext
def groups_remove(name: str) -> None:
    """Delete a group and its memberships (refused while an app's access policy names it)."""
    try:
        members = users_svc.remove_group(name)
    except ServiceError as exc:
        db.session.rollback()
        _fail(str(exc))
    click.echo(f"group {name} removed ({len(members)} memberships ended)")


@groups_group.command("list")
@with_appcontext
def groups_list() -> None:
    from idp.services import accounts

    for g, members in accounts.groups_with_counts():  # one GROUP BY, not a member load per group
        click.echo(f"{g.name}\t{members} members")


# ---------------------------------------------------------------- apps

@click.group("apps", help="Manage connected apps (SAML service providers).")
def apps_group() -> None:
    pass


def _read_metadata(source: str) -> tuple[bytes, str]:
    if source.startswith(("http://", "https://")):
        s = _settings()
        return fetch_metadata(source, allow_private=s.metadata_fetch_allow_private,
                              timeout=s.metadata_fetch_timeout_s), source
    if "://" in source:
        raise ServiceError("--metadata takes a file path or an http(s) URL")
    path = Path(source)
    if not path.is_file():
        raise ServiceError(f"no metadata file at {source}")
    try:
        if path.stat().st_size > 5 * 1024 * 1024:
            raise ServiceError("metadata file is larger than 5 MiB")
        with path.open("rb") as fh:
            data = fh.read(5 * 1024 * 1024 + 1)
    except OSError as exc:
        raise ServiceError(f"cannot read {source}: {exc.strerror or exc.__class__.__name__}") from None
    return data, str(path.resolve())


@apps_group.command("add")
@click.option("--metadata", "source", required=True, help="SP metadata: a file path or an http(s) URL.")
@click.option("--name")
@click.option("--slug")
@click.option("--entity-id", help="Pick one SP from an aggregate (EntitiesDescriptor).")
@with_appcontext
def apps_add(source: str, name: str | None, slug: str | None, entity_id: str | None) -> None:
    try:
        xml, ref = _read_metadata(source)
        app = apps_svc.register_app(xml, name=name, slug=slug, entity_id=entity_id, source="cli", source_ref=ref)
    except ServiceError as exc:
        _fail(str(exc))
    click.echo(app.slug)


@apps_group.command("sync")
@click.argument("folder", required=False, type=click.Path(file_okay=False, path_type=Path))
@with_appcontext
def apps_sync(folder: Path | None) -> None:
    folder = folder or PROJECT_ROOT / "metadata"
    if not folder.is_dir():
        _fail(f"no folder {folder}")
    report = apps_svc.sync_folder(folder)
    for label, items in (("added", report.added), ("updated", report.updated), ("unchanged", report.unchanged)):
        for slug in items:
            click.echo(f"{label:<9} {slug}")
    for name, why in report.refused:
        click.echo(f"refused   {name}: {why}")
    click.echo(f"{len(report.added)} added, {len(report.updated)} updated, {len(report.unchanged)} unchanged, "
               f"{len(report.refused)} refused")
    if report.refused:
        sys.exit(1)


def _app_dict(app: Any) -> dict[str, Any]:
    cfg = apps_svc.AppSettings.from_dict(app.settings)
    sp = app.sp
    return {
        "slug": app.slug, "name": app.name, "entity_id": app.entity_id, "enabled": app.enabled,
        "source": app.source, "acs": [a for a in sp["acs"]], "slo": sp["slo"],
        "signing_certs": len(sp["signing_certs"]), "encryption_certs": len(sp["encryption_certs"]),
        "authn_requests_signed": sp["authn_requests_signed"], "want_assertions_signed": sp["want_assertions_signed"],
        "settings": cfg.to_dict(),
        "launch_url": _settings().url(f"/apps/{app.slug}/sso"),
    }


@apps_group.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@with_appcontext
def apps_list(fmt: str) -> None:
    rows = apps_svc.list_apps()
    if fmt == "json":
        click.echo(json.dumps([_app_dict(a) for a in rows], indent=2))
        return
    if not rows:
        click.echo("no apps registered")
        return
    click.echo(f"{'SLUG':<28} {'STATUS':<9} {'NAMEID':<12} ENTITY ID")
    for a in rows:
        cfg = apps_svc.AppSettings.from_dict(a.settings)
        click.echo(f"{a.slug:<28} {'enabled' if a.enabled else 'disabled':<9} {cfg.nameid_format:<12} {a.entity_id}")


@apps_group.command("show")
@click.argument("slug")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@with_appcontext
def apps_show(slug: str, fmt: str) -> None:
    try:
        app = apps_svc.get_app(slug)
    except ServiceError as exc:
        _fail(str(exc))
    d = _app_dict(app)
    if fmt == "json":
        click.echo(json.dumps(d, indent=2))
        return
    for key, value in d.items():
        if key in ("acs", "slo"):
            click.echo(f"{key}:")
            for ep in value:
                click.echo(f"  - {ep['binding'].rsplit(':', 1)[-1]} {ep['location']}"
                           + (f" index={ep['index']}" if ep.get("index") is not None else "")
                           + (" default" if ep.get("is_default") else ""))
        elif key == "settings":
            for k, v in value.items():
                click.echo(f"{k}: {v}")
        else:
            click.echo(f"{key}: {value}")


@apps_group.command("remove")
@click.argument("slug")
@with_appcontext
def apps_remove(slug: str) -> None:
    try:
        apps_svc.remove_app(slug)
    except ServiceError as exc:
        _fail(str(exc))
    click.echo(f"app {slug} removed")


@apps_group.command("set")
@click.argument("slug")
@click.option("--nameid-format", type=click.Choice(["email", "persistent", "transient", "unspecified"]))
@click.option("--nameid-field", type=click.Choice(["username", "email", "id"]))
@click.option("--attribute", "attributes", multiple=True, help="NAME=FIELD; repeat. Replaces the attribute map.")
@click.option("--clear-attributes", is_flag=True)
@click.option("--sign", type=click.Choice(["response", "assertion", "both"]))
@click.option("--enabled/--disabled", default=None)
@click.option("--name")
@click.option("--require-signed-requests/--no-require-signed-requests", default=None)
@click.option("--allow-sha1/--no-allow-sha1", default=None)
@click.option("--permitted", type=click.Choice(["all", "admin-approved"]))
@click.option("--allow-group", "allow_groups", multiple=True, help="Group allowed in (admin-approved); repeat.")
@click.option("--deny-group", "deny_groups", multiple=True, help="Group always refused; repeat.")
@click.option("--remove-allow-group", "remove_allow_groups", multiple=True)
@click.option("--remove-deny-group", "remove_deny_groups", multiple=True)
@click.option("--assign-user", "assign_users", multiple=True, help="User allowed in directly; repeat.")
@click.option("--unassign-user", "unassign_users", multiple=True)
@click.option("--ip-policy", type=click.Choice(["enforce", "relax-with-mfa", "relax"]))
@click.option("--ip-range", "ip_ranges", multiple=True, help="IPv4/IPv6 CIDR added to the app's ranges; repeat.")
@click.option("--clear-ip-ranges", is_flag=True)
@click.option("--require-mfa/--no-require-mfa", default=None)
@click.option("--mfa-action", type=click.Choice(["step-up", "block"]))
@click.option("--session-timeout", type=click.IntRange(0, 10080), help="Minutes; 0 removes the limit.")
@click.option("--signing-key", help="Pin the app to a published key id (see idp certs status), or 'active'.")
@click.option("--signature-algorithm", type=click.Choice(list(apps_svc.SIGNATURE_ALGORITHM_NAMES)))
@click.option("--encrypt-assertion/--no-encrypt-assertion", default=None)
@click.option("--encryption-algorithm", type=click.Choice(list(apps_svc.ENCRYPTION_ALGORITHMS)))
@with_appcontext
def apps_set(slug: str, nameid_format: str | None, nameid_field: str | None, attributes: tuple[str, ...],
             clear_attributes: bool, sign: str | None, enabled: bool | None, name: str | None,
             require_signed_requests: bool | None, allow_sha1: bool | None, permitted: str | None,
             allow_groups: tuple[str, ...], deny_groups: tuple[str, ...], remove_allow_groups: tuple[str, ...],
             remove_deny_groups: tuple[str, ...], assign_users: tuple[str, ...], unassign_users: tuple[str, ...],
             ip_policy: str | None, ip_ranges: tuple[str, ...], clear_ip_ranges: bool, require_mfa: bool | None,
             mfa_action: str | None, session_timeout: int | None, signing_key: str | None,
             signature_algorithm: str | None, encrypt_assertion: bool | None,
             encryption_algorithm: str | None) -> None:
    try:
        app = apps_svc.get_app(slug)
        policy = apps_svc.policy_changes(
            apps_svc.AppSettings.from_dict(app.settings), permitted=permitted, allow_groups=allow_groups,
            deny_groups=deny_groups, remove_allow_groups=remove_allow_groups,
            remove_deny_groups=remove_deny_groups, assign_users=assign_users, unassign_users=unassign_users,
            ip_policy=ip_policy, ip_ranges=ip_ranges, clear_ip_ranges=clear_ip_ranges, require_mfa=require_mfa,
            mfa_action=mfa_action, session_timeout=session_timeout)
        attr_map = apps_svc.parse_attribute_option(list(attributes)) if attributes else None
        if clear_attributes and attr_map is None:
            attr_map = {}
        if nameid_field is None and nameid_format == "email":
            nameid_field = "email"
        apps_svc.change_settings(app, enabled=enabled, name=name, nameid_format=nameid_format,
                                 nameid_field=nameid_field,
                                 attributes=attr_map, sign=sign, require_signed_requests=require_signed_requests,
                                 allow_sha1=allow_sha1, **policy,
                                 **apps_svc.signing_changes(published_kids=_published_kids(signing_key),
                                                            signing_key=signing_key,
                                                            signature_algorithm=signature_algorithm,
                                                            encrypt_assertion=encrypt_assertion,
                                                            encryption_algorithm=encryption_algorithm))
    except ServiceError as exc:
        db.session.rollback()
        _fail(str(exc))
    click.echo(f"app {slug} updated")


# ---------------------------------------------------------------- events

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
@click.option("--outcome", type=click.Choice(["success", "denied", "error"]))
@click.option("--reason")
@click.option("--since")
@click.option("--limit", type=click.IntRange(1, 1_000_000), default=100, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
@with_appcontext
def events_cmd(app_slug: str | None, username: str | None, outcome: str | None, reason: str | None,
               since: str | None, limit: int, fmt: str) -> None:
    f = EventFilter(app_slug=app_slug, username=username, outcome=outcome, reason=reason, since=_parse_since(since))
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


# ---------------------------------------------------------------- certs

@click.group("certs", help="Signing keys and certificates.")
def certs_group() -> None:
    pass


def _published_kids(requested: str | None) -> list[str] | None:
    if requested is None or requested == "active":
        return None
    try:
        return [k.kid for k in _store().current().published]
    except KeyStoreError as exc:
        raise ServiceError(f"cannot check the key: {exc}") from None


def _store() -> Any:
    return current_app.extensions["idp.keystore"]


@certs_group.command("generate", help="Create the first signing key pair; refuses when keys exist.")
@click.option("--key-type", type=click.Choice(["rsa2048", "rsa3072", "ec-p256"]), default="rsa3072")
@click.option("--days", type=click.IntRange(1, 3650), default=730)
@click.option("--if-empty", is_flag=True, help="Do nothing (exit 0) when keys already exist.")
@with_appcontext
def certs_generate(key_type: str, days: int, if_empty: bool) -> None:
    store = _store()
    with store.mutation():
        if if_empty and not store.is_empty():
            click.echo("signing keys already present; nothing generated")
            return
        try:
            kid = store.generate_first(_settings().entity_id, key_type, days)
        except KeyStoreError as exc:
            _fail(str(exc))
    _audit_certs("certs.generate", kid, {"key_type": key_type, "days": days})
    click.echo(f"generated active signing key {kid} in {store.cert_dir}")


@certs_group.command("rotate", help="Stage the next key pair: published in metadata, not yet signing.")
@click.option("--key-type", type=click.Choice(["rsa2048", "rsa3072", "ec-p256"]), default="rsa3072")
@click.option("--days", type=click.IntRange(1, 3650), default=730)
@with_appcontext
def certs_rotate(key_type: str, days: int) -> None:
    from idp.services.admin_queries import rotate_keys
    try:
        kid = rotate_keys(_store(), _settings().entity_id, key_type, days)
    except KeyStoreError as exc:
        _fail(str(exc))
    click.echo(f"staged next signing key {kid}; metadata now publishes it next to the active key.")
    click.echo("Tell SP owners to refresh the IdP metadata, wait for them, then run `make activate-certs`.")


@certs_group.command("activate", help="The next key becomes active; the old one stays published as retiring.")
@with_appcontext
def certs_activate() -> None:
    from idp.services.admin_queries import activate_keys
    try:
        new, old = activate_keys(_store())
    except KeyStoreError as exc:
        _fail(str(exc))
    click.echo(f"key {new} is now active" + (f"; {old} is retiring (still published)" if old else ""))
    click.echo("When every SP has refreshed the metadata, run `make retire-certs`.")


@certs_group.command("retire", help="The retiring key leaves the metadata and is archived.")
@with_appcontext
def certs_retire() -> None:
    from idp.services.admin_queries import retire_keys
    store = _store()
    try:
        kid = retire_keys(store)
    except KeyStoreError as exc:
        _fail(str(exc))
    click.echo(f"key {kid} retired and moved to {store.cert_dir / 'archive'}")


@certs_group.command("import", help="Register an externally issued key pair (next, or active on an empty store).")
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--cert", "cert_path", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@with_appcontext
def certs_import(key_path: Path, cert_path: Path) -> None:
    store = _store()
    try:
        if key_path.stat().st_size > 64 * 1024 or cert_path.stat().st_size > 64 * 1024:
            raise KeyStoreError("key and certificate files must be PEM files under 64 KiB")
        with store.mutation():
            kid, state = store.import_pair(key_path.read_bytes(), cert_path.read_bytes())
    except (KeyStoreError, OSError) as exc:
        _fail(str(exc))
    _audit_certs("certs.import", kid, {"state": state})
    click.echo(f"imported key {kid} as {state}")


@certs_group.command("status", help="Every key with state, SHA-256 fingerprint, expiry; warnings. Exit 1 on errors.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@with_appcontext
def certs_status(fmt: str) -> None:
    store = _store()
    try:
        rows = store.status()
    except KeyStoreError as exc:
        _fail(str(exc))
    warnings = store.warnings(rows)
    pins = apps_svc.pinned_keys()
    if fmt == "json":
        click.echo(json.dumps({"keys": rows, "warnings": warnings, "pinned_by": pins}, indent=2))
    else:
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
    if any(r.get("error") for r in rows) or not any(r["state"] == "active" for r in rows):
        sys.exit(1)


# ---------------------------------------------------------------- org settings and access check

@click.group("org", help="Org-wide settings.")
def org_group() -> None:
    pass


@org_group.group("ip-ranges", help="Trusted login IP ranges (IPv4/IPv6 CIDR), used by every app's IP policy.")
def ip_ranges_group() -> None:
    pass


@ip_ranges_group.command("add")
@click.argument("cidr")
@with_appcontext
def ip_ranges_add(cidr: str) -> None:
    from idp.services import org
    try:
        value = org.add_trusted_range(cidr)
    except ServiceError as exc:
        _fail(str(exc))
    click.echo(f"trusted range {value} added")


@ip_ranges_group.command("remove")
@click.argument("cidr")
@with_appcontext
def ip_ranges_remove(cidr: str) -> None:
    from idp.services import org
    try:
        value = org.remove_trusted_range(cidr)
    except ServiceError as exc:
        _fail(str(exc))
    click.echo(f"trusted range {value} removed")


@ip_ranges_group.command("list")
@with_appcontext
def ip_ranges_list() -> None:
    from idp.services import org
    ranges = org.trusted_ranges()
    if not ranges:
        click.echo("no trusted ranges (no org-wide IP restriction)")
    for r in ranges:
        click.echo(r)


@click.group("access", help="Explain access decisions.")
def access_group() -> None:
    pass


@access_group.command("check", help="Dry run: would USER get into APP from IP, with or without MFA? Issues nothing.")
@click.option("--user", "username", required=True)
@click.option("--app", "slug", required=True)
@click.option("--ip", "ip", default=None)
@click.option("--mfa", is_flag=True, help="Assume the session passed a second factor.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@with_appcontext
def access_check(username: str, slug: str, ip: str | None, mfa: bool, fmt: str) -> None:
    from idp.flows.access import dry_run
    try:
        decision = dry_run(username, slug, ip, mfa)
    except ServiceError as exc:
        _fail(str(exc))
    if fmt == "json":
        click.echo(json.dumps({"decision": str(decision.effect), "check": decision.check,
                               "reason": str(decision.reason), "explanation": decision.explanation,
                               "inputs": decision.inputs}, indent=2, default=str))
        return
    words = {"allow": "ALLOW", "deny": "DENY", "step_up": "STEP-UP (second factor required)",
             "reauth": "RE-AUTHENTICATE"}
    click.echo(f"decision: {words[str(decision.effect)]}")
    click.echo(f"check:    {decision.check}")
    click.echo(f"reason:   {decision.reason}")
    click.echo(f"why:      {decision.explanation}")
    for k, v in decision.inputs.items():
        click.echo(f"  {k}: {v}")


# ---------------------------------------------------------------- serve

def default_bind(base_url: str) -> str:
    """Listen where IDP_BASE_URL points when that is this machine; behind a proxy, on 127.0.0.1:5000."""
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    if parts.hostname in ("127.0.0.1", "localhost", "0.0.0.0", "::1"):  # noqa: S104 - only echoes the admin's URL
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
        return f"{host}:{port}"
    return "127.0.0.1:5000"


@click.command("serve", help="Run the production server (gunicorn). Bind: IDP_BIND or derived from IDP_BASE_URL.")
@click.option("--bind", envvar="IDP_BIND", default=None)
@click.option("--workers", envvar="IDP_WORKERS", type=click.IntRange(1, 64), default=None)
@click.option("--threads", envvar="IDP_THREADS", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Threads per worker; SSO is CPU-bound, so more workers beat more threads.")
def serve_cmd(bind: str | None, workers: int | None, threads: int) -> None:
    import os
    import shutil

    s = load_settings()
    bind = bind or default_bind(s.base_url)
    workers = workers or (os.cpu_count() or 1)
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or shutil.which("gunicorn")
    if gunicorn is None:
        raise click.ClickException("gunicorn is not installed in this environment")
    args = [gunicorn, "idp.wsgi:app", "--bind", bind, "--workers", str(workers), "--threads", str(threads),
            "--timeout", "30", "--graceful-timeout", "20", "--keep-alive", "5", "--backlog", "256",
            "--worker-connections", "256",
            "--max-requests", "20000", "--max-requests-jitter", "2000", "--access-logfile", "-"]
    click.echo(f"serving {s.base_url} on {bind} with {workers} workers x {threads} threads")
    os.execv(gunicorn, args)  # noqa: S606 - fixed program, admin-controlled arguments


@click.command("audit", help="Show the admin audit trail (CLI and console changes), newest first.")
@click.option("--limit", type=click.IntRange(1, 100000), default=50, show_default=True)
@click.option("--target", help="Only changes to this app slug, username, group or setting.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@with_appcontext
def audit_cmd(limit: int, target: str | None, fmt: str) -> None:
    from idp import audit
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


def _audit_certs(action: str, target: str, after: dict[str, Any] | None = None) -> None:
    from idp.services.admin_queries import audit_key_operation
    if not audit_key_operation(action, target, after):
        click.echo("note: not recorded in the audit trail (database not initialised; run `idp db init`)", err=True)


def register_cli(app: Flask) -> None:
    for cmd in (db_group, users_group, groups_group, apps_group, events_cmd, certs_group, org_group,
                access_group, audit_cmd, serve_cmd):
        app.cli.add_command(cmd)


def main() -> None:
    import getpass

    from idp import audit, create_app

    try:
        audit.set_actor(f"cli:{getpass.getuser()}")
    except (KeyError, OSError):
        audit.set_actor("cli")

    def factory() -> Flask:
        return create_app(load_settings())

    cli = FlaskGroup(create_app=factory, add_version_option=False, load_dotenv=False,
                     help="Manage the identity provider.")
    cli.main(prog_name="idp")
