"""Webhooks on PostgreSQL: the database restarted while a worker delivers; every notice reaches the receiver (at
least once, the same webhook-id on a repeat) and every job ends done."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from flask import Flask
from sqlalchemy import select

from idp.config import Settings
from idp.errors import EventContext
from idp.events import record_event
from idp.extensions import db
from idp.models import OutboxJob
from idp.reasons import Reason

from ..functional.test_webhooks import add, receiver, settings  # noqa: F401 - fixtures
from ..functional.test_worker_kill import BIN, start_worker, worker_env
from ..webhook_receiver import Receiver
from .conftest import needs_services
from .test_faults import CLUSTER, pg

pytestmark = needs_services
NOTICES = 30


def test_no_notice_is_lost_across_a_database_restart(app: Flask, settings: Settings,  # noqa: F811
                                                     receiver: Receiver, tmp_path: Path) -> None:  # noqa: F811
    assert db.engine.dialect.name == "postgresql" and CLUSTER, "needs IDP_TEST_PG_CLUSTER (tests/services.sh)"
    add(app, receiver, "--event", "sso.success")
    for i in range(NOTICES):
        record_event(EventContext(event_type="sso", app_slug="crm", username=f"user{i:02d}"), Reason.OK,
                     client_ip=None, user_agent=None)
    db.session.commit()
    notices = {j.payload["event"]["id"] for j in db.session.scalars(select(OutboxJob))}
    db.session.commit()
    db.session.remove()
    env = {**worker_env(settings), "IDP_WEBHOOK_ALLOW_PRIVATE": "true"}
    receiver.default = (0.3, 200)
    proc = start_worker(env, "steady", tmp_path / "worker.log")
    try:
        receiver.wait_for(3, timeout=60)
        pg("stop")                     # mid-delivery: the worker cannot commit, claim or count a failure
        at_stop = len(receiver.received)
        try:
            time.sleep(3)
        finally:
            pg("start")
        deadline = time.time() + 90     # the worker carries on by itself once the database is back
        while time.time() < deadline and len(receiver.unique()) < NOTICES - 1:
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    db.engine.dispose()
    # a job whose outcome could not be recorded while the database was down waits for its lease: let it end and
    # let a worker run again (its housekeeping makes such a job pending, then it is delivered again)
    time.sleep(5.5)
    done = subprocess.run([str(BIN / "idp"), "worker", "--once", "--id", "after"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    db.session.expire_all()
    assert {j.state for j in db.session.scalars(select(OutboxJob))} == {"done"}, \
        (tmp_path / "worker.log").read_text()[-3000:]
    got = [r.webhook_id for r in receiver.received]
    assert at_stop < NOTICES
    assert "could not" in (tmp_path / "worker.log").read_text()   # the worker saw the database go away
    assert set(got) == notices                       # nothing lost
    assert len(got) - len(set(got)) <= 2             # repeats only of what was in flight (at least once)
    assert all(r.verified for r in receiver.received)
