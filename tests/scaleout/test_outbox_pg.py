"""The outbox on PostgreSQL: a claim skips the rows another worker holds (FOR UPDATE SKIP LOCKED) instead of waiting
for them, and two worker processes draining one queue into a SCIM peer deliver every job once."""

from __future__ import annotations

import re
import subprocess
import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import select, text

from idp.config import Settings
from idp.extensions import db
from idp.models import OutboxJob, SsoEvent
from idp.services import outbox
from idp.services import users as users_svc

from ..functional.test_provisioning import crm, peer, settings  # noqa: F401 - fixtures
from ..functional.test_worker_kill import BIN, worker_env
from .conftest import needs_services

pytestmark = needs_services
USERS = 40


def test_a_claim_skips_rows_another_worker_holds(app: Flask) -> None:
    assert db.engine.dialect.name == "postgresql"
    first, second = (outbox.enqueue("test.pg", f"k{i}", {}) for i in (1, 2))
    db.session.commit()
    held = outbox.claim("worker-a", timedelta(minutes=1))   # its transaction stays open: the row stays locked
    assert held is not None and held.id == first.id
    got: dict[str, Any] = {}

    def other_worker() -> None:
        with app.app_context():
            db.session.execute(text("SET LOCAL lock_timeout = '3s'"))
            job = outbox.claim("worker-b", timedelta(minutes=1))
            got["b"] = job.id if job is not None else None
            db.session.execute(text("SET LOCAL lock_timeout = '3s'"))
            third = outbox.claim("worker-c", timedelta(minutes=1))
            got["c"] = third.id if third is not None else None
            db.session.commit()

    t = threading.Thread(target=other_worker)
    t.start()
    t.join(10)
    assert not t.is_alive()
    assert got == {"b": second.id, "c": None}   # not the held row, and no wait for it
    db.session.commit()
    db.session.expire_all()
    states = {j.id: (j.state, j.locked_by) for j in db.session.scalars(select(OutboxJob))}
    assert states == {first.id: ("running", "worker-a"), second.id: ("running", "worker-b")}


def test_two_workers_share_the_queue_and_deliver_each_job_once(app: Flask, settings: Settings,  # noqa: F811
                                                                peer: Any, crm: Any, tmp_path: Path) -> None:  # noqa: F811
    for i in range(USERS):
        users_svc.add_user(f"user{i:02d}", email=f"user{i:02d}@example.com", password_hash=None,
                           groups=["engineering"])
    db.session.commit()
    jobs = len(db.session.scalars(select(OutboxJob).where(OutboxJob.state == "pending")).all())
    env = worker_env(settings)
    procs = [subprocess.Popen([str(BIN / "idp"), "worker", "--once", "--id", name], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for name in ("w1", "w2")]
    outputs = [p.communicate(timeout=180) for p in procs]
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out + err
    ran = [int(re.search(r"ran (\d+) job", out).group(1)) for out, _ in outputs]   # type: ignore[union-attr]
    assert sum(ran) == jobs and all(n > 0 for n in ran), ran
    db.session.expire_all()
    assert db.session.scalars(select(OutboxJob).where(OutboxJob.state != "done")).all() == []
    assert Counter(u["userName"] for u in peer.users()) == Counter({f"user{i:02d}": 1 for i in range(USERS)})
    pushes = Counter(e.username for e in db.session.scalars(select(SsoEvent).where(
        SsoEvent.event_type == "provision", SsoEvent.reason == "provisioned")))
    assert pushes == Counter({f"user{i:02d}": 1 for i in range(USERS)})
