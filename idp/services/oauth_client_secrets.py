"""Checking a client secret on the hot path: the client's valid secret hashes cached per app version.

services.apps.verify_client_secret runs one query per call; the token endpoint checks a secret on every request
(client credentials are one signature plus bookkeeping, so the query was a third of the cost). Here the hashes
are read once per app version: rotate_secret and every settings change bump the version, which the AppConfig
lookup sees within services.apps.LOOKUP_TTL_S in every process, and each hash's own expiry (the end of a
rotation overlap) is checked against the clock at every use. The comparison is constant-time.
"""

from __future__ import annotations

import hmac
import threading
from datetime import datetime

from sqlalchemy import select

from ..extensions import db
from ..models import OidcClient, OidcClientSecret
from .apps import AppConfig
from .apps.oidc import secret_hash

_cache: dict[int, tuple[int, datetime, tuple[tuple[str, datetime | None], ...]]] = {}
_lock = threading.Lock()
MAX_SECRET = 512


def _hashes(app: AppConfig) -> tuple[tuple[str, datetime | None], ...]:
    hit = _cache.get(app.id)
    if hit is not None and hit[0] == app.version and hit[1] == app.created_at:
        return hit[2]
    rows = db.session.execute(
        select(OidcClientSecret.secret_hash, OidcClientSecret.expires_at)
        .join(OidcClient, OidcClient.id == OidcClientSecret.client_pk)
        .where(OidcClient.app_id == app.id)).all()
    hashes = tuple((str(h), e) for h, e in rows)
    with _lock:
        if len(_cache) > 10_000:
            _cache.clear()
        _cache[app.id] = (app.version, app.created_at, hashes)
    return hashes


def check_client_secret(app: AppConfig, presented: str, now: datetime) -> bool:
    """Whether `presented` is a valid (unexpired) secret of the app's client: one SHA-256, constant-time
    compares against the cached hashes (every one of them, so the time does not say which matched)."""
    if not app.enabled or app.oidc is None or not app.oidc.uses_secret:
        return False
    if not presented or len(presented) > MAX_SECRET:
        return False
    digest = secret_hash(presented)
    found = False
    for stored, expires_at in _hashes(app):
        if hmac.compare_digest(stored, digest) and (expires_at is None or expires_at > now):
            found = True
    return found


def forget_secrets() -> None:
    with _lock:
        _cache.clear()
