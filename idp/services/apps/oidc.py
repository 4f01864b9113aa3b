"""OIDC/OAuth client settings of connected apps as stored: add them, change them, rotate and check client secrets.

A client id is 24 random bytes (URL-safe): not guessable, not derived from the app. A client secret is 32 random
bytes, shown once, and stored as its SHA-256 only. A plain (fast) hash is enough because the secret is
high-entropy: 256 random bits cannot be found by guessing, so a slow password hash would add nothing but CPU on
every token request; it would matter only for secrets a person chose, and admins never choose one here. During a
rotation overlap several secrets are valid; each has its own expiry. Every change is validated first (nothing is
written on refusal), audited without any secret, bumps the app's version and drops the read cache.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select

from ... import audit
from ...extensions import db
from ...models import ConnectedApp, OidcClient, OidcClientSecret, utcnow
from .. import ServiceError
from .cache import invalidate_cache
from .oidc_settings import (
    AUTH_NONE,
    AUTHORIZATION_CODE,
    CONFIDENTIAL,
    PUBLIC,
    SECRET_AUTH_METHODS,
    SECRET_OVERLAP_RANGE,
    OidcSettings,
    settings_of,
    validate_oidc_settings,
)
from .settings import AppSettings
from .validation import validate_name, validate_slug

CLIENT_ID_BYTES = 24
SECRET_BYTES = 32


def new_client_id() -> str:
    return secrets.token_urlsafe(CLIENT_ID_BYTES)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(b"idp client secret:" + secret.encode("utf-8", errors="replace")).hexdigest()


def _store(client: OidcClient, s: OidcSettings) -> None:
    for name, value in s.to_dict().items():
        if name != "client_id":
            setattr(client, name, value)


def initial_settings(*, public: bool = False, grant_types: tuple[str, ...] | None = None,
                     clear: tuple[str, ...] = (), **values: Any) -> OidcSettings:
    """The settings a new client starts with: confidential with client_secret_basic, or public with none; then
    `values` (None keeps the default) and `clear` (names set to None)."""
    s = OidcSettings(client_id="", client_type=PUBLIC if public else CONFIDENTIAL,
                     token_endpoint_auth_method=AUTH_NONE if public else SECRET_AUTH_METHODS[0],
                     grant_types=grant_types or (AUTHORIZATION_CODE,))
    given: dict[str, Any] = {k: v for k, v in values.items() if v is not None}
    given.update(dict.fromkeys(clear))
    return replace(s, **given)


def add_oidc(app: ConnectedApp, settings: OidcSettings) -> tuple[OidcClient, str | None]:
    """Give `app` OIDC/OAuth client settings (a new random client id); returns the client and, for a client that
    authenticates with a secret, the secret (shown once, stored hashed)."""
    if app.oidc is not None:
        raise ServiceError(f"app {app.slug!r} already has OIDC settings (client id {app.oidc.client_id}); change "
                           "them with idp apps set", field="oidc")
    settings = replace(settings, client_id=new_client_id())
    validate_oidc_settings(settings)
    client = OidcClient(app=app, client_id=settings.client_id, created_at=utcnow())
    _store(client, settings)
    db.session.add(client)
    audit.record("app.oidc", "app", app.slug, after=settings.summary())
    secret = _new_secret(client) if settings.uses_secret else None
    app.version = (app.version or 0) + 1
    db.session.flush()
    invalidate_cache()
    return client, secret


def register_oidc_app(*, name: str, slug: str, settings: OidcSettings, source: str = "cli"
                      ) -> tuple[ConnectedApp, str | None]:
    """A new connected app with OIDC/OAuth settings only (no SAML part); returns it and its first secret."""
    name = validate_name(name)
    validate_slug(slug)
    if db.session.scalar(select(ConnectedApp.id).where(ConnectedApp.slug == slug)) is not None:
        raise ServiceError(f"slug {slug!r} is already taken", field="slug")
    validate_oidc_settings(replace(settings, client_id="-"))
    app = ConnectedApp(slug=slug, name=name, entity_id=None, enabled=True, metadata_xml=None, sp=None,
                       settings=AppSettings().to_dict(), source=source, version=0)
    db.session.add(app)
    audit.record("app.add", "app", slug, after={"name": name, "protocols": ["oidc"], "source": source})
    _, secret = add_oidc(app, settings)
    return app, secret


def change_oidc(app: ConnectedApp, **changes: Any) -> tuple[OidcSettings, str | None]:
    """Validate and apply changes to an app's OIDC settings (None keeps a value; `clear=` names the optional
    settings to set back to None); returns the new settings and a new secret when the change needs one (a client
    moved to client_secret_* with no valid secret left).

    Moving away from the secret methods (to private_key_jwt) ends every secret now: a secret kept "asleep" would
    come back to life with a later move back, though it may have leaked meanwhile (the reason to move, often).
    Moving back therefore always makes a new secret, which the caller shows once."""
    client = _client_of(app)
    clear = set(changes.pop("clear", ()) or ())
    current = settings_of(client)
    updates = {k: v for k, v in changes.items() if v is not None}
    updates.update({k: None for k in clear})
    if "client_id" in updates or "client_type" in updates:
        raise ServiceError("the client id and the client type are fixed when the OIDC settings are added",
                           field="client_type")
    new = replace(current, **updates)
    validate_oidc_settings(new)
    before, after = current.summary(), new.summary()
    diff = [k for k in after if before.get(k) != after.get(k)]
    now = utcnow()
    secret = None
    ended = 0
    if current.uses_secret and not new.uses_secret:
        for old in _valid_secrets(client, now):
            old.expires_at = now
            ended += 1
    if new.uses_secret and not _valid_secrets(client, now):
        secret = _new_secret(client, now)
    if diff:
        audit_after: dict[str, Any] = {k: after[k] for k in diff}
        if ended:
            audit_after["secrets_ended"] = ended
        if secret is not None:
            audit_after["new_secret"] = True
        audit.record("app.oidc_settings", "app", app.slug, before={k: before[k] for k in diff}, after=audit_after)
    _store(client, new)
    app.version += 1
    invalidate_cache()
    return new, secret


def rotate_secret(app: ConnectedApp, *, overlap: int | None = None, now: datetime | None = None) -> str:
    """A new client secret (returned once); the secrets valid until now stay valid for `overlap` seconds more at
    most (none: they stop at once)."""
    client = _client_of(app)
    s = settings_of(client)
    if not s.uses_secret:
        raise ServiceError(f"this client authenticates with {s.token_endpoint_auth_method}, not a client secret",
                           field="token_endpoint_auth_method")
    if overlap is not None and not SECRET_OVERLAP_RANGE[0] <= overlap <= SECRET_OVERLAP_RANGE[1]:
        raise ServiceError("the overlap must be between 1m and 30d", field="overlap")
    now = now or utcnow()
    end = now + timedelta(seconds=overlap) if overlap else now
    older = _valid_secrets(client, now)
    for old in older:
        if old.expires_at is None or old.expires_at > end:
            old.expires_at = end
    secret = _new_secret(client, now)
    audit.record("app.secret_rotate", "app", app.slug,
                 after={"client_id": client.client_id, "older_secrets_valid_until": end.isoformat() if older else None,
                        "older_secrets": len(older)})
    app.version += 1
    invalidate_cache()
    return secret


def secret_status(app: ConnectedApp, now: datetime | None = None) -> list[dict[str, Any]]:
    """The valid secrets of an app (when made, until when): never the secret or its hash."""
    if app.oidc is None:
        return []
    return [{"created_at": s.created_at, "expires_at": s.expires_at} for s in _valid_secrets(app.oidc, now or utcnow())]


def verify_client_secret(client_id: str, presented: str, now: datetime | None = None) -> bool:
    """Whether `presented` is a valid secret of the client `client_id` (its app enabled, within its expiry).
    One indexed query on the hash; the comparison of the stored hash is constant-time."""
    if not client_id or not presented or len(presented) > 512 or len(client_id) > 64:
        return False
    digest = secret_hash(presented)
    now = now or utcnow()
    stored = db.session.scalar(
        select(OidcClientSecret.secret_hash)
        .join(OidcClient, OidcClient.id == OidcClientSecret.client_pk)
        .join(ConnectedApp, ConnectedApp.id == OidcClient.app_id)
        .where(OidcClient.client_id == client_id, OidcClientSecret.secret_hash == digest,
               ConnectedApp.enabled.is_(True),
               OidcClient.token_endpoint_auth_method.in_(SECRET_AUTH_METHODS),
               or_(OidcClientSecret.expires_at.is_(None), OidcClientSecret.expires_at > now)))
    return stored is not None and hmac.compare_digest(stored, digest)


def _client_of(app: ConnectedApp) -> OidcClient:
    if app.oidc is None:
        raise ServiceError(f"app {app.slug!r} has no OIDC settings: add them with idp apps set {app.slug} --oidc",
                           field="oidc")
    client: OidcClient = app.oidc
    return client


def _valid_secrets(client: OidcClient, now: datetime) -> list[OidcClientSecret]:
    return [s for s in client.secrets if s.expires_at is None or s.expires_at > now]


def _new_secret(client: OidcClient, now: datetime | None = None) -> str:
    secret = secrets.token_urlsafe(SECRET_BYTES)
    client.secrets.append(OidcClientSecret(secret_hash=secret_hash(secret), created_at=now or utcnow()))
    return secret
