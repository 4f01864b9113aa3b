"""Who uses which OIDC/OAuth app: live grants with their refresh tokens (the console's usage section, /account's
"Authorized apps", `idp tokens list`), and revoking them with an event and an audit row (revocation itself is
services.oauth_tokens). Reads and writes in the caller's unit of work; never commits.

A row is one live grant (OidcGrant with revoked_at None): a user's authorization of an app. Its refresh tokens are
counted per family (only a family's current token, not rotated, not revoked and not expired, is live), split into
offline (the offline_access scope: they outlive the IdP session) and session-bound ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from .. import audit
from ..errors import EventContext
from ..events import record_event
from ..extensions import db
from ..models import ConnectedApp, OidcClient, OidcGrant, OidcRefreshToken, User, utcnow
from ..oidc.constants import Scope
from ..reasons import Reason
from . import ServiceError
from .apps.oidc_settings import EXPIRE_IF_UNUSED
from .oauth_tokens import revoke_grant

MAX_ROWS = 10_000


@dataclass(frozen=True, slots=True)
class GrantRow:
    """One live grant as the console, /account and the CLI show it."""

    id: int                          # the grant id (`idp tokens revoke --id`)
    app_slug: str
    app_name: str
    client_id: str | None
    username: str
    scopes: tuple[str, ...]
    consent: str                     # user | admin
    created_at: datetime
    first_used_at: datetime | None
    last_used_at: datetime | None
    offline_tokens: int              # live refresh-token families with offline_access
    session_tokens: int              # live refresh-token families bound to an IdP session
    expires_at: datetime | None      # when its last live refresh token expires (None: none, or until revoked)

    @property
    def refresh_tokens(self) -> int:
        return self.offline_tokens + self.session_tokens

    @property
    def kind(self) -> str:
        """offline, session-bound, both, or none (no live refresh token)."""
        parts = (["offline"] if self.offline_tokens else []) + (["session-bound"] if self.session_tokens else [])
        return "+".join(parts) or "none"

    def to_dict(self) -> dict[str, Any]:
        def iso(d: datetime | None) -> str | None:
            return d.isoformat() if d else None

        return {"id": self.id, "app": self.app_slug, "client_id": self.client_id, "user": self.username,
                "scopes": list(self.scopes), "consent": self.consent, "created": iso(self.created_at),
                "first_used": iso(self.first_used_at), "last_used": iso(self.last_used_at),
                "expires": iso(self.expires_at), "refresh_tokens": {"offline": self.offline_tokens,
                                                                    "session_bound": self.session_tokens},
                "kind": self.kind}


def _token_expiry(t: OidcRefreshToken, policy: str | None, lifetime: int | None) -> datetime | None:
    ends = [t.expires_at] if t.expires_at else []
    if policy == EXPIRE_IF_UNUSED and lifetime:
        ends.append((t.last_used_at or t.created_at) + timedelta(seconds=lifetime))
    return min(ends) if ends else None


def list_grants(*, app_id: int | None = None, user_id: int | None = None, grant_id: int | None = None,
                now: datetime | None = None) -> list[GrantRow]:
    """Live grants (newest use first), optionally of one app, one user or one grant; two queries in all."""
    now = now or utcnow()
    q = (select(OidcGrant, ConnectedApp.slug, ConnectedApp.name, User.username, OidcClient.client_id,
                OidcClient.refresh_policy, OidcClient.refresh_lifetime)
         .join(ConnectedApp, ConnectedApp.id == OidcGrant.app_id).join(User, User.id == OidcGrant.user_id)
         .outerjoin(OidcClient, OidcClient.app_id == OidcGrant.app_id)
         .where(OidcGrant.revoked_at.is_(None)))
    if app_id is not None:
        q = q.where(OidcGrant.app_id == app_id)
    if user_id is not None:
        q = q.where(OidcGrant.user_id == user_id)
    if grant_id is not None:
        q = q.where(OidcGrant.id == grant_id)
    rows = db.session.execute(q.order_by(OidcGrant.id).limit(MAX_ROWS)).all()
    if not rows:
        return []
    ids = [r[0].id for r in rows]
    tokens: dict[int, list[OidcRefreshToken]] = {}
    for t in db.session.scalars(select(OidcRefreshToken).where(
            OidcRefreshToken.grant_id.in_(ids), OidcRefreshToken.revoked_at.is_(None),
            OidcRefreshToken.rotated_at.is_(None))):
        tokens.setdefault(t.grant_id, []).append(t)
    out = []
    for grant, slug, name, username, client_id, policy, lifetime in rows:
        offline = session = 0
        ends: list[datetime | None] = []
        for t in tokens.get(grant.id, []):
            end = _token_expiry(t, policy, lifetime)
            if end is not None and end <= now:
                continue
            ends.append(end)
            if Scope.OFFLINE_ACCESS in (t.scopes or []):
                offline += 1
            else:
                session += 1
        expires = None if not ends or None in ends else max(e for e in ends if e is not None)
        out.append(GrantRow(id=grant.id, app_slug=slug, app_name=name, client_id=client_id, username=username,
                            scopes=tuple(grant.scopes or ()), consent=grant.consent, created_at=grant.created_at,
                            first_used_at=grant.first_used_at, last_used_at=grant.last_used_at,
                            offline_tokens=offline, session_tokens=session, expires_at=expires))
    out.sort(key=lambda r: (r.last_used_at or r.created_at), reverse=True)
    return out


def revoke_grants(rows: list[GrantRow], *, by: str, client_ip: str | None = None,
                  user_agent: str | None = None) -> list[GrantRow]:
    """Revoke each grant and its refresh tokens (services.oauth_tokens.revoke_grant); per grant an event
    token_revoked (event_type "token", protocol "oidc") and an audit row. `by`: admin | user | cli (the event's
    initiated_by; the audit row names the actor). Returns the rows actually revoked (a grant revoked meanwhile is
    skipped)."""
    done = []
    for row in rows:
        if not revoke_grant(row.id, reason=f"revoked by {by}"):
            continue
        done.append(row)
        ctx = EventContext(event_type="token", app_slug=row.app_slug, sp_entity_id=row.client_id,
                           username=row.username, initiated_by=by, protocol="oidc",
                           detail={"client_id": row.client_id, "grant_id": row.id, "scopes": list(row.scopes),
                                   "refresh_tokens_revoked": row.refresh_tokens})
        record_event(ctx, Reason.TOKEN_REVOKED, client_ip=client_ip, user_agent=user_agent)
        audit.record("oidc.grant_revoke", "user", row.username,
                     before={"app": row.app_slug, "grant_id": row.id, "scopes": list(row.scopes),
                             "refresh_tokens": row.refresh_tokens})
    return done


def grant_of(grant_id: int, *, user_id: int | None = None, app_id: int | None = None) -> GrantRow:
    """One live grant (of that user / app when given); ServiceError otherwise (the same for a foreign one)."""
    rows = list_grants(grant_id=grant_id, user_id=user_id, app_id=app_id)
    if not rows:
        raise ServiceError(f"no live grant with id {grant_id}", field="id")
    return rows[0]
