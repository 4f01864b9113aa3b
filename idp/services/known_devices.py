"""Known devices: the (IP address, user agent) pairs each user signed in to the IdP from, so that a sign-in from
a pair not seen before for that user can be told to them (a `signin.new_device` notice; services.notify_email
emails it).

On the sign-in path: one indexed lookup (the user's row for this pair, else any row of the user) and one write
(last_seen of a known pair, or an INSERT ... ON CONFLICT DO NOTHING of a new one, so two parallel sign-ins from
one new device never fail and only one of them counts it as new). A user's very first device is recorded
without a notice (there is nothing to compare it with).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..extensions import db
from ..models import KnownDevice, utcnow

UA_MAX = 512
# a known device's last_seen is written again only when older than this (one write per sign-in otherwise)
TOUCH_AFTER = timedelta(minutes=5)


def fingerprint(client_ip: str | None, user_agent: str | None) -> str:
    return hashlib.sha256(f"{client_ip or ''}\n{(user_agent or '')[:UA_MAX]}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class DeviceSeen:
    new: bool          # the pair was not known for this user
    first: bool        # ... and the user had no known device at all (no notice for that one)
    at: datetime

    @property
    def notify(self) -> bool:
        return self.new and not self.first


def record_signin_device(user_id: int, client_ip: str | None, user_agent: str | None) -> DeviceSeen:
    """Remember that `user_id` signed in from this (IP, user agent); whether it is a new device for them."""
    now = utcnow()
    fp = fingerprint(client_ip, user_agent)
    # this pair's row first, else any row of the user (which says "not their first device")
    row = db.session.execute(
        select(KnownDevice.id, KnownDevice.fingerprint, KnownDevice.last_seen)
        .where(KnownDevice.user_id == user_id)
        .order_by(case((KnownDevice.fingerprint == fp, 0), else_=1)).limit(1)).first()
    if row is not None and row.fingerprint == fp:
        if row.last_seen is None or now - row.last_seen >= TOUCH_AFTER:
            db.session.execute(update(KnownDevice).where(KnownDevice.id == row.id).values(last_seen=now)
                               .execution_options(synchronize_session=False))
        return DeviceSeen(new=False, first=False, at=now)
    dialect = db.session.get_bind().dialect.name
    insert = (pg_insert if dialect == "postgresql" else sqlite_insert)(KnownDevice)
    result = db.session.execute(
        insert.values(user_id=user_id, fingerprint=fp, client_ip=(client_ip or None) and client_ip[:64],
                      user_agent=(user_agent or "")[:UA_MAX] or None, first_seen=now, last_seen=now)
        .on_conflict_do_nothing().returning(KnownDevice.id))
    # RETURNING rather than rowcount: psycopg reports -1 for an INSERT ... ON CONFLICT DO NOTHING
    inserted = result.first() is not None
    return DeviceSeen(new=inserted, first=row is None, at=now)
