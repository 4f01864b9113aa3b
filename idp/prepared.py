"""Prepared statements for the handful of SQL statements every SSO runs.

SQLAlchemy rebuilds, cache-keys and looks up the compiled form of a Core statement on every
execution; for a small INSERT that bookkeeping costs several times the database work (measured
in `make bench`: ~0.4-0.9 ms against ~0.09 ms here). A `Prepared` statement is compiled once per
dialect and then sent with `Connection.exec_driver_sql` on the ORM session's own connection, so it
is part of the request's transaction, engine events still fire and errors are still SQLAlchemy's
(IntegrityError, OperationalError). Bind and result values go through the column types'
processors exactly as SQLAlchemy would apply them (UTC datetimes, JSON, booleans on SQLite).

Only for statements on the hot path; everything else uses the ORM or Core as usual.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection, CursorResult, Dialect
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

    def __init__(self, statement: ClauseElement, column_keys: Sequence[str] | None = None) -> None:
        """`column_keys`: for an INSERT without .values(), the columns it sets (bind names = column names)."""
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
            compiled: Any = self.statement.compile(dialect=dialect, column_keys=self.column_keys)
            binds = {name: proc for name, proc in compiled._bind_processors.items() if proc is not None}
            results = tuple(col.type._cached_result_processor(dialect, None)
                            for col in compiled._result_columns)
            names = tuple(compiled.positiontup) if compiled.positional else None
            found = _Compiled(sql=compiled.string, positional_names=names,
                              bind_processors=tuple(binds.items()), result_processors=results)
            self._by_dialect[key] = found
        return found

    def execute(self, params: Mapping[str, Any], connection: Connection | None = None) -> tuple[_Compiled,
                                                                                               CursorResult[Any]]:
        conn = connection if connection is not None else db.session.connection()
        c = self._compiled(conn.dialect)
        values = dict(params)
        for name, proc in c.bind_processors:
            if name in values:
                values[name] = proc(values[name])
        args: Any = tuple(values[n] for n in c.positional_names) if c.positional_names is not None else values
        return c, conn.exec_driver_sql(c.sql, args)

    def run(self, params: Mapping[str, Any]) -> int:
        """Execute (INSERT/UPDATE/DELETE); returns the row count."""
        _, result = self.execute(params)
        return int(result.rowcount)

    def rows(self, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        c, result = self.execute(params)
        return [_process(c.result_processors, row) for row in result.fetchall()]

    def first(self, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        c, result = self.execute(params)
        row = result.fetchone()
        result.close()
        return None if row is None else _process(c.result_processors, row)

    def scalar(self, params: Mapping[str, Any]) -> Any:
        row = self.first(params)
        return None if row is None else row[0]


def _process(processors: Sequence[Processor | None], row: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(p(v) if p is not None else v for p, v in zip(processors, row, strict=True))
