"""Retention: `idp events purge` and the worker's purge chain delete old events (and audit rows when a retention
is set), ended throttles, expired state, dead sessions with their participants, old enrolment links
and unseen devices, in batches, and keep everything recent; a purge of many rows runs beside sign-ins
without blocking them. The same tests run on PostgreSQL (tests/scaleout/test_retention_pg.py)."""

from __future__ import annotations

import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, insert, select

from idp.cli.worker import Worker
from idp.config import Settings
from idp.extensions import db
from idp.models import (
    AdminAudit,
    ConnectedApp,
    EnrolmentLink,
    IdpSession,
    KnownDevice,
    OutboxJob,
    PendingRequest,
    SeenRequest,
    SessionParticipant,
    SsoEvent,
    ThrottleCounter,
    User,
    utcnow,
)
from idp.services import retention
from idp.services import users as users_svc

from ..conftest import make_settings
from ..webclient import Browser, saml_form
from .conftest import PASSWORD
from .test_worker_kill import BIN, worker_env

BATCH = 100
OLD_EVENTS = 2 * BATCH + 37     # three batches, the last one short


@pytest.fixture
def settings(tmp_path: Path, key_template: Path) -> Settings:
    return make_settings(tmp_path, key_template, retention_batch=BATCH, audit_retention_days=30)


def count(model: type) -> int:
    db.session.commit()
    return int(db.session.scalar(select(func.count()).select_from(model)) or 0)


def seed() -> dict[str, int]:
    """Old and recent rows of every kind; returns how many old ones each rule should delete."""
    now = utcnow()
    old, recent = now - timedelta(days=500), now - timedelta(days=1)
    db.session.execute(insert(SsoEvent), [
        {"at": old if i < OLD_EVENTS else recent, "event_type": "sso", "outcome": "error",
         "reason": "malformed_request", "client_ip": "192.0.2.1"} for i in range(OLD_EVENTS + 5)])
    db.session.execute(insert(AdminAudit), [
        {"at": now - timedelta(days=d), "actor": "cli", "action": "user.add", "target_type": "user", "target": "x"}
        for d in (40, 31, 29, 1)])
    db.session.execute(insert(ThrottleCounter), [
        {"key": "login:ip:old", "failures": 3, "window_start": now - timedelta(hours=3)},
        {"key": "login:ip:locked", "failures": 40, "window_start": now - timedelta(hours=3),
         "locked_until": now + timedelta(minutes=10)},
        {"key": "login:ip:now", "failures": 1, "window_start": now}])
    db.session.execute(insert(PendingRequest), [
        {"id": "expired", "data": {"kind": "x"}, "created_at": old, "expires_at": now - timedelta(minutes=1)},
        {"id": "live", "data": {"kind": "x"}, "created_at": now, "expires_at": now + timedelta(minutes=10)}])
    db.session.execute(insert(SeenRequest), [
        {"issuer": "sp", "request_id": "old", "expires_at": now - timedelta(minutes=1)},
        {"issuer": "sp", "request_id": "new", "expires_at": now + timedelta(minutes=10)}])
    user = users_svc.add_user("carol", email="carol@example.com", password_hash=None)
    app_row = ConnectedApp(slug="crm", name="CRM", settings={})
    db.session.add(app_row)
    db.session.flush()
    db.session.execute(insert(IdpSession), [
        {"id": "ended", "user_id": user.id, "created_at": now - timedelta(days=3), "authn_at": now - timedelta(days=3),
         "last_seen": now - timedelta(days=3), "ended_at": now - timedelta(days=2)},
        {"id": "idle", "user_id": user.id, "created_at": now - timedelta(days=5), "authn_at": now - timedelta(days=5),
         "last_seen": now - timedelta(days=5)},
        {"id": "live", "user_id": user.id, "created_at": now, "authn_at": now, "last_seen": now}])
    db.session.execute(insert(SessionParticipant), [
        {"session_id": sid, "app_id": app_row.id, "name_id": "carol", "name_id_format": "email",
         "session_index": f"i-{sid}", "protocol": "saml"} for sid in ("ended", "idle", "live")])
    db.session.execute(insert(EnrolmentLink), [
        {"user_id": user.id, "token_hash": "a" * 64, "expires_at": now - timedelta(days=10), "created_by": "cli"},
        {"user_id": user.id, "token_hash": "b" * 64, "expires_at": now + timedelta(days=1),
         "used_at": now - timedelta(days=8), "created_by": "cli"},
        {"user_id": user.id, "token_hash": "c" * 64, "expires_at": now + timedelta(days=1), "created_by": "cli"}])
    db.session.execute(insert(KnownDevice), [
        {"user_id": user.id, "fingerprint": f"{d:064d}", "first_seen": now - timedelta(days=d),
         "last_seen": now - timedelta(days=d)} for d in (401, 10)])
    db.session.commit()
    return {"events": OLD_EVENTS, "audit": 2, "throttle": 1, "pending_requests": 1, "seen_requests": 1,
            "sessions": 2, "enrolment_links": 2, "known_devices": 1}


def assert_only_recent_left() -> None:
    assert count(SsoEvent) == 5
    assert count(AdminAudit) >= 2          # the two recent ones, plus the purge's own row
    assert set(db.session.scalars(select(ThrottleCounter.key))) == {"login:ip:locked", "login:ip:now"}
    assert list(db.session.scalars(select(PendingRequest.id))) == ["live"]
    assert list(db.session.scalars(select(SeenRequest.request_id))) == ["new"]
    assert list(db.session.scalars(select(IdpSession.id))) == ["live"]
    assert list(db.session.scalars(select(SessionParticipant.session_id))) == ["live"]
    assert list(db.session.scalars(select(EnrolmentLink.token_hash))) == ["c" * 64]
    assert count(KnownDevice) == 1 and count(User) == 1


def purge_rows() -> list[AdminAudit]:
    db.session.commit()
    return list(db.session.scalars(select(AdminAudit).where(AdminAudit.action == "retention.purge")))


def test_cli_dry_run_counts_then_purge_deletes_in_batches(app: Flask) -> None:
    expected = seed()
    runner = app.test_cli_runner()
    dry = runner.invoke(args=["events", "purge", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    would = {ln.split()[0]: int(ln.split()[1]) for ln in dry.output.splitlines() if ln.endswith(" would be deleted")}
    assert would == expected
    assert count(SsoEvent) == OLD_EVENTS + 5 and not purge_rows()
    done = runner.invoke(args=["events", "purge"])
    assert done.exit_code == 0, done.output
    lines = {ln.split()[0]: int(ln.split()[1]) for ln in done.output.splitlines() if ln.endswith(" deleted")}
    assert lines == expected
    assert_only_recent_left()
    (row,) = purge_rows()
    assert row.after == {"deleted": expected} and row.actor.startswith("cli")
    # nothing left to delete: no second audit row
    again = runner.invoke(args=["events", "purge"])
    assert again.exit_code == 0 and all(ln.split()[1] == "0" for ln in again.output.splitlines())
    assert len(purge_rows()) == 1


def test_audit_rows_are_kept_without_a_retention(app: Flask, tmp_path: Path, key_template: Path) -> None:
    app.extensions["idp.settings"] = make_settings(tmp_path, key_template, retention_batch=BATCH)
    seed()
    out = app.test_cli_runner().invoke(args=["events", "purge", "--dry-run"])
    assert "audit" not in out.output and "events" in out.output


def test_the_worker_purges_as_a_chain_of_one_batch_jobs(app: Flask) -> None:
    expected = seed()
    worker = Worker("retention-test")
    worker.housekeeping()                       # schedules the chain
    worker.housekeeping()                       # ... once: one is unfinished
    assert count(OutboxJob) == 1
    for _ in range(200):   # each next batch is due after a pause (retention.pause_after): run until none is left
        worker.run(once=True)
        if not db.session.scalar(select(func.count()).select_from(OutboxJob).where(OutboxJob.state == "pending")):
            break
        time.sleep(0.03)
    assert_only_recent_left()
    (row,) = purge_rows()
    assert row.after == {"deleted": expected} and row.actor == "worker"
    jobs = list(db.session.scalars(select(OutboxJob).where(OutboxJob.kind == "retention.purge")))
    assert all(j.state == "done" for j in jobs)
    # one job per batch that deleted something (3 of events, 1 of each other kind), one for the audit row
    assert len(jobs) == OLD_EVENTS // BATCH + 1 + (len(expected) - 1) + 1
    # every job after the first was due only after a pause (the database left to sign-ins between batches)
    assert all(j.run_after - j.created_at >= retention.PAUSE_MIN for j in jobs[1:])
    worker.housekeeping()                       # within IDP_RETENTION_EVERY_MINUTES: no new chain
    assert count(OutboxJob) == len(jobs)


def test_the_pause_after_a_batch_is_as_long_as_the_batch_within_bounds() -> None:
    assert retention.pause_after(timedelta(milliseconds=1)) == retention.PAUSE_MIN
    assert retention.pause_after(timedelta(milliseconds=300)) == timedelta(milliseconds=300)
    assert retention.pause_after(timedelta(seconds=30)) == retention.PAUSE_MAX


def test_the_worker_starts_no_purge_when_nothing_is_old(app: Flask) -> None:
    Worker("retention-test").run(once=True)
    assert count(OutboxJob) == 0 and not purge_rows()


def test_sign_ins_complete_while_a_large_purge_runs(app: Flask, settings: Settings, make_sp, browser: Browser,  # type: ignore[no-untyped-def]
                                                    alice, tmp_path: Path) -> None:
    old = utcnow() - timedelta(days=500)
    rows = [{"at": old, "event_type": "sso", "outcome": "error", "reason": "malformed_request"}] * 10_000
    for _ in range(10):
        db.session.execute(insert(SsoEvent), rows)
    db.session.commit()
    sp = make_sp("pysaml2")
    env = {**worker_env(settings), "IDP_RETENTION_BATCH": "1000"}
    log = (tmp_path / "purge.log").open("wb")
    proc = subprocess.Popen([str(BIN / "idp"), "events", "purge"], env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    during = 0
    try:
        while proc.poll() is None:
            form = saml_form(browser.sso(sp.authn_request("redirect"), "alice", PASSWORD))
            assert form is not None and form.action == sp.acs_url
            if proc.poll() is None:
                during += 1
    finally:
        proc.wait(120)
    output = (tmp_path / "purge.log").read_text()
    assert proc.returncode == 0, output
    assert "events" in output and " 100000 deleted" in output, output
    assert during >= 1, "the purge ended before the first sign-in: make it larger"
    db.session.commit()
    assert db.session.scalar(select(func.count()).select_from(SsoEvent).where(SsoEvent.at < utcnow() - timedelta(
        days=400))) == 0
    assert count(SsoEvent) >= during      # every sign-in's own event is there
