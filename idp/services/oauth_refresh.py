"""Refresh tokens: issue a family, look a presented token up, rotate it. Only the SHA-256 of a token is stored.

A family starts at a code exchange; each use marks the presented token rotated_at and issues a successor in
the same family (same grant, scopes, resources, session, auth_time). Presenting a rotated token again is a reuse: the
caller revokes the family (services.oauth_tokens). Writes in the caller's unit of work; never commits.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update

from ..extensions import db
from ..models import IdpSession, OidcRefreshToken
from ..oidc.constants import Scope
from ..prepared import Prepared
from .apps.oidc_settings import EXPIRE_AFTER, EXPIRE_IF_UNUSED, OidcSettings

TOKEN_BYTES = 32
MAX_TOKEN_LEN = 128


def refresh_token_hash(token: str) -> str:
    return hashlib.sha256(b"idp refresh token:" + token.encode("utf-8", errors="replace")).hexdigest()


def new_family_id() -> str:
    return secrets.token_urlsafe(24)


@dataclass(frozen=True, slots=True)
class FamilySpec:
    """What every token of a family carries."""

    family_id: str
    grant_id: int
    app_id: int
    user_id: int
    scopes: tuple[str, ...]
    session_id: str | None
    auth_time: datetime
    amr: tuple[str, ...]
    acr: str | None
    family_started_at: datetime
    resources: tuple[str, ...] = ()     # RFC 8707 2.2: the resources of the authorization, for every refresh


def expiry_for(settings: OidcSettings, *, family_started_at: datetime, now: datetime) -> datetime | None:
    """When a token issued now stops working under the app's policy (None: until revoked)."""
    if settings.refresh_lifetime is None:
        return None
    if settings.refresh_policy == EXPIRE_AFTER:
        return family_started_at + timedelta(seconds=settings.refresh_lifetime)
    if settings.refresh_policy == EXPIRE_IF_UNUSED:
        return now + timedelta(seconds=settings.refresh_lifetime)
    return None


_COLUMNS = ("token_hash", "family_id", "grant_id", "app_id", "user_id", "scopes", "resources", "session_id",
            "auth_time", "amr", "acr", "family_started_at", "created_at", "expires_at")
# a prepared INSERT rather than an ORM add + flush: this runs on every code exchange and every refresh
_INSERT = Prepared(insert(OidcRefreshToken), column_keys=_COLUMNS)


def issue_refresh_token(spec: FamilySpec, settings: OidcSettings, now: datetime) -> str:
    """A new token of the family (the first one, or a successor), stored as its hash; the token (returned once)."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    _INSERT.run({
        "token_hash": refresh_token_hash(token), "family_id": spec.family_id, "grant_id": spec.grant_id,
        "app_id": spec.app_id, "user_id": spec.user_id, "scopes": list(spec.scopes),
        "resources": list(spec.resources), "session_id": spec.session_id,
        "auth_time": spec.auth_time, "amr": " ".join(spec.amr)[:64] or None, "acr": spec.acr,
        "family_started_at": spec.family_started_at, "created_at": now,
        "expires_at": expiry_for(settings, family_started_at=spec.family_started_at, now=now)})
    return token


def find_refresh_token(token: str) -> OidcRefreshToken | None:
    """The row of a presented token (whatever its state), by hash; None for anything unknown or malformed."""
    if not token or len(token) > MAX_TOKEN_LEN:
        return None
    return db.session.scalar(select(OidcRefreshToken).where(OidcRefreshToken.token_hash == refresh_token_hash(token)))


def mark_rotated(row: OidcRefreshToken, now: datetime) -> bool:
    """Atomically mark a live token used and rotated; False when another request rotated or revoked it first
    (a reuse: the caller revokes the family)."""
    result = db.session.execute(
        update(OidcRefreshToken)
        .where(OidcRefreshToken.id == row.id, OidcRefreshToken.rotated_at.is_(None),
               OidcRefreshToken.revoked_at.is_(None))
        .values(rotated_at=now, last_used_at=now)
        .execution_options(synchronize_session=False))
    db.session.refresh(row)
    return bool(getattr(result, "rowcount", 0))


def spec_of(row: OidcRefreshToken) -> FamilySpec:
    return FamilySpec(family_id=row.family_id, grant_id=row.grant_id, app_id=row.app_id, user_id=row.user_id,
                      scopes=tuple(row.scopes or ()), session_id=row.session_id, auth_time=row.auth_time,
                      amr=tuple((row.amr or "").split()), acr=row.acr, family_started_at=row.family_started_at,
                      resources=tuple(row.resources or ()))


def expired_under(settings: OidcSettings, row: OidcRefreshToken, now: datetime) -> bool:
    """Whether the token is past its life under the app's *current* policy (changes apply to live families)
    or its own recorded expiry."""
    if row.expires_at is not None and row.expires_at <= now:
        return True
    if settings.refresh_lifetime is None:
        return False
    limit = timedelta(seconds=settings.refresh_lifetime)
    if settings.refresh_policy == EXPIRE_AFTER:
        return row.family_started_at + limit <= now
    if settings.refresh_policy == EXPIRE_IF_UNUSED:
        return (row.last_used_at or row.created_at) + limit <= now
    return False


def bound_session_ended(row: OidcRefreshToken) -> bool:
    """A token granted without offline_access lives only as long as the IdP session it was issued in (moved to
    the new session on a re-authentication, auth.sessions.start_session): whether that session is gone or ended."""
    if Scope.OFFLINE_ACCESS in (row.scopes or ()) or not row.session_id:
        return False
    session = db.session.get(IdpSession, row.session_id)
    return session is None or session.ended_at is not None
