"""A user's grant to an OIDC/OAuth app (OidcGrant): read it, create it, extend it, reset it after a revocation.

A grant is live iff revoked_at is None. Authorizing again after a revocation resets the same row (the unique
app+user row): created_at = now, revoked_at = None, first_used_at = None, scopes = the new consent; access tokens
issued before created_at therefore stay inactive (their `iat` is older than the grant).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import OidcGrant, utcnow

USER_CONSENT, ADMIN_CONSENT = "user", "admin"


def find_grant(app_id: int, user_id: int) -> OidcGrant | None:
    return db.session.scalar(select(OidcGrant).where(OidcGrant.app_id == app_id, OidcGrant.user_id == user_id))


def live_scopes(app_id: int, user_id: int, *, consent: str | None = None) -> tuple[str, ...] | None:
    """The scopes of the user's live grant for the app (None: no grant, or revoked). `consent`: only a grant of
    that kind counts (a self-authorize app asks the user even if an admin had approved the app for them while it
    was admin-approved: the user never saw those scopes)."""
    grant = find_grant(app_id, user_id)
    if grant is None or grant.revoked_at is not None:
        return None
    if consent is not None and grant.consent != consent:
        return None
    return tuple(grant.scopes or ())


def record_grant(app_id: int, user_id: int, scopes: Sequence[str], consent: str,
                 now: datetime | None = None) -> OidcGrant:
    """Create the grant, widen a live one to the union of its scopes and `scopes`, or reset a revoked one to
    `scopes`. Flushed, so the caller has its id."""
    now = now or utcnow()
    grant = find_grant(app_id, user_id)
    if grant is None:
        grant = OidcGrant(app_id=app_id, user_id=user_id, scopes=list(dict.fromkeys(scopes)), consent=consent,
                          created_at=now)
        try:
            with db.session.begin_nested():   # a savepoint: a conflict must not abort the request's transaction
                db.session.add(grant)
            return grant
        except IntegrityError:
            # a concurrent first authorization of the same app by the same user inserted the row first
            # (uq_oidc_grant_app_user): apply this consent to that row as to any existing grant
            found = find_grant(app_id, user_id)
            if found is None:
                raise
            grant = found
    if grant.revoked_at is not None:
        grant.created_at, grant.revoked_at, grant.first_used_at, grant.last_used_at = now, None, None, None
        grant.scopes, grant.consent = list(dict.fromkeys(scopes)), consent
    elif grant.consent != consent:
        # the kind of consent changed (the app went from admin-approved to self-authorize or back): what was
        # granted under the other kind is not carried over
        grant.scopes, grant.consent = list(dict.fromkeys(scopes)), consent
    else:
        grant.scopes = list(dict.fromkeys([*(grant.scopes or ()), *scopes]))
    db.session.flush()
    return grant


def mark_used(grant: OidcGrant, now: datetime | None = None) -> None:
    now = now or utcnow()
    if grant.first_used_at is None:
        grant.first_used_at = now
    grant.last_used_at = now
