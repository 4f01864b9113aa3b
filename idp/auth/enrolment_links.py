"""Admin-issued enrolment links: one-time, expiring URLs that let a user enrol a first factor whatever the org's
enrolment mode (`idp users enrolment-link`, the console's user page).

The token (32 random bytes, URL-safe) is shown once; only its SHA-256 is stored (it is high-entropy, so a plain
hash resists offline guessing). Issuing a new link ends the user's older unused ones. A link is spent when the
enrolment it allowed succeeds (a conditional UPDATE: two tabs cannot both use it; the caller stops when it lost),
and every open link of a user ends when the user's first factor is enrolled in any way and when their factors are
reset (`revoke_open`), so an old link never works again later.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select, update

from .. import audit
from ..extensions import db
from ..models import EnrolmentLink, User, utcnow

DEFAULT_VALID_HOURS = 72
MAX_VALID_HOURS = 720
PATH = "/mfa/enroll/link/"
MAX_TOKEN_LEN = 64


def token_hash(token: str) -> str:
    return hashlib.sha256(b"idp enrolment link:" + token.encode()).hexdigest()


def issue(user: User, *, valid_hours: int = DEFAULT_VALID_HOURS, created_by: str | None = None) -> str:
    """A new link token for `user` (older unused links of the user stop working); audited without the token."""
    if not 1 <= valid_hours <= MAX_VALID_HOURS:
        raise ValueError(f"valid hours must be 1..{MAX_VALID_HOURS}")
    now = utcnow()
    revoked = _expire_open(user, now)
    token = secrets.token_urlsafe(32)
    expires = now + timedelta(hours=valid_hours)
    db.session.add(EnrolmentLink(user_id=user.id, token_hash=token_hash(token), created_at=now, expires_at=expires,
                                 created_by=(created_by or audit.current_actor())[:200]))
    audit.record("users.enrolment_link", "user", user.username,
                 after={"expires_at": expires.isoformat(), "valid_hours": valid_hours,
                        "older_links_revoked": revoked})
    db.session.flush()
    return token


def _expire_open(user: User, now: datetime) -> int:
    result = db.session.execute(update(EnrolmentLink)
                                .where(EnrolmentLink.user_id == user.id, EnrolmentLink.used_at.is_(None),
                                       EnrolmentLink.expires_at > now)
                                .values(expires_at=now).execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


def revoke_open(user: User, why: str) -> int:
    """End every unused, unexpired link of `user` (a first factor was enrolled, or the factors were reset);
    audited when there was one. Returns how many ended."""
    revoked = _expire_open(user, utcnow())
    if revoked:
        audit.record("users.enrolment_links_revoked", "user", user.username, after={"count": revoked, "why": why})
    return revoked


class LinkState(StrEnum):
    VALID = "valid"
    UNKNOWN = "unknown"
    EXPIRED = "expired"      # past its time, or replaced by a newer link
    USED = "used"


@dataclass(frozen=True, slots=True)
class LinkCheck:
    state: LinkState
    link: EnrolmentLink | None = None

    @property
    def user_id(self) -> int | None:
        return self.link.user_id if self.link is not None else None


def check(token: str | None) -> LinkCheck:
    """What a presented token is (looked up by its hash)."""
    if not token or len(token) > MAX_TOKEN_LEN or not token.isascii():
        return LinkCheck(LinkState.UNKNOWN)
    link = db.session.scalar(select(EnrolmentLink).where(EnrolmentLink.token_hash == token_hash(token)))
    if link is None:
        return LinkCheck(LinkState.UNKNOWN)
    if link.used_at is not None:
        return LinkCheck(LinkState.USED, link)
    if link.expires_at <= utcnow():
        return LinkCheck(LinkState.EXPIRED, link)
    return LinkCheck(LinkState.VALID, link)


def valid_for(token: str | None, user: User) -> bool:
    found = check(token)
    return found.state is LinkState.VALID and found.user_id == user.id


def consume(token: str, user: User) -> bool:
    """Spend the link (after the enrolment it allowed succeeded); False when it was no longer valid."""
    result = db.session.execute(update(EnrolmentLink)
                                .where(EnrolmentLink.token_hash == token_hash(token),
                                       EnrolmentLink.user_id == user.id, EnrolmentLink.used_at.is_(None),
                                       EnrolmentLink.expires_at > utcnow())
                                .values(used_at=utcnow()).execution_options(synchronize_session=False))
    return bool(getattr(result, "rowcount", 0))
