"""Shared state in the SQL database: unique constraints and conditional updates give the atomicity."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, delete, event, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, SessionTransaction

from ..extensions import db
from ..models import PendingRequest, SeenRequest, ThrottleCounter, User, utcnow
from ..prepared import Prepared
from .base import RecordedFirstElsewhere, ThrottleRule

_PURGE_EVERY = 500
# INSERT … ON CONFLICT DO NOTHING: a replay is a row count of 0, not an error that would abort the
# request's transaction (the store writes in the caller's unit of work and never rolls it back).
_REMEMBER = Prepared({"sqlite": sqlite_insert(SeenRequest).on_conflict_do_nothing(),
                      "postgresql": pg_insert(SeenRequest).on_conflict_do_nothing()},
                     column_keys=("issuer", "request_id", "expires_at"))

# prepared: every SSO asks it (DbState.remember_at_commit)
_SEEN = Prepared(select(SeenRequest.id).where(SeenRequest.issuer == bindparam("issuer"),
                                              SeenRequest.request_id == bindparam("request_id"),
                                              SeenRequest.expires_at >= bindparam("now")))

# prepared: the token endpoint replaces a code's record on every redemption
_REPLACE = Prepared(update(PendingRequest).where(PendingRequest.id == bindparam("tid"))
                    .values(data=bindparam("d"), expires_at=bindparam("exp")))


_AT_COMMIT = "idp.remember_at_commit"


@event.listens_for(Session, "before_commit")
def _record_at_commit(session: Session) -> None:
    """Write the keys deferred by DbState.remember_at_commit, first in the commit (see there); a SAVEPOINT's
    release is not the commit (the keys wait for the transaction's)."""
    if session.get_nested_transaction() is not None:
        return
    pending = session.info.pop(_AT_COMMIT, None)
    if not pending:
        return
    for state, key, ttl_s in pending:
        if not state.remember_once(key, ttl_s):
            raise RecordedFirstElsewhere(key)


@event.listens_for(Session, "after_transaction_end")
def _forget_at_end(session: Session, transaction: SessionTransaction) -> None:
    """The end of the transaction, however it ended: a rolled-back unit of work records nothing, deferred keys
    included (a SAVEPOINT ending inside it keeps them: the check passed in the transaction, which may commit)."""
    if transaction.parent is None:
        session.info.pop(_AT_COMMIT, None)


def _insert_ignoring_conflicts(table: Any) -> Any:
    dialect = db.session.get_bind().dialect.name
    return (pg_insert(table) if dialect == "postgresql" else sqlite_insert(table)).on_conflict_do_nothing()


class DbState:
    """Writes happen in the caller's unit of work (the request or CLI command commits them)."""

    name = "database"

    def __init__(self) -> None:
        self._writes = 0

    def _maybe_purge(self) -> None:
        self._writes += 1
        if self._writes % _PURGE_EVERY == 0:
            now = utcnow()
            db.session.execute(delete(SeenRequest).where(SeenRequest.expires_at < now))
            db.session.execute(delete(PendingRequest).where(PendingRequest.expires_at < now))

    def remember_once(self, key: str, ttl_s: int) -> bool:
        """Insert (a prepared statement, in the request's transaction) and leave the commit to the
        request's own commit (its event row, or the parked request): one commit per SSO instead of
        two. The unique constraint still decides between racing processes: the second insert waits
        for the first transaction, then fails."""
        self._maybe_purge()
        now = utcnow()
        issuer, _, request_id = key.partition("\n")
        if _REMEMBER.run({"issuer": issuer[:1024], "request_id": request_id[:256],
                          "expires_at": now + timedelta(seconds=ttl_s)}):
            return True
        # an expired row may still be there: take it over once it can no longer be a replay
        result = db.session.execute(
            update(SeenRequest)
            .where(SeenRequest.issuer == issuer[:1024], SeenRequest.request_id == request_id[:256],
                   SeenRequest.expires_at < now)
            .values(expires_at=now + timedelta(seconds=ttl_s)))
        return bool(getattr(result, "rowcount", 0))

    def remember_at_commit(self, key: str, ttl_s: int) -> bool:
        """The replay check now (a read: no lock), the insert when the unit of work commits.

        On SQLite the first write of a transaction takes the database's one write lock until the commit.
        An SSO that inserted its replay-cache row on arrival held that lock through policy, attributes and
        both RSA signatures (~1.1 of ~1.9 CPU-ms in process), so a second worker's SSO waited in SQLite's
        busy handler (sleeps of 1, 2, 5 … 100 ms) while its core idled. Deferred, every write of an SSO
        lands in one short transaction after the signing. The unique constraint still decides a race:
        the commit of the slower of two requests with one ID raises RecordedFirstElsewhere.
        """
        if self.was_remembered(key):
            return False
        pending: list[tuple[DbState, str, int]] = db.session.info.setdefault(_AT_COMMIT, [])
        pending.append((self, key, ttl_s))
        return True

    def was_remembered(self, key: str) -> bool:
        issuer, _, request_id = key.partition("\n")
        return _SEEN.first({"issuer": issuer[:1024], "request_id": request_id[:256], "now": utcnow()}) is not None

    def put(self, data: dict[str, Any], ttl_s: int) -> str:
        self._maybe_purge()
        token = secrets.token_urlsafe(24)
        now = utcnow()
        db.session.add(PendingRequest(id=token, data=data, created_at=now,
                                      expires_at=now + timedelta(seconds=ttl_s)))
        db.session.flush()
        return token

    def put_at(self, token: str, data: dict[str, Any], ttl_s: int) -> None:
        self._maybe_purge()
        now = utcnow()
        db.session.add(PendingRequest(id=token, data=data, created_at=now, expires_at=now + timedelta(seconds=ttl_s)))
        db.session.flush()

    def get(self, token: str, kind: str, *, consume: bool) -> dict[str, Any] | None:
        if "\x00" in token:        # never issued (token_urlsafe); PostgreSQL would refuse it as a parameter
            return None
        # populate_existing: always read the row as committed now, never a copy of it this session loaded
        # earlier (a racing request may have replaced it since: a code turned into its redeemed marker)
        row = db.session.get(PendingRequest, token, populate_existing=True)
        if row is None or row.data.get("kind") != kind:
            return None
        if row.expires_at <= utcnow():
            db.session.delete(row)
            return None
        data = dict(row.data)
        if consume:
            result = db.session.execute(delete(PendingRequest).where(PendingRequest.id == token))
            if not getattr(result, "rowcount", 0):
                return None  # another request consumed it first
        return data

    def replace(self, token: str, data: dict[str, Any], ttl_s: int) -> None:
        _REPLACE.run({"tid": token, "d": data, "exp": utcnow() + timedelta(seconds=ttl_s)})

    def retry_after(self, key: str) -> int:
        row = db.session.get(ThrottleCounter, key[:200])
        now = utcnow()
        if row is None or row.locked_until is None or row.locked_until <= now:
            return 0
        return max(1, int((row.locked_until - now).total_seconds() + 0.999))

    def record_failure(self, key: str, rule: ThrottleRule) -> int:
        now = utcnow()
        key = key[:200]
        # RETURNING rather than rowcount: psycopg reports -1 for an INSERT ... ON CONFLICT DO NOTHING
        created = db.session.execute(_insert_ignoring_conflicts(ThrottleCounter).values(
            key=key, failures=1, window_start=now).returning(ThrottleCounter.key)).first()
        if created is not None:
            return rule.lock_for(1)
        # another failure (maybe in another process) created the row first: count on it, locked
        row = db.session.get(ThrottleCounter, key, with_for_update=True, populate_existing=True)
        if row is None:  # purged in between
            return 0
        if now - row.window_start > rule.window and (row.locked_until is None or row.locked_until <= now):
            row.failures, row.window_start, row.locked_until = 0, now, None
        row.failures += 1
        lock = rule.lock_for(row.failures)
        if lock:
            row.locked_until = now + timedelta(seconds=lock)
        db.session.flush()
        return lock

    def reset_failures(self, key: str) -> None:
        db.session.execute(delete(ThrottleCounter).where(ThrottleCounter.key == key[:200]))

    def consume_totp_step(self, user_id: int, step: int) -> bool:
        result = db.session.execute(
            update(User)
            .where(User.id == user_id, or_(User.totp_last_step.is_(None), User.totp_last_step < step))
            .values(totp_last_step=step))
        return bool(getattr(result, "rowcount", 0))

    def reset_totp(self, user_id: int) -> None:
        db.session.execute(update(User).where(User.id == user_id).values(totp_last_step=None))

    def ping(self) -> None:
        with db.engine.connect() as conn:  # its own connection: the request's transaction is not touched
            conn.execute(text("SELECT 1"))
