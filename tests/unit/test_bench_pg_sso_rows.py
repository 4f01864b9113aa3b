"""The bench's PostgreSQL + Redis SSO rows (bench/pg_sso.py): units and the one target, "not available" rows without
PostgreSQL and Redis, the servers' CPU read from /proc (children alive and collected), and the workspace the
servers are started with."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.lifecycle import NotAvailable
from bench.pg_sso import ServerCpu, Services, ServicesWorkspace, services_workspace
from bench.run import TARGETS, _table, _target_doc

KEYS = ("sso_roundtrip_pg_per_s", "sso_ratio_pg", "sso_pg_vs_sqlite", "http_sso_pg_per_s_1", "http_sso_pg_per_s_2")


def test_rows_units_and_the_target_on_the_ratio_to_sqlite() -> None:
    assert {k: TARGETS[k][0] for k in KEYS} == {
        "sso_roundtrip_pg_per_s": "/CPU-s", "sso_ratio_pg": "x RSA", "sso_pg_vs_sqlite": "x",
        "http_sso_pg_per_s_1": "/s", "http_sso_pg_per_s_2": "/s"}
    assert _target_doc({"sso_pg_vs_sqlite": 0.85})["sso_pg_vs_sqlite"]["pass"] is True
    assert _target_doc({"sso_pg_vs_sqlite": 0.7})["sso_pg_vs_sqlite"]["pass"] is False
    assert "sso_ratio_pg" not in _target_doc({"sso_ratio_pg": 0.1})   # reported: its target is the ratio above


def test_rows_read_not_available_without_the_services_and_missing_after_a_failure() -> None:
    results = {"sso_roundtrip_per_s": 500.0}
    rows = {line.split()[0]: line for line in _table(
        results, {"postgresql_redis": "not available: no redis-server installed"}, False).splitlines()}
    for key in (*KEYS, "http_sso_pg_p95_ms_2", "http_sso_pg_cores_busy_1"):
        assert rows[key].endswith("not available"), rows[key]
    failed = {line.split()[0]: line for line in _table(results, {"sso_pg": "RuntimeError: boom"},
                                                       False).splitlines()}
    assert failed["sso_ratio_pg"].endswith("missing")
    # the lifecycle figures keep their own reason
    assert rows["scim_user_create_pg_per_s"].endswith("missing")


def test_a_given_postgresql_needs_a_given_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDP_BENCH_PG_URL", "postgresql+psycopg://nobody@127.0.0.1:9/none")
    monkeypatch.delenv("IDP_BENCH_REDIS_URL", raising=False)
    with pytest.raises(NotAvailable, match="IDP_BENCH_REDIS_URL"):
        Services().start()


# a parent that starts one child burning CPU until it exits (collected by the parent) and one burning and staying
PARENT = """
import subprocess, sys, time
burn = "import time\\nt = time.process_time()\\nwhile time.process_time() - t < {s}: pass\\n"
done = subprocess.Popen([sys.executable, "-c", burn.format(s=0.4)])
alive = subprocess.Popen([sys.executable, "-c", burn.format(s=0.4) + "time.sleep(60)"])
done.wait()
print("ready", alive.pid, flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_server_cpu_counts_live_children_and_collected_ones() -> None:
    quiet = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    alive = 0
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline().split()   # the collected child is done: its CPU is the parent's cutime
        assert line[0] == "ready"
        alive = int(line[1])
        cpu = ServerCpu(parent.pid, quiet.pid)
        deadline = time.monotonic() + 60
        while cpu.pg_s() < 0.75 and time.monotonic() < deadline:   # the live child finishes its 0.4 s
            time.sleep(0.1)
        assert cpu.pg_s() >= 0.75   # both children's 0.4 s, the parent's own start-up besides
        assert cpu.redis_s() < 0.5
        assert cpu.seconds() == pytest.approx(cpu.pg_s() + cpu.redis_s(), abs=0.05)
    finally:
        if alive:
            os.kill(alive, signal.SIGKILL)   # the parent's child: killed before the parent, which collects it
            time.sleep(0.2)
        for p in (parent, quiet):
            p.kill()
            p.wait(10)
        if parent.stdout is not None:
            parent.stdout.close()


def test_the_servers_workspace_points_at_postgresql_redis_and_one_public_url(tmp_path: Path) -> None:
    from bench.fixtures import make_workspace

    ws = make_workspace(tmp_path)
    pws = services_workspace(ws, "pg", "postgresql+psycopg://idp@127.0.0.1:5/db", "redis://127.0.0.1:6/0",
                             "http://idp.bench.test")
    assert isinstance(pws, ServicesWorkspace)
    env = pws.env("http://127.0.0.1:1234")
    assert env["IDP_DATABASE_URL"] == "postgresql+psycopg://idp@127.0.0.1:5/db"
    assert env["IDP_REDIS_URL"] == "redis://127.0.0.1:6/0"
    assert env["IDP_BASE_URL"] == "http://idp.bench.test"
    assert env["IDP_CERT_DIR"] == str(ws.cert_dir) and env["IDP_SECRET_KEY"] == ws.secret_key
    assert pws.instance_dir.is_dir() and pws.instance_dir != ws.instance_dir
