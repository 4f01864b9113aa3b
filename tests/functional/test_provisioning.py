"""Outbound provisioning into a real SCIM service the project did not write (scim2-server on loopback), delivered by
the outbox worker: join → created, group change → updated, policy change → deactivated, remote down → retried then
delivered, import with a conflict, dry runs that write nothing, and the settings' validation."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from idp.cli.worker import Worker
from idp.config import Settings
from idp.extensions import db
from idp.models import AdminAudit, AppProvisioning, OutboxJob, ProvisionedAccount, SsoEvent, User, utcnow
from idp.services import accounts
from idp.services import apps as apps_svc
from idp.services import users as users_svc

from ..conftest import make_settings
from ..scim_peer import ScimPeer
from ..webclient import enrol_totp, login_admin

TOKEN = "peer-token-1"


@pytest.fixture
def settings(tmp_path: Path, key_template: Path) -> Settings:
    # the SCIM peer listens on loopback, which the SSRF guard refuses unless allowed
    return make_settings(tmp_path, key_template, provisioning_allow_private=True)


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[ScimPeer]:
    p = ScimPeer(tmp_path / "scim.log", TOKEN).start()
    yield p
    p.stop()


def cli(app: Flask, *args: str, stdin: str | None = None) -> Any:
    return app.test_cli_runner().invoke(args=list(args), input=stdin)


def run_worker() -> int:
    worker = Worker("test-worker")
    worker.run(once=True)
    return worker.ran


def make_due() -> None:
    for job in db.session.scalars(select(OutboxJob).where(OutboxJob.state == "pending")):
        job.run_after = utcnow() - timedelta(seconds=1)
    db.session.commit()


def events(username: str | None = None) -> list[SsoEvent]:
    q = select(SsoEvent).where(SsoEvent.event_type == "provision").order_by(SsoEvent.id)
    if username:
        q = q.where(SsoEvent.username == username)
    return list(db.session.scalars(q))


def account(app_id: int, username: str) -> ProvisionedAccount | None:
    user = users_svc.get_user(username)
    return db.session.scalar(select(ProvisionedAccount).where(ProvisionedAccount.app_id == app_id,
                                                              ProvisionedAccount.user_id == user.id))


@pytest.fixture
def crm(app: Flask, peer: ScimPeer) -> Any:
    """An app whose policy admits the engineering group, provisioned into the peer."""
    users_svc.add_group("engineering")
    row, _ = apps_svc.register_oidc_app(name="CRM", slug="crm", settings=apps_svc.initial_settings(
        redirect_uris=("https://crm.example.com/cb",)))
    apps_svc.change_settings(row, permitted="admin-approved", allow_groups=("engineering",))
    db.session.commit()
    r = cli(app, "apps", "provisioning", "crm", "--scim-url", peer.url, "--token-stdin",
            "--operations", "create,update,deactivate,delete", "--map", 'title=formula:user.groups.join(",")',
            "--enable", stdin=TOKEN + "\n")
    assert r.exit_code == 0, r.output
    assert TOKEN not in r.output
    run_worker()   # the reconciliation that enabling scheduled (nobody to provision yet)
    return row


def add_user(name: str, groups: list[str] | None = None, email: str | None = None) -> User:
    user = users_svc.add_user(name, email=email or f"{name}@example.com", password_hash=None,
                              first_name=name.title(), last_name="Example", groups=groups or [])
    db.session.commit()
    return user


def test_join_creates_the_account_group_change_updates_it_policy_change_deactivates_it(
        app: Flask, peer: ScimPeer, crm: Any) -> None:
    alice = add_user("alice", ["engineering"])
    add_user("bob")   # not permitted: nothing is pushed
    assert run_worker() == 1
    remote = peer.user("alice")
    assert remote is not None and peer.user("bob") is None
    assert remote["active"] is True and remote["externalId"] == str(alice.id)
    assert remote["name"] == {"givenName": "Alice", "familyName": "Example"}
    assert remote["displayName"] == "Alice Example" and remote["title"] == "engineering"
    assert [(e["type"], e["value"]) for e in remote["emails"]] == [("work", "alice@example.com")]
    acct = account(crm.id, "alice")
    assert acct is not None and acct.state == "active" and acct.remote_id == remote["id"]
    [created] = events("alice")
    assert (created.app_slug, created.protocol, created.reason, created.outcome) == ("crm", "scim", "provisioned",
                                                                                    "success")
    assert created.detail["operation"] == "create" and created.detail["remote_status"] == 201

    # a change that does not alter what is pushed sends nothing
    users_svc.set_user(alice, add_groups=[])
    accounts.add_member(users_svc.add_group("sales"), "bob")
    db.session.commit()
    run_worker()
    assert len(events("alice")) == 1

    # group change: alice joins sales -> her title is updated at the app
    users_svc.set_user(alice, add_groups=["sales"])
    db.session.commit()
    assert run_worker() == 1
    assert peer.user("alice")["title"] == "engineering,sales"   # type: ignore[index]
    assert events("alice")[-1].detail["operation"] == "update"
    # the group goes: its members are updated
    users_svc.remove_group("sales")
    db.session.commit()
    run_worker()
    assert peer.user("alice")["title"] == "engineering"   # type: ignore[index]

    # policy change: only sales may use the app now -> alice is deactivated there
    apps_svc.change_settings(apps_svc.get_app("crm"), allow_groups=("sales-new",))
    db.session.commit()
    run_worker()
    assert peer.user("alice")["active"] is False   # type: ignore[index]
    assert account(crm.id, "alice").state == "inactive"   # type: ignore[union-attr]
    last = events("alice")[-1]
    assert (last.reason, last.detail["operation"]) == ("deprovisioned", "deactivate")
    # and back: permitted again -> reactivated
    apps_svc.change_settings(apps_svc.get_app("crm"), allow_groups=("engineering",))
    db.session.commit()
    run_worker()
    assert peer.user("alice")["active"] is True   # type: ignore[index]
    # disabling the user deactivates the account too
    accounts.set_disabled(alice, True)
    db.session.commit()
    run_worker()
    assert peer.user("alice")["active"] is False   # type: ignore[index]
    assert len(peer.users()) == 1   # one account all along


def test_remote_down_is_retried_then_delivered(app: Flask, peer: ScimPeer, crm: Any) -> None:
    peer.stop()
    add_user("carol", ["engineering"])
    run_worker()
    [job] = db.session.scalars(select(OutboxJob).where(OutboxJob.kind == "provision.user"))
    assert job.state == "pending" and job.attempts == 1 and "could not reach" in (job.last_error or "")
    failed = events("carol")[-1]
    assert (failed.reason, failed.outcome) == ("provisioning_failed", "error")
    assert failed.detail["will_retry"] is True and failed.detail["operation"] == "search"
    run_worker()
    assert db.session.get(OutboxJob, job.id, populate_existing=True).attempts == 1   # backing off: not due yet
    peer.start()
    make_due()
    run_worker()
    assert db.session.get(OutboxJob, job.id, populate_existing=True).state == "done"
    assert peer.user("carol") is not None and len(peer.users()) == 1
    assert events("carol")[-1].reason == "provisioned"


def test_a_dead_job_is_listed_and_retried_from_the_console(app: Flask, peer: ScimPeer, crm: Any,
                                                             client: Any) -> None:
    peer.add_user("erin", externalId="somebody-else")   # erin's userName is taken by another person's account
    add_user("erin", ["engineering"])
    run_worker()
    [job] = db.session.scalars(select(OutboxJob).where(OutboxJob.kind == "provision.user"))
    assert job.state == "dead" and "externalId" in (job.last_error or "")
    conflict = events("erin")[-1]
    assert (conflict.reason, conflict.detail["operation"]) == ("remote_conflict", "link")
    assert conflict.detail["will_retry"] is False
    r = cli(app, "outbox", "list", "--state", "dead", "--format", "json")
    assert [d["id"] for d in json.loads(r.output)] == [job.id]

    # the console lists it; an admin retries it there (audited with the admin as actor)
    pw = app.extensions["idp.passwords"]
    root = users_svc.add_user("root", email="root@example.com", password_hash=pw.hash("root password 1"),
                              is_admin=True)
    enrol_totp(root)
    db.session.commit()
    login_admin(client, "root", "root password 1")
    page = client.get("/admin/outbox").get_data(as_text=True)
    assert f'data-job="{job.id}"' in page and "externalId" in page and 'id="outbox-count-dead">1<' in page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)   # type: ignore[union-attr]
    assert client.post(f"/admin/outbox/{job.id}/retry", data={}).status_code == 400   # no CSRF token
    resp = client.post(f"/admin/outbox/{job.id}/retry", data={"csrf_token": token})
    assert resp.status_code == 303
    retried = db.session.get(OutboxJob, job.id, populate_existing=True)
    assert retried is not None and retried.state == "pending" and retried.attempts == 0
    row = db.session.scalar(select(AdminAudit).where(AdminAudit.action == "outbox.retry"))
    assert row is not None and row.actor == "web:root"
    assert 'id="outbox-empty"' in client.get("/admin/outbox").get_data(as_text=True)
    again = client.post(f"/admin/outbox/{job.id}/retry", data={"csrf_token": token}, follow_redirects=True)
    assert "not dead" in again.get_data(as_text=True)

    # the app page: settings without the secret, the provisioning log
    detail = client.get("/admin/apps/crm").get_data(as_text=True)
    assert 'id="provisioning-log"' in detail and "remote_conflict" in detail and TOKEN not in detail
    assert peer.url in detail and 'id="provisioning-status"' in detail


def test_import_reports_matches_and_conflicts_and_dry_run_writes_nothing(app: Flask, peer: ScimPeer,
                                                                         crm: Any) -> None:
    r = cli(app, "apps", "provisioning", "crm", "--disable")
    assert r.exit_code == 0, r.output
    for name in ("alice", "bob", "carol", "dave"):
        add_user(name, ["engineering"])
    run_worker()   # disabled: jobs run but push nothing
    alice_id = peer.add_user("alice")                                          # by userName
    bob_id = peer.add_user("robert", emails=[{"value": "bob@example.com", "type": "work"}])   # by email
    peer.add_user("carol", externalId="hr-77")                                # carol's userName ...
    peer.add_user("c.other", emails=[{"value": "carol@example.com"}])         # ... and her email: two accounts
    before_jobs = db.session.scalar(select(func.count(OutboxJob.id)))
    before_events = len(events())

    dry = cli(app, "apps", "provisioning", "crm", "--import", "--dry-run", "--format", "json")
    assert dry.exit_code == 0, dry.output
    report = json.loads(dry.output)
    assert {(m["username"], m["remote_id"]) for m in report["matches"]} == {("alice", alice_id), ("bob", bob_id)}
    assert [c["subject"] for c in report["conflicts"]] == ["carol"]
    assert "several accounts" in report["conflicts"][0]["why"]
    assert report["to_create"] == ["dave"] and report["dry_run"] is True
    assert db.session.scalar(select(func.count(ProvisionedAccount.id))) == 0
    assert db.session.scalar(select(func.count(OutboxJob.id))) == before_jobs
    assert len(events()) == before_events and len(peer.users()) == 4

    r = cli(app, "apps", "provisioning", "crm", "--import")
    assert r.exit_code == 0, r.output
    assert "conflict  carol" in r.output and "match     alice" in r.output
    assert account(crm.id, "alice").remote_id == alice_id   # type: ignore[union-attr]
    assert account(crm.id, "bob").remote_id == bob_id   # type: ignore[union-attr]
    assert account(crm.id, "carol") is None
    assert events("carol")[-1].reason == "remote_conflict"
    r = cli(app, "apps", "provisioning", "crm", "--enable")
    assert r.exit_code == 0, r.output
    run_worker()
    assert peer.user("alice")["externalId"] == str(users_svc.get_user("alice").id)   # type: ignore[index]
    assert peer.user("robert") is None   # the linked account now carries what the mapping says
    assert peer.user("bob")["id"] == bob_id   # type: ignore[index]
    assert peer.user("dave") is not None
    assert len(peer.users()) == 5   # dave created; carol refused (her userName belongs to hr-77)
    assert account(crm.id, "carol") is None or account(crm.id, "carol").remote_id is None  # type: ignore[union-attr]


def test_reconcile_finds_drift_and_its_dry_run_writes_nothing(app: Flask, peer: ScimPeer, crm: Any) -> None:
    add_user("alice", ["engineering"])
    add_user("bob", ["engineering"])
    run_worker()
    assert len(peer.users()) == 2
    peer.delete_user(account(crm.id, "alice").remote_id)   # type: ignore[arg-type, union-attr]
    jobs = db.session.scalar(select(func.count(OutboxJob.id)))
    dry = cli(app, "apps", "provisioning", "crm", "--reconcile", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "create     alice: the account is gone at the app" in dry.output and "bob" not in dry.output
    assert db.session.scalar(select(func.count(OutboxJob.id))) == jobs
    assert account(crm.id, "alice").remote_id is not None   # type: ignore[union-attr]
    assert len(peer.users()) == 1
    r = cli(app, "apps", "provisioning", "crm", "--reconcile")
    assert r.exit_code == 0 and "1 change(s) enqueued" in r.output
    run_worker()
    assert peer.user("alice") is not None and len(peer.users()) == 2


def test_deprovision_delete_removes_the_account(app: Flask, peer: ScimPeer, crm: Any) -> None:
    r = cli(app, "apps", "provisioning", "crm", "--deprovision", "delete")
    assert r.exit_code == 0, r.output
    alice = add_user("alice", ["engineering"])
    run_worker()
    assert peer.user("alice") is not None
    users_svc.set_user(alice, remove_groups=["engineering"])
    db.session.commit()
    run_worker()
    assert peer.user("alice") is None
    assert account(crm.id, "alice").state == "deleted"   # type: ignore[union-attr]
    assert events("alice")[-1].detail["operation"] == "delete"


def test_settings_are_validated_and_the_secret_never_shown(app: Flask, peer: ScimPeer, crm: Any) -> None:
    stored = db.session.get(AppProvisioning, crm.id)
    assert stored is not None and stored.secret_sealed.startswith("v1:") and TOKEN not in stored.secret_sealed
    audit_rows = list(db.session.scalars(select(AdminAudit).where(AdminAudit.action == "app.provisioning")))
    assert audit_rows and all(TOKEN not in json.dumps([a.before, a.after]) for a in audit_rows)
    shown = cli(app, "apps", "provisioning", "crm", "--show", "--format", "json")
    assert shown.exit_code == 0 and TOKEN not in shown.output
    doc = json.loads(shown.output)
    assert doc["has_secret"] is True and doc["enabled"] is True and doc["auth"] == "bearer"
    assert doc["mapping"]["userName"] == "username" and doc["mapping"]['emails[type eq "work"].value'] == "email"
    assert doc["mapping"]["title"] == 'formula:user.groups.join(",")'
    bad = {
        ("--scim-url", "ftp://x.example"): "absolute http",
        ("--map", "active=email"): "set by the IdP",
        ("--map", "emails[type eq 1].value=email"): "not valid",
        ("--map", "nickName=cost_centre"): "unknown user field",
        ("--map", "nickName=formula:user.email +"): "formula error",
        ("--map", "userName="): "must give userName",
        ("--operations", "create,fly"): "unknown operation",
        ("--deprovision", "delete", "--operations", "create,update,deactivate"): "needs the delete operation",
        ("--client-id", "c1"): "client credentials need",
    }
    for args, message in bad.items():
        r = cli(app, "apps", "provisioning", "crm", *args)
        assert r.exit_code != 0 and message in r.output and "Traceback" not in r.output, (args, r.output)
    assert db.session.get(AppProvisioning, crm.id, populate_existing=True).mapping == doc["mapping"]
    r = cli(app, "apps", "provisioning", "nosuch", "--show")
    assert r.exit_code == 1 and "no app" in r.output
    users_svc.add_group("x")
    row, _ = apps_svc.register_oidc_app(name="Other", slug="other", settings=apps_svc.initial_settings(
        redirect_uris=("https://other.example.com/cb",)))
    db.session.commit()
    r = cli(app, "apps", "provisioning", "other", "--scim-url", peer.url)
    assert r.exit_code == 1 and "give a credential" in r.output
    assert db.session.get(AppProvisioning, row.id) is None
    r = cli(app, "apps", "provisioning", "other", "--show", "--import")
    assert r.exit_code == 1 and "one of --show" in r.output


def test_events_cli_filters_provisioning(app: Flask, peer: ScimPeer, crm: Any) -> None:
    add_user("alice", ["engineering"])
    run_worker()
    r = cli(app, "events", "--type", "provision", "--protocol", "scim", "--format", "json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert [(e["username"], e["reason"], e["detail"]["operation"]) for e in rows] == [("alice", "provisioned",
                                                                                      "create")]


def test_a_stale_removal_never_deactivates_an_account_linked_again(app: Flask, peer: ScimPeer, crm: Any) -> None:
    """A dead removal job of a deleted user, retried after the app's account was linked to a user again, is
    dropped: it must not deactivate the account its new holder uses."""
    from idp.services import outbox
    from idp.services.provisioning import KIND_REMOVE

    alice = add_user("alice", ["engineering"])
    run_worker()
    remote_id = account(crm.id, "alice").remote_id   # type: ignore[union-attr]
    outbox.enqueue(KIND_REMOVE, f"prov:{crm.id}:user:{alice.id}",
                   {"app_id": crm.id, "username": "alice-old", "remote_id": remote_id})
    db.session.commit()
    run_worker()
    assert peer.user("alice")["active"] is True   # type: ignore[index]
    assert account(crm.id, "alice").state == "active"   # type: ignore[union-attr]


def test_usernames_are_unique_ignoring_case_on_every_path(app: Flask) -> None:
    add_user("carol")
    with pytest.raises(Exception) as info:
        users_svc.add_user("Carol", email="c2@example.com", password_hash=None)
    assert "unique ignoring case" in str(info.value)
    r = cli(app, "users", "add", "CAROL", "--email", "c3@example.com")
    assert r.exit_code != 0 and "already exists" in r.output
