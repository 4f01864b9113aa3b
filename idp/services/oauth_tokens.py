"""Revoking OAuth grants and refresh tokens: shared by the token endpoint (reuse detection), logout, the
console, /account and `idp tokens revoke`. Writes in the caller's unit of work; never commits."""

from __future__ import annotations

from sqlalchemy import or_, update

from ..extensions import db
from ..models import OidcGrant, OidcRefreshToken, utcnow
from ..oidc.constants import Scope


def revoke_refresh_tokens(*, reason: str, family_id: str | None = None, grant_id: int | None = None,
                          session_id: str | None = None, app_id: int | None = None, user_id: int | None = None,
                          token_id: int | None = None, keep_offline: bool = False) -> int:
    """Revoke the live refresh tokens matching every given filter (at least one); returns how many.

    `keep_offline`: spare tokens granted with `offline_access` (used when an IdP session ends: offline tokens
    are meant to outlive the browser session, OIDC Core 11)."""
    filters = []
    if family_id is not None:
        filters.append(OidcRefreshToken.family_id == family_id)
    if grant_id is not None:
        filters.append(OidcRefreshToken.grant_id == grant_id)
    if session_id is not None:
        filters.append(OidcRefreshToken.session_id == session_id)
    if app_id is not None:
        filters.append(OidcRefreshToken.app_id == app_id)
    if user_id is not None:
        filters.append(OidcRefreshToken.user_id == user_id)
    if token_id is not None:
        filters.append(OidcRefreshToken.id == token_id)
    if not filters:
        raise ValueError("revoke_refresh_tokens needs at least one filter")
    q = update(OidcRefreshToken).where(*filters, OidcRefreshToken.revoked_at.is_(None))
    if keep_offline:
        # scopes is a JSON list; a LIKE on its text form is portable across SQLite and PostgreSQL
        q = q.where(or_(OidcRefreshToken.scopes.is_(None),
                        ~db.cast(OidcRefreshToken.scopes, db.String).like(f'%"{Scope.OFFLINE_ACCESS}"%')))
    result = db.session.execute(q.values(revoked_at=utcnow(), revoke_reason=reason[:40]))
    return int(getattr(result, "rowcount", 0) or 0)


def revoke_grant(grant_id: int, *, reason: str) -> bool:
    """End a user's authorization of an app: the grant and all its refresh tokens. Access tokens issued at or
    before now become inactive at userinfo and introspection (they check the grant's revoked_at)."""
    grant = db.session.get(OidcGrant, grant_id)
    if grant is None or grant.revoked_at is not None:
        return False
    grant.revoked_at = utcnow()
    revoke_refresh_tokens(reason=reason, grant_id=grant_id)
    db.session.flush()
    return True
