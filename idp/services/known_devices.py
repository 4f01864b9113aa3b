"""Known devices: the (network, user agent) pairs (the network: an IPv4 address or an IPv6 /64) each user signed
in to the IdP from, so that a sign-in from a pair not seen before for that user can be told to them (a
`signin.new_device` notice; services.notify_email emails it).

On the sign-in path: one indexed lookup (this pair's row, and whether the user has any) and at most one write
(last_seen of a known pair, at most every few minutes, or an INSERT ... ON CONFLICT DO NOTHING of a new one, so two
parallel sign-ins from one new device never fail and only one of them counts it as new). A user's very first
device is recorded without a notice (there is nothing to compare it with).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import exists, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..clientnet import client_net
from ..extensions import db
from ..models import KnownDevice, utcnow

UA_MAX = 512
# a known device's last_seen is written again only when older than this (one write per sign-in otherwise)
TOUCH_AFTER = timedelta(minutes=5)


def fingerprint(client_ip: str | None, user_agent: str | None) -> str:
    """The device: the client's network (an IPv4 address, an IPv6 /64: privacy addresses rotate within it) and
    the user agent. The full address is still stored and shown in the notice."""
    net = client_net(client_ip) if client_ip else ""
    return hashlib.sha256(f"{net}\n{(user_agent or '')[:UA_MAX]}".encode()).hexdigest()


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
    # one statement, two probes of the (user_id, fingerprint) unique index: this pair's last_seen, and whether
    # the user has any device at all
    seen = (select(KnownDevice.last_seen).where(KnownDevice.user_id == user_id, KnownDevice.fingerprint == fp)
            .scalar_subquery())
    row = db.session.execute(select(seen.label("seen"), exists().where(KnownDevice.user_id == user_id)
                                    .label("known"))).one()
    if row.seen is not None:
        if now - row.seen >= TOUCH_AFTER:
            db.session.execute(update(KnownDevice)
                               .where(KnownDevice.user_id == user_id, KnownDevice.fingerprint == fp)
                               .values(last_seen=now).execution_options(synchronize_session=False))
        return DeviceSeen(new=False, first=False, at=now)
    dialect = db.session.get_bind().dialect.name
    insert = (pg_insert if dialect == "postgresql" else sqlite_insert)(KnownDevice)
    result = db.session.execute(
        insert.values(user_id=user_id, fingerprint=fp, client_ip=(client_ip or None) and client_ip[:64],
                      user_agent=(user_agent or "")[:UA_MAX] or None, first_seen=now, last_seen=now)
        .on_conflict_do_nothing().returning(KnownDevice.id))
    # RETURNING rather than rowcount: psycopg reports -1 for an INSERT ... ON CONFLICT DO NOTHING
    inserted = result.first() is not None
    return DeviceSeen(new=inserted, first=not row.known, at=now)
