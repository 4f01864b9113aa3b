"""Time an operation for a fixed duration, several runs, on CPU time (process + children) and wall time.

The machine is shared and noisy, so single-process rates are reported per CPU-second: ops divided by the
CPU time this process (all its threads) and its waited-for children spent. Wall-clock rates are kept beside
them. Each figure is the median of the runs.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class PoolExhausted(Exception):
    """The pre-generated inputs of a run ran out: the run ends early (its rate stays valid)."""


def cpu_seconds() -> float:
    """CPU seconds of this process (all threads, ns resolution) plus its waited-for children (xmlsec1)."""
    t = os.times()
    return time.process_time() + t.children_user + t.children_system


@dataclass
class Run:
    ops: int
    wall_s: float
    cpu_s: float

    @property
    def per_wall_s(self) -> float:
        return self.ops / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def per_cpu_s(self) -> float:
        return self.ops / self.cpu_s if self.cpu_s > 0 else 0.0


@dataclass
class Measurement:
    name: str
    runs: list[Run] = field(default_factory=list)
    loadavg: float = 0.0
    note: str = ""

    @property
    def per_cpu_s(self) -> float:
        return statistics.median(r.per_cpu_s for r in self.runs)

    @property
    def per_wall_s(self) -> float:
        return statistics.median(r.per_wall_s for r in self.runs)

    @property
    def cpu_ms_per_op(self) -> float:
        return 1000.0 / self.per_cpu_s if self.per_cpu_s else 0.0

    @property
    def wall_ms_per_op(self) -> float:
        return 1000.0 / self.per_wall_s if self.per_wall_s else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "per_cpu_s": round(self.per_cpu_s, 2),
            "per_wall_s": round(self.per_wall_s, 2),
            "cpu_ms_per_op": round(self.cpu_ms_per_op, 4),
            "wall_ms_per_op": round(self.wall_ms_per_op, 4),
            "runs": [{"ops": r.ops, "wall_s": round(r.wall_s, 3), "cpu_s": round(r.cpu_s, 3),
                      "per_cpu_s": round(r.per_cpu_s, 2), "per_wall_s": round(r.per_wall_s, 2)} for r in self.runs],
            "loadavg_1m": round(self.loadavg, 2),
            **({"note": self.note} if self.note else {}),
        }

    def line(self) -> str:
        runs = ", ".join(f"{r.per_cpu_s:.1f}" for r in self.runs)
        return (f"  {self.name:<44} {self.per_cpu_s:>10.1f}/CPU-s ({self.cpu_ms_per_op:.3f} CPU-ms/op) "
                f"{self.per_wall_s:>10.1f}/wall-s  runs/CPU-s=[{runs}] load={self.loadavg:.2f}")


def _run_for(op: Callable[[], object], seconds: float, max_ops: int | None = None,
             cpu: Callable[[], float] = cpu_seconds) -> Run:
    """`cpu`: the CPU clock the run is counted on (this process by default; a caller may add its servers')."""
    n = 0
    w0, c0 = time.perf_counter(), cpu()
    deadline = w0 + seconds
    try:
        while True:
            op()
            n += 1
            if (max_ops is not None and n >= max_ops) or time.perf_counter() >= deadline:
                break
    except PoolExhausted:
        pass
    return Run(ops=n, wall_s=time.perf_counter() - w0, cpu_s=cpu() - c0)


def measure(name: str, op: Callable[[], object], *, seconds: float, runs: int, warmup_ops: int = 3,
            before_run: Callable[[int], None] | None = None, note: str = "") -> Measurement:
    """Warm up with `warmup_ops` calls, then `runs` runs of `seconds` each.

    `before_run(n)`, when given, is called outside the timed region before the warm-up and before every
    run with the number of inputs the coming run is expected to need (sized from the warm-up rate), so
    single-use inputs (AuthnRequest IDs) can be generated up front.
    """
    if before_run is not None:
        before_run(warmup_ops)
    warm = _run_for(op, seconds=3600.0, max_ops=warmup_ops)
    if warm.ops < warmup_ops:
        raise RuntimeError(f"{name}: the warm-up ran out of inputs")
    rate = warm.per_wall_s or 1.0
    m = Measurement(name=name, note=note)
    for _ in range(runs):
        if before_run is not None:
            before_run(int(rate * seconds * 2.5) + 50)
        run = _run_for(op, seconds)
        m.runs.append(run)
        rate = max(rate, run.per_wall_s)
    m.loadavg = os.getloadavg()[0]
    print(m.line(), flush=True)
    return m


def measure_interleaved(ops: dict[str, tuple[Callable[[], object], Callable[[int], None] | None]], *,
                        seconds: float, runs: int, warmup_ops: int = 50, warmup_s: float = 1.0,
                        clocks: dict[str, Callable[[], float]] | None = None) -> dict[str, Measurement]:
    """Like measure() for several variants, their runs interleaved (A B C A B C ...).

    Ratios between variants (10k apps vs 1 app) then compare runs taken side by side, so drifting load
    on a shared machine hits every variant alike. Each variant warms up for `warmup_ops` calls or
    `warmup_s` seconds, whichever comes first. `clocks` gives a variant its own CPU clock (e.g. this process
    plus a database server's), others count this process.
    """
    clocks = clocks or {}
    rates: dict[str, float] = {}
    for name, (op, before_run) in ops.items():
        if before_run is not None:
            before_run(warmup_ops)
        warm = _run_for(op, seconds=warmup_s, max_ops=warmup_ops, cpu=clocks.get(name, cpu_seconds))
        if warm.ops == 0:
            raise RuntimeError(f"{name}: the warm-up ran out of inputs")
        rates[name] = warm.per_wall_s or 1.0
    out = {name: Measurement(name=name) for name in ops}
    for _ in range(runs):
        for name, (op, before_run) in ops.items():
            if before_run is not None:
                before_run(int(rates[name] * seconds * 2.5) + 50)
            run = _run_for(op, seconds, cpu=clocks.get(name, cpu_seconds))
            out[name].runs.append(run)
            rates[name] = max(rates[name], run.per_wall_s)
    for m in out.values():
        m.loadavg = os.getloadavg()[0]
        print(m.line(), flush=True)
    return out


def paired_ratio(a: Measurement, b: Measurement) -> float:
    """a / b for two variants measured in interleaved rounds: the median of the per-round ratios.

    Run i of `a` and run i of `b` were taken side by side, so their ratio cancels the machine's drift;
    the quotient of the two medians can pair a quiet run with a noisy one.
    """
    if len(a.runs) != len(b.runs):
        raise ValueError("paired_ratio needs the same number of runs")
    return statistics.median(ra.per_cpu_s / rb.per_cpu_s for ra, rb in zip(a.runs, b.runs, strict=True))


def time_calls(op: Callable[[], object], repeat: int) -> tuple[float, float, list[float]]:
    """(first call ms, median of the following calls ms, all following ms), wall clock: for one-shot queries."""
    t0 = time.perf_counter()
    op()
    first = (time.perf_counter() - t0) * 1000.0
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        op()
        times.append((time.perf_counter() - t0) * 1000.0)
    return first, statistics.median(times), times
