"""Scale-out tests: real PostgreSQL and Redis (started by `make test` via tests/services.sh) and real servers."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

PG_URL = os.environ.get("IDP_TEST_DATABASE_URL", "")
REDIS_URL = os.environ.get("IDP_TEST_REDIS_URL", "")
BIN = Path(sys.executable).parent

needs_services = pytest.mark.skipif(
    not (PG_URL.startswith("postgresql") and REDIS_URL.startswith("redis")),
    reason="needs IDP_TEST_DATABASE_URL (PostgreSQL) and IDP_TEST_REDIS_URL; `make test` starts both",
)


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Instance:
    def __init__(self, env: dict[str, str], port: int, log: Path, workers: int = 1, threads: int = 4,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self._log_fh = log.open("wb")
        self.proc = subprocess.Popen(
            [str(BIN / "gunicorn"), "idp.wsgi:app", "-b", f"127.0.0.1:{port}", "-w", str(workers),
             "--threads", str(threads), "--timeout", "30", "--graceful-timeout", "2", *extra_args],
            env=env, stdout=self._log_fh, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"instance on {port} did not start: {log.read_text()[-2000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._log_fh.close()


def idp_env(tmp: Path, key_template: Path, **extra: str) -> dict[str, str]:
    import shutil
    certs = tmp / "certs"
    if not certs.exists():
        shutil.copytree(key_template, certs)
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update({
        "IDP_BASE_URL": "http://idp.example.test",   # what the load balancer serves; instances never use Host
        "IDP_DATABASE_URL": PG_URL, "IDP_REDIS_URL": REDIS_URL, "IDP_CERT_DIR": str(certs),
        "IDP_INSTANCE_DIR": str(tmp / "instance"), "IDP_SECRET_KEY": "shared-secret-for-both-instances",
        "IDP_ARGON2_TIME_COST": "1", "IDP_ARGON2_MEMORY_KIB": "1024", "IDP_ARGON2_PARALLELISM": "1",
        "IDP_ADMIN_PASSWORD": "admin password 1",
    })
    env.update(extra)
    return env


def idp_cli(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    r = subprocess.run([str(BIN / "idp"), *args], env=env, input=stdin, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"idp {' '.join(args)} failed: {r.stdout}{r.stderr}"
    return r.stdout


def reset_services(env: dict[str, str]) -> None:
    """Empty database schema and Redis for this module."""
    import redis
    import sqlalchemy as sa
    engine = sa.create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()
    redis.Redis.from_url(REDIS_URL).flushdb()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, key_template: Path) -> Iterator[tuple[Instance, Instance,
                                                                                           dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("cluster")
    env = idp_env(tmp, key_template)
    reset_services(env)
    idp_cli(env, "db", "init")
    a = Instance(env, free_port(), tmp / "a.log")
    try:
        b = Instance(env, free_port(), tmp / "b.log")
    except Exception:
        a.stop()
        raise
    try:
        yield a, b, env
    finally:
        a.stop()
        b.stop()


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, html[:300]
    return m.group(1)


def local(url: str) -> str:
    """Path + query of an IdP URL (instances are reached directly, not via the public base URL)."""
    from urllib.parse import urlsplit
    p = urlsplit(url)
    return p.path + (f"?{p.query}" if p.query else "")
