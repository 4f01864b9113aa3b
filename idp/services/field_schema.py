"""The current field schema (built-in + admin-defined fields), read by every attribute release.

A per-process cache trusted for SCHEMA_TTL_S: SSO reads no UserField row per request. A change made in this
process drops it when its unit of work commits; a change made elsewhere (the CLI, another instance) applies
within SCHEMA_TTL_S.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import event as sa_event
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..attributes.schema import FieldDef, FieldType, Schema
from ..extensions import db
from ..models import UserField

SCHEMA_TTL_S = 1.0
_lock = threading.Lock()
_cached: tuple[float, Schema] | None = None
_CHANGED = "idp.fields.changed"


def current_schema(*, fresh: bool = False) -> Schema:
    """The schema; `fresh` reads the rows now (what a save validates against: a field another process removed
    a moment ago must not pass a check made on the cached schema)."""
    global _cached
    now = time.monotonic()
    cached = _cached
    if not fresh and cached is not None and now - cached[0] < SCHEMA_TTL_S:
        return cached[1]
    rows = db.session.execute(select(UserField.name, UserField.type, UserField.label, UserField.unique)
                              .order_by(UserField.name)).all()
    schema = Schema(custom=tuple(FieldDef(name, FieldType(type_), label or "", bool(unique))
                                 for name, type_, label, unique in rows))
    with _lock:
        _cached = (now, schema)
    return schema


def invalidate_schema() -> None:
    """Drop the cached schema now and when the caller's unit of work commits (call after changing UserField)."""
    global _cached
    with _lock:
        _cached = None
    db.session.info[_CHANGED] = True


def _after_commit(session: Session) -> None:
    global _cached
    if session.info.pop(_CHANGED, False):
        with _lock:
            _cached = None


sa_event.listen(Session, "after_commit", _after_commit)
