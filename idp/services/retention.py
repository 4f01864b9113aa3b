"""Retention: old events and audit rows, and state rows that can no longer matter, deleted in small batches.

Each batch is one SELECT of at most IDP_RETENTION_BATCH primary keys and one DELETE of those keys, in a
transaction of its own (the caller commits between batches): a purge of millions of rows never holds a lock for
long, so sign-ins keep going while it runs. The worker runs it as a chain of outbox jobs (one batch per job,
started every IDP_RETENTION_EVERY_MINUTES when there is something to delete); `idp events purge` runs it by
hand. After each batch the purge pauses about as long as the batch took (at least PAUSE_MIN, at most
PAUSE_MAX): on SQLite a DELETE holds the database's one write lock, and without the pause back-to-back batches
leave sign-ins only the gaps between them (measured: SSO p95 from 3 ms to ~57 ms during a purge of a million
events). A purge that deleted something is audited once (`retention.purge`, with the counts per kind).

What is purged (RULES): events older than IDP_EVENT_RETENTION_DAYS; audit rows older than
IDP_AUDIT_RETENTION_DAYS (0: kept); throttle counters whose window and lock-out ended; expired parked requests and
replay-cache rows (the database state backend also purges them as it writes; this covers quiet times); IdP
sessions ended or expired for a day, with their participants; enrolment links used or expired for a week; known
devices unseen for IDP_KNOWN_DEVICE_RETENTION_DAYS. (The webhook delivery log has its own periodic prune in
services.webhooks.) OIDC grants and refresh tokens are not purged here: a rotated refresh token's
row is what detects its reuse (and revokes the family), so they need a family-aware rule of their own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, delete, func, or_, select

from .. import audit
from ..config import Settings
from ..extensions import component, component_or_new, db
from ..models import (
    AdminAudit,
    EnrolmentLink,
    IdpSession,
    KnownDevice,
    OutboxJob,
    PendingRequest,
    SeenRequest,
    SessionParticipant,
    SsoEvent,
    ThrottleCounter,
    utcnow,
)
from . import outbox

KIND = "retention.purge"
JOB_KEY = "retention"
STATE_GRACE = timedelta(days=1)       # a dead session stays a day (the console's "recent sessions", logout retries)
LINK_GRACE = timedelta(days=7)        # a used or expired enrolment link stays a week (the admin sees what happened)
# the pause after a batch (see the module doc): as long as the batch took, within these bounds
PAUSE_MIN = timedelta(milliseconds=20)
PAUSE_MAX = timedelta(seconds=1)
THROTTLE_GRACE = timedelta(hours=1)   # past every rule's window (15 min at most) and longest lock-out (15 min)

Condition = Callable[[Settings, datetime], ColumnElement[bool] | None]


@dataclass(frozen=True, slots=True)
class Rule:
    name: str                         # the kind of row, as reported (events, audit, throttle, ...)
    model: Any
    condition: Condition              # None: this rule is off (e.g. audit rows kept for ever)
    children: tuple[tuple[Any, str], ...] = ()   # (model, column holding this rule's key) deleted first

    @property
    def key(self) -> Any:
        return self.model.__mapper__.primary_key[0]


RULES: tuple[Rule, ...] = (
    Rule("events", SsoEvent, lambda s, now: SsoEvent.at < now - timedelta(days=s.event_retention_days)),
    Rule("audit", AdminAudit, lambda s, now: AdminAudit.at < now - timedelta(days=s.audit_retention_days)
         if s.audit_retention_days > 0 else None),
    Rule("throttle", ThrottleCounter, lambda s, now: and_(
        ThrottleCounter.window_start < now - THROTTLE_GRACE,
        or_(ThrottleCounter.locked_until.is_(None), ThrottleCounter.locked_until < now - THROTTLE_GRACE))),
    Rule("pending_requests", PendingRequest, lambda s, now: PendingRequest.expires_at < now),
    Rule("seen_requests", SeenRequest, lambda s, now: SeenRequest.expires_at < now),
    Rule("sessions", IdpSession, lambda s, now: or_(
        IdpSession.ended_at < now - STATE_GRACE,
        IdpSession.created_at < now - timedelta(seconds=s.session_lifetime_s) - STATE_GRACE,
        IdpSession.last_seen < now - timedelta(seconds=s.session_idle_s) - STATE_GRACE),
         children=((SessionParticipant, "session_id"),)),
    Rule("enrolment_links", EnrolmentLink, lambda s, now: or_(
        EnrolmentLink.used_at < now - LINK_GRACE, EnrolmentLink.expires_at < now - LINK_GRACE)),
    Rule("known_devices", KnownDevice,
         lambda s, now: KnownDevice.last_seen < now - timedelta(days=s.known_device_retention_days)),
)
RULE_NAMES = tuple(r.name for r in RULES)


def _settings() -> Settings:
    s: Settings = component("idp.settings")
    return s


def _rule(name: str) -> Rule:
    for r in RULES:
        if r.name == name:
            return r
    raise ValueError(f"no retention rule {name!r}")


def pause_after(took: timedelta) -> timedelta:
    """How long to leave the database to others after a batch that took `took`."""
    return max(PAUSE_MIN, min(PAUSE_MAX, took))


def purge_batch(name: str, *, now: datetime | None = None, batch: int | None = None) -> int:
    """Delete at most one batch of rule `name`'s rows (oldest keys first); returns how many. Writes in the
    caller's unit of work: commit after each batch to keep locks short."""
    s = _settings()
    rule = _rule(name)
    cond = rule.condition(s, now or utcnow())
    if cond is None:
        return 0
    limit = batch or s.retention_batch
    # no ORDER BY: the index on the condition's column finds a batch without scanning (or sorting) every old row
    keys = list(db.session.scalars(select(rule.key).where(cond).limit(limit)))
    if not keys:
        return 0
    ids: Any = bindparam("ids", expanding=True)
    for child, column in rule.children:
        db.session.execute(delete(child).where(getattr(child, column).in_(ids))
                           .execution_options(synchronize_session=False), {"ids": keys})
    result = db.session.execute(delete(rule.model).where(rule.key.in_(ids))
                                .execution_options(synchronize_session=False), {"ids": keys})
    return int(getattr(result, "rowcount", 0) or 0)


def count_purgeable(*, now: datetime | None = None) -> dict[str, int]:
    """How many rows each rule would delete now (the dry run); rules that are off are left out."""
    s, now = _settings(), now or utcnow()
    out = {}
    for rule in RULES:
        cond = rule.condition(s, now)
        if cond is not None:
            out[rule.name] = int(db.session.scalar(select(func.count()).select_from(rule.model).where(cond)) or 0)
    return out


def record_purge(counts: dict[str, int], actor_note: str) -> None:
    """One audit row for a purge that deleted something (nothing is recorded for a purge that found nothing)."""
    deleted = {k: v for k, v in counts.items() if v}
    if deleted:
        audit.record("retention.purge", "retention", actor_note, after={"deleted": deleted})


# ---------------------------------------------------------------- the worker: a chain of one-batch jobs

def _purge_job(payload: dict[str, Any]) -> None:
    """Rules from payload["rule"] on, with `now` fixed for the whole chain: rules with nothing to delete are passed
    over in this job; the first batch that deletes something ends it, and the next job of the chain (the same rule
    after a full batch, else the next one) is enqueued, so a job deletes at most one batch. After the last rule,
    the audit row."""
    now = datetime.fromisoformat(payload["now"])
    counts: dict[str, int] = dict(payload.get("counts") or {})
    batch = _settings().retention_batch
    index = int(payload.get("rule", 0))
    while index < len(RULES):
        rule = RULES[index]
        started = time.monotonic()
        n = purge_batch(rule.name, now=now, batch=batch)
        if n:
            counts[rule.name] = counts.get(rule.name, 0) + n
            took = timedelta(seconds=time.monotonic() - started)
            # the next batch is a job due after the pause (it commits with this one, so the chain never breaks)
            outbox.enqueue(KIND, JOB_KEY, {"now": payload["now"], "rule": index if n >= batch else index + 1,
                                           "counts": counts}, delay=pause_after(took))
            return
        index += 1
    record_purge(counts, "worker")


outbox.handler(KIND)(_purge_job)


def start_purge(now: datetime | None = None) -> None:
    """Enqueue the first job of a purge chain (in the caller's unit of work)."""
    outbox.enqueue(KIND, JOB_KEY, {"now": (now or utcnow()).isoformat(), "rule": 0, "counts": {}})


def anything_to_purge(now: datetime | None = None) -> bool:
    """Whether some rule has a row to delete (one indexed lookup per rule)."""
    s, now = _settings(), now or utcnow()
    for rule in RULES:
        cond = rule.condition(s, now)
        if cond is not None and db.session.scalar(select(rule.key).where(cond).limit(1)) is not None:
            return True
    return False


class _LastCheck:
    at: datetime | None = None


@outbox.periodic
def schedule_purge() -> None:
    """The worker's step (about once a minute): every IDP_RETENTION_EVERY_MINUTES (first when the worker
    starts), when no purge is unfinished and some rule has rows to delete, the first job of a purge chain."""
    last = component_or_new("idp.retention.last_check", _LastCheck)
    now = utcnow()
    if last.at is not None and now - last.at < timedelta(minutes=_settings().retention_every_minutes):
        return
    last.at = now
    unfinished = select(OutboxJob.id).where(OutboxJob.key == JOB_KEY, OutboxJob.kind == KIND,
                                            OutboxJob.state.in_(outbox.UNFINISHED))
    if db.session.scalar(unfinished.limit(1)) is None and anything_to_purge(now):
        start_purge(now)
