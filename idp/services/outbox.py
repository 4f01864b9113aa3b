"""The outbox: durable jobs written in the caller's unit of work (so a change and the work it causes commit or
roll back together) and run by `idp worker`. Kinds register a handler; the worker claims due jobs (on PostgreSQL
with FOR UPDATE SKIP LOCKED, so several workers share the queue), runs them, retries with exponential backoff and
moves a job that keeps failing to `dead`, where admins see and retry it.

Why not a job library: the libraries that fit (procrastinate: PostgreSQL only; dramatiq / rq: a Redis or
RabbitMQ broker) cannot enqueue in the same SQLite or PostgreSQL transaction as the change that causes the job,
which is the point of an outbox (a user created and its provisioning job are one commit, never one without the
other).

The worker's steps are functions here (claim, finish, fail, expire leases, prune); the loop that owns their
transactions is the `idp worker` command (cli.worker). A claim is one UPDATE whose WHERE picks the oldest due
job: on SQLite that statement holds the database's write lock, on PostgreSQL its sub-select locks the row it
picks FOR UPDATE SKIP LOCKED, so two workers never claim one job. A job is due when it is pending, its
run_after has come and no earlier job of its key is unfinished (pending or running): jobs of one key run in
order, one at a time. A claimed job holds a lease (locked_by, locked_until); a worker that dies mid-job leaves
it running until the lease ends, when `expire_leases` counts the attempt and makes it pending again.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.orm import aliased

from .. import audit
from ..extensions import db
from ..models import OutboxJob, utcnow
from . import ServiceError

log = logging.getLogger("idp.worker")

Handler = Callable[[dict[str, Any]], None]
# called after a failed attempt, in a transaction of its own (the handler's was rolled back): (payload, error
# text, dead) -> None; provisioning records its event there
FailureHook = Callable[[dict[str, Any], str, bool], None]
HANDLERS: dict[str, Handler] = {}
FAILURE_HOOKS: dict[str, FailureHook] = {}
# called by the worker about once a minute (each in its own unit of work): schedules periodic jobs
PERIODIC: list[Callable[[], None]] = []
MAX_KEY = 200
MAX_ERROR = 2000
STATES = ("pending", "running", "done", "dead")
UNFINISHED = ("pending", "running")


class PermanentFailure(Exception):
    """Raised by a handler for a failure that retrying cannot fix (a 400 from the remote, a refused
    configuration): the job goes to `dead` at once."""


class Defer(Exception):  # noqa: N818 - a request to the worker, not an error
    """Raised by a handler that should not run now but has not failed (its remote is known to be down: a circuit
    breaker): the job is pending again from `until`, and no attempt is counted against it."""

    def __init__(self, until: datetime, why: str = "") -> None:
        super().__init__(why or f"deferred until {until.isoformat()}")
        self.until = until


def defer(job: OutboxJob, until: datetime, *, now: datetime | None = None) -> None:
    """Give a held job back without counting an attempt: pending, due at `until` (at least a second ahead, so a
    worker running due jobs does not spin on it)."""
    now = now or utcnow()
    job.state, job.run_after = "pending", max(until, now + timedelta(seconds=1))
    job.locked_by = job.locked_until = None


# the attempt number (1-based: the job's counted attempts + 1) of the job the worker is running, for its handler
# and failure hook (a delivery log numbers its rows with it instead of counting earlier rows)
_ATTEMPT: ContextVar[int] = ContextVar("outbox_attempt", default=1)


def current_attempt() -> int:
    """The attempt number of the job in hand (1 for its first run, 0 counted attempts)."""
    return _ATTEMPT.get()


def set_attempt(number: int) -> None:
    _ATTEMPT.set(max(1, number))


def handler(kind: str, *, on_failure: FailureHook | None = None) -> Callable[[Handler], Handler]:
    """Register the function that runs jobs of `kind` (it raises to fail; PermanentFailure to stop retrying)."""
    def register(fn: Handler) -> Handler:
        HANDLERS[kind] = fn
        if on_failure is not None:
            FAILURE_HOOKS[kind] = on_failure
        return fn
    return register


def periodic(fn: Callable[[], None]) -> Callable[[], None]:
    if fn not in PERIODIC:
        PERIODIC.append(fn)
    return fn


def enqueue(kind: str, key: str, payload: dict[str, Any], *, delay: timedelta | None = None) -> OutboxJob:
    """Add a job in the caller's unit of work. Jobs with the same `key` (e.g. "app:3:user:17") run in order."""
    now = utcnow()
    job = OutboxJob(kind=kind, key=key[:MAX_KEY], payload=payload, state="pending", attempts=0,
                    run_after=now + (delay or timedelta(0)), created_at=now)
    db.session.add(job)
    return job


def enqueue_once(kind: str, key: str, payload: dict[str, Any], *, delay: timedelta | None = None) -> OutboxJob | None:
    """enqueue, unless a job of the same kind and key is already pending (not yet started): for handlers that
    read the current state when they run, one pending job does what two would. None when one was pending."""
    db.session.flush()   # jobs added earlier in this unit of work count
    pending = db.session.scalar(select(OutboxJob.id).where(OutboxJob.key == key[:MAX_KEY], OutboxJob.kind == kind,
                                                           OutboxJob.state == "pending").limit(1))
    if pending is not None:
        return None
    return enqueue(kind, key, payload, delay=delay)


# ------------------------------------------------------------------ the worker's steps

@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 8
    backoff_s: float = 10.0
    backoff_max_s: float = 3600.0

    def delay(self, attempts: int, rand: Callable[[], float] = random.random) -> timedelta:
        """Exponential backoff after the `attempts`-th failure (base x 2^(attempts-1), capped) with jitter: a
        random 50-100 % of it, so jobs that failed together do not all retry in the same second."""
        raw = min(self.backoff_max_s, self.backoff_s * (2 ** max(0, min(attempts - 1, 30))))
        return timedelta(seconds=raw * (0.5 + rand() / 2))


def claim(worker_id: str, lease: timedelta, *, now: datetime | None = None) -> OutboxJob | None:
    """Claim the oldest due job for `worker_id` (state running, a lease until now + `lease`); None when none is
    due. The caller commits at once, then runs the job in a transaction of its own."""
    now = now or utcnow()
    candidate = aliased(OutboxJob, name="candidate")
    earlier = aliased(OutboxJob, name="earlier")
    blocked = exists().where(earlier.key == candidate.key, earlier.id < candidate.id,
                             earlier.state.in_(UNFINISHED))
    pick = (select(candidate.id)
            .where(candidate.state == "pending", candidate.run_after <= now, ~blocked)
            .order_by(candidate.id).limit(1)
            .with_for_update(skip_locked=True, of=candidate)
            .scalar_subquery())
    claimed = db.session.execute(
        update(OutboxJob).where(OutboxJob.id == pick, OutboxJob.state == "pending")
        .values(state="running", locked_by=worker_id[:100], locked_until=now + lease)
        .returning(OutboxJob.id)
        .execution_options(synchronize_session=False)).scalar()
    if claimed is None:
        return None
    return db.session.get(OutboxJob, claimed, populate_existing=True)


def finish(job: OutboxJob, *, now: datetime | None = None) -> None:
    job.state, job.finished_at = "done", now or utcnow()
    job.locked_by = job.locked_until = None   # last_error stays: why an earlier attempt failed


def fail(job: OutboxJob, error: str, policy: RetryPolicy, *, permanent: bool = False,
         now: datetime | None = None) -> bool:
    """Count a failed attempt: back to pending after a backoff, or dead (the last attempt, or `permanent`).
    Returns whether the job is now dead."""
    now = now or utcnow()
    job.attempts += 1
    job.last_error = error[:MAX_ERROR]
    job.locked_by = job.locked_until = None
    if permanent or job.attempts >= policy.max_attempts:
        job.state, job.finished_at = "dead", now
        return True
    job.state, job.run_after = "pending", now + policy.delay(job.attempts)
    return False


def expire_leases(policy: RetryPolicy, *, now: datetime | None = None) -> int:
    """Running jobs whose lease has ended (their worker was killed or hung) count a failed attempt and are
    pending again (dead after the last attempt); returns how many. Several workers may run it at once: each
    row is updated by one of them (the WHERE is checked again under the row lock)."""
    now = now or utcnow()
    expired = (OutboxJob.state == "running") & (OutboxJob.locked_until < now)
    error = "the worker's lease ended before the job finished (worker stopped or killed); delivered again"
    dead = db.session.execute(
        update(OutboxJob).where(expired, OutboxJob.attempts + 1 >= policy.max_attempts)
        .values(state="dead", attempts=OutboxJob.attempts + 1, finished_at=now, locked_by=None,
                locked_until=None, last_error=error)
        .execution_options(synchronize_session=False))
    again = db.session.execute(
        update(OutboxJob).where(expired)
        .values(state="pending", attempts=OutboxJob.attempts + 1, locked_by=None,   # due again at once
                locked_until=None, last_error=error)
        .execution_options(synchronize_session=False))
    return int(getattr(dead, "rowcount", 0) or 0) + int(getattr(again, "rowcount", 0) or 0)


def prune(keep: timedelta, *, now: datetime | None = None) -> int:
    """Delete done jobs finished more than `keep` ago (dead ones stay until an admin retries or they are
    handled); returns how many."""
    cutoff = (now or utcnow()) - keep
    result = db.session.execute(delete(OutboxJob).where(OutboxJob.state == "done", OutboxJob.finished_at < cutoff)
                                .execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


# ------------------------------------------------------------------ admin: list and retry

def list_jobs(*, state: str | None = None, kind: str | None = None, limit: int = 100) -> list[OutboxJob]:
    if state is not None and state not in STATES:
        raise ServiceError(f"state must be one of {', '.join(STATES)}", field="state")
    q = select(OutboxJob)
    if state:
        q = q.where(OutboxJob.state == state)
    if kind:
        q = q.where(OutboxJob.kind == kind)
    return list(db.session.scalars(q.order_by(OutboxJob.id.desc()).limit(limit)))


def counts() -> dict[str, int]:
    rows = db.session.execute(select(OutboxJob.state, func.count()).group_by(OutboxJob.state)).all()
    found = {state: int(n) for state, n in rows}
    return {state: found.get(state, 0) for state in STATES}


def job_dict(job: OutboxJob) -> dict[str, Any]:
    def iso(value: datetime | None) -> str | None:
        return value.isoformat().replace("+00:00", "Z") if value else None
    return {"id": job.id, "kind": job.kind, "key": job.key, "state": job.state, "attempts": job.attempts,
            "run_after": iso(job.run_after), "locked_by": job.locked_by, "locked_until": iso(job.locked_until),
            "last_error": job.last_error, "created_at": iso(job.created_at), "finished_at": iso(job.finished_at),
            "payload": job.payload}


def retry(job_id: int) -> OutboxJob:
    """A dead job pending again, due now, with a fresh count of attempts (audited)."""
    job = db.session.get(OutboxJob, job_id, with_for_update=True)
    if job is None:
        raise ServiceError(f"no outbox job {job_id}", field="id")
    if job.state != "dead":
        raise ServiceError(f"job {job_id} is {job.state}, not dead: only dead jobs are retried", field="id")
    _revive(job)
    return job


def retry_all_dead() -> list[int]:
    jobs = list(db.session.scalars(select(OutboxJob).where(OutboxJob.state == "dead").order_by(OutboxJob.id)
                                   .with_for_update()))
    for job in jobs:
        _revive(job)
    return [j.id for j in jobs]


def retry_dead_of(kind: str, key_prefix: str) -> list[int]:
    """Retry the dead jobs of `kind` whose key starts with `key_prefix` (e.g. one webhook endpoint's)."""
    like = key_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    jobs = list(db.session.scalars(select(OutboxJob).where(OutboxJob.state == "dead", OutboxJob.kind == kind,
                                                           OutboxJob.key.like(like, escape="\\"))
                                   .order_by(OutboxJob.id).with_for_update()))
    for job in jobs:
        _revive(job)
    return [j.id for j in jobs]


def _revive(job: OutboxJob) -> None:
    audit.record("outbox.retry", "outbox_job", str(job.id),
                 before={"state": job.state, "attempts": job.attempts, "last_error": job.last_error},
                 after={"state": "pending", "kind": job.kind, "key": job.key})
    job.state, job.attempts, job.run_after = "pending", 0, utcnow()
    job.finished_at = job.locked_by = job.locked_until = None
