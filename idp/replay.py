"""Replay cache for inbound request IDs: an atomic insert that fails when (issuer, ID) was seen."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from .extensions import db
from .models import SeenRequest, utcnow

_PURGE_EVERY = 500
_counter = 0


def remember_request(issuer: str, request_id: str, keep_until: datetime) -> bool:
    """True when this (issuer, ID) is new; False when it was already seen (a replay).

    Uses the unique constraint, so two processes racing with the same request cannot both win.
    """
    global _counter
    _counter += 1
    if _counter % _PURGE_EVERY == 0:
        purge_expired()
    db.session.add(SeenRequest(issuer=issuer[:1024], request_id=request_id[:256], expires_at=keep_until))
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return False
    return True


def purge_expired(now: datetime | None = None) -> int:
    result = db.session.execute(delete(SeenRequest).where(SeenRequest.expires_at < (now or utcnow())))
    db.session.commit()
    return int(getattr(result, "rowcount", 0) or 0)


def replay_window(max_age_s: int) -> timedelta:
    """How long an ID must be remembered: the whole window in which its IssueInstant is acceptable."""
    return timedelta(seconds=2 * max_age_s + 60)
