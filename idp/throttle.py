"""Attempt throttling with growing lock-outs, shared by every process through the database.

After `free` failures inside `window`, each further failure locks the key for base * 2^(n-free)
seconds (capped), so online guessing of passwords and TOTP codes stays far below useful rates
while a user who mistypes a few times is not locked out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError

from .extensions import db
from .models import ThrottleCounter, utcnow


@dataclass(frozen=True, slots=True)
class ThrottleRule:
    free: int = 5
    window: timedelta = timedelta(minutes=15)
    base_lock_s: int = 2
    max_lock_s: int = 15 * 60


MFA_RULE = ThrottleRule(free=5, window=timedelta(minutes=10), base_lock_s=30)
LOGIN_ACCOUNT_RULE = ThrottleRule(free=5, window=timedelta(minutes=15), base_lock_s=2)
LOGIN_IP_RULE = ThrottleRule(free=30, window=timedelta(minutes=15), base_lock_s=2)


def retry_after(key: str, now: datetime | None = None) -> int:
    """Seconds the caller must wait before trying `key` again (0: go ahead)."""
    row = db.session.get(ThrottleCounter, key[:200])
    now = now or utcnow()
    if row is None or row.locked_until is None or row.locked_until <= now:
        return 0
    return max(1, int((row.locked_until - now).total_seconds() + 0.999))


def record_failure(key: str, rule: ThrottleRule, now: datetime | None = None) -> int:
    """Count a failure; returns the lock-out in seconds it triggered (0: none)."""
    now = now or utcnow()
    key = key[:200]
    for _ in range(2):
        row = db.session.get(ThrottleCounter, key, with_for_update=True)
        if row is None:
            db.session.add(ThrottleCounter(key=key, failures=1, window_start=now))
            try:
                db.session.commit()
            except IntegrityError:  # another process created it first: count again on its row
                db.session.rollback()
                continue
            return 0 if rule.free > 1 else rule.base_lock_s
        if now - row.window_start > rule.window and (row.locked_until is None or row.locked_until <= now):
            row.failures, row.window_start, row.locked_until = 0, now, None
        row.failures += 1
        lock = 0
        if row.failures >= rule.free:
            lock = min(rule.max_lock_s, rule.base_lock_s * 2 ** (row.failures - rule.free))
            row.locked_until = now + timedelta(seconds=lock)
        db.session.commit()
        return lock
    return 0


def reset(key: str) -> None:
    row = db.session.get(ThrottleCounter, key[:200])
    if row is not None:
        db.session.delete(row)
        db.session.commit()
