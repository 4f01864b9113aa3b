"""The outbox: durable jobs written in the caller's unit of work (so a change and the work it causes commit or
roll back together) and run by `idp worker`. Kinds register a handler; the worker claims due jobs (on PostgreSQL
with FOR UPDATE SKIP LOCKED, so several workers share the queue), runs them, retries with exponential backoff and
moves a job that keeps failing to `dead`, where admins see and retry it.

Why not a job library: the libraries that fit (procrastinate: PostgreSQL only; dramatiq / rq: a Redis or
RabbitMQ broker) cannot enqueue in the same SQLite or PostgreSQL transaction as the change that causes the job,
which is the point of an outbox (a user created and its provisioning job are one commit, never one without the
other).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from ..extensions import db
from ..models import OutboxJob, utcnow

Handler = Callable[[dict[str, Any]], None]
HANDLERS: dict[str, Handler] = {}
MAX_KEY = 200


class PermanentFailure(Exception):
    """Raised by a handler for a failure that retrying cannot fix (a 400 from the remote, a refused
    configuration): the job goes to `dead` at once."""


def handler(kind: str) -> Callable[[Handler], Handler]:
    """Register the function that runs jobs of `kind` (it raises to fail; PermanentFailure to stop retrying)."""
    def register(fn: Handler) -> Handler:
        HANDLERS[kind] = fn
        return fn
    return register


def enqueue(kind: str, key: str, payload: dict[str, Any], *, delay: timedelta | None = None) -> OutboxJob:
    """Add a job in the caller's unit of work. Jobs with the same `key` (e.g. "app:3:user:17") run in order."""
    now = utcnow()
    job = OutboxJob(kind=kind, key=key[:MAX_KEY], payload=payload, state="pending", attempts=0,
                    run_after=now + (delay or timedelta(0)), created_at=now)
    db.session.add(job)
    return job
