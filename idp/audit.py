"""Admin audit trail: who changed what, when, with before/after values.

Services record their own changes (so the CLI and the admin console are audited alike); the
glue that calls them names the actor once per command or request with `acting_as`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import select
from sqlalchemy.orm import Session, SessionTransaction

from . import on_commit, siem
from .extensions import db
from .models import AdminAudit, utcnow
from .notifications import bus, catalog

DEFAULT_ACTOR = "system"
API_ACTOR_PREFIX = "api:"   # changes made through the REST API or SCIM: "api:" + the token's name
_actor: ContextVar[str] = ContextVar("idp_audit_actor", default=DEFAULT_ACTOR)

SECRET_KEYS = frozenset({"password", "password_hash", "totp_secret", "secret", "key_pem"})


@contextmanager
def acting_as(actor: str) -> Iterator[None]:
    token = _actor.set(actor[:200])
    try:
        yield
    finally:
        _actor.reset(token)


def api_actor(token_name: str) -> str:
    """The actor of changes made with an API token (REST API, SCIM): "api:NAME"."""
    return (API_ACTOR_PREFIX + token_name)[:200]


def set_actor(actor: str) -> None:
    _actor.set(actor[:200])


def reset_actor() -> None:
    """Back to the default actor: called at the start and end of every web request, so a worker
    thread that served an admin never attributes the next (anonymous) request's changes to them."""
    _actor.set(DEFAULT_ACTOR)


def current_actor() -> str:
    return _actor.get()


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("[redacted]" if k in SECRET_KEYS else _clean(v)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v) for v in value]
    return value


def record(action: str, target_type: str, target: str, *, before: Any = None, after: Any = None,
           session: Session | None = None) -> None:
    """Add an audit row to the current transaction (the caller's commit writes it with the change)."""
    row = AdminAudit(
        at=utcnow(), actor=current_actor(), action=action[:60], target_type=target_type[:40],
        target=str(target)[:300], before=_json_safe(_clean(before)), after=_json_safe(_clean(after)),
    )
    own = session or db.session
    own.add(row)
    if siem.sender() is not None:     # streamed to syslog once committed (its id is known after the flush)
        on_commit.hold(own, _UNSENT, row)
    notice_type = catalog.for_audit(row.action)
    if notice_type is not None:
        app_slug = row.target if row.target_type == "app" else None
        bus.publish(notice_type, app_slug, lambda: _notice(notice_type, row), own)


def _notice(notice_type: str, row: AdminAudit) -> bus.Notice:
    """An audited change as a notice: the audit row's fields (secrets already redacted); the id of the row is
    not known before the flush, so data carries none."""
    return bus.Notice(type=notice_type, time=row.at, subject=row.target, app_slug=row.target if
                      row.target_type == "app" else None, outcome="success", reason=None, source="audit",
                      data={"at": row.at.isoformat().replace("+00:00", "Z"), "actor": row.actor,
                            "action": row.action, "target_type": row.target_type, "target": row.target,
                            "before": row.before, "after": row.after})


_UNSENT = "idp.audit.unsent"        # rows added, not yet flushed
_FLUSHED = "idp.audit.flushed"      # their syslog messages, sent after the commit


def _flushed(session: Session, _ctx: Any) -> None:
    rows = on_commit.take(session, _UNSENT)
    if not rows:
        return
    ready = session.info.setdefault(_FLUSHED, [])
    for tag, row in rows:       # the message keeps the row's tag: a rolled-back savepoint drops it
        if row.id is None:      # not in this flush (not expected: the rows are added to the flushing session)
            session.info.setdefault(_UNSENT, []).append((tag, row))
            continue
        fields = {"id": row.id, "at": row.at.isoformat().replace("+00:00", "Z"), "actor": row.actor,
                  "action": row.action, "target_type": row.target_type, "target": row.target}
        line = json.dumps({"log": "admin_audit", **fields, "before": row.before, "after": row.after},
                          default=str, sort_keys=True)
        ready.append((tag, siem.audit_message(fields, line)))


def _committed(session: Session) -> None:
    if not on_commit.is_outermost_commit(session):     # a savepoint released: the outer commit sends them
        return
    on_commit.take(session, _UNSENT)
    messages = on_commit.take(session, _FLUSHED)
    syslog = siem.sender() if messages else None
    if syslog is not None:
        for _tag, message in messages:
            syslog.send(message)


def _rolled_back(session: Session, previous: SessionTransaction) -> None:
    """A rollback, of the transaction or of a savepoint: only the rows written in what it undid are dropped."""
    on_commit.discard(session, _UNSENT, previous)
    on_commit.discard(session, _FLUSHED, previous)


sa_event.listen(Session, "after_flush", _flushed)
sa_event.listen(Session, "after_commit", _committed)
sa_event.listen(Session, "after_soft_rollback", _rolled_back)


def _json_safe(value: Any) -> Any:
    return None if value is None else json.loads(json.dumps(value, default=str))


def recent(limit: int = 100, offset: int = 0, target: str | None = None) -> list[AdminAudit]:
    q = select(AdminAudit).order_by(AdminAudit.at.desc(), AdminAudit.id.desc())
    if target:
        q = q.where(AdminAudit.target == target)
    return list(db.session.scalars(q.limit(limit).offset(offset)))
