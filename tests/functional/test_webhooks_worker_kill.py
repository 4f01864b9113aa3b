"""A worker killed with SIGKILL while it POSTs a webhook: its lease ends, another worker delivers the notice again
with the same webhook-id, and a receiver that deduplicates by webhook-id has every notice exactly once (at least
once on the wire, nothing lost)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from flask import Flask
from sqlalchemy import select

from idp.config import Settings
from idp.errors import EventContext
from idp.events import record_event
from idp.extensions import db
from idp.models import OutboxJob, WebhookDelivery
from idp.reasons import Reason

from ..webhook_receiver import Receiver
from .test_webhooks import add, receiver, settings  # noqa: F401 - fixtures
from .test_worker_kill import BIN, running_job_of, start_worker, worker_env

NOTICES = 8


def test_a_delivery_in_flight_when_its_worker_is_killed_is_not_lost(app: Flask, settings: Settings,  # noqa: F811
                                                                     receiver: Receiver,  # noqa: F811
                                                                     tmp_path: Path) -> None:
    add(app, receiver, "--event", "sso.success")
    for i in range(NOTICES):
        record_event(EventContext(event_type="sso", app_slug="crm", username=f"user{i}"), Reason.OK,
                     client_ip=None, user_agent=None)
    db.session.commit()
    env = {**worker_env(settings), "IDP_WEBHOOK_ALLOW_PRIVATE": "true", "IDP_WEBHOOK_TIMEOUT": "20"}
    receiver.default = (3.0, 200)    # slow answers: the worker is inside a POST when it is killed
    proc = start_worker(env, "doomed", tmp_path / "worker.log")
    in_flight = None
    try:
        receiver.wait_for(2, timeout=60)
        in_flight = running_job_of("doomed")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert in_flight is not None, (tmp_path / "worker.log").read_text()[-3000:]
    assert running_job_of("doomed") is not None        # left running: only its lease frees it
    receiver.default = (0.0, 200)

    time.sleep(5.5)   # the killed worker's lease (IDP_WORKER_LEASE=5) ends
    done = subprocess.run([str(BIN / "idp"), "worker", "--once", "--id", "survivor"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    db.session.expire_all()
    assert {j.state for j in db.session.scalars(select(OutboxJob))} == {"done"}
    sent = Counter(r.webhook_id for r in receiver.received)
    notices = {j.payload["event"]["id"] for j in db.session.scalars(select(OutboxJob))}
    assert set(sent) == notices and len(notices) == NOTICES          # nothing lost
    assert max(sent.values()) <= 2                                   # the one in flight went twice, at most
    assert sorted(e["subject"] for e in receiver.unique()) == sorted(f"user{i}" for i in range(NOTICES))
    assert all(r.verified for r in receiver.received)
    ok_rows = Counter(d.notice_id for d in db.session.scalars(select(WebhookDelivery)) if d.ok)
    assert ok_rows == Counter({n: 1 for n in notices})                # the killed attempt left no log row
