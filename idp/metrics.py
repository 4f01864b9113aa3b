"""Process-local Prometheus metrics (text exposition format 0.0.4), no client library needed.

Each gunicorn worker keeps its own counters and exposes them with a `worker` label; sum over it
in queries (`sum by (app, outcome, reason) (rate(idp_sso_attempts_total[5m]))`).
"""

from __future__ import annotations

import os
import threading
from collections import Counter

_lock = threading.Lock()
_attempts: Counter[tuple[str, str, str, str]] = Counter()
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_latency_buckets = [0] * (len(BUCKETS) + 1)
_latency_sum = 0.0
_latency_count = 0


def count_event(event_type: str, app: str | None, outcome: str, reason: str) -> None:
    with _lock:
        _attempts[(event_type, app or "", outcome, reason)] += 1


def observe_latency(seconds: float) -> None:
    global _latency_sum, _latency_count
    with _lock:
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                _latency_buckets[i] += 1
                break
        else:
            _latency_buckets[-1] += 1
        _latency_sum += seconds
        _latency_count += 1


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(key_days: list[tuple[str, str, int]]) -> str:
    worker = str(os.getpid())
    lines = ["# HELP idp_sso_attempts_total SSO attempts and logouts by app, outcome and reason.",
             "# TYPE idp_sso_attempts_total counter"]
    with _lock:
        for (etype, app, outcome, reason), n in sorted(_attempts.items()):
            lines.append(f'idp_sso_attempts_total{{type="{_esc(etype)}",app="{_esc(app)}",outcome="{_esc(outcome)}",'
                         f'reason="{_esc(reason)}",worker="{worker}"}} {n}')
        lines += ["# HELP idp_sso_duration_seconds Time to answer an SSO request.",
                  "# TYPE idp_sso_duration_seconds histogram"]
        cumulative = 0
        for bound, n in zip(BUCKETS, _latency_buckets, strict=False):
            cumulative += n
            lines.append(f'idp_sso_duration_seconds_bucket{{le="{bound}",worker="{worker}"}} {cumulative}')
        cumulative += _latency_buckets[-1]
        lines.append(f'idp_sso_duration_seconds_bucket{{le="+Inf",worker="{worker}"}} {cumulative}')
        lines.append(f'idp_sso_duration_seconds_sum{{worker="{worker}"}} {_latency_sum:.6f}')
        lines.append(f'idp_sso_duration_seconds_count{{worker="{worker}"}} {_latency_count}')
    lines += ["# HELP idp_signing_key_days_to_expiry Days until each published signing certificate expires.",
              "# TYPE idp_signing_key_days_to_expiry gauge"]
    for kid, state, days in key_days:
        lines.append(f'idp_signing_key_days_to_expiry{{kid="{_esc(kid)}",state="{_esc(state)}"}} {days}')
    return "\n".join(lines) + "\n"
