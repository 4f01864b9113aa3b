"""A worker killed with SIGKILL in the middle of a provisioning job: its lease ends, another worker delivers the job
again, and the SCIM peer ends with exactly one account per user (nothing lost, nothing duplicated)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from flask import Flask
from sqlalchemy import select

from idp.config import Settings
from idp.extensions import db
from idp.models import OutboxJob, ProvisionedAccount, SsoEvent
from idp.services import users as users_svc

from .test_provisioning import TOKEN, cli, crm, peer, settings  # noqa: F401 - fixtures

BIN = Path(sys.executable).parent
USERS = 25


def worker_env(s: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update({"IDP_BASE_URL": s.base_url, "IDP_DATABASE_URL": s.database_url, "IDP_INSTANCE_DIR": str(s.instance_dir),
                "IDP_CERT_DIR": str(s.cert_dir), "IDP_SECRET_KEY": s.secret_key,
                "IDP_PROVISIONING_ALLOW_PRIVATE": "true", "IDP_WORKER_LEASE": "5"})
    return env


def start_worker(env: dict[str, str], name: str, log: Path, *args: str) -> subprocess.Popen[bytes]:
    fh = log.open("ab")
    proc = subprocess.Popen([str(BIN / "idp"), "worker", "--id", name, *args], env=env, stdout=fh,
                            stderr=subprocess.STDOUT)
    fh.close()
    return proc


def running_job_of(name: str) -> OutboxJob | None:
    db.session.commit()   # a fresh read
    found = db.session.scalar(select(OutboxJob).where(OutboxJob.state == "running", OutboxJob.locked_by == name))
    db.session.commit()
    return found


def test_a_job_in_flight_when_its_worker_is_killed_is_delivered_once(app: Flask, settings: Settings,  # noqa: F811
                                                                      peer, crm, tmp_path: Path) -> None:  # noqa: F811
    for i in range(USERS):
        users_svc.add_user(f"user{i:02d}", email=f"user{i:02d}@example.com", password_hash=None,
                           groups=["engineering"])
    db.session.commit()
    env = worker_env(settings)
    killed_in_flight = None
    for attempt in range(5):   # kill the worker while it holds a job (it almost always does; try again if not)
        name = f"doomed-{attempt}"
        proc = start_worker(env, name, tmp_path / "worker.log")
        deadline = time.time() + 30
        in_flight = None
        while time.time() < deadline and proc.poll() is None:
            in_flight = running_job_of(name)
            if in_flight is not None and len(peer.users()) >= 3:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        if in_flight is not None and running_job_of(name) is not None:
            killed_in_flight = running_job_of(name)
            break
    assert killed_in_flight is not None, (tmp_path / "worker.log").read_text()[-3000:]
    db.session.expire_all()

    time.sleep(5.5)   # the killed worker's lease (IDP_WORKER_LEASE=5) ends
    done = subprocess.run([str(BIN / "idp"), "worker", "--once", "--id", "survivor"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    db.session.expire_all()
    redelivered = db.session.get(OutboxJob, killed_in_flight.id, populate_existing=True)
    assert redelivered is not None and redelivered.state == "done" and redelivered.attempts == 1
    assert "lease ended" in (redelivered.last_error or "")
    assert db.session.scalars(select(OutboxJob).where(OutboxJob.state != "done")).all() == []

    remote = Counter(u["userName"] for u in peer.users())
    assert remote == Counter({f"user{i:02d}": 1 for i in range(USERS)})   # every user once, none twice
    accounts = {a.user_id: a.remote_id for a in db.session.scalars(select(ProvisionedAccount))}
    assert len(accounts) == USERS and len(set(accounts.values())) == USERS
    pushes = Counter(e.username for e in db.session.scalars(select(SsoEvent).where(SsoEvent.event_type == "provision"))
                     if e.reason == "provisioned")
    assert pushes == Counter({f"user{i:02d}": 1 for i in range(USERS)})
    assert cli(app, "outbox", "list", "--state", "dead").output.count("\n") == 1   # the header only
