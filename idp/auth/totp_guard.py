"""The long-window cap on TOTP guessing (NIST SP 800-63B §5.2.2: at most 100 consecutive failures).

The short throttle per (user, client address) (idp.throttle.MFA_RULE) slows guessing; this cap ends it: after
TOTP_MAX_CONSECUTIVE_FAILURES wrong codes in a row the factor is suspended and refuses every code,
the right one too, until an admin clears it (`idp users mfa-unsuspend`, `idp users mfa-reset`, the
console). The count is a column of the user row rather than shared state: it must outlive restarts
and a Redis without persistence or with eviction, every instance must see it (they share the
database in any case), and a suspension is account state an admin sees and clears. Wrong codes are
rare, so the write is off the hot path; a right code writes only when the count is not already 0.

Hook for recovery codes: a used recovery code may clear the suspension by calling unsuspend().
"""

from __future__ import annotations

from sqlalchemy import select, update

from .. import audit
from ..errors import EventContext
from ..events import record_event
from ..extensions import db
from ..models import User, utcnow
from ..reasons import Reason
from ..throttle import TOTP_MAX_CONSECUTIVE_FAILURES


def is_suspended(user: User) -> bool:
    return user.totp_suspended_at is not None


def count_wrong_code(user: User, client_ip: str | None, user_agent: str | None) -> bool:
    """Count one wrong code (an atomic increment, whatever other instances do); True when the factor is
    now suspended, the first time with an `mfa_suspended` event."""
    db.session.execute(update(User).where(User.id == user.id).values(totp_failures=User.totp_failures + 1)
                       .execution_options(synchronize_session=False))
    failures = db.session.execute(select(User.totp_failures).where(User.id == user.id)).scalar_one()
    user.totp_failures = failures
    if failures < TOTP_MAX_CONSECUTIVE_FAILURES:
        return False
    now = utcnow()
    first = db.session.execute(update(User).where(User.id == user.id, User.totp_suspended_at.is_(None))
                               .values(totp_suspended_at=now).execution_options(synchronize_session=False))
    db.session.refresh(user, ["totp_suspended_at", "totp_failures"])
    if getattr(first, "rowcount", 0):
        record_event(EventContext(event_type="signin", username=user.username,  # as flows.signin.SIGNIN_EVENT
                                  detail={"message": f"TOTP suspended after {failures} consecutive wrong codes"}),
                     Reason.MFA_SUSPENDED, client_ip=client_ip, user_agent=user_agent)
    return True


def count_right_code(user: User) -> None:
    if user.totp_failures:
        user.totp_failures = 0


def clear(user: User) -> None:
    """Forget the count and any suspension (the factor itself is reset or removed by the caller)."""
    user.totp_failures = 0
    user.totp_suspended_at = None


def unsuspend(user: User) -> bool:
    """An admin (or, later, a recovery code) lets the factor work again; False when it was not suspended."""
    if not is_suspended(user):
        return False
    audit.record("user.mfa_unsuspended", "user", user.username,
                 before={"totp_failures": user.totp_failures, "suspended": True}, after={"suspended": False})
    clear(user)
    return True
