"""A realistic SSO event log at scale (bulk insert) and the admin's page/filter queries against it."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import random
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask
from sqlalchemy import delete, func, select

from idp.events import EventFilter, filtered_query, query_events
from idp.extensions import db
from idp.models import SsoEvent

from .fixtures import TARGET_SLUG
from .timing import time_calls

N_APPS, N_USERS, DAYS = 50, 1000, 30
AC_PPT = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
NAMEID_EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
# outcome -> (share, [(reason, weight)])
OUTCOMES = {
    "success": (0.93, [("ok", 1.0)]),
    "denied": (0.05, [("user_not_permitted", 0.5), ("mfa_required", 0.2), ("ip_not_allowed", 0.2),
                      ("session_expired", 0.1)]),
    "error": (0.02, [("request_expired", 0.4), ("replayed_request", 0.1), ("bad_signature", 0.2),
                     ("acs_not_registered", 0.1), ("unknown_sp", 0.1), ("malformed_request", 0.1)]),
}
USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 "
    "Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 "
    "Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 "
    "Edg/126.0.0.0",
]


def app_slugs() -> list[str]:
    """50 apps by popularity rank (Zipf); the bench's own SP is the 3rd most used."""
    slugs = [f"app-{i:02d}" for i in range(1, N_APPS)]
    slugs.insert(2, TARGET_SLUG)
    return slugs


FILTER_APP = app_slugs()[9]   # the admin's filter query: a mid-popularity app (rank 10 of 50)
FILTER_OUTCOME = "denied"


def _cum(weights: list[float]) -> list[float]:
    return list(itertools.accumulate(weights))


def _detail(outcome: str, reason: str, app: str) -> dict[str, Any]:
    if outcome == "success":
        return {"policy": {"check": "authn_context", "effect": "allow", "explanation": "all checks passed",
                           "inputs": {"authn_context": AC_PPT}},
                "authn_context": AC_PPT, "nameid_format": NAMEID_EMAIL, "signature_algorithm":
                    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"}
    if outcome == "denied":
        return {"policy": {"check": "permitted_users", "effect": "deny",
                           "explanation": f"not in a group allowed to use {app}",
                           "inputs": {"permitted": "admin-approved", "user_groups": ["staff"]}},
                "message": f"access to {app} denied ({reason})"}
    return {"message": f"the request was rejected: {reason}"}


COLUMNS = ("at", "event_type", "app_slug", "sp_entity_id", "username", "outcome", "reason", "initiated_by",
           "binding", "request_id", "response_id", "assertion_id", "client_ip", "user_agent", "detail")


def _at_formatter(at_proc: Any) -> Any:
    """A fast `seconds since the epoch -> stored string` that must agree with the column's own bind processor."""
    days: dict[int, str] = {}

    def fmt(ts: float) -> str:
        sec = int(ts)
        us = int(round((ts - sec) * 1e6))
        if us == 1000000:
            sec, us = sec + 1, 0
        day, rest = divmod(sec, 86400)
        d = days.get(day)
        if d is None:
            d = days[day] = datetime.fromtimestamp(day * 86400, UTC).strftime("%Y-%m-%d")
        h, rest = divmod(rest, 3600)
        m, s = divmod(rest, 60)
        return f"{d} {h:02d}:{m:02d}:{s:02d}.{us:06d}"

    for ts in (0.0, 1_700_000_000.5, 1_800_000_123.000001, 1_750_000_000.999999):
        sec = int(ts)
        expected = at_proc(datetime.fromtimestamp(sec, UTC).replace(microsecond=int(round((ts - sec) * 1e6))))
        if fmt(ts) != expected:
            raise RuntimeError(f"stored datetime format changed: {expected!r} != {fmt(ts)!r}; update bench/eventlog.py")
    return fmt


def event_rows(n: int, seed: int, start: float, span: float, fmt_at: Any, json_proc: Any) -> list[tuple[Any, ...]]:
    """`n` rows (tuples in COLUMNS order, already in storage form) from `start` (epoch s) over `span` s, in order.

    50 apps (Zipf), 1000 users (skewed), 3 outcomes (93 % success, 5 % denied, 2 % error) with their reasons,
    85 % SP-initiated. Stored values are what the ORM would write (`fmt_at` is checked against the column's
    bind processor, `json_proc` is the JSON column's own).
    """
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    slugs = app_slugs()
    users = [f"user{i:04d}" for i in range(N_USERS)]
    outcome_names = list(OUTCOMES)
    ips = [f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}" for _ in range(2000)]
    apps = rng.choices(slugs, cum_weights=_cum([1.0 / (rank + 1) for rank in range(len(slugs))]), k=n)
    who = rng.choices(users, cum_weights=_cum([1.0 / (rank + 1) ** 0.5 for rank in range(N_USERS)]), k=n)
    outcomes = rng.choices(outcome_names, weights=[OUTCOMES[o][0] for o in outcome_names], k=n)
    client_ips = rng.choices(ips, k=n)
    agents = rng.choices(USER_AGENTS, k=n)
    reason_pick = {o: (lambda o=o: rng.choices([r for r, _ in OUTCOMES[o][1]], [w for _, w in OUTCOMES[o][1]])[0])
                   for o in outcome_names}
    detail_cache: dict[tuple[str, str, str], str] = {}
    rand = rng.random
    offsets = sorted(rand() * span for _ in range(n))
    hexes = os.urandom(48 * n).hex()   # three 128-bit message IDs per row
    rows = []
    for i, (off, app, user, outcome, ip, agent) in enumerate(zip(offsets, apps, who, outcomes, client_ips, agents,
                                                                 strict=True)):
        j = 96 * i
        reason = "ok" if outcome == "success" else reason_pick[outcome]()
        sp_initiated = rand() < 0.85
        ok = outcome == "success"
        key = (outcome, reason, app)
        detail = detail_cache.get(key)
        if detail is None:
            detail = detail_cache[key] = json_proc(_detail(outcome, reason, app))
        rows.append((
            fmt_at(start + off), "sso", app, f"https://{app}.example.com/saml/metadata", user, outcome, reason,
            "sp" if sp_initiated else "idp", ("redirect" if rand() < 0.8 else "post") if sp_initiated else None,
            "_" + hexes[j:j + 32] if sp_initiated else None,
            "_" + hexes[j + 32:j + 64] if ok or outcome == "denied" else None,
            "_" + hexes[j + 64:j + 96] if ok else None,
            ip, agent, detail,
        ))
    return rows


def count_events(app: Flask) -> int:
    with app.app_context():
        n = db.session.scalar(select(func.count(SsoEvent.id))) or 0
        db.session.remove()
        return n


def _chunk_rows(args: tuple[int, int, float, float]) -> list[tuple[Any, ...]]:
    """Worker: one chunk of rows, with the SQLite dialect's own processors (runs in a helper process)."""
    from sqlalchemy.dialects import sqlite

    n, seed, start, span = args
    dialect = sqlite.dialect()
    table = SsoEvent.__table__
    fmt_at = _at_formatter(table.c.at.type.dialect_impl(dialect).bind_processor(dialect))
    json_proc = table.c.detail.type.dialect_impl(dialect).bind_processor(dialect)
    return event_rows(n, seed, start, span, fmt_at, json_proc)


REBUILD_INDEXES_FROM = 100_000


def fill_events(app: Flask, target: int, *, seed: int = 1, chunk: int = 50_000) -> dict[str, Any]:
    """Top the event log up to `target` rows: executemany in chunks on a direct SQLite connection.

    A bulk load into the bench's own copy of the database, done the way one loads a fresh database:
    the app's pooled connections are closed, helper processes generate the next chunks while this one
    inserts, the journal is off (synchronous=OFF) and, for large loads, the table's secondary indexes are
    dropped first and re-created afterwards from their stored DDL. Then WAL mode is restored and ANALYZE
    runs, so the timed requests and queries see the same schema and settings as a maintained database.
    """
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    table = SsoEvent.__table__
    with app.app_context():
        if db.engine.dialect.name != "sqlite" or not db.engine.url.database:
            raise RuntimeError("the bench's bulk event insert expects its own SQLite file")
        # The ORM's own processor must agree with the fast formatter (checked inside _at_formatter).
        _at_formatter(table.c.at.type.dialect_impl(db.engine.dialect).bind_processor(db.engine.dialect))
        path = db.engine.url.database
        db.session.remove()
        db.engine.dispose()
    # fixed column names from this module, values bound as parameters
    sql = f"INSERT INTO sso_events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"  # noqa: S608
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        have = conn.execute("SELECT count(*) FROM sso_events").fetchone()[0]
        missing = max(0, target - have)
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-262144")
        indexes: list[tuple[str, str]] = []
        if missing >= REBUILD_INDEXES_FROM:
            indexes = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                                   "AND tbl_name = 'sso_events' AND sql IS NOT NULL").fetchall()
            for name, _ in indexes:
                conn.execute(f'DROP INDEX "{name}"')
        # an append-only log: chunk k holds the k-th slice of the 30 days, so ids follow time as in production
        parts = max(1, -(-missing // chunk))
        begin, span = now.timestamp() - DAYS * 86400.0, DAYS * 86400.0 / parts
        jobs = [(min(chunk, missing - part * chunk), seed * 100_003 + have + part, begin + part * span, span)
                for part in range(parts)] if missing else []
        ins_s = 0.0
        ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
        with ctx.Pool(2 if (os.cpu_count() or 1) >= 2 else 1) as pool:
            for rows in pool.imap(_chunk_rows, jobs):
                i0 = time.perf_counter()
                conn.execute("BEGIN")
                conn.executemany(sql, rows)
                conn.execute("COMMIT")
                ins_s += time.perf_counter() - i0
        i0 = time.perf_counter()
        for _, ddl in indexes:
            conn.execute(ddl)
        index_s = time.perf_counter() - i0
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise RuntimeError(f"could not restore WAL mode on the bench database ({mode})")
        i0 = time.perf_counter()
        conn.execute("ANALYZE")
        analyze_s = time.perf_counter() - i0
    finally:
        conn.close()
    return {"inserted": missing, "seconds": round(time.perf_counter() - t0, 2), "insert_s": round(ins_s, 2),
            "create_indexes_s": round(index_s, 2), "analyze_s": round(analyze_s, 2)}


def clear_events(app: Flask) -> None:
    with app.app_context():
        db.session.execute(delete(SsoEvent))
        db.session.commit()
        db.session.remove()


def time_queries(app: Flask, repeat: int = 7) -> dict[str, Any]:
    """Wall ms of the event-log page (50 newest) and a filtered page (app + outcome + last 7 days).

    Besides the two figures of the spec, a few neighbours an admin page would run go into the details:
    a rare combination (least used app, errors, 7 days: fewer than 50 matches, so the whole range is
    read), one user's last 30 days, and COUNT(*) of the page and the filter (what "page 1 of N" would cost).
    """
    now = datetime.now(UTC)
    since = now - timedelta(days=7)
    queries = {
        "page": EventFilter(),
        "filter": EventFilter(app_slug=FILTER_APP, outcome=FILTER_OUTCOME, since=since),
        "filter_rare": EventFilter(app_slug=app_slugs()[-1], outcome="error", since=since),
        "filter_user": EventFilter(username="user0500", since=now - timedelta(days=30)),
    }
    out: dict[str, Any] = {}
    with app.app_context():
        for label, f in queries.items():
            rows: list[SsoEvent] = []

            def run(f: EventFilter = f, rows: list[SsoEvent] = rows) -> None:
                db.session.expunge_all()
                rows[:] = query_events(f, limit=50)

            first, median, times = time_calls(run, repeat)
            out[label] = {"first_ms": round(first, 2), "median_ms": round(median, 2),
                          "runs_ms": [round(t, 2) for t in times], "rows": len(rows),
                          "plan": _plan(filtered_query(f).limit(50))}
        for label in ("page", "filter"):
            count_q = select(func.count()).select_from(filtered_query(queries[label]).order_by(None).subquery())
            total: list[int] = []

            def count(q: Any = count_q, t: list[int] = total) -> None:
                t.append(int(db.session.scalar(q) or 0))

            first, median, _ = time_calls(count, 3)
            out[f"{label}_count"] = {"first_ms": round(first, 2), "median_ms": round(median, 2), "count": total[-1]}
        db.session.remove()
    out["filter"]["filter"] = {"app_slug": FILTER_APP, "outcome": FILTER_OUTCOME, "since": "now - 7 days"}
    out["filter_rare"]["filter"] = {"app_slug": app_slugs()[-1], "outcome": "error", "since": "now - 7 days"}
    out["filter_user"]["filter"] = {"username": "user0500", "since": "now - 30 days"}
    return out


def _plan(q: Any) -> list[str]:
    """SQLite's EXPLAIN QUERY PLAN of a statement (values inlined: the plan depends on the shape only)."""
    sql = str(q.compile(db.engine, compile_kwargs={"literal_binds": True}))
    return [str(r[-1]) for r in db.session.execute(db.text("EXPLAIN QUERY PLAN " + sql)).all()]
