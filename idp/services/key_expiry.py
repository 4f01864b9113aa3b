"""`key.expiring` notices: a periodic worker step finds every published signing key (next, active, retiring)
whose certificate expires within 30, 14, 7 or 1 days and offers one notice per key and threshold (a sent_notices
row `key.expiring:<kid>:<threshold>` makes it once-only, across workers and restarts)."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..certs.keystore import KeyStore, KeyStoreError, LoadedKey
from ..extensions import component, db
from ..models import SentNotice, utcnow
from ..notifications import bus
from . import outbox
from .apps import pinned_keys

log = logging.getLogger("idp.certs")

THRESHOLDS = (30, 14, 7, 1)     # days; a key is "within N days" when fewer than N whole days are left


def _mark_sent(key: str) -> bool:
    """Record `key` in sent_notices; False when it was there already (sent before, maybe by another worker)."""
    dialect = db.session.get_bind().dialect.name
    stmt = (pg_insert(SentNotice) if dialect == "postgresql" else sqlite_insert(SentNotice)).on_conflict_do_nothing()
    # RETURNING rather than rowcount: psycopg reports -1 for an INSERT ... ON CONFLICT DO NOTHING
    return db.session.execute(stmt.values(key=key, sent_at=utcnow()).returning(SentNotice.key)).first() is not None


def _iso(k: LoadedKey) -> str:
    return k.not_after.isoformat().replace("+00:00", "Z")


def expiring_notice(k: LoadedKey, threshold: int, pinned_by: list[str]) -> bus.Notice:
    data: dict[str, Any] = {"kid": k.kid, "state": k.state, "not_after": _iso(k), "days_left": k.days_left,
                            "threshold": threshold, "fingerprint_sha256": k.fingerprint_sha256,
                            "pinned_by": pinned_by}
    return bus.Notice(type="key.expiring", time=utcnow(), subject=k.kid, app_slug=None, outcome=None,
                      reason=None, data=data, source="system")


def check_key_expiry(store: KeyStore | None = None) -> list[bus.Notice]:
    """Offer a key.expiring notice for each published key that crossed a threshold it was not yet notified
    for (only the most urgent one when several were crossed at once: a key found 9 days before expiry gets the
    14-day notice, and the 30-day one is marked sent). Returns the notices offered. Writes in the caller's unit
    of work."""
    store = store or component("idp.keystore")
    try:
        published = store.current().published
    except KeyStoreError as exc:
        log.warning("key expiry check skipped: %s", exc)
        return []
    pins: dict[str, list[str]] | None = None
    offered = []
    for k in published:
        crossed = [t for t in THRESHOLDS if k.days_left < t]
        if not crossed:
            continue
        fresh = [t for t in crossed if _mark_sent(f"key.expiring:{k.kid}:{t}")]
        if min(crossed) not in fresh:
            continue
        if pins is None:
            pins = pinned_keys()
        notice = expiring_notice(k, min(crossed), sorted(pins.get(k.kid, [])))
        bus.publish_notice(notice, db.session)
        offered.append(notice)
    return offered


@outbox.periodic
def key_expiry_step() -> None:
    """The worker's step (about once a minute)."""
    check_key_expiry()
