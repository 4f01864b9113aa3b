"""Retention figure (issue 17): `idp events purge` deleting 1,000,000 old event rows from a copy of the bench
SQLite database, while SSO round trips keep running in this process, against the same SSO loop without a purge.

`retention_purge_1m_s`: wall seconds of the purge process (batches of IDP_RETENTION_BATCH keys, each its own
transaction), start to exit. `sso_during_purge_per_s` / `sso_during_purge_p95_ms`: in-process SSO round trips
(bench.inprocess.SsoBench, one logged-in browser, each round trip writes its event row) per wall-second and their
95th-percentile latency while the purge runs; `sso_no_purge_per_s` / `sso_no_purge_p95_ms`: the same loop for the
same length of time without it, measured right before. Wall time, not CPU time: the point is that sign-ins keep
going (the purge process takes one of the machine's cores and the database's write lock between batches).

Run alone: `.venv/bin/python -m bench.retention [--rows N]` (a few minutes at most); `make bench` runs it too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess  # noqa: S404 - the purge runs as `idp events purge`, the command an operator runs
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/retention.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fixtures import INPROCESS_BASE_URL, Workspace, clone_instance, create_bench_app, make_workspace, open_app
from bench.inprocess import SsoBench

BIN = Path(sys.executable).parent
ROWS = 1_000_000
BATCH = 5000


def insert_old_events(db_path: Path, rows: int) -> float:
    """`rows` events 500 days old, with one INSERT ... SELECT over a recursive counter (seconds taken)."""
    t = time.perf_counter()
    con = sqlite3.connect(db_path)
    try:
        con.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO sso_events (at, event_type, app_slug, username, outcome, reason, client_ip, user_agent, "
            "protocol) SELECT datetime('now', '-500 days'), 'sso', 'bench-app', 'user' || (i % 1000), "
            "CASE WHEN i % 10 = 0 THEN 'denied' ELSE 'success' END, CASE WHEN i % 10 = 0 THEN 'not_permitted' "
            "ELSE 'ok' END, '192.0.2.' || (i % 250), 'Mozilla/5.0 (X11; Linux x86_64) bench', 'saml' FROM n",
            (rows,))
        con.commit()
    finally:
        con.close()
    return time.perf_counter() - t


def _loop(sso: SsoBench, keep_going: Any, max_s: float) -> dict[str, float]:
    """SSO round trips until keep_going() is false or max_s passed; rate per wall-second and latencies."""
    latencies: list[float] = []
    sso.pool.refill(200)
    start = time.perf_counter()
    while keep_going() and time.perf_counter() - start < max_s:
        if len(sso.pool) < 5:
            sso.pool.refill(200)   # signing requests is the client's cost: outside the timed calls
        t = time.perf_counter()
        sso.one()
        latencies.append(time.perf_counter() - t)
    wall = time.perf_counter() - start
    latencies.sort()
    return {"round_trips": len(latencies), "wall_s": round(wall, 2),
            "per_s": len(latencies) / wall if wall else 0.0,
            "p50_ms": 1000 * statistics.median(latencies) if latencies else 0.0,
            "p95_ms": 1000 * latencies[int(0.95 * (len(latencies) - 1))] if latencies else 0.0,
            "max_ms": 1000 * latencies[-1] if latencies else 0.0}


def measure_retention(ws: Workspace, rows: int = ROWS, batch: int = BATCH) -> dict[str, Any]:
    copy = clone_instance(ws, "retention")
    insert_s = insert_old_events(copy.db_path, rows)
    app = open_app(copy)
    sso = SsoBench(app, copy)
    sso.pool.refill(20)
    for _ in range(20):
        sso.one()       # warm-up
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("IDP_")}, **copy.env(INPROCESS_BASE_URL),
           "IDP_RETENTION_BATCH": str(batch)}
    dry = subprocess.run([str(BIN / "idp"), "events", "purge", "--dry-run"], env=env, capture_output=True,  # noqa: S603
                         text=True, timeout=600, check=True)
    # the purge first, with SSO beside it, then the same loop alone for as long (a drifting machine is slower
    # later, which would flatter the purge; the order is the conservative one)
    log = copy.root / "purge.log"
    with log.open("wb") as fh:
        t = time.perf_counter()
        proc = subprocess.Popen([str(BIN / "idp"), "events", "purge"], env=env, stdout=fh,  # noqa: S603
                                stderr=subprocess.STDOUT)
    during = _loop(sso, lambda: proc.poll() is None, 600)
    proc.wait(600)
    purge_s = time.perf_counter() - t
    output = log.read_text()
    if proc.returncode != 0:
        raise RuntimeError(f"idp events purge failed: {output[-2000:]}")
    deleted = next((int(ln.split()[1]) for ln in output.splitlines() if ln.startswith("events ")), 0)
    alone = _loop(sso, lambda: True, max(5.0, during["wall_s"]))
    return {"rows": rows, "batch": batch, "insert_s": round(insert_s, 2), "purge_s": round(purge_s, 2),
            "deleted": deleted, "rows_per_s": round(deleted / purge_s) if purge_s else 0,
            "dry_run": dry.stdout.strip().splitlines()[0] if dry.stdout.strip() else "",
            "during": {k: round(v, 2) for k, v in during.items()},
            "alone": {k: round(v, 2) for k, v in alone.items()},
            "purge_output": output.strip().splitlines()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="idp-bench-retention-"))
    try:
        ws = make_workspace(root)
        create_bench_app(ws)
        r = measure_retention(ws, args.rows, args.batch)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(r, indent=2))
    print(f"\npurge of {r['deleted']:,} old events: {r['purge_s']:.1f} s ({r['rows_per_s']:,} rows/s, batches of "
          f"{r['batch']:,}); SSO during it {r['during']['per_s']:.1f}/s p95 {r['during']['p95_ms']:.1f} ms, "
          f"without it {r['alone']['per_s']:.1f}/s p95 {r['alone']['p95_ms']:.1f} ms")
    if args.out:
        Path(args.out).write_text(json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
