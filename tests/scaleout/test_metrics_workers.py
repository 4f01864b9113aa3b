"""/metrics under gunicorn with several workers: every scrape, whichever worker answers it, shows the totals."""

from __future__ import annotations

import os
import re
import signal
import subprocess  # noqa: S404 - pgrep, to find the gunicorn workers
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from .conftest import Instance, free_port, idp_cli, idp_env, needs_services, reset_services

pytestmark = needs_services

LINE = re.compile(r'^idp_sso_attempts_total\{type="sso",app="",outcome="(\w+)",reason="unknown_app"\} (\d+)$', re.M)


def unknown_app_attempts(url: str) -> int:
    r = requests.get(f"{url}/metrics", headers={"Connection": "close"}, timeout=10)
    assert r.status_code == 200 and 'worker="' not in r.text
    return sum(int(n) for _, n in LINE.findall(r.text))


@pytest.fixture(params=[(), ("--preload",)], ids=["app-per-worker", "preload"])
def two_workers(request, tmp_path: Path, key_template: Path):  # type: ignore[no-untyped-def]
    """gunicorn with 2 sync workers; with --preload the app is created in the master before the fork."""
    env = idp_env(tmp_path, key_template)
    reset_services(env)
    idp_cli(env, "db", "init")
    inst = Instance(env, free_port(), tmp_path / "server.log", workers=2, threads=1, extra_args=request.param)
    try:
        yield inst
    finally:
        inst.stop()


def _attempts(inst: Instance, n: int) -> None:
    """n failed SSO attempts (one event each), 8 at a time so that both sync workers take some."""
    def one(_: int) -> int:
        return requests.get(f"{inst.url}/apps/no-such-app/sso", headers={"Connection": "close"},
                            timeout=10).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(one, range(n))) == {404}


def _worker_pids(inst: Instance) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(inst.proc.pid)], capture_output=True, text=True, check=False).stdout
    return {int(pid) for pid in out.split()}


def test_every_scrape_shows_all_workers_counts(two_workers: Instance) -> None:
    inst = two_workers
    n = 40
    _attempts(inst, n)
    time.sleep(1.6)  # workers write their counters at least once a second
    seen = [unknown_app_attempts(inst.url) for _ in range(8)]
    assert seen == [n] * 8, seen
    # a worker that gunicorn replaces (recycling, a crash) takes nothing with it
    victim = sorted(_worker_pids(inst))[0]
    os.kill(victim, signal.SIGTERM)
    deadline = time.time() + 15
    while time.time() < deadline and (victim in _worker_pids(inst) or len(_worker_pids(inst)) < 2):
        time.sleep(0.2)
    assert victim not in _worker_pids(inst) and len(_worker_pids(inst)) == 2
    _attempts(inst, 10)
    time.sleep(1.6)
    assert [unknown_app_attempts(inst.url) for _ in range(6)] == [n + 10] * 6
