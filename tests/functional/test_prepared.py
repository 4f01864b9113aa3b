"""idp.prepared: statements compiled once, run on the session's connection, values typed as the ORM types them.

Runs on SQLite in the default suite and on PostgreSQL in the PG suite (same tests, IDP_TEST_DATABASE_URL).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import bindparam, event, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from idp.extensions import db
from idp.models import SeenRequest, SsoEvent
from idp.prepared import Prepared

AT = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
INSERT_EVENT = Prepared(insert(SsoEvent).returning(SsoEvent.id),
                        column_keys=("at", "event_type", "outcome", "reason", "detail", "username"))
READ_EVENT = Prepared(select(SsoEvent.id, SsoEvent.at, SsoEvent.detail, SsoEvent.username)
                      .where(SsoEvent.id == bindparam("eid")))
RENAME = Prepared(update(SsoEvent).where(SsoEvent.username == bindparam("old")).values(username=bindparam("new")))
REMEMBER = Prepared(insert(SeenRequest), column_keys=("issuer", "request_id", "expires_at"))


def _event(username: str = "alice") -> dict[str, object]:
    return {"at": AT, "event_type": "sso", "outcome": "success", "reason": "ok", "username": username,
            "detail": {"policy": {"check": "ip"}, "n": 3, "text": "é \"quoted\""}}


def test_insert_returning_and_typed_read_back(app: Flask) -> None:
    event_id = INSERT_EVENT.scalar(_event())
    db.session.commit()
    row = READ_EVENT.first({"eid": event_id})
    assert row is not None
    eid, at, detail, username = row
    # the same values the ORM reads back: an aware UTC datetime and the JSON document
    orm = db.session.get(SsoEvent, event_id)
    assert (eid, at, detail, username) == (orm.id, orm.at, orm.detail, orm.username)
    assert at == AT and at.tzinfo is not None
    assert detail == {"policy": {"check": "ip"}, "n": 3, "text": "é \"quoted\""}


def test_rows_first_scalar_and_rowcount(app: Flask) -> None:
    ids = [INSERT_EVENT.scalar(_event("bob")) for _ in range(3)]
    assert len(set(ids)) == 3
    assert READ_EVENT.first({"eid": -1}) is None and READ_EVENT.scalar({"eid": -1}) is None
    assert RENAME.run({"old": "bob", "new": "robert"}) == 3
    assert [r[3] for r in READ_EVENT.rows({"eid": ids[0]})] == ["robert"]
    db.session.rollback()  # part of the session's transaction: nothing of it survives a rollback
    assert READ_EVENT.first({"eid": ids[0]}) is None


def test_integrity_error_is_sqlalchemys(app: Flask) -> None:
    params = {"issuer": "https://sp.example", "request_id": "_r1", "expires_at": AT + timedelta(minutes=5)}
    REMEMBER.run(params)
    db.session.commit()
    with pytest.raises(IntegrityError):
        REMEMBER.run(params)
    db.session.rollback()


def test_naive_datetime_refused_by_the_column_type(app: Flask) -> None:
    """Bind processors of TypeDecorators run (UTCDateTime refuses a naive datetime)."""
    with pytest.raises(Exception, match="naive datetime"):
        INSERT_EVENT.scalar({**_event(), "at": datetime(2026, 1, 1)})  # noqa: DTZ001 - the point of the test
    db.session.rollback()


def test_engine_events_still_fire(app: Flask) -> None:
    """With listeners, statements take exec_driver_sql: cursor events (fault injection, tracing) see them,
    with a real execution context (Sentry and OpenTelemetry write their timing onto it)."""
    seen: list[str] = []

    def on_execute(conn: object, cursor: object, statement: str, params: object, context: Any,
                   executemany: bool) -> None:
        context._idp_test_started = True  # what tracing integrations do
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", on_execute)
    try:
        READ_EVENT.first({"eid": 1})
    finally:
        event.remove(db.engine, "before_cursor_execute", on_execute)
    assert any("FROM sso_events" in s for s in seen)


def test_compiled_once_per_dialect(app: Flask) -> None:
    stmt = Prepared(select(SsoEvent.id).where(SsoEvent.id == bindparam("eid")))
    compiles: list[int] = []
    original = stmt.statement.compile

    def counting(*args: object, **kwargs: object) -> object:
        compiles.append(1)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    stmt.statement.compile = counting  # type: ignore[method-assign]
    for _ in range(5):
        stmt.first({"eid": 1})
    assert len(compiles) == 1


def test_driver_errors_are_wrapped_like_sqlalchemy_does(app: Flask) -> None:
    """A DBAPI error (here raised from a cursor event, as a full disk would raise it) surfaces as
    SQLAlchemy's OperationalError, which the app turns into a 503; the session recovers after rollback."""
    dbapi_error = db.engine.dialect.loaded_dbapi.OperationalError

    def fail(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "sso_events" in statement:
            raise dbapi_error("injected failure")

    event.listen(db.engine, "before_cursor_execute", fail)
    try:
        with pytest.raises(OperationalError, match="injected failure"):
            INSERT_EVENT.scalar(_event())
    finally:
        event.remove(db.engine, "before_cursor_execute", fail)
    db.session.rollback()
    assert INSERT_EVENT.scalar(_event()) is not None
    db.session.rollback()
