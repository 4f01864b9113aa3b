"""The per-process read cache behind the AppConfig lookups every SSO and SLO request makes.

One indexed query for (id, version) per lookup (none within LOOKUP_TTL_S); the parsed AppConfig is rebuilt only
when the version changed. Changes made in this process drop the cache at once (invalidate_cache).
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import bindparam, select
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from ...extensions import db
from ...models import ConnectedApp, MetadataSource, OidcClient
from ...prepared import Prepared
from ...saml.sp_metadata import SpMetadata
from .oidc_settings import settings_of
from .settings import AppConfig, AppSettings

_cache: dict[int, AppConfig] = {}
_cache_lock = threading.Lock()


def _to_config(row: ConnectedApp) -> AppConfig:
    sp = SpMetadata.from_dict(row.sp) if row.entity_id is not None and row.sp is not None else None
    expires = None
    if sp is not None and sp.valid_until is not None:
        # built once per version: setting or removing a trust anchor bumps the app's version
        src = db.session.get(MetadataSource, row.id)
        if src is not None and src.trust_anchor_pem:
            expires = sp.valid_until
    return AppConfig(
        id=row.id, slug=row.slug, name=row.name, entity_id=row.entity_id if sp else None, enabled=row.enabled,
        version=row.version, created_at=row.created_at, sp=sp,
        settings=AppSettings.from_dict(row.settings), oidc=settings_of(row.oidc) if row.oidc is not None else None,
        metadata_expires_at=expires,
    )


# How long a resolved lookup is trusted before its version is checked again. Changes made in this
# process invalidate at once; changes from another process (CLI, another instance) apply within it.
LOOKUP_TTL_S = 1.0
_recent: dict[tuple[str, object], tuple[float, AppConfig]] = {}


def invalidate_cache() -> None:
    """Drop the lookups now and again when the caller's unit of work commits (a lookup made in between by
    another thread of this process would otherwise keep the committed-before value for LOOKUP_TTL_S)."""
    _drop_lookups()
    db.session.info[_CHANGED] = True


def _drop_lookups() -> None:
    with _cache_lock:
        _recent.clear()
        _cache.clear()


_CHANGED = "idp.apps.changed"


def _after_commit(session: Session) -> None:
    if session.info.pop(_CHANGED, False):
        _drop_lookups()


sa_event.listen(Session, "after_commit", _after_commit)


def _lookup_cached(kind: str, value: object) -> AppConfig | None:
    key = (kind, value)
    hit = _recent.get(key)
    now = time.monotonic()
    if hit is not None and now - hit[0] < LOOKUP_TTL_S:
        return hit[1]
    config = _lookup(kind, value)
    if config is not None:
        with _cache_lock:
            if len(_recent) > 20_000:
                _recent.clear()
            _recent[key] = (now, config)
    return config


_VERSION_BY = {
    kind: Prepared(select(ConnectedApp.id, ConnectedApp.version, ConnectedApp.created_at)
                   .where(column == bindparam("value")))
    for kind, column in (("id", ConnectedApp.id), ("slug", ConnectedApp.slug), ("entity_id", ConnectedApp.entity_id))
}
_VERSION_BY["client_id"] = Prepared(select(ConnectedApp.id, ConnectedApp.version, ConnectedApp.created_at)
                                    .join(OidcClient, OidcClient.app_id == ConnectedApp.id)
                                    .where(OidcClient.client_id == bindparam("value")))


def _lookup(kind: str, value: object) -> AppConfig | None:
    """One indexed query for (id, version); the parsed config is rebuilt only when the version changed."""
    hit = _VERSION_BY[kind].first({"value": value})
    if hit is None:
        return None
    app_id, version, created_at = hit
    cached = _cache.get(app_id)
    # created_at guards against a deleted app's id being reused by a new row (SQLite reuses rowids)
    if cached is not None and cached.version == version and cached.created_at == created_at:
        return cached
    row = db.session.get(ConnectedApp, app_id)
    if row is None:
        return None
    config = _to_config(row)
    with _cache_lock:
        _cache[app_id] = config
    return config


def app_config_by_entity_id(entity_id: str) -> AppConfig | None:
    """The app with SAML settings for this SP entityID (OIDC-only apps have none, so never match)."""
    config = _lookup_cached("entity_id", entity_id)
    return config if config is not None and config.has_saml else None


def app_config_by_slug(slug: str) -> AppConfig | None:
    """Any app, whatever its protocols (policy, dry run, launcher); SAML paths use saml_app_config_by_slug."""
    return _lookup_cached("slug", slug)


def app_config_by_id(app_id: int) -> AppConfig | None:
    """Any app, whatever its protocols; SAML paths use saml_app_config_by_id."""
    return _lookup_cached("id", app_id)


def saml_app_config_by_slug(slug: str) -> AppConfig | None:
    """The app with this slug if it has SAML settings: an OIDC-only app is no SAML app."""
    config = _lookup_cached("slug", slug)
    return config if config is not None and config.has_saml else None


def saml_app_config_by_id(app_id: int) -> AppConfig | None:
    config = _lookup_cached("id", app_id)
    return config if config is not None and config.has_saml else None


def app_config_by_client_id(client_id: str) -> AppConfig | None:
    """The app whose OIDC/OAuth client id this is (None for an unknown one)."""
    if not client_id or len(client_id) > 64 or any(c < " " or c == "\x7f" for c in client_id):
        return None   # no client id has control characters, and PostgreSQL refuses NUL in a text parameter
    config = _lookup_cached("client_id", client_id)
    return config if config is not None and config.oidc is not None else None
