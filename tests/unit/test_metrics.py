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

STATE = ("_base", "_owner", "_file", "_latency_sum", "_latency_count")


@pytest.fixture
def clean_state() -> Iterator[None]:
    """The module's process-wide state, emptied for the test and restored after it."""
    saved = ({name: getattr(metrics, name) for name in STATE}, dict(metrics._attempts),
             list(metrics._latency_buckets))
    metrics._attempts.clear()
    metrics._latency_buckets[:] = [0] * len(metrics._latency_buckets)
    metrics._latency_sum, metrics._latency_count = 0.0, 0
    metrics._base = metrics._owner = metrics._file = None
    yield
    for name, value in saved[0].items():
        setattr(metrics, name, value)
    metrics._attempts.clear()
    metrics._attempts.update(saved[1])
    metrics._latency_buckets[:] = saved[2]


@pytest.fixture
def spool(tmp_path: Path, clean_state: None) -> Path:
    metrics.configure(tmp_path)
    metrics.flush()
    folder = tmp_path / f"{socket.gethostname()}-{os.getppid()}"
    assert metrics._file is not None and metrics._file.parent == folder
    return folder


def worker_file(folder: Path, pid: int, n: int, reason: str = "ok") -> None:
    (folder / f"{pid}-abcd1234.json").write_text(json.dumps(
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
        assert not (spool / f"{gone}-abcd1234.json").exists()
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
    assert metrics._file is not None and metrics._file.name.startswith(f"{os.getpid()}-")
    own = json.loads(metrics._file.read_text())
    assert own["attempts"] == [["sso", "wiki", "success", "ok", 1]] and attempts(text) == 1


def test_corrupt_files_are_moved_aside_and_foreign_files_ignored(spool: Path) -> None:
    (spool / f"{os.getppid()}-bad.json").write_text("{not json")
    (spool / "notes.txt").write_text("hello")
    (spool / "abc.json").write_text(json.dumps({"attempts": [["sso", "wiki", "success", "ok", 100]]}))
    metrics.count_event("sso", "wiki", "success", "ok")
    assert attempts(metrics.render([])) == 1
    assert (spool / f"{os.getppid()}-bad.json.corrupt").exists()


def test_unreadable_file_fails_the_scrape_instead_of_dropping_counts(spool: Path) -> None:
    """An I/O error on a worker's file must not make the total go backwards (a false counter reset).
    (A directory in the file's place gives a read error even to root.)"""
    (spool / f"{os.getppid()}-abcd1234.json").mkdir()
    with pytest.raises(metrics.SpoolError, match="cannot read"):
        metrics.render([])


def test_a_recycled_pid_does_not_overwrite_a_dead_workers_file(spool: Path) -> None:
    """Files carry an id besides the pid: a new worker with an old pid writes its own file."""
    assert metrics._file is not None
    predecessor = spool / f"{os.getpid()}-00000000.json"
    predecessor.write_text(json.dumps({"attempts": [["sso", "wiki", "success", "ok", 4]]}))
    metrics.count_event("sso", "wiki", "success", "ok")
    assert metrics._file != predecessor
    assert attempts(metrics.render([])) == 5


def test_folders_of_servers_that_are_gone_are_removed(tmp_path: Path, clean_state: None) -> None:
    stale = tmp_path / f"{socket.gethostname()}-{dead_pid()}"
    other_host = tmp_path / "some-other-host-1"
    for folder in (stale, other_host):
        folder.mkdir()
        worker_file(folder, 1, 1)
    metrics.configure(tmp_path)
    metrics.flush()
    assert not stale.exists()
    assert other_host.exists(), "another host's server (shared storage) is not this host's to judge"


def test_unwritable_spool_falls_back_to_this_process(tmp_path: Path, clean_state: None) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    metrics.configure(blocker)  # a file where the folder should be
    metrics.count_event("sso", "wiki", "success", "ok")
    assert metrics._file is None
    assert attempts(metrics.render([])) == 1


def test_spool_that_cannot_be_written_fails_the_scrape(spool: Path) -> None:
    """retired.json cannot be replaced (a folder in its way): 503 material, not an unhandled error."""
    worker_file(spool, dead_pid(), 3)
    (spool / "retired.json").mkdir()
    with pytest.raises(metrics.SpoolError):
        metrics.render([])
