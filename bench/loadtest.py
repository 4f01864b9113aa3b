"""`make loadtest`: sustained and 5x overload SSO traffic against the production server, on loopback only.

Phase 1: 20 concurrent clients for 60 s; phase 2: 5x that (100 clients) for 60 s; then the recovery time
until a single request is answered quickly again. Bounded in count and time, stops by itself.
Checks: no 5xx other than deliberate 503s, every assertion ID unique, one event row per answered attempt,
worker memory bounded. Figures go to stdout and bench/loadtest.json.

Usage: .venv/bin/python -m bench.loadtest [--seconds 60] [--clients 20] [--factor 5]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import re
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "bench"

from .fixtures import RequestPool, create_bench_app, make_workspace  # noqa: E402
from .http_load import _cookie_header, _worker_pids, http_login, start_server, stop_server  # noqa: E402

RESPONSE = re.compile(rb'name="SAMLResponse" value="([^"]+)"')
ASSERTION_ID = re.compile(rb'<saml:Assertion [^>]*ID="([^"]+)"')
OUT = Path(__file__).resolve().parent / "loadtest.json"


@dataclass
class PhaseStats:
    statuses: Counter[int] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    assertion_ids: list[bytes] = field(default_factory=list)
    transport_errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _client(port: int, jar: dict[str, str], queue: deque[str], end_at: float, stats: PhaseStats) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Cookie": _cookie_header(jar), "User-Agent": "idp-loadtest/1"}
    while time.perf_counter() < end_at:
        try:
            path = queue.popleft()
        except IndexError:
            break
        t0 = time.perf_counter()
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            with stats.lock:
                stats.transport_errors.append(type(exc).__name__)
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            continue
        ms = (time.perf_counter() - t0) * 1000
        aid = None
        m = RESPONSE.search(body)
        if m:
            xml = base64.b64decode(unescape(m.group(1).decode()))
            a = ASSERTION_ID.search(xml)
            aid = a.group(1) if a else None
        with stats.lock:
            stats.statuses[resp.status] += 1
            stats.latencies_ms.append(ms)
            if aid:
                stats.assertion_ids.append(aid)
    conn.close()


def rss_mb(master: int) -> float:
    total = 0
    for pid in _worker_pids(master):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def run_phase(port: int, pool: RequestPool, clients: int, seconds: float) -> dict[str, object]:
    jars = [http_login(port) for _ in range(clients)]
    queue = pool.take_all()
    stats = PhaseStats()
    end_at = time.perf_counter() + seconds
    threads = [threading.Thread(target=_client, args=(port, jars[i], queue, end_at, stats), daemon=True)
               for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 60)
    wall = time.perf_counter() - t0
    lat = sorted(stats.latencies_ms)
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [0.0] * 99
    answered = sum(stats.statuses.values())
    return {
        "clients": clients, "seconds": round(wall, 1), "answered": answered,
        "per_s": round(answered / wall, 1), "statuses": dict(stats.statuses),
        "p50_ms": round(q[49], 1), "p95_ms": round(q[94], 1), "p99_ms": round(q[98], 1),
        "max_ms": round(lat[-1], 1) if lat else None,
        "unexpected_5xx": sum(n for s, n in stats.statuses.items() if s >= 500 and s != 503),
        "deliberate_503": stats.statuses.get(503, 0), "transport_errors": len(stats.transport_errors),
        "assertions": len(stats.assertion_ids), "duplicate_assertion_ids": len(stats.assertion_ids)
        - len(set(stats.assertion_ids)),
        "requests_left_in_pool": len(queue),
    }


def recovery_s(port: int, pool: RequestPool, limit_s: float = 30.0) -> float | None:
    jar = http_login(port)
    start = time.perf_counter()
    while time.perf_counter() - start < limit_s:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        t0 = time.perf_counter()
        try:
            conn.request("GET", pool.take(), headers={"Cookie": _cookie_header(jar)})
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200 and time.perf_counter() - t0 < 1.0:
                return round(time.perf_counter() - start, 2)
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        time.sleep(0.1)
    return None


def count_events(db_path: Path) -> int:
    with sqlite3.connect(db_path) as conn:
        return int(conn.execute("SELECT count(*) FROM sso_events WHERE event_type = 'sso'").fetchone()[0])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--factor", type=int, default=5)
    args = ap.parse_args(argv)
    if not (1 <= args.seconds <= 300 and 1 <= args.clients <= 200 and 1 <= args.factor <= 10):
        ap.error("bounded: --seconds 1..300, --clients 1..200, --factor 1..10")
    root = Path(tempfile.mkdtemp(prefix="idp-loadtest-"))
    ws = make_workspace(root)
    app = create_bench_app(ws)  # schema, the bench user and the target app
    with app.app_context():
        from idp.extensions import db
        db.session.remove()
        db.engine.dispose()
    workers = os.cpu_count() or 2
    server = start_server(ws, workers=workers, threads=1)
    results: dict[str, object] = {"workers": workers, "threads_per_worker": 1}
    try:
        pool = RequestPool(ws.sp.key, server.base_url)
        db_path = Path(ws.database_url.removeprefix("sqlite:///"))
        events0 = count_events(db_path)
        rss0 = rss_mb(server.proc.pid)
        phases = []
        for clients in (args.clients, args.clients * args.factor):
            pool.refill(int(args.seconds * 400) + 500)   # more than the server can answer in the window
            print(f"phase: {clients} clients for {args.seconds:.0f} s ...", flush=True)
            phase = run_phase(server.port, pool, clients, args.seconds)
            phase["rss_mb_after"] = round(rss_mb(server.proc.pid), 1)
            phases.append(phase)
            print(json.dumps(phase), flush=True)
        pool.refill(400)
        results["recovery_s"] = recovery_s(server.port, pool)
        time.sleep(1.0)
        events = count_events(db_path) - events0
        answered = sum(int(p["answered"]) for p in phases)  # type: ignore[call-overload]
        results.update({
            "phases": phases, "rss_mb_start": round(rss0, 1), "events_recorded": events,
            "attempts_answered": answered,
        })
        ok = (all(p["unexpected_5xx"] == 0 and p["duplicate_assertion_ids"] == 0 for p in phases)
              and results["recovery_s"] is not None
              and float(phases[-1]["rss_mb_after"]) < max(4 * rss0, rss0 + 400))  # type: ignore[arg-type]
        # every answered attempt has its event row (recovery probes add a few rows of their own)
        ok = ok and answered <= events <= answered + 200
        results["ok"] = ok
    finally:
        stop_server(server)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "phases"}, indent=2))
    print("LOADTEST", "PASSED" if results.get("ok") else "FAILED")
    return 0 if results.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
