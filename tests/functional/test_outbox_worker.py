"""The outbox worker: claims due jobs in order per key, retries with backoff, dead after the last attempt or a
permanent failure, leases that expire, retry by admins (CLI), pruning. Handlers of test kinds are registered
here; the worker is the one `idp worker` runs (in process, inside the test's app context)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from idp import audit
from idp.cli.worker import Worker
from idp.extensions import db
from idp.models import AdminAudit, OutboxJob, utcnow
from idp.services import outbox

RUNS: list[dict[str, Any]] = []


@pytest.fixture(autouse=True)
def test_handlers() -> Iterator[None]:
    RUNS.clear()

    def ok(payload: dict[str, Any]) -> None:
        RUNS.append(payload)

    def boom(payload: dict[str, Any]) -> None:
        audit.record("test.written_before_failure", "test", "x")   # must be rolled back with the failure
        raise RuntimeError(f"remote down ({payload.get('n')})")

    def permanent(payload: dict[str, Any]) -> None:
        raise outbox.PermanentFailure("the remote refused the request (HTTP 400)")

    failures: list[tuple[str, bool]] = []
    outbox.handler("test.ok")(ok)
    outbox.handler("test.boom", on_failure=lambda p, e, dead: failures.append((e, dead)))(boom)
    outbox.handler("test.permanent")(permanent)
    test_handlers.failures = failures  # type: ignore[attr-defined]
    yield
    for kind in ("test.ok", "test.boom", "test.permanent"):
        outbox.HANDLERS.pop(kind, None)
        outbox.FAILURE_HOOKS.pop(kind, None)


def job(job_id: int) -> OutboxJob:
    found = db.session.get(OutboxJob, job_id, populate_existing=True)
    assert found is not None
    return found


def add(kind: str, key: str, **payload: Any) -> int:
    j = outbox.enqueue(kind, key, payload)
    db.session.commit()
    return j.id


def test_worker_runs_due_jobs_and_marks_them_done(app: Flask) -> None:
    a, b = add("test.ok", "k1", n=1), add("test.ok", "k2", n=2)
    later = outbox.enqueue("test.ok", "k3", {"n": 3}, delay=timedelta(hours=1))
    db.session.commit()
    worker = Worker("w1")
    worker.run(once=True)
    assert [r["n"] for r in RUNS] == [1, 2]
    assert job(a).state == job(b).state == "done" and job(a).finished_at is not None
    assert job(later.id).state == "pending"   # not due yet
    assert worker.ran == 2


def test_jobs_of_one_key_run_in_order_one_at_a_time(app: Flask) -> None:
    a1, a2, b1 = add("test.ok", "same", n=1), add("test.ok", "same", n=2), add("test.ok", "other", n=3)
    lease = timedelta(minutes=5)
    first = outbox.claim("w1", lease)
    db.session.commit()
    assert first is not None and first.id == a1 and first.locked_by == "w1" and first.locked_until is not None
    second = outbox.claim("w2", lease)
    db.session.commit()
    assert second is not None and second.id == b1   # a2 waits for a1
    assert outbox.claim("w3", lease) is None
    outbox.finish(job(a1))
    db.session.commit()
    third = outbox.claim("w3", lease)
    assert third is not None and third.id == a2


def test_a_failure_backs_off_exponentially_and_rolls_back_the_handler(app: Flask) -> None:
    j = add("test.boom", "k", n=7)
    Worker("w1").run(once=True)
    row = job(j)
    assert row.state == "pending" and row.attempts == 1 and row.last_error == "remote down (7)"
    assert row.locked_by is None
    wait = (row.run_after - utcnow()).total_seconds()
    assert 4 <= wait <= 10.5   # 10 s x 2^0 with 50-100 % jitter
    assert db.session.scalar(select(AdminAudit).where(AdminAudit.action == "test.written_before_failure")) is None
    assert test_handlers.failures == [("remote down (7)", False)]  # type: ignore[attr-defined]


def test_backoff_doubles_and_is_capped() -> None:
    policy = outbox.RetryPolicy(max_attempts=8, backoff_s=10, backoff_max_s=3600)
    assert policy.delay(1, rand=lambda: 1.0) == timedelta(seconds=10)
    assert policy.delay(4, rand=lambda: 1.0) == timedelta(seconds=80)
    assert policy.delay(4, rand=lambda: 0.0) == timedelta(seconds=40)
    assert policy.delay(20, rand=lambda: 1.0) == timedelta(hours=1)


def test_dead_after_the_last_attempt_then_retried_by_an_admin(app: Flask) -> None:
    j = add("test.boom", "k", n=1)
    worker = Worker("w1")
    worker.policy = outbox.RetryPolicy(max_attempts=3, backoff_s=10)
    for _ in range(3):
        job(j).run_after = utcnow() - timedelta(seconds=1)
        db.session.commit()
        worker.run(once=True)
    row = job(j)
    assert row.state == "dead" and row.attempts == 3 and row.last_error == "remote down (1)"
    assert test_handlers.failures[-1] == ("remote down (1)", True)  # type: ignore[attr-defined]
    worker.run(once=True)
    assert job(j).attempts == 3   # dead jobs are not claimed

    runner = app.test_cli_runner()
    listed = runner.invoke(args=["outbox", "list", "--state", "dead", "--format", "json"])
    assert listed.exit_code == 0, listed.output
    assert [(d["id"], d["state"], d["last_error"]) for d in json.loads(listed.output)] == [
        (j, "dead", "remote down (1)")]
    result = runner.invoke(args=["outbox", "retry", str(j)])
    assert result.exit_code == 0, result.output
    row = job(j)
    assert row.state == "pending" and row.attempts == 0
    audit_row = db.session.scalar(select(AdminAudit).where(AdminAudit.action == "outbox.retry"))
    assert audit_row is not None and audit_row.target == str(j) and audit_row.actor.startswith("cli")
    again = runner.invoke(args=["outbox", "retry", str(j)])
    assert again.exit_code == 1 and "not dead" in again.output and "Traceback" not in again.output


def test_permanent_failure_is_dead_at_once_and_all_dead_are_retried(app: Flask) -> None:
    a, b = add("test.permanent", "k1"), add("test.permanent", "k2")
    Worker("w1").run(once=True)
    assert job(a).state == job(b).state == "dead" and job(a).attempts == 1
    assert "HTTP 400" in (job(a).last_error or "")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["outbox", "retry", "--all-dead"])
    assert result.exit_code == 0 and "2 dead job(s)" in result.output
    assert job(a).state == job(b).state == "pending"
    bad = runner.invoke(args=["outbox", "retry"])
    assert bad.exit_code != 0 and "job ID or --all-dead" in bad.output
    missing = runner.invoke(args=["outbox", "retry", "99999"])
    assert missing.exit_code == 1 and "no outbox job 99999" in missing.output


def test_an_unknown_kind_is_dead_with_a_clear_error(app: Flask) -> None:
    j = add("test.nobody", "k")
    Worker("w1").run(once=True)
    assert job(j).state == "dead" and "no handler" in (job(j).last_error or "")


def test_an_expired_lease_makes_the_job_claimable_again(app: Flask) -> None:
    a1, a2 = add("test.ok", "k", n=1), add("test.ok", "k", n=2)
    lease = timedelta(seconds=30)
    claimed = outbox.claim("killed-worker", lease)
    db.session.commit()
    assert claimed is not None and claimed.id == a1
    policy = outbox.RetryPolicy()
    assert outbox.expire_leases(policy) == 0           # the lease still runs
    assert outbox.claim("w2", lease) is None            # a2 waits behind the running a1
    assert outbox.expire_leases(policy, now=utcnow() + timedelta(seconds=31)) == 1
    db.session.commit()
    row = job(a1)
    assert row.state == "pending" and row.attempts == 1 and "lease ended" in (row.last_error or "")
    Worker("w2").run(once=True)
    assert [r["n"] for r in RUNS] == [1, 2]             # delivered again, still in order
    assert job(a1).state == job(a2).state == "done"


def test_a_lease_that_keeps_expiring_ends_dead(app: Flask) -> None:
    j = add("test.ok", "k")
    policy = outbox.RetryPolicy(max_attempts=2)
    for _ in range(2):
        outbox.claim("w", timedelta(seconds=1))
        outbox.expire_leases(policy, now=utcnow() + timedelta(seconds=5))
        db.session.commit()
    assert job(j).state == "dead" and job(j).attempts == 2


def test_done_jobs_are_pruned_after_the_keep_period(app: Flask) -> None:
    old, recent, dead = add("test.ok", "a"), add("test.ok", "b"), add("test.ok", "c")
    job(old).state, job(old).finished_at = "done", utcnow() - timedelta(days=8)
    job(recent).state, job(recent).finished_at = "done", utcnow() - timedelta(days=1)
    job(dead).state, job(dead).finished_at = "dead", utcnow() - timedelta(days=30)
    db.session.commit()
    assert outbox.prune(timedelta(days=7)) == 1
    db.session.commit()
    assert db.session.get(OutboxJob, old) is None
    assert job(recent).state == "done" and job(dead).state == "dead"


def test_enqueue_once_skips_a_pending_duplicate(app: Flask) -> None:
    first = outbox.enqueue_once("test.ok", "k", {"n": 1})
    assert first is not None
    assert outbox.enqueue_once("test.ok", "k", {"n": 2}) is None
    assert outbox.enqueue_once("test.ok", "other", {"n": 3}) is not None


def test_worker_cli_once(app: Flask) -> None:
    add("test.ok", "k", n=1)
    result = app.test_cli_runner().invoke(args=["worker", "--once", "--id", "cli-worker"])
    assert result.exit_code == 0, result.output
    assert "ran 1 job(s)" in result.output
    bad = app.test_cli_runner().invoke(args=["outbox", "list", "--state", "bogus"])
    assert bad.exit_code == 2 and "bogus" in bad.output
