"""The one writer and reader of the SSO event log."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, insert, select
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from . import csvsafe, metrics
from .errors import EventContext
from .extensions import db
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


def record_event(ctx: EventContext, reason: Reason, *, client_ip: str | None, user_agent: str | None,
                 outcome: Outcome | None = None) -> RecordedEvent:
    """Write one event row in the caller's unit of work (the request or CLI command commits it).

    A prepared INSERT ... RETURNING id rather than the ORM unit of work: this runs on every SSO and
    the ORM bookkeeping cost more than the insert itself. The metric and the SIEM log line follow
    the commit (an event whose transaction rolls back was never recorded).
    """
    values: dict[str, Any] = dict(
        at=utcnow(),
        event_type=ctx.event_type,
        app_slug=ctx.app_slug,
        sp_entity_id=(ctx.sp_entity_id or "")[:1024] or None,
        username=ctx.username,
        outcome=str(outcome or outcome_for(reason)),
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
    event_id = _INSERT.scalar(values)
    event = RecordedEvent(id=event_id, **values)
    check = (ctx.detail.get("policy") or {}).get("check")
    db.session.info.setdefault(_UNANNOUNCED, []).append((event, check))
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
    """After a commit: count the events it made durable and write their SIEM log lines."""
    recorded = session.info.pop(_UNANNOUNCED, None)
    if not recorded:
        return
    for event, check in recorded:
        metrics.count_event(event.event_type, event.app_slug, event.outcome, event.reason)
        # One JSON line per event for shipping to a SIEM (no secrets: the event holds none).
        if log.isEnabledFor(logging.INFO):
            log.info("%s", json.dumps({"log": "sso_event", **event_dict(event, with_detail=False), "check": check},
                                      default=str, sort_keys=True))


def _forget(session: Session, *_: Any) -> None:
    session.info.pop(_UNANNOUNCED, None)


sa_event.listen(Session, "after_commit", _announce)
sa_event.listen(Session, "after_rollback", _forget)


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
