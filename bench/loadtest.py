"""`make loadtest`: sustained and overload SSO traffic against the production server, on loopback only.

Phases of --seconds each: 20 concurrent clients (1x), then 5x (100) and 10x (200) that, against `idp serve` with
its defaults (gthread workers, admission control with IDP_MAX_QUEUE_MS); then the recovery time until a single
request is answered quickly again. A client that gets 503 honours Retry-After as a browser retry would (it sleeps
min(Retry-After, 1 s), then sends the same request again). Bounded in count and time, stops by itself.
Per phase: admitted (200) p50/p95/p99, shed share (503), how fast the 503s came, time to the first 503.
Checks: admitted p95 at the highest factor within 2x of the 1x p95, no 5xx other than deliberate 503s, recovery
< 5 s, every assertion ID unique, one event row per admitted attempt, worker memory bounded.
Figures go to stdout and bench/loadtest.json.

Usage: .venv/bin/python -m bench.loadtest [--seconds 60] [--clients 20] [--factors 5,10] [--max-queue-ms 250]
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

from idp.cli.serve import ADMISSION_THREADS  # noqa: E402
from idp.config import load_settings  # noqa: E402

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
    shed_ms: list[float] = field(default_factory=list)       # how long each 503 took to arrive
    first_503_s: float | None = None                         # seconds from the phase start to the first 503
    lock: threading.Lock = field(default_factory=threading.Lock)


RETRY_CAP_S = 1.0   # a shed client sleeps min(Retry-After, this) before it sends the request again


def _client(port: int, jar: dict[str, str], queue: deque[str], t_start: float, end_at: float,
            stats: PhaseStats) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Cookie": _cookie_header(jar), "User-Agent": "idp-loadtest/1"}
    path: str | None = None
    while time.perf_counter() < end_at:
        if path is None:
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
            path = None
            continue
        t1 = time.perf_counter()
        ms = (t1 - t0) * 1000
        if resp.status == 503:
            with stats.lock:
                stats.statuses[503] += 1
                stats.shed_ms.append(ms)
                if stats.first_503_s is None or t1 - t_start < stats.first_503_s:
                    stats.first_503_s = t1 - t_start
            try:
                retry_after = float(resp.getheader("Retry-After") or 1)
            except ValueError:
                retry_after = 1.0
            time.sleep(min(max(retry_after, 0.0), RETRY_CAP_S))   # then the same request again, like a browser
            continue
        path = None
        aid = None
        m = RESPONSE.search(body)
        if m:
            xml = base64.b64decode(unescape(m.group(1).decode()))
            a = ASSERTION_ID.search(xml)
            aid = a.group(1) if a else None
        with stats.lock:
            stats.statuses[resp.status] += 1
            if resp.status == 200:
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


def _q(values: list[float]) -> list[float]:
    lat = sorted(values)
    return statistics.quantiles(lat, n=100, method="inclusive") if len(lat) >= 2 else [lat[0] if lat else 0.0] * 99


def run_phase(port: int, pool: RequestPool, jars: list[dict[str, str]], seconds: float) -> dict[str, object]:
    clients = len(jars)
    queue = pool.take_all()
    stats = PhaseStats()
    t0 = time.perf_counter()
    end_at = t0 + seconds
    threads = [threading.Thread(target=_client, args=(port, jars[i], queue, t0, end_at, stats), daemon=True)
               for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 60)
    wall = time.perf_counter() - t0
    q = _q(stats.latencies_ms)
    shed_q = _q(stats.shed_ms)
    answered = sum(stats.statuses.values())
    shed = stats.statuses.get(503, 0)
    admitted = answered - shed
    return {
        "clients": clients, "seconds": round(wall, 1), "answered": answered, "admitted": admitted,
        "admitted_per_s": round(stats.statuses.get(200, 0) / wall, 1), "statuses": dict(stats.statuses),
        "p50_ms": round(q[49], 1), "p95_ms": round(q[94], 1), "p99_ms": round(q[98], 1),
        "max_ms": round(max(stats.latencies_ms), 1) if stats.latencies_ms else None,
        "shed_share": round(shed / answered, 3) if answered else 0.0,
        "shed_p95_ms": round(shed_q[94], 1) if stats.shed_ms else None,
        "shed_max_ms": round(max(stats.shed_ms), 1) if stats.shed_ms else None,
        "first_503_s": round(stats.first_503_s, 2) if stats.first_503_s is not None else None,
        "unexpected_5xx": sum(n for s, n in stats.statuses.items() if s >= 500 and s != 503),
        "deliberate_503": shed, "transport_errors": len(stats.transport_errors),
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


def _factors(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("a comma-separated list of integers, e.g. 5,10") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--factors", type=_factors, default=[5, 10], help="overload phases, as multiples of --clients")
    ap.add_argument("--max-queue-ms", type=int, default=None,
                    help="IDP_MAX_QUEUE_MS for the server (default: the environment's, else the product default; "
                         "0 = admission control off, sync workers)")
    args = ap.parse_args(argv)
    multiples = [1, *args.factors]
    if not (1 <= args.seconds <= 300 and 1 <= args.clients <= 200 and all(1 <= f <= 10 for f in args.factors)
            and args.clients * max(multiples) <= 400):
        ap.error("bounded: --seconds 1..300, --clients 1..200, --factors 1..10 each, at most 400 clients")
    if args.max_queue_ms is not None:
        os.environ["IDP_MAX_QUEUE_MS"] = str(args.max_queue_ms)
    max_queue_ms = load_settings().max_queue_ms
    root = Path(tempfile.mkdtemp(prefix="idp-loadtest-"))
    ws = make_workspace(root)
    app = create_bench_app(ws)  # schema, the bench user and the target app
    with app.app_context():
        from idp.extensions import db
        db.session.remove()
        db.engine.dispose()
    workers = os.cpu_count() or 2
    threads = ADMISSION_THREADS if max_queue_ms > 0 else 1   # `idp serve`'s defaults
    server = start_server(ws, workers=workers, threads=threads)
    results: dict[str, object] = {"workers": workers, "threads_per_worker": threads, "max_queue_ms": max_queue_ms}
    try:
        pool = RequestPool(ws.sp.key, server.base_url)
        db_path = Path(ws.database_url.removeprefix("sqlite:///"))
        events0 = count_events(db_path)
        rss0 = rss_mb(server.proc.pid)
        jars = [http_login(server.port) for _ in range(args.clients * max(multiples))]
        phases = []
        for factor in multiples:
            clients = args.clients * factor
            pool.refill(int(args.seconds * 400) + 500)   # more than the server can answer in the window
            print(f"phase {factor}x: {clients} clients for {args.seconds:.0f} s ...", flush=True)
            phase = {"factor": factor, **run_phase(server.port, pool, jars[:clients], args.seconds)}
            phase["rss_mb_after"] = round(rss_mb(server.proc.pid), 1)
            phases.append(phase)
            print(json.dumps(phase), flush=True)
        pool.refill(400)
        results["recovery_s"] = recovery_s(server.port, pool)
        time.sleep(1.0)
        events = count_events(db_path) - events0
        admitted = sum(int(p["admitted"]) for p in phases)
        results.update({"phases": phases, "rss_mb_start": round(rss0, 1), "events_recorded": events,
                        "attempts_admitted": admitted})
        base, top = phases[0], phases[-1]
        recovery = results["recovery_s"]
        checks = {
            f"admitted p95 at {top['factor']}x within 2x of 1x": float(top["p95_ms"]) <= 2 * float(base["p95_ms"]),
            "no 5xx but the deliberate 503s": all(p["unexpected_5xx"] == 0 for p in phases),
            "recovery < 5 s": recovery is not None and float(recovery) < 5.0,  # type: ignore[arg-type]
            "assertion IDs unique": all(p["duplicate_assertion_ids"] == 0 for p in phases),
            # every admitted attempt has its event row (recovery probes add a few rows of their own)
            "one event row per admitted attempt": admitted <= events <= admitted + 200,
            "worker memory bounded": float(top["rss_mb_after"]) < max(4 * rss0, rss0 + 400),
        }
        for name, passed in checks.items():
            print(f"  {'PASSED' if passed else 'FAILED'}  {name}")
        results["checks"] = checks
        results["ok"] = all(checks.values())
    finally:
        stop_server(server)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    summary = {k: v for k, v in results.items() if k not in ("phases", "checks")}
    summary["phases"] = [{k: p[k] for k in ("factor", "clients", "admitted_per_s", "p50_ms", "p95_ms", "p99_ms",
                                            "shed_share", "shed_p95_ms", "first_503_s", "unexpected_5xx")}
                         for p in results.get("phases", [])]  # type: ignore[attr-defined]
    print(json.dumps(summary, indent=2))
    print("LOADTEST", "PASSED" if results.get("ok") else "FAILED")
    return 0 if results.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
