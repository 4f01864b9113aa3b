"""SSO figures on PostgreSQL + Redis (issue 19): the in-process round trip per CPU-second with the database's and
Redis's CPU counted, and SSO over HTTP with one and with two IdP instances behind one database.

`sso_roundtrip_pg_per_s` / `sso_ratio_pg`: the in-process SSO round trip of `sso_ratio` (bench.inprocess.SsoBench:
a logged-in browser's signed Redirect AuthnRequests through the WSGI app) on a fresh PostgreSQL database (the bench
fixtures: schema by `db.create_all()` as on SQLite, the user, the app) with IDP_REDIS_URL set. The CPU counted is
this process's plus the PostgreSQL server's (the postmaster, every backend and background process: utime + stime
from /proc, and what the postmaster collected from children that exited) plus the redis-server's, over each run.
Measured in interleaved rounds with RSA-2048 signing and the same round trip on a copy of the SQLite bench DB:
`sso_ratio_pg` = PostgreSQL round trips / RSA signatures per CPU-second, `sso_pg_vs_sqlite` = PostgreSQL / SQLite,
each the median of the per-round ratios (target: >= 0.8).

`http_sso_pg_*_1` / `_2`: `idp serve` (gunicorn) on another fresh database and the same Redis; one instance with
workers = cores, or two instances (workers = cores / 2 each, their own ports) sharing the database, Redis, the key
store, the instance folder, the secret key and one public base URL, as behind a load balancer; 8 keep-alive
clients (and 32 in the full run), each logged in on its own instance, split evenly. Per instance count: SSO per
wall-second, p95, server CPU ms per SSO (IdP servers + PostgreSQL + Redis) and cores busy (that CPU / window).

PostgreSQL and Redis: private servers on loopback started by tests/services.sh (as `make test` does; root or sudo
and the Debian packages), or IDP_BENCH_PG_URL (a role that may CREATE DATABASE) with IDP_BENCH_REDIS_URL. Their CPU
is read from /proc, so a server on another machine cannot be counted: the per CPU-second figures are then "not
available".

Run alone: python -m bench.pg_sso [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess  # noqa: S404 - the private PostgreSQL + Redis (tests/services.sh)
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import redis
from flask import Flask
from sqlalchemy import create_engine, text

from idp.extensions import db

from .fixtures import RequestPool, Workspace, clone_instance, create_bench_app, open_app
from .http_load import ClientStats
from .http_load import _client as http_client
from .inprocess import SsoBench
from .lifecycle import NotAvailable, Postgres
from .micro import rsa_signer
from .timing import cpu_seconds, measure_interleaved, paired_ratio

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PUBLIC_URL = "http://idp.bench.test"   # what the load balancer would serve: both instances sign for it


# ---------------------------------------------------------------- PostgreSQL + Redis

class Services(Postgres):
    """PostgreSQL (lifecycle.Postgres: fresh databases, dropped afterwards) and Redis: both private on loopback
    (tests/services.sh start), or IDP_BENCH_PG_URL with IDP_BENCH_REDIS_URL."""

    def __init__(self) -> None:
        super().__init__()
        self.redis_url = ""

    def start(self) -> None:
        given_pg = os.environ.get("IDP_BENCH_PG_URL", "").strip()
        given_redis = os.environ.get("IDP_BENCH_REDIS_URL", "").strip()
        if given_pg and not given_redis:
            raise NotAvailable("not available: IDP_BENCH_PG_URL is set but IDP_BENCH_REDIS_URL is not")
        if given_redis:
            self.redis_url = given_redis
        super().start()
        try:
            client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=5)
            info = client.info("server")
            client.close()
        except redis.RedisError as exc:
            self.close()
            raise NotAvailable(f"not available: cannot connect to Redis: {exc}") from exc
        self.source += f"; Redis {info.get('redis_version')}"

    def _start_private(self) -> None:
        if self.redis_url:   # a given Redis beside a private PostgreSQL: the lifecycle figures' way
            super()._start_private()
            return
        script = REPO / "tests" / "services.sh"
        if not shutil.which("redis-server"):
            raise NotAvailable("not available: no redis-server installed (or set IDP_BENCH_PG_URL and "
                               "IDP_BENCH_REDIS_URL)")
        if not shutil.which("pg_createcluster") or not list(
                Path("/usr/lib/postgresql").glob("*/bin/postgres")):
            raise NotAvailable("not available: no PostgreSQL server installed (pg_createcluster; or set "
                               "IDP_BENCH_PG_URL and IDP_BENCH_REDIS_URL)")
        if os.geteuid() != 0 and not shutil.which("sudo"):
            raise NotAvailable("not available: starting a private PostgreSQL needs root or sudo")
        self.dir = Path(tempfile.mkdtemp(prefix="idp-bench-services."))
        self.started = True
        r = subprocess.run(["bash", str(script), "start", str(self.dir)],  # noqa: S603, S607
                           capture_output=True, text=True, timeout=180, check=False)
        exports = dict(line.removeprefix("export ").split("=", 1) for line in r.stdout.splitlines()
                       if line.startswith("export ") and "=" in line)
        self.url = exports.get("IDP_TEST_DATABASE_URL", "")
        self.redis_url = exports.get("IDP_TEST_REDIS_URL", "")
        if r.returncode != 0 or not self.url or not self.redis_url:
            self.close()
            why = (r.stderr.strip().splitlines() or ["(no message)"])[-1][:300]
            raise NotAvailable(f"not available: a private PostgreSQL + Redis did not start: {why}")
        self.source = "private PostgreSQL and Redis on loopback (tests/services.sh start)"


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            out += [int(p) for p in (task / "children").read_text().split()]
    except OSError:
        pass
    return out


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


class ServerCpu:
    """CPU seconds used by the PostgreSQL server (postmaster + children, including the children that have exited
    and been collected: the postmaster's cutime + cstime) and the redis-server, read from /proc."""

    def __init__(self, postmaster: int, redis_pid: int) -> None:
        self.postmaster = postmaster
        self.redis_pid = redis_pid

    @classmethod
    def find(cls, pg_url: str, redis_url: str) -> ServerCpu:
        """The server processes behind the URLs, when they run on this machine (a backend's parent; Redis's
        INFO process_id); NotAvailable otherwise."""
        engine = create_engine(pg_url)
        try:
            with engine.connect() as conn:
                backend = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
                fields = _stat(backend)
        finally:
            engine.dispose()
        postmaster = int(fields[1]) if fields else 0   # field 4 of proc(5): ppid
        if not postmaster or _comm(postmaster) not in {"postgres", "postmaster"}:
            raise NotAvailable("not available: the PostgreSQL server's processes are not on this machine (its CPU "
                               "cannot be counted)")
        client = redis.Redis.from_url(redis_url)
        redis_pid = int(client.info("server").get("process_id") or 0)
        client.close()
        if not redis_pid or not _comm(redis_pid).startswith("redis"):
            raise NotAvailable("not available: the Redis server's process is not on this machine (its CPU cannot "
                               "be counted)")
        return cls(postmaster, redis_pid)

    def pg_s(self) -> float:
        main = _stat(self.postmaster)
        if main is None:
            return 0.0
        ticks = sum(int(main[i]) for i in (11, 12, 13, 14))   # utime, stime, cutime, cstime
        for child in _children(self.postmaster):
            fields = _stat(child)
            if fields is not None:
                ticks += int(fields[11]) + int(fields[12])
        return ticks / CLK_TCK

    def redis_s(self) -> float:
        fields = _stat(self.redis_pid)
        return (int(fields[11]) + int(fields[12])) / CLK_TCK if fields else 0.0

    def seconds(self) -> float:
        return self.pg_s() + self.redis_s()


@dataclass
class ServicesWorkspace(Workspace):
    """The bench workspace over PostgreSQL + Redis (same key store and secret); `public_url`, when set, is every
    instance's IDP_BASE_URL whatever port it serves on."""

    pg_url: str = ""
    redis_url: str = ""
    public_url: str = ""

    @property
    def database_url(self) -> str:
        return self.pg_url

    def env(self, base_url: str) -> dict[str, str]:
        return {**super().env(self.public_url or base_url), "IDP_REDIS_URL": self.redis_url}


def services_workspace(ws: Workspace, name: str, pg_url: str, redis_url: str,
                       public_url: str = "") -> ServicesWorkspace:
    root = ws.root / name
    instance_dir = root / "instance"
    instance_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return ServicesWorkspace(root=root, cert_dir=ws.cert_dir, instance_dir=instance_dir, db_path=ws.db_path,
                             secret_key=ws.secret_key, sp=ws.sp, pg_url=pg_url, redis_url=redis_url,
                             public_url=public_url)


# ---------------------------------------------------------------- in-process, per CPU-second

def measure_inprocess(ws: Workspace, services: Services, servers: ServerCpu, *, seconds: float,
                      runs: int) -> dict[str, Any]:
    pg_ws = services_workspace(ws, "pg-inprocess", services.database("sso"), services.redis_url)
    pg_app = create_bench_app(pg_ws)
    try:
        pg = SsoBench(pg_app, pg_ws)
        sample = pg.check_sample()
        sqlite_ws = clone_instance(ws, "sso-vs-pg")
        sqlite = SsoBench(open_app(sqlite_ws), sqlite_ws)

        def pg_cpu() -> float:
            return cpu_seconds() + servers.seconds()

        names = ("rsa-2048 sign (cryptography)", "sso round trip, SQLite", "sso round trip, PostgreSQL + Redis")
        m = measure_interleaved({names[0]: (rsa_signer(ws), None), names[1]: sqlite.variant(),
                                 names[2]: pg.variant()}, seconds=seconds, runs=runs, clocks={names[2]: pg_cpu})
        rsa, lite, on_pg = (m[k] for k in names)
        # where the PostgreSQL round trip's CPU goes: a separate short run, each clock read on its own
        n = 500
        pg.pool.refill(n)
        c0, p0, r0 = cpu_seconds(), servers.pg_s(), servers.redis_s()
        for _ in range(n):
            pg.one()
        split = {"idp_process": cpu_seconds() - c0, "postgresql": servers.pg_s() - p0,
                 "redis": servers.redis_s() - r0}
    finally:
        _dispose(pg_app)   # the database is dropped at the end: no connection may stay open
    client = redis.Redis.from_url(services.redis_url)
    keys = int(client.dbsize())
    client.close()
    return {
        "sso_pg": on_pg, "sso_sqlite": lite, "rsa": rsa, "sample": sample, "redis_keys_after": keys,
        "cpu_ms_per_sso": {k: round(1000 * v / n, 3) for k, v in split.items()},
    }


def _dispose(app: Flask) -> None:
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


# ---------------------------------------------------------------- over HTTP, 1 and 2 instances

def run_http(ws: Workspace, services: Services, servers: ServerCpu, *, instances: int, cores: int,
             clients_list: tuple[int, ...], warmup_s: float, seconds: float, expected_rate: float) -> dict[str, Any]:
    """Start `instances` servers on one fresh database, drive each client count in turn, stop them."""
    from .http_load import http_login, server_cpu_s, start_server, stop_server, tail_log

    db_url = services.database(f"http{instances}")
    base = services_workspace(ws, f"pg-http-{instances}", db_url, services.redis_url, PUBLIC_URL)
    _dispose(create_bench_app(base))   # schema, user, app; the servers open it
    workers = max(1, cores // instances)
    started: list[Any] = []
    t = time.perf_counter()
    try:
        for i in range(instances):
            # each its own folder for its log; the instance folder, keys, secret and base URL are shared
            own = replace(base, root=base.root / f"server-{i}")
            own.root.mkdir(parents=True, exist_ok=True)
            started.append(start_server(own, workers=workers))
        start_s = time.perf_counter() - t
        out: dict[str, Any] = {"instances": instances, "workers_per_instance": workers,
                               "threads_per_worker": started[0].threads, "server_start_s": round(start_s, 2)}
        for clients in clients_list:
            pool = RequestPool(ws.sp.key, PUBLIC_URL)
            r = _load(started, pool, servers, clients=clients, warmup_s=warmup_s, seconds=seconds,
                      expected_rate=expected_rate, login=http_login, idp_cpu=server_cpu_s)
            if r["errors"]:
                for s in started:
                    print(f"    server log tail:\n{tail_log(s)}", flush=True)
            out[f"clients_{clients}"] = r
        return out
    finally:
        for s in started:
            stop_server(s)


def _load(started: list[Any], pool: RequestPool, servers: ServerCpu, *, clients: int, warmup_s: float,
          seconds: float, expected_rate: float, login: Callable[[int], dict[str, str]],
          idp_cpu: Callable[[int], float]) -> dict[str, Any]:
    ports = [started[i % len(started)].port for i in range(clients)]   # clients split evenly
    jars = [login(p) for p in ports]
    pool.refill(min(int(expected_rate * (warmup_s + seconds) * 2.5) + 200, 80_000))
    queue = pool.take_all()
    stats = [ClientStats() for _ in range(clients)]
    t_start = time.perf_counter() + 0.2
    t_window = t_start + warmup_s
    t_end = t_window + seconds
    threads = [threading.Thread(target=http_client, args=(ports[i], jars[i], queue, t_start, t_end, stats[i]),
                                daemon=True) for i in range(clients)]
    for th in threads:
        th.start()
    while time.perf_counter() < t_window:
        time.sleep(0.005)

    def sample() -> tuple[float, float, float, float, float]:
        return (sum(idp_cpu(s.proc.pid) for s in started), servers.pg_s(), servers.redis_s(), time.process_time(),
                time.perf_counter())

    a = sample()
    while time.perf_counter() < t_end:
        time.sleep(0.005)
    z = sample()
    for th in threads:
        th.join(timeout=60)
    window = [(s, lat) for st in stats for s, lat in st.done if s >= t_window and s + lat <= t_end]
    errors = [e for st in stats for e in st.errors]
    latencies = sorted(lat * 1000.0 for _, lat in window)
    n = len(window)
    if n < 20:
        raise RuntimeError(f"only {n} HTTP SSO round trips completed; errors: {errors[:3]}")
    q = statistics.quantiles(latencies, n=100)
    idp_s, pg_s, redis_s, client_s, wall = (z[i] - a[i] for i in range(5))
    counted = idp_s + pg_s + redis_s
    return {
        "per_s": n / seconds, "p50_ms": q[49], "p95_ms": q[94], "p99_ms": q[98], "requests": n,
        "errors": len(errors), "error_samples": errors[:3], "shed_503": sum(st.shed for st in stats),
        "clients": clients, "window_s": round(wall, 3),
        "server_cpu_ms_per_sso": round(1000.0 * counted / n, 3),
        "cpu_ms_per_sso": {"idp": round(1000.0 * idp_s / n, 3), "postgresql": round(1000.0 * pg_s / n, 3),
                           "redis": round(1000.0 * redis_s / n, 3)},
        "cores_busy": round(counted / wall, 2), "client_cpu_s": round(client_s, 2),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


# ---------------------------------------------------------------- the section of `make bench`

def pg_sso_section(b: Any, ws: Workspace, *, skip_pg: bool, skip_http: bool) -> None:
    """The figures above, or "not available" rows (errors["postgresql_redis"]) without PostgreSQL and Redis."""
    plan = b.plan
    cores = os.cpu_count() or 1
    if skip_pg:
        b.errors["postgresql_redis"] = "not available: skipped (--skip-pg)"
        return
    b.step("SSO on PostgreSQL + Redis: RSA-2048 | SSO SQLite | SSO PostgreSQL + Redis (interleaved; the servers' "
           "CPU counted), then over HTTP with 1 and 2 instances")
    services = Services()
    try:
        t = time.perf_counter()
        services.start()
        servers = ServerCpu.find(services.url, services.redis_url)
        b.details["postgresql_redis"] = {"servers": services.source, "start_s": round(time.perf_counter() - t, 1)}
        print(f"    {services.source}, ready in {b.details['postgresql_redis']['start_s']}s", flush=True)
    except Exception as exc:  # noqa: BLE001 - NotAvailable, or a start that broke: reported, the bench goes on
        b.errors["postgresql_redis"] = str(exc) if isinstance(exc, NotAvailable) else f"{type(exc).__name__}: {exc}"
        print(f"    PostgreSQL + Redis: {b.errors['postgresql_redis']}", flush=True)
        services.close()
        return
    try:
        sso_rate = [0.0]

        def inprocess() -> None:
            r = measure_inprocess(ws, services, servers, seconds=plan.seconds / 3, runs=plan.runs * 3)
            on_pg, lite, rsa = r["sso_pg"], r["sso_sqlite"], r["rsa"]
            b.put("sso_roundtrip_pg_per_s", on_pg.per_cpu_s)
            b.put("sso_ratio_pg", paired_ratio(on_pg, rsa), 3)
            b.put("sso_pg_vs_sqlite", paired_ratio(on_pg, lite), 3)
            sso_rate[0] = on_pg.per_cpu_s
            b.details["sso_roundtrip_pg"] = {
                **on_pg.to_dict(), "cpu": "this process + PostgreSQL server processes + redis-server",
                "cpu_ms_per_sso_split": r["cpu_ms_per_sso"], "redis_keys_after": r["redis_keys_after"],
                "sample": r["sample"], "sqlite_same_rounds": lite.to_dict(), "rsa_same_rounds": rsa.to_dict(),
                "sso_ratio_sqlite_same_rounds": round(paired_ratio(lite, rsa), 3)}
            if "rsa_sign_per_s" in b.results:
                b.details["sso_roundtrip_pg"]["vs_rsa_sign_per_s_of_sso_ratio"] = round(
                    on_pg.per_cpu_s / b.results["rsa_sign_per_s"], 3)
            print(f"    PostgreSQL + Redis {on_pg.per_cpu_s:.0f} SSO/CPU-s (CPU ms per SSO: "
                  f"{r['cpu_ms_per_sso']}), {paired_ratio(on_pg, rsa):.3f}x RSA, "
                  f"{paired_ratio(on_pg, lite):.3f}x SQLite", flush=True)

        b.optional("sso_pg", inprocess)
        if skip_http:
            b.errors["http_pg"] = "skipped (--skip-http)"
            return
        clients_list = (plan.http_clients,) if b.quick else (plan.http_clients, 32)
        for instances in (1, 2):
            def http(instances: int = instances) -> None:
                r = run_http(ws, services, servers, instances=instances, cores=cores, clients_list=clients_list,
                             warmup_s=plan.http_warmup_s, seconds=plan.http_seconds,
                             expected_rate=(sso_rate[0] or 200.0) * cores)
                main = r[f"clients_{plan.http_clients}"]
                b.put(f"http_sso_pg_per_s_{instances}", main["per_s"])
                b.put(f"http_sso_pg_p95_ms_{instances}", main["p95_ms"], 2)
                b.put(f"http_sso_pg_cpu_ms_{instances}", main["server_cpu_ms_per_sso"], 2)
                b.put(f"http_sso_pg_cores_busy_{instances}", main["cores_busy"], 2)
                b.details[f"http_sso_pg_{instances}"] = {
                    k: ({kk: (round(vv, 2) if isinstance(vv, float) else vv) for kk, vv in v.items()}
                        if isinstance(v, dict) else v) for k, v in r.items()}
                for c in clients_list:
                    x = r[f"clients_{c}"]
                    print(f"    {instances} instance(s) x {r['workers_per_instance']} workers, {c} clients: "
                          f"{x['per_s']:.1f} SSO/s, p50 {x['p50_ms']:.1f} ms, p95 {x['p95_ms']:.1f} ms, "
                          f"{x['errors']} errors, {x['shed_503']} x 503; server CPU {x['server_cpu_ms_per_sso']} "
                          f"ms/SSO {x['cpu_ms_per_sso']}, {x['cores_busy']} cores busy", flush=True)

            b.step(f"SSO over HTTP on PostgreSQL + Redis: {instances} instance(s) x {max(1, cores // instances)} "
                   f"workers, {' and '.join(map(str, clients_list))} clients, {plan.http_warmup_s:.0f}s warm-up + "
                   f"{plan.http_seconds:.0f}s")
            b.optional(f"http_sso_pg_{instances}", http)
    finally:
        services.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip-http", action="store_true")
    args = parser.parse_args()
    import json

    from .fixtures import make_workspace
    from .run import FULL, QUICK, Bench

    b = Bench(QUICK if args.quick else FULL, args.quick)
    root = Path(tempfile.mkdtemp(prefix="idp-bench-pg-sso-"))
    try:
        ws = make_workspace(root)
        create_bench_app(ws)
        pg_sso_section(b, ws, skip_pg=False, skip_http=args.skip_http)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps({"results": b.results, "errors": b.errors,
                      "details": {k: v for k, v in b.details.items() if "pg" in k}}, indent=2, default=str))
    return 1 if {k: v for k, v in b.errors.items() if not v.startswith("not available")} else 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
