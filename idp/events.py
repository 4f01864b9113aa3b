"""The one writer and reader of the SSO event log."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, insert, select
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session, SessionTransaction

from . import csvsafe, metrics, on_commit, siem
from .clientnet import client_net
from .errors import EventContext
from .extensions import component, component_or_new, db
from .models import SsoEvent, utcnow
from .notifications import bus, catalog
from .prepared import Prepared
from .reasons import Outcome, Reason, outcome_for

log = logging.getLogger("idp.events")

EXPORT_FIELDS = (
    "id", "at", "event_type", "app_slug", "sp_entity_id", "username", "outcome", "reason", "initiated_by",
    "binding", "request_id", "response_id", "assertion_id", "client_ip", "user_agent", "protocol",
)


_COLUMNS = ("at", "event_type", "app_slug", "sp_entity_id", "username", "outcome", "reason", "initiated_by", "binding",
            "request_id", "response_id", "assertion_id", "client_ip", "user_agent", "detail", "protocol")
_INSERT = Prepared(insert(SsoEvent).returning(SsoEvent.id), column_keys=_COLUMNS)


@dataclass(slots=True)
class RecordedEvent:
    """The row record_event wrote, as plain values (building an ORM object per SSO cost more than the insert)."""

    id: int
    at: datetime
    event_type: str
    app_slug: str | None
    sp_entity_id: str | None
    username: str | None
    outcome: str
    reason: str
    initiated_by: str | None
    binding: str | None
    request_id: str | None
    response_id: str | None
    assertion_id: str | None
    client_ip: str | None
    user_agent: str | None
    detail: dict[str, Any] | None
    protocol: str | None = None


class AnonEventLimiter:
    """At most `per_minute` stored events per client address (IPv6: per /64) and fixed one-minute window, for
    the events of unauthenticated requests. In process memory: each server process (gunicorn worker) allows its
    own `per_minute`, so a server stores at most workers x per_minute per address and minute. The shared state
    has no counter primitive, and a database counter would itself be a write per garbage request."""

    MAX_KEYS = 50_000     # addresses tracked at once; past it, windows that ended are forgotten

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._windows: dict[str, tuple[float, int]] = {}    # address -> (window start, events stored in it)
        self._lock = threading.Lock()

    def allow(self, ip: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        key = client_net(ip)
        with self._lock:
            start, n = self._windows.get(key, (now, 0))
            if now - start >= 60.0:
                start, n = now, 0
            if n >= self.per_minute:
                return False
            if len(self._windows) >= self.MAX_KEYS and key not in self._windows:
                self._windows = {k: v for k, v in self._windows.items() if now - v[0] < 60.0}
                if len(self._windows) >= self.MAX_KEYS:   # a flood of fresh addresses: refuse rather than grow
                    return False
            self._windows[key] = (start, n + 1)
            return True


def _limiter() -> AnonEventLimiter:
    return cast(AnonEventLimiter, component_or_new(
        "idp.anon_event_limiter", lambda: AnonEventLimiter(component("idp.settings").anon_events_per_minute)))


def is_anonymous(ctx: EventContext) -> bool:
    return not (ctx.authenticated if ctx.authenticated is not None else bool(ctx.username))


def record_event(ctx: EventContext, reason: Reason, *, client_ip: str | None, user_agent: str | None,
                 outcome: Outcome | None = None) -> RecordedEvent:
    """Write one event row in the caller's unit of work (the request or CLI command commits it).

    A prepared INSERT ... RETURNING id rather than the ORM unit of work: this runs on every SSO and
    the ORM bookkeeping cost more than the insert itself. The metric and the SIEM log line follow
    the commit (an event whose transaction rolls back was never recorded).

    An unsuccessful event of a request nobody authenticated (an unknown SP, a malformed request, a bad token, a
    failed sign-in) counts against its client address (AnonEventLimiter, IDP_ANON_EVENTS_PER_MINUTE); past the
    limit it is not stored, only counted (idp_events_dropped_total{reason="rate_limited"}), and the returned
    event has id 0. Successes, events of signed-in users (and of a sign-in whose password was verified) and
    ctx.always_stored ones (a wrong password for an existing account) are always stored.
    """
    final_outcome = str(outcome or outcome_for(reason))
    dropped = (client_ip is not None and final_outcome != Outcome.SUCCESS and is_anonymous(ctx)
               and not ctx.always_stored and not _limiter().allow(client_ip))
    values: dict[str, Any] = dict(
        at=utcnow(),
        event_type=ctx.event_type,
        app_slug=ctx.app_slug,
        sp_entity_id=(ctx.sp_entity_id or "")[:1024] or None,
        username=ctx.username,
        outcome=final_outcome,
        reason=str(reason),
        initiated_by=ctx.initiated_by,
        binding=ctx.binding,
        request_id=(ctx.request_id or "")[:256] or None,
        response_id=ctx.response_id,
        assertion_id=ctx.assertion_id,
        client_ip=client_ip,
        user_agent=(user_agent or "")[:512] or None,
        detail=ctx.detail or None,
        # SAML flows predate the column and leave ctx.protocol unset: their sso / logout events are SAML's
        protocol=ctx.protocol or ("saml" if ctx.event_type in ("sso", "logout") else None),
    )
    if dropped:
        metrics.count("idp_events_dropped_total", 'reason="rate_limited"')
        return RecordedEvent(id=0, **values)
    event_id = _INSERT.scalar(values)
    event = RecordedEvent(id=event_id, **values)
    check = (ctx.detail.get("policy") or {}).get("check")
    on_commit.hold(db.session, _UNANNOUNCED, (event, check))
    notice_type = catalog.for_event(event.event_type, event.reason, event.outcome)
    if notice_type is not None:
        bus.publish(notice_type, event.app_slug, lambda: _notice(notice_type, event), db.session)
    return event


def _notice(notice_type: str, event: RecordedEvent) -> bus.Notice:
    return bus.Notice(type=notice_type, time=event.at, subject=event.username or event.app_slug,
                      app_slug=event.app_slug, outcome=event.outcome, reason=event.reason,
                      data=event_dict(event), source="event")


_UNANNOUNCED = "idp.events.unannounced"


def _announce(session: Session) -> None:
    """After a commit: count the events it made durable, write their SIEM log lines and stream them to syslog
    (not at a savepoint's release: they are durable once the transaction commits)."""
    if not on_commit.is_outermost_commit(session):
        return
    recorded = [item for _tag, item in on_commit.take(session, _UNANNOUNCED)]
    if not recorded:
        return
    logging_on = log.isEnabledFor(logging.INFO)
    syslog = siem.sender()
    for event, check in recorded:
        metrics.count_event(event.event_type, event.app_slug, event.outcome, event.reason)
        if not (logging_on or syslog):
            continue
        # One JSON line per event for shipping to a SIEM (no secrets: the event holds none).
        fields = event_dict(event, with_detail=False)
        line = json.dumps({"log": "sso_event", **fields, "check": check}, default=str, sort_keys=True)
        if logging_on:
            log.info("%s", line)
        if syslog is not None:
            syslog.send(siem.event_message(fields, line))


def _forget(session: Session, previous: SessionTransaction) -> None:
    """A rollback, of the transaction or of a savepoint: only the events written in what it undid are forgotten."""
    on_commit.discard(session, _UNANNOUNCED, previous)


sa_event.listen(Session, "after_commit", _announce)
sa_event.listen(Session, "after_soft_rollback", _forget)


@dataclass(frozen=True, slots=True)
class EventFilter:
    app_slug: str | None = None
    username: str | None = None
    outcome: str | None = None
    reason: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    event_type: str | None = None
    protocol: str | None = None


def filtered_query(f: EventFilter) -> Select[tuple[SsoEvent]]:
    q = select(SsoEvent)
    if f.app_slug:
        q = q.where(SsoEvent.app_slug == f.app_slug)
    if f.username:
        q = q.where(SsoEvent.username == f.username)
    if f.outcome:
        q = q.where(SsoEvent.outcome == f.outcome)
    if f.reason:
        q = q.where(SsoEvent.reason == f.reason)
    if f.event_type:
        q = q.where(SsoEvent.event_type == f.event_type)
    if f.protocol:
        q = q.where(SsoEvent.protocol == f.protocol)
    if f.since:
        q = q.where(SsoEvent.at >= f.since)
    if f.until:
        q = q.where(SsoEvent.at < f.until)
    return q.order_by(SsoEvent.at.desc(), SsoEvent.id.desc())


def query_events(f: EventFilter, *, limit: int | None = 100, offset: int = 0) -> list[SsoEvent]:
    q = filtered_query(f)
    if limit is not None:
        q = q.limit(limit).offset(offset)
    return list(db.session.scalars(q))


def event_dict(e: SsoEvent | RecordedEvent, with_detail: bool = True) -> dict[str, Any]:
    d: dict[str, Any] = {name: getattr(e, name) for name in EXPORT_FIELDS}
    d["at"] = e.at.isoformat().replace("+00:00", "Z") if e.at else None
    if with_detail:
        d["detail"] = e.detail
    return d


def to_json(events: Iterable[SsoEvent]) -> str:
    return json.dumps([event_dict(e) for e in events], indent=2, default=str)


def to_csv(events: Iterable[SsoEvent], fields: Sequence[str] = EXPORT_FIELDS) -> str:
    """The events as CSV, every cell guarded against formula injection (idp.csvsafe)."""
    return csvsafe.to_text([fields, *([event_dict(e, with_detail=False)[f] for f in fields] for e in events)])
