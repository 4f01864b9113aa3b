"""`idp worker` (runs the outbox's jobs) and `idp outbox` (list them, retry dead ones).

The worker is the outermost layer of its jobs, so it owns their transactions: the claim commits on its own, the
handler and the job's `done` commit together, and a failure is counted in a fresh transaction after the
handler's work was rolled back. SIGTERM / SIGINT stop it after the job in hand.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from datetime import timedelta
from types import FrameType
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import update

from idp import audit
from idp.extensions import db
from idp.models import OutboxJob, utcnow
from idp.services import outbox

from ._common import fail, settings, unit_of_work

log = logging.getLogger("idp.worker")
PERIODIC_EVERY_S = 60.0


class Heartbeat:
    """While a job runs, extend its lease every third of it (its own connection and transaction), so a long job
    (a reconciliation paging a large remote directory) is not taken for a dead worker's and run twice. It only
    extends a lease this worker still holds."""

    def __init__(self, app: Any, job_id: int, worker_id: str, lease: timedelta) -> None:
        self.app, self.job_id, self.worker_id, self.lease = app, job_id, worker_id, lease
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"lease-{job_id}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.done.set()
        self.thread.join(timeout=5)

    def _run(self) -> None:
        every = max(1.0, self.lease.total_seconds() / 3)
        while not self.done.wait(every):
            try:
                with self.app.app_context(), db.engine.begin() as conn:
                    conn.execute(update(OutboxJob).where(OutboxJob.id == self.job_id, OutboxJob.state == "running",
                                                         OutboxJob.locked_by == self.worker_id)
                                 .values(locked_until=utcnow() + self.lease))
            except Exception as exc:   # noqa: BLE001 - a missed beat only shortens the lease
                log.warning("could not extend the lease of job %s: %s: %s", self.job_id,
                            exc.__class__.__name__, exc)


class Worker:
    """One worker process: claims due jobs one at a time until stopped (or, `once`, until none is due)."""

    def __init__(self, worker_id: str) -> None:
        s = settings()
        self.worker_id = worker_id
        self.policy = outbox.RetryPolicy(max_attempts=s.worker_max_attempts, backoff_s=s.worker_backoff_s,
                                         backoff_max_s=s.worker_backoff_max_s)
        self.lease = timedelta(seconds=s.worker_lease_s)
        self.poll_s = s.worker_poll_s
        self.keep = timedelta(days=s.outbox_keep_days)
        self.stop = threading.Event()
        self.ran = 0

    def housekeeping(self) -> None:
        """Expired leases back to pending, periodic jobs scheduled, old done jobs pruned: each committed alone."""
        steps = [lambda: outbox.expire_leases(self.policy), *outbox.PERIODIC, lambda: outbox.prune(self.keep)]
        for step in steps:
            try:
                with audit.acting_as("worker"):
                    step()
                db.session.commit()
            except Exception as exc:
                db.session.rollback()
                log.error("worker housekeeping failed: %s: %s", exc.__class__.__name__, exc)

    def run_one(self) -> bool:
        """Claim and run one due job; False when none is due."""
        job = outbox.claim(self.worker_id, self.lease)
        db.session.commit()
        if job is None:
            return False
        job_id, kind, payload = job.id, job.kind, dict(job.payload or {})
        outbox.set_attempt(job.attempts + 1)   # the handler's and the failure hook's attempt number
        # the session keeps objects after a commit (expire_on_commit=False, right for a short request): a job
        # must read what is committed now, not what an earlier job of this long-lived worker loaded
        db.session.expire_all()
        fn = outbox.HANDLERS.get(kind)
        beat = Heartbeat(current_app._get_current_object(), job_id, self.worker_id, self.lease)  # type: ignore[attr-defined]
        beat.start()
        try:
            if fn is None:
                raise outbox.PermanentFailure(f"no handler for jobs of kind {kind!r}")
            with audit.acting_as("worker"):
                fn(payload)
            beat.stop()
            current = self._held(job_id)
            if current is not None:
                outbox.finish(current)
                db.session.commit()
            else:   # the lease was lost and another worker has the job: its outcome stands, ours is dropped
                db.session.rollback()
                log.warning("job %s finished after its lease was lost; its writes are dropped", job_id)
        except outbox.Defer as exc:   # not a failure: pending again later, no attempt counted
            beat.stop()
            db.session.rollback()
            self._defer(job_id, exc)
        except Exception as exc:
            beat.stop()
            db.session.rollback()
            error = str(exc) or exc.__class__.__name__
            self._count_failure(job_id, kind, payload, error, isinstance(exc, outbox.PermanentFailure))
        self.ran += 1
        return True

    def _held(self, job_id: int) -> OutboxJob | None:
        """The job, row-locked, if this worker still holds it (running, its lease): the fence before recording
        an outcome, so a worker whose lease ended never overwrites what the job's new holder decides."""
        current = db.session.get(OutboxJob, job_id, with_for_update=True, populate_existing=True)
        if current is None or current.state != "running" or current.locked_by != self.worker_id:
            return None
        return current

    def _defer(self, job_id: int, deferral: outbox.Defer) -> None:
        try:
            current = self._held(job_id)
            if current is None:   # lost the lease meanwhile: the job's new holder decides
                db.session.rollback()
                return
            outbox.defer(current, deferral.until)
            db.session.commit()
            log.info("job %s deferred: %s", job_id, deferral)
        except Exception as exc:
            db.session.rollback()
            log.error("could not defer job %s: %s: %s", job_id, exc.__class__.__name__, exc)

    def _count_failure(self, job_id: int, kind: str, payload: dict[str, object], error: str, permanent: bool) -> None:
        try:
            current = self._held(job_id)
            if current is None:   # lost the lease meanwhile: the job's new holder decides its outcome
                db.session.rollback()
                return
            dead = outbox.fail(current, error, self.policy, permanent=permanent)
            log.warning("job %s (%s) failed, attempt %s%s: %s", job_id, kind, current.attempts,
                        " - dead" if dead else "", error)
            hook = outbox.FAILURE_HOOKS.get(kind)
            if hook is not None:
                with audit.acting_as("worker"):
                    hook(payload, error, dead)
            db.session.commit()
        except Exception as exc:
            db.session.rollback()
            log.error("could not record the failure of job %s: %s: %s", job_id, exc.__class__.__name__, exc)

    def run(self, *, once: bool) -> None:
        last_housekeeping = -PERIODIC_EVERY_S
        while not self.stop.is_set():
            if time.monotonic() - last_housekeeping >= PERIODIC_EVERY_S:
                self.housekeeping()
                last_housekeeping = time.monotonic()
            try:
                ran = self.run_one()
            except Exception as exc:   # the database is unreachable: wait, then try again
                db.session.rollback()
                log.error("worker could not claim a job: %s: %s", exc.__class__.__name__, exc)
                if once:
                    raise
                ran = False
            if not ran:
                if once:
                    return
                self.stop.wait(self.poll_s)


@click.command("worker", help="Run the outbox's jobs (provisioning): claim due jobs, run them, retry failures "
                              "with backoff; SIGTERM or Ctrl-C stop it after the job in hand.")
@click.option("--once", is_flag=True, help="Run the jobs due now, then exit.")
@click.option("--id", "worker_id", help="This worker's name in locked_by (default host:pid).")
@with_appcontext
def worker_cmd(once: bool, worker_id: str | None) -> None:
    worker = Worker(worker_id or f"{socket.gethostname()}:{os.getpid()}")

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("worker %s stopping (signal %s)", worker.worker_id, signum)
        worker.stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
    if not once:
        click.echo(f"worker {worker.worker_id} started", err=True)
    worker.run(once=once)
    if once:
        click.echo(f"ran {worker.ran} job(s)")


@click.group("outbox", help="The outbox of background jobs: list them, retry dead ones.")
def outbox_group() -> None:
    pass


@outbox_group.command("list")
@click.option("--state", type=click.Choice(outbox.STATES))
@click.option("--kind")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@unit_of_work
def outbox_list(state: str | None, kind: str | None, limit: int, fmt: str) -> None:
    jobs = outbox.list_jobs(state=state, kind=kind, limit=limit)
    if fmt == "json":
        click.echo(json.dumps([outbox.job_dict(j) for j in jobs], indent=2))
        return
    click.echo(f"{'ID':>7} {'STATE':<8} {'KIND':<20} {'KEY':<28} {'TRIES':>5} {'RUN AFTER':<20} LAST ERROR")
    for j in jobs:
        click.echo(f"{j.id:>7} {j.state:<8} {j.kind[:20]:<20} {j.key[:28]:<28} {j.attempts:>5} "
                   f"{j.run_after.strftime('%Y-%m-%d %H:%M:%SZ'):<20} {(j.last_error or '')[:60]}")


@outbox_group.command("retry")
@click.argument("job_id", required=False, type=int)
@click.option("--all-dead", is_flag=True, help="Retry every dead job.")
@unit_of_work
def outbox_retry(job_id: int | None, all_dead: bool) -> None:
    if (job_id is None) == (not all_dead):
        fail("give a job ID or --all-dead (not both)")
    if all_dead:
        ids = outbox.retry_all_dead()
        click.echo(f"{len(ids)} dead job(s) pending again")
    else:
        assert job_id is not None
        outbox.retry(job_id)
        click.echo(f"job {job_id} pending again")
