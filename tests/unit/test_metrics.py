"""idp.metrics: one server's workers spool their counters; a scrape sums them and never goes backwards."""

from __future__ import annotations

import json
import os
import socket
import subprocess  # noqa: S404 - short-lived helper processes standing in for workers
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from idp import metrics


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Path]:
    saved = (metrics._spool, dict(metrics._attempts))
    metrics._attempts.clear()
    metrics.configure(tmp_path)
    folder = tmp_path / f"{socket.gethostname()}-{os.getppid()}"
    assert metrics._spool == folder
    yield folder
    metrics._spool = saved[0]
    metrics._attempts.clear()
    metrics._attempts.update(saved[1])


def worker_file(folder: Path, pid: int, n: int, reason: str = "ok") -> None:
    (folder / f"{pid}.json").write_text(json.dumps(
        {"attempts": [["sso", "wiki", "success", reason, n]], "buckets": [n] + [0] * len(metrics.BUCKETS),
         "sum": 0.001 * n, "count": n}))


def attempts(text: str, reason: str = "ok") -> int:
    prefix = f'idp_sso_attempts_total{{type="sso",app="wiki",outcome="success",reason="{reason}"}} '
    return sum(int(line[len(prefix):]) for line in text.splitlines() if line.startswith(prefix))


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])  # noqa: S603
    p.wait()
    return p.pid


def test_scrape_sums_live_and_ended_workers(spool: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])  # noqa: S603
    try:
        worker_file(spool, sleeper.pid, 5)
        gone = dead_pid()
        worker_file(spool, gone, 7)
        for _ in range(3):
            metrics.count_event("sso", "wiki", "success", "ok")
        text = metrics.render([])
        assert attempts(text) == 5 + 7 + 3
        assert 'worker="' not in text
        assert "idp_sso_duration_seconds_count 12" in text  # 5 + 7 from the files, none observed here
        # the ended worker's file was folded into retired.json: the folder stays small, the total holds
        assert not (spool / f"{gone}.json").exists()
        assert json.loads((spool / "retired.json").read_text())["attempts"] == [["sso", "wiki", "success", "ok", 7]]
        assert attempts(metrics.render([])) == 15
        # the live worker counts on; the total follows and never goes back
        worker_file(spool, sleeper.pid, 9)
        assert attempts(metrics.render([])) == 19
    finally:
        sleeper.kill()
        sleeper.wait()
    assert attempts(metrics.render([])) == 19, "a worker that exits keeps its counts"


def test_own_counts_are_written_before_they_are_shown(spool: Path) -> None:
    metrics.count_event("sso", "wiki", "success", "ok")
    text = metrics.render([])
    own = json.loads((spool / f"{os.getpid()}.json").read_text())
    assert own["attempts"] == [["sso", "wiki", "success", "ok", 1]] and attempts(text) == 1


def test_corrupt_or_foreign_files_are_ignored(spool: Path) -> None:
    (spool / "12345.json").write_text("{not json")
    (spool / "notes.txt").write_text("hello")
    (spool / "abc.json").write_text(json.dumps({"attempts": [["sso", "wiki", "success", "ok", 100]]}))
    metrics.count_event("sso", "wiki", "success", "ok")
    assert attempts(metrics.render([])) == 1


def test_folders_of_servers_that_are_gone_are_removed(tmp_path: Path) -> None:
    stale = tmp_path / f"{socket.gethostname()}-{dead_pid()}"
    other_host = tmp_path / "some-other-host-1"
    for folder in (stale, other_host):
        folder.mkdir()
        worker_file(folder, 1, 1)
    saved = metrics._spool
    try:
        metrics.configure(tmp_path)
    finally:
        metrics._spool = saved
    assert not stale.exists()
    assert other_host.exists(), "another host's server (shared storage) is not this host's to judge"


def test_unwritable_spool_falls_back_to_this_process(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    saved = (metrics._spool, dict(metrics._attempts))
    try:
        metrics.configure(blocker)  # a file where the folder should be
        assert metrics._spool is None
        metrics._attempts.clear()
        metrics.count_event("sso", "wiki", "success", "ok")
        assert attempts(metrics.render([])) == 1
    finally:
        metrics._spool = saved[0]
        metrics._attempts.clear()
        metrics._attempts.update(saved[1])
