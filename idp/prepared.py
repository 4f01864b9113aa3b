"""Prepared statements for the handful of SQL statements every SSO runs.

SQLAlchemy rebuilds, cache-keys and looks up the compiled form of a Core statement on every
execution; for a small INSERT that bookkeeping costs several times the database work (measured
in `make bench`: ~0.4-0.9 ms against ~0.09 ms here). A `Prepared` statement is compiled once per
dialect and then sent on the ORM session's own connection, so it is part of the request's
transaction. Without engine event listeners it goes straight to the DBAPI cursor, errors still
through SQLAlchemy's handler (IntegrityError, OperationalError, disconnect detection); with
listeners (fault injection, tracing) it takes `exec_driver_sql`, so they get a real execution
context. Not applied on this path: ORM autoflush (callers flush first when they need it) and
`echo` statement logging. Bind and result values go through the column types'
processors exactly as SQLAlchemy would apply them (UTC datetimes, JSON, booleans on SQLite).

Only for statements on the hot path; everything else uses the ORM or Core as usual.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql import ClauseElement

from .extensions import db

Processor = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    positional_names: tuple[str, ...] | None      # parameter order for qmark/numeric styles, else None
    bind_processors: tuple[tuple[str, Processor], ...]
    result_processors: tuple[Processor | None, ...]


class Prepared:
    """A Core statement with named bind parameters, compiled once per dialect."""

    def __init__(self, statement: ClauseElement | Mapping[str, ClauseElement],
                 column_keys: Sequence[str] | None = None) -> None:
        """`column_keys`: for an INSERT without .values(), the columns it sets (bind names = column names).
        `statement` may map dialect names to statements (e.g. each dialect's INSERT … ON CONFLICT)."""
        self.statement = statement
        self.column_keys = list(column_keys) if column_keys is not None else None
        self._by_dialect: dict[tuple[Any, ...], _Compiled] = {}
        self._lock = threading.Lock()

    def _compiled(self, dialect: Dialect) -> _Compiled:
        # not id(dialect): engines come and go (tests, reconfiguration) and ids are reused
        key = (type(dialect), dialect.paramstyle, dialect.server_version_info)
        found = self._by_dialect.get(key)
        if found is not None:
            return found
        with self._lock:
            stmt = self.statement[dialect.name] if isinstance(self.statement, Mapping) else self.statement
            compiled: Any = stmt.compile(dialect=dialect, column_keys=self.column_keys)
            binds = {name: proc for name, proc in compiled._bind_processors.items() if proc is not None}
            results = tuple(col.type._cached_result_processor(dialect, None)
                            for col in compiled._result_columns)
            names = tuple(compiled.positiontup) if compiled.positional else None
            found = _Compiled(sql=compiled.string, positional_names=names,
                              bind_processors=tuple(binds.items()), result_processors=results)
            self._by_dialect[key] = found
        return found

    def _run(self, params: Mapping[str, Any], fetch: str) -> tuple[_Compiled, Any]:
        conn = _connection()
        c = self._compiled(conn.dialect)
        values = dict(params)
        for name, proc in c.bind_processors:
            if name in values:
                values[name] = proc(values[name])
        args: Any = tuple(values[n] for n in c.positional_names) if c.positional_names is not None else values
        if conn._has_events or conn.engine._has_events:
            # Listeners (fault injection, tracing such as Sentry or OpenTelemetry) expect a real
            # execution context: give them SQLAlchemy's own path, still without recompiling.
            result = conn.exec_driver_sql(c.sql, args)
            if fetch == "all":
                return c, result.fetchall()
            if fetch == "one":
                row = result.fetchone()
                result.close()
                return c, row
            return c, result.rowcount
        # No listeners: the DBAPI cursor directly, as Connection._exec_single_context would use it,
        # errors through SQLAlchemy's handler (wrapping, disconnect detection, pool invalidation).
        cursor = None
        try:
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            cursor.execute(c.sql, args)
            if fetch == "all":
                out: Any = cursor.fetchall()
            elif fetch == "one":
                out = cursor.fetchone()
            else:
                out = cursor.rowcount
        except BaseException as exc:
            # as SQLAlchemy does, the cursor is left to the connection's invalidation/close
            conn._handle_dbapi_exception(exc, c.sql, args, cursor, None)
        cursor.close()
        return c, out

    def run(self, params: Mapping[str, Any]) -> int:
        """Execute (INSERT/UPDATE/DELETE); returns the row count."""
        return int(self._run(params, "none")[1])

    def rows(self, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        c, rows = self._run(params, "all")
        return [_process(c.result_processors, row) for row in rows]

    def first(self, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        c, row = self._run(params, "one")
        return None if row is None else _process(c.result_processors, row)

    def scalar(self, params: Mapping[str, Any]) -> Any:
        row = self.first(params)
        return None if row is None else row[0]


def _connection() -> Connection:
    """The ORM session's connection for its current transaction.

    Session.connection() walks the session's transaction state machine on every call; an SSO runs
    several prepared statements in one transaction, so the connection is remembered on the session
    for that transaction only (a commit or rollback starts a new one, and with it a new lookup).
    """
    sess = db.session()
    tx = sess.get_transaction()
    cached = sess.info.get("idp.prepared.conn")
    if tx is not None and cached is not None and cached[0] is tx and not cached[1].closed:
        return cast(Connection, cached[1])
    conn = sess.connection()
    sess.info["idp.prepared.conn"] = (sess.get_transaction(), conn)
    return conn


def _process(processors: Sequence[Processor | None], row: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(p(v) if p is not None else v for p, v in zip(processors, row, strict=True))
