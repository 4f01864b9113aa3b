"""Prometheus metrics (text exposition format 0.0.4) summed over all workers of one server, no client library.

gunicorn runs several worker processes and a scrape reaches only one of them, so each worker spools
its counters to `<IDP_METRICS_DIR>/<host>-<master pid>/<worker pid>.json`, atomically: a background
thread writes changed counters every second, and the worker writes before it answers a scrape and
when it exits. A scrape answers the sum of every file, at most a second behind.

Counters never go backwards: a worker writes its file before it exposes anything, and the files of
workers that ended (gunicorn recycles them) are folded into `retired.json`, never dropped. A server
restart starts from zero, as any Prometheus target does; folders of servers that are gone are removed.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import shutil
import socket
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

_lock = threading.Lock()
_attempts: Counter[tuple[str, str, str, str]] = Counter()
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_latency_buckets = [0] * (len(BUCKETS) + 1)
_latency_sum = 0.0
_latency_count = 0

FLUSH_EVERY_S = 1.0
RETIRED = "retired.json"
_spool: Path | None = None
_dirty = False
_flusher_pid: int | None = None


# ---------------------------------------------------------------- counting (per process)

def count_event(event_type: str, app: str | None, outcome: str, reason: str) -> None:
    global _dirty
    with _lock:
        _attempts[(event_type, app or "", outcome, reason)] += 1
        _dirty = True


def observe_latency(seconds: float) -> None:
    global _latency_sum, _latency_count, _dirty
    with _lock:
        _dirty = True
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                _latency_buckets[i] += 1
                break
        else:
            _latency_buckets[-1] += 1
        _latency_sum += seconds
        _latency_count += 1


def _snapshot() -> dict[str, Any]:
    global _dirty
    with _lock:
        _dirty = False
        return {"attempts": [[*key, n] for key, n in sorted(_attempts.items())],
                "buckets": list(_latency_buckets), "sum": _latency_sum, "count": _latency_count}


# ---------------------------------------------------------------- the spool shared by one server's workers

def configure(base: Path) -> None:
    """Spool under `base` for this server (the workers' parent is the gunicorn master)."""
    global _spool
    folder = base / f"{socket.gethostname()}-{os.getppid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _remove_stale_servers(base, folder)
    except OSError:
        _spool = None  # metrics then cover this process only; never a reason to fail a request
        return
    _spool = folder
    _start_flusher()


def _start_flusher() -> None:
    """One daemon thread per process (started after gunicorn forks: the app is created in the worker)."""
    global _flusher_pid
    if _flusher_pid == os.getpid():
        return
    _flusher_pid = os.getpid()

    def loop() -> None:
        while True:
            time.sleep(FLUSH_EVERY_S)
            if _dirty:
                flush()

    threading.Thread(target=loop, name="idp-metrics-flush", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_servers(base: Path, keep: Path) -> None:
    prefix = socket.gethostname() + "-"
    for entry in base.iterdir():
        name = entry.name
        if entry == keep or not entry.is_dir() or not name.startswith(prefix):
            continue
        pid = name[len(prefix):]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def flush() -> None:
    """Write this worker's counters to its spool file (no-op without a spool)."""
    spool = _spool
    if spool is None:
        return
    with _flush_lock, contextlib.suppress(OSError):
        _write(spool / f"{os.getpid()}.json", _snapshot())


_flush_lock = threading.Lock()


atexit.register(flush)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def merge(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    attempts: Counter[tuple[str, ...]] = Counter()
    buckets = [0] * (len(BUCKETS) + 1)
    total, count = 0.0, 0
    for snap in snapshots:
        for row in snap.get("attempts", []):
            attempts[tuple(str(x) for x in row[:-1])] += int(row[-1])
        for i, n in enumerate(snap.get("buckets", [])[:len(buckets)]):
            buckets[i] += int(n)
        total += float(snap.get("sum", 0.0))
        count += int(snap.get("count", 0))
    return {"attempts": [[*key, n] for key, n in sorted(attempts.items())], "buckets": buckets, "sum": total,
            "count": count}


def collect() -> dict[str, Any]:
    """The server-wide totals: this worker's live counters plus every other worker's spool file.

    Files of workers that have exited are folded into retired.json under a lock, so the folder
    stays small however often gunicorn recycles workers.
    """
    if _spool is None:
        return _snapshot()
    flush()
    own = _spool / f"{os.getpid()}.json"
    with (_spool / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        retired_path = _spool / RETIRED
        retired = _read(retired_path) or merge([])
        dead = [p for p in _spool.glob("*.json")
                if p.name != RETIRED and p.stem.isdigit() and p != own and not _alive(int(p.stem))]
        if dead:
            folded = [s for s in (_read(p) for p in dead) if s is not None]
            retired = merge([retired, *folded])
            _write(retired_path, retired)
            for p in dead:
                p.unlink(missing_ok=True)
        live = [s for s in (_read(p) for p in _spool.glob("*.json") if p.name != RETIRED and p.stem.isdigit())
                if s is not None]
    return merge([retired, *live])


# ---------------------------------------------------------------- exposition

def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(key_days: list[tuple[str, str, int]]) -> str:
    totals = collect()
    lines = ["# HELP idp_sso_attempts_total SSO attempts and logouts by app, outcome and reason (all workers).",
             "# TYPE idp_sso_attempts_total counter"]
    for etype, app, outcome, reason, n in totals["attempts"]:
        lines.append(f'idp_sso_attempts_total{{type="{_esc(etype)}",app="{_esc(app)}",outcome="{_esc(outcome)}",'
                     f'reason="{_esc(reason)}"}} {n}')
    lines += ["# HELP idp_sso_duration_seconds Time to answer an SSO request (all workers).",
              "# TYPE idp_sso_duration_seconds histogram"]
    cumulative = 0
    for bound, n in zip(BUCKETS, totals["buckets"], strict=False):
        cumulative += n
        lines.append(f'idp_sso_duration_seconds_bucket{{le="{bound}"}} {cumulative}')
    cumulative += totals["buckets"][-1]
    lines.append(f'idp_sso_duration_seconds_bucket{{le="+Inf"}} {cumulative}')
    lines.append(f"idp_sso_duration_seconds_sum {totals['sum']:.6f}")
    lines.append(f"idp_sso_duration_seconds_count {totals['count']}")
    lines += ["# HELP idp_signing_key_days_to_expiry Days until each published signing certificate expires.",
              "# TYPE idp_signing_key_days_to_expiry gauge"]
    for kid, state, days in key_days:
        lines.append(f'idp_signing_key_days_to_expiry{{kid="{_esc(kid)}",state="{_esc(state)}"}} {days}')
    return "\n".join(lines) + "\n"
