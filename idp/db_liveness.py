"""Dead pooled connections found without a round trip per request.

SQLAlchemy's `pool_pre_ping` sends a `SELECT 1` at every checkout: on PostgreSQL one more round trip per request,
measured at ~0.15 CPU-ms of the IdP per SSO plus the database server's share (an SSO is ~2.5 CPU-ms there). A
connection handed back a moment ago is almost certainly alive, so only one that sat idle in the pool for
IDLE_PING_S is pinged before use; a dead one is discarded and the pool takes or opens another (DisconnectionError,
SQLAlchemy's pessimistic-disconnect hook). A database restart under steady traffic is still noticed at once: the
first statement on a dead connection fails (that one request answers 503), and SQLAlchemy then invalidates every
connection the pool held before the failure, so the next request opens a fresh one.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import Pool

IDLE_PING_S = 10.0
_CHECKED_IN = "idp.checked_in_at"


def install() -> None:
    """Listen on every pool (once per process); only psycopg connections are handled (SQLite needs nothing)."""
    if event.contains(Pool, "checkout", _checkout):
        return
    event.listen(Pool, "checkin", _checkin)
    event.listen(Pool, "checkout", _checkout)


def _is_postgresql(dbapi_connection: Any) -> bool:
    return type(dbapi_connection).__module__.startswith("psycopg")


def _checkin(dbapi_connection: Any, record: Any) -> None:
    if dbapi_connection is not None and _is_postgresql(dbapi_connection):
        record.info[_CHECKED_IN] = time.monotonic()


def _checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    if not _is_postgresql(dbapi_connection):
        return
    since = record.info.get(_CHECKED_IN)
    if since is None or time.monotonic() - since < IDLE_PING_S:
        return          # new (just connected) or back from use a moment ago
    try:
        cur = dbapi_connection.cursor()
        try:
            cur.execute("SELECT 1")
        finally:
            cur.close()
        dbapi_connection.rollback()
    except Exception as exc:   # noqa: BLE001 - any failure: this connection is not usable
        raise DisconnectionError(f"idle pooled connection is dead: {type(exc).__name__}") from exc
