"""User lifecycle figures (issue 16): inbound SCIM user creates and outbound provisioning deliveries, on SQLite and on
PostgreSQL.

`scim_user_create_per_s`: POST /scim/v2/Users through the WSGI app (a complete environ, as the OIDC figures do) with
a bearer API token of scope `scim`, a new userName each time: token check, SCIM parse and validation, the user row,
the audit row, the lifecycle event; per CPU-second of this process.

`outbox_delivery_per_s`: provisioning jobs delivered by the worker loop (cli.worker.Worker.run(once=True), what
`idp worker --once` runs) into a real SCIM service, scim2-server on loopback in its own process. Users are created
beforehand (each enqueues one job, outside the timed region); the figure is deliveries per wall-second of draining
the queue. A delivery is the claim (committed), the job (a search by userName and a POST at the peer: two HTTP
round trips), the account row, the provision event and the job marked done (committed): the peer's answers are
part of it, so it is wall time, not CPU time. The CPU the IdP process and the peer spent per delivery is in the
details.

On PostgreSQL the same two figures run against databases created for the run on a private cluster started on
loopback (tests/services.sh start-postgres, as `make test` does) or on the server of IDP_BENCH_PG_URL (a role that
may CREATE DATABASE); the databases are dropped afterwards. The server's own CPU is not in the per CPU-second figure.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import statistics
import subprocess  # noqa: S404 - the private PostgreSQL cluster (tests/services.sh)
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from flask import Flask
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from idp import audit, create_app
from idp.cli.worker import Worker
from idp.config import load_settings
from idp.extensions import db
from idp.models import OutboxJob, ProvisionedAccount
from idp.services import api_tokens, outbox, provisioning
from idp.services import apps as apps_svc
from idp.services import users as users_svc

from .fixtures import INPROCESS_BASE_URL, Workspace
from .timing import Run, cpu_seconds

REPO = Path(__file__).resolve().parent.parent
USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
SCIM_JSON = "application/scim+json"
TOKEN_NAME = "bench-scim"  # noqa: S105 - the API token's name, not its secret
APP_SLUG = "bench-crm"
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class NotAvailable(Exception):
    """No PostgreSQL for the _pg figures (none installed, none could be started, the given URL unusable)."""


def lifecycle_env(ws: Workspace, database_url: str) -> dict[str, str]:
    """The bench instance's settings over another database; outbound provisioning may reach loopback (the peer)."""
    return {**ws.env(INPROCESS_BASE_URL), "IDP_DATABASE_URL": database_url, "IDP_PROVISIONING_ALLOW_PRIVATE": "1"}


def _open(env: dict[str, str], fresh: bool) -> Flask:
    app = create_app(load_settings(env))
    if fresh:
        with app.app_context():
            db.create_all()
            db.session.remove()
    return app


def _wsgi(app: Flask, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[str, bytes]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": "",
        "SERVER_NAME": "localhost", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "localhost", "HTTP_USER_AGENT": "bench-hr-sync/1", "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body), "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
        "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False,
        **{"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items() if k.lower() != "content-type"},
    }
    if "Content-Type" in headers:
        environ["CONTENT_TYPE"] = headers["Content-Type"]
    status: list[str] = []

    def start_response(s: str, _headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        status.append(s)
        return None

    chunks = app.wsgi_app(environ, start_response)
    try:
        raw = b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    return (status[0] if status else ""), raw


# ---------------------------------------------------------------- inbound: SCIM user creates

class ScimCreateBench:
    """An IdP over one database with an API token of scope `scim`; `create()` is one POST /scim/v2/Users."""

    def __init__(self, env: dict[str, str], label: str, *, fresh: bool) -> None:
        self.app = _open(env, fresh)
        with self.app.app_context(), audit.acting_as("bench"):
            _, secret = api_tokens.create_token(TOKEN_NAME, ["scim"], created_by="bench")
            db.session.commit()
            db.session.remove()
        self._headers = {"Authorization": f"Bearer {secret}", "Content-Type": SCIM_JSON, "Accept": SCIM_JSON}
        self._prefix = f"hr-{label}-{secrets.token_hex(3)}-"
        self._n = 0

    def create(self) -> dict[str, Any]:
        self._n += 1
        name = f"{self._prefix}{self._n:07d}"
        body = json.dumps({"schemas": [USER_URN], "userName": name, "externalId": f"emp-{name}",
                           "name": {"givenName": "Bench", "familyName": f"User{self._n}"},
                           "emails": [{"value": f"{name}@example.org", "type": "work", "primary": True}],
                           "active": True}).encode()
        status, raw = _wsgi(self.app, "POST", "/scim/v2/Users", body, self._headers)
        if not status.startswith("201"):
            raise RuntimeError(f"SCIM create failed: HTTP {status}: {raw[:300]!r}")
        return dict(json.loads(raw))

    def check_sample(self) -> dict[str, Any]:
        doc = self.create()
        return {"status": 201, "id": bool(doc.get("id")), "userName": doc.get("userName", "")[:len(self._prefix)],
                "active": doc.get("active"), "etag": bool((doc.get("meta") or {}).get("version"))}

    def close(self) -> None:
        with self.app.app_context():
            db.session.remove()
            db.engine.dispose()


# ---------------------------------------------------------------- outbound: deliveries by the worker

class ScimPeer:
    """scim2-server (python-scim, written by others) on a loopback port with a bearer token, in its own process."""

    def __init__(self, log: Path) -> None:
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = "peer-" + secrets.token_urlsafe(24)
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ScimPeer:
        exe = Path(sys.executable).parent / "scim2-server"
        if not exe.exists():
            raise RuntimeError("scim2-server is not installed (the test extra: make install)")
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen([str(exe), "--hostname", "127.0.0.1", "--port", str(self.port),  # noqa: S603
                                          "--bearer-token", self.token], stdout=fh, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if self.get("/ServiceProviderConfig").status_code == 200:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"scim2-server did not start: {self.log.read_text()[-1000:]}")

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, headers={"Authorization": f"Bearer {self.token}"}, timeout=5)

    def user_count(self) -> int:
        r = self.get("/Users?count=0")
        r.raise_for_status()
        return int(r.json()["totalResults"])

    def cpu_s(self) -> float:
        """CPU seconds the peer process has used (user + system, from /proc; 0 where there is no /proc)."""
        if self.proc is None:
            return 0.0
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / CLK_TCK
        except (OSError, IndexError, ValueError):
            return 0.0

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None


class DeliveryBench:
    """An IdP over one database with one app provisioned into the peer (every user permitted, the default mapping):
    `add_users(n)` enqueues n provisioning jobs, `drain()` runs the worker loop until no job is due."""

    def __init__(self, env: dict[str, str], label: str, peer: ScimPeer, *, fresh: bool) -> None:
        self.app = _open(env, fresh)
        self.peer = peer
        self.label = label
        self._prefix = f"prov-{label}-{secrets.token_hex(3)}-"
        self._n = 0
        with self.app.app_context(), audit.acting_as("bench"):
            row, _ = apps_svc.register_oidc_app(name="Bench CRM", slug=APP_SLUG, settings=apps_svc.initial_settings(
                redirect_uris=("https://crm.bench.example/cb",)))
            provisioning.configure(row, scim_url=peer.url, token=peer.token, enabled=True)
            self.app_id = row.id
            db.session.commit()
            db.session.remove()
        self.drain()   # the reconciliation that enabling scheduled: the users the database already holds

    def add_users(self, n: int) -> None:
        """n new users, committed in batches: each enqueues its provisioning job (outside the timed region)."""
        with self.app.app_context(), audit.acting_as("bench"):
            for i in range(n):
                self._n += 1
                name = f"{self._prefix}{self._n:07d}"
                users_svc.add_user(name, email=f"{name}@example.org", password_hash=None, first_name="Bench",
                                   last_name=f"User{self._n}")
                if i % 100 == 99:
                    db.session.commit()
            db.session.commit()
            db.session.remove()

    def _done_jobs(self) -> int:
        return db.session.scalar(select(func.count(OutboxJob.id)).where(
            OutboxJob.kind == provisioning.KIND_USER, OutboxJob.state == "done")) or 0

    def drain(self) -> tuple[Run, float, int]:
        """The worker loop until no job is due: (deliveries run, the peer's CPU seconds, jobs the loop ran)."""
        with self.app.app_context():
            before = self._done_jobs()
            db.session.remove()
            worker = Worker(f"bench-{self.label}")
            p0, w0, c0 = self.peer.cpu_s(), time.perf_counter(), cpu_seconds()
            worker.run(once=True)
            run_wall, run_cpu, peer_cpu = time.perf_counter() - w0, cpu_seconds() - c0, self.peer.cpu_s() - p0
            delivered = self._done_jobs() - before
            left = outbox.counts()
            db.session.remove()
        if left["pending"] or left["running"] or left["dead"]:
            raise RuntimeError(f"the worker left jobs behind: {left}")
        return Run(ops=delivered, wall_s=run_wall, cpu_s=run_cpu), peer_cpu, worker.ran

    def accounts(self) -> int:
        with self.app.app_context():
            n = db.session.scalar(select(func.count(ProvisionedAccount.id)).where(
                ProvisionedAccount.app_id == self.app_id, ProvisionedAccount.state == "active")) or 0
            db.session.remove()
            return n

    def close(self) -> None:
        with self.app.app_context():
            db.session.remove()
            db.engine.dispose()


def measure_deliveries(bench: DeliveryBench, *, seconds: float, runs: int, max_jobs: int,
                       warmup_jobs: int = 10) -> dict[str, Any]:
    """Warm-up (warmup_jobs deliveries), then `runs` runs each draining a queue sized to last about `seconds` at the
    warm-up's rate (at least 20 jobs, at most max_jobs). The figure is the median of deliveries per wall-second."""
    bench.add_users(warmup_jobs)
    warm, _, _ = bench.drain()
    if warm.ops != warmup_jobs:
        raise RuntimeError(f"warm-up: {warm.ops} of {warmup_jobs} jobs delivered")
    peer_before, accounts_before = bench.peer.user_count(), bench.accounts()
    rate = warm.per_wall_s or 1.0
    measured: list[tuple[Run, float]] = []
    for _ in range(runs):
        n = max(20, min(max_jobs, int(rate * seconds)))
        bench.add_users(n)
        run, peer_cpu, _ = bench.drain()
        if run.ops != n:
            raise RuntimeError(f"{run.ops} of {n} jobs delivered")
        measured.append((run, peer_cpu))
        rate = max(rate, run.per_wall_s)
    delivered = sum(r.ops for r, _ in measured)
    peer_after, accounts_after = bench.peer.user_count(), bench.accounts()
    if peer_after - peer_before != delivered or accounts_after - accounts_before != delivered:
        raise RuntimeError(f"{delivered} deliveries, but the peer gained {peer_after - peer_before} users and the "
                           f"IdP {accounts_after - accounts_before} active accounts")
    median = statistics.median(r.per_wall_s for r, _ in measured)
    idp_cpu = sum(r.cpu_s for r, _ in measured)
    peer_cpu = sum(p for _, p in measured)
    out = {
        "per_wall_s": round(median, 2),
        "runs": [{"jobs": r.ops, "wall_s": round(r.wall_s, 3), "per_wall_s": round(r.per_wall_s, 2),
                  "idp_cpu_s": round(r.cpu_s, 3), "peer_cpu_s": round(p, 3)} for r, p in measured],
        "wall_ms_per_delivery": round(1000.0 / median, 2) if median else None,
        "idp_cpu_ms_per_delivery": round(1000.0 * idp_cpu / delivered, 2),
        "peer_cpu_ms_per_delivery": round(1000.0 * peer_cpu / delivered, 2),
        "http_round_trips_per_delivery": 2,
        "peer": "scim2-server on loopback (own process, in-memory)",
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    print(f"  {'outbox deliveries (' + bench.label + ')':<44} {median:>10.1f}/wall-s "
          f"({out['wall_ms_per_delivery']} ms each; CPU/delivery: IdP {out['idp_cpu_ms_per_delivery']} ms, peer "
          f"{out['peer_cpu_ms_per_delivery']} ms) runs=[{', '.join(f'{r.per_wall_s:.1f}' for r, _ in measured)}]",
          flush=True)
    return out


# ---------------------------------------------------------------- PostgreSQL for the _pg figures

class Postgres:
    """A PostgreSQL server for the bench: IDP_BENCH_PG_URL's, or a private cluster on loopback started with
    tests/services.sh (and dropped by it afterwards). `database(name)` creates a fresh database and returns its URL;
    `close()` drops those databases and stops what was started."""

    def __init__(self) -> None:
        self.dir: Path | None = None
        self.started = False
        self.url = ""
        self.source = ""
        self.created: list[str] = []

    def start(self) -> None:
        given = os.environ.get("IDP_BENCH_PG_URL", "").strip()
        if given:
            self.url, self.source = given, "IDP_BENCH_PG_URL"
        else:
            self._start_private()
        try:
            engine = create_engine(self.url, isolation_level="AUTOCOMMIT")
            with engine.connect() as conn:
                version = conn.execute(text("SHOW server_version")).scalar()
            engine.dispose()
        except Exception as exc:  # noqa: BLE001 - any failure to connect: the _pg figures are not available
            self.close()
            raise NotAvailable(f"not available: cannot connect to PostgreSQL ({self.source}): "
                               f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from exc
        self.source += f", PostgreSQL {version}"

    def _start_private(self) -> None:
        script = REPO / "tests" / "services.sh"
        if not shutil.which("pg_createcluster") or not list(Path("/usr/lib/postgresql").glob("*/bin/postgres")):
            raise NotAvailable("not available: no PostgreSQL server installed (pg_createcluster; or set "
                               "IDP_BENCH_PG_URL)")
        if os.geteuid() != 0 and not shutil.which("sudo"):
            raise NotAvailable("not available: starting a private PostgreSQL needs root or sudo (or set "
                               "IDP_BENCH_PG_URL)")
        # a folder of its own that the postgres user can reach (the bench's temporary folder is private)
        self.dir = Path(tempfile.mkdtemp(prefix="idp-bench-services."))
        self.started = True
        r = subprocess.run(["bash", str(script), "start-postgres", str(self.dir)],  # noqa: S603, S607
                           capture_output=True, text=True, timeout=180, check=False)
        url = next((line.split("=", 1)[1] for line in r.stdout.splitlines()
                    if line.startswith("export IDP_TEST_DATABASE_URL=")), "")
        if r.returncode != 0 or not url:
            self.close()
            why = (r.stderr.strip().splitlines() or ["(no message)"])[-1][:300]
            raise NotAvailable(f"not available: a private PostgreSQL did not start: {why}")
        self.url, self.source = url, "private cluster on loopback (tests/services.sh start-postgres)"

    def database(self, name: str) -> str:
        db_name = f"idp_bench_{name}_{secrets.token_hex(4)}"
        engine = create_engine(self.url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{db_name}"'))
        engine.dispose()
        self.created.append(db_name)
        return make_url(self.url).set(database=db_name).render_as_string(hide_password=False)

    def close(self) -> None:
        if self.created and self.url:
            try:
                engine = create_engine(self.url, isolation_level="AUTOCOMMIT")
                with engine.connect() as conn:
                    for name in self.created:
                        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
                engine.dispose()
            except Exception as exc:  # noqa: BLE001 - reported; a private cluster goes away below anyway
                print(f"    could not drop the bench databases {self.created}: {exc}", flush=True)
            self.created = []
        if self.started and self.dir is not None:
            subprocess.run(["bash", str(REPO / "tests" / "services.sh"), "stop", str(self.dir)],  # noqa: S603, S607
                           capture_output=True, text=True, timeout=120, check=False)
            shutil.rmtree(self.dir, ignore_errors=True)
            self.started = False
