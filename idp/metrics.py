"""Prometheus metrics (text exposition format 0.0.4) summed over all workers of one server, no client library.

gunicorn runs several worker processes and a scrape reaches only one of them, so each worker spools
its counters to `<IDP_METRICS_DIR>/<host>-<master pid>/<worker pid>-<id>.json`, atomically: a background
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
import logging
import os
import secrets
import shutil
import socket
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from .private_files import ensure_private_dir

_lock = threading.Lock()
_attempts: Counter[tuple[str, str, str, str]] = Counter()
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_latency_buckets = [0] * (len(BUCKETS) + 1)
_latency_sum = 0.0
_latency_count = 0
# other counters: (metric name, label string such as 'reason="rate_limited"' or "") -> count
_counters: Counter[tuple[str, str]] = Counter()
COUNTERS = {
    "idp_events_dropped_total": ("Events not stored (reason=rate_limited: past IDP_ANON_EVENTS_PER_MINUTE for an "
                                 "unauthenticated client IP).", ('reason="rate_limited"',)),
    "idp_syslog_dropped_total": ("Events and audit rows not sent to IDP_SYSLOG_URL (queue full or the sender "
                                 "gave up on them).", ("",)),
    "idp_syslog_sent_total": ("Events and audit rows sent to IDP_SYSLOG_URL.", ("",)),
    "idp_admission_shed_total": ("Requests refused at once with 503 by admission control (IDP_MAX_QUEUE_MS), by "
                                 "class.", ('class="signin"', 'class="sso"', 'class="other"')),
    "idp_admission_admitted_total": ("Requests admitted by admission control (executed, perhaps after a short "
                                     "wait), by class.", ('class="signin"', 'class="sso"', 'class="other"')),
}

FLUSH_EVERY_S = 1.0
RETIRED = "retired.json"
_dirty = False
log = logging.getLogger("idp.metrics")


# ---------------------------------------------------------------- counting (per process)

def count_event(event_type: str, app: str | None, outcome: str, reason: str) -> None:
    global _dirty
    with _lock:
        _attempts[(event_type, app or "", outcome, reason)] += 1
        _dirty = True
    if _owner != os.getpid():
        _spool()  # first count in this process: its spool file and flusher


def count(name: str, labels: str = "", n: int = 1) -> None:
    """Add to one of COUNTERS (labels as they appear between the braces, e.g. 'reason="rate_limited"')."""
    global _dirty
    with _lock:
        _counters[(name, labels)] += n
        _dirty = True
    if _owner != os.getpid():
        _spool()


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
    if _owner != os.getpid():
        _spool()


def _snapshot() -> dict[str, Any]:
    global _dirty
    with _lock:
        _dirty = False
        return {"attempts": [[*key, n] for key, n in sorted(_attempts.items())],
                "buckets": list(_latency_buckets), "sum": _latency_sum, "count": _latency_count,
                "counters": [[name, labels, n] for (name, labels), n in sorted(_counters.items())]}


# ---------------------------------------------------------------- the spool shared by one server's workers

class SpoolError(RuntimeError):
    """The spool cannot be read: the scrape fails rather than report totals that went backwards."""


_base: Path | None = None      # IDP_METRICS_DIR, set by configure()
_owner: int | None = None      # the process the spool below belongs to
_file: Path | None = None      # this process's own file in it
_flush_lock = threading.Lock()


def configure(base: Path) -> None:
    """Spool under `base`. The folder is chosen in the process that counts (a gunicorn worker: its
    parent is the master), so it also works when the app is loaded before the fork (--preload)."""
    global _base, _owner
    _base, _owner = base, None


def _spool() -> Path | None:
    """This process's spool folder, set up on first use in each process."""
    global _owner, _file
    if _base is None:
        return None
    pid = os.getpid()
    if _owner == pid:
        return _file.parent if _file is not None else None
    _owner, _file = pid, None
    folder = _base / f"{socket.gethostname()}-{os.getppid()}"
    try:
        ensure_private_dir(_base)  # counters are not secret, but the instance folder holds only private files
        ensure_private_dir(folder)
        _remove_stale_servers(_base, folder)
    except OSError as exc:
        log.error("metrics: cannot use %s (%s); /metrics covers this worker only", folder, exc.strerror)
        return None
    # a worker id of its own: a later worker that gets a recycled pid never overwrites this file
    _file = folder / f"{pid}-{secrets.token_hex(4)}.json"
    threading.Thread(target=_flush_loop, name="idp-metrics-flush", daemon=True).start()
    return folder


def _flush_loop() -> None:
    while True:
        time.sleep(FLUSH_EVERY_S)
        if _dirty:
            flush()


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
        if pid.isascii() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(data))
    os.replace(tmp, path)


def flush() -> None:
    """Write this worker's counters to its spool file (no-op without a spool)."""
    if _spool() is None or _file is None:
        return
    with _flush_lock:
        try:
            _write(_file, _snapshot())
        except OSError as exc:
            log.error("metrics: cannot write %s: %s", _file, exc.strerror)


atexit.register(flush)


def _worker_pid(path: Path) -> int | None:
    """The pid in a worker file's name (`<pid>-<id>.json`), None for anything else."""
    head = path.stem.split("-", 1)[0]
    return int(head) if head.isascii() and head.isdigit() and path.name != RETIRED else None


def _read(path: Path) -> dict[str, Any] | None:
    """A spool file; None when it is gone. A corrupt file is moved aside (and logged); a file that
    cannot be read (I/O error, no descriptors) fails the scrape: its counts must not vanish."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SpoolError(f"cannot read {path.name}: {exc.strerror}") from None
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not an object")
    except ValueError:
        log.error("metrics: %s is corrupt; moved aside, its counts are lost", path)
        with contextlib.suppress(OSError):
            os.replace(path, path.with_name(path.name + ".corrupt"))
        return None
    return data


def merge(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    attempts: Counter[tuple[str, ...]] = Counter()
    buckets = [0] * (len(BUCKETS) + 1)
    total, count = 0.0, 0
    others: Counter[tuple[str, str]] = Counter()
    for snap in snapshots:
        for row in snap.get("counters", []):
            others[(str(row[0]), str(row[1]))] += int(row[2])
        for row in snap.get("attempts", []):
            attempts[tuple(str(x) for x in row[:-1])] += int(row[-1])
        for i, n in enumerate(snap.get("buckets", [])[:len(buckets)]):
            buckets[i] += int(n)
        total += float(snap.get("sum", 0.0))
        count += int(snap.get("count", 0))
    return {"attempts": [[*key, n] for key, n in sorted(attempts.items())], "buckets": buckets, "sum": total,
            "count": count, "counters": [[name, labels, n] for (name, labels), n in sorted(others.items())]}


def collect() -> dict[str, Any]:
    """The server-wide totals: this worker's counters plus every other worker's spool file.

    Files of workers that have exited are folded into retired.json under a lock, so the folder
    stays small however often gunicorn recycles workers. Raises SpoolError when a file that holds
    counts cannot be read.
    """
    folder = _spool()
    if folder is None:
        return _snapshot()
    flush()
    try:
        with os.fdopen(os.open(folder / ".lock", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            retired_path = folder / RETIRED
            retired = _read(retired_path) or merge([])
            workers = [p for p in folder.glob("*.json") if _worker_pid(p) is not None]
            dead = [p for p in workers if p != _file and not _alive(_worker_pid(p) or 0)]
            if dead:
                folded = [(p, _read(p)) for p in dead]
                retired = merge([retired, *(snap for _, snap in folded if snap is not None)])
                _write(retired_path, retired)
                for p, _ in folded:
                    p.unlink(missing_ok=True)
            live = [snap for snap in (_read(p) for p in workers if p not in dead) if snap is not None]
    except OSError as exc:  # lock file or retired.json not writable (permissions, full disk)
        raise SpoolError(f"cannot update the spool: {exc.strerror}") from None
    return merge([retired, *live])


# ---------------------------------------------------------------- exposition

def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(keys: list[tuple[str, str, int, float]]) -> str:
    """The exposition; `keys`: (kid, state, days left, not-after as Unix time) of every published key."""
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
    others = {(str(r[0]), str(r[1])): int(r[2]) for r in totals.get("counters", [])}
    for name, (help_text, default_labels) in COUNTERS.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
        series = {labels: n for (metric, labels), n in others.items() if metric == name}
        for labels in default_labels:
            series.setdefault(labels, 0)
        for labels, n in sorted(series.items()):
            lines.append(f"{name}{{{labels}}} {n}" if labels else f"{name} {n}")
    lines += ["# HELP idp_signing_key_days_to_expiry Days until each published signing certificate expires "
              "(next, active, retiring).",
              "# TYPE idp_signing_key_days_to_expiry gauge"]
    for kid, state, days, _ in keys:
        lines.append(f'idp_signing_key_days_to_expiry{{kid="{_esc(kid)}",state="{_esc(state)}"}} {days}')
    lines += ["# HELP idp_signing_key_expiry_timestamp_seconds When each published signing certificate expires "
              "(Unix time; alert on it minus time()).",
              "# TYPE idp_signing_key_expiry_timestamp_seconds gauge"]
    for kid, state, _, not_after in keys:
        lines.append(f'idp_signing_key_expiry_timestamp_seconds{{kid="{_esc(kid)}",state="{_esc(state)}"}} '
                     f"{int(not_after)}")
    return "\n".join(lines) + "\n"
