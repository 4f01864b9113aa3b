"""Outbound provisioning of groups (the "groups" operation) into scim2-server on loopback, delivered by the outbox
worker: the groups an app's policy allows are pushed as SCIM Groups with the members provisioned there, kept in
step as members come and go, deleted when the group goes or stops mattering; reconciliation repairs them; with
"groups" off the app never hears of Groups."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from idp.config import Settings
from idp.extensions import db
from idp.models import OutboxJob, ProvisionedGroup, SsoEvent
from idp.services import accounts
from idp.services import apps as apps_svc
from idp.services import users as users_svc

from ..conftest import make_settings
from ..scim_peer import ScimPeer
from .test_provisioning import TOKEN, account, add_user, cli, make_due, run_worker


@pytest.fixture
def settings(tmp_path: Path, key_template: Path) -> Settings:
    return make_settings(tmp_path, key_template, provisioning_allow_private=True)   # the peer is on loopback


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[ScimPeer]:
    p = ScimPeer(tmp_path / "scim.log", TOKEN).start()
    yield p
    p.stop()


def group_events() -> list[SsoEvent]:
    rows = db.session.scalars(select(SsoEvent).where(SsoEvent.event_type == "provision").order_by(SsoEvent.id))
    return [e for e in rows if "group" in (e.detail or {})]


def make_app(app: Flask, peer: ScimPeer, slug: str, operations: str, **policy: Any) -> Any:
    row, _ = apps_svc.register_oidc_app(name=slug.upper(), slug=slug, settings=apps_svc.initial_settings(
        redirect_uris=(f"https://{slug}.example.com/cb",)))
    if policy:
        apps_svc.change_settings(row, **policy)
    db.session.commit()
    r = cli(app, "apps", "provisioning", slug, "--scim-url", peer.url, "--token-stdin", "--operations", operations,
            "--enable", stdin=TOKEN + "\n")
    assert r.exit_code == 0, r.output
    run_worker()
    return row


def members_of(peer: ScimPeer, name: str) -> set[str]:
    group = peer.group(name)
    assert group is not None, f"no group {name} at the app"
    return {m["value"] for m in group.get("members") or []}


def remote_id(app_id: int, username: str) -> str:
    acct = account(app_id, username)
    assert acct is not None and acct.remote_id
    return acct.remote_id


def test_allowed_groups_are_pushed_with_their_provisioned_members(app: Flask, peer: ScimPeer) -> None:
    users_svc.add_group("engineering")
    users_svc.add_group("sales")
    db.session.commit()
    crm = make_app(app, peer, "crm", "create,update,deactivate,groups", permitted="admin-approved",
                   allow_groups=("engineering",))
    # the policy's group exists at the app even before it has members; sales does not matter to the app
    assert members_of(peer, "engineering") == set()
    eng = users_svc.get_group("engineering")
    assert peer.group("engineering")["externalId"] == str(eng.id)   # type: ignore[index]
    assert peer.group("sales") is None

    add_user("alice", ["engineering"])
    add_user("bob", ["engineering", "sales"])
    add_user("zed", ["sales"])   # not permitted: never at the app
    run_worker()
    assert members_of(peer, "engineering") == {remote_id(crm.id, "alice"), remote_id(crm.id, "bob")}
    assert peer.group("sales") is None and len(peer.groups()) == 1
    row = db.session.scalar(select(ProvisionedGroup).where(ProvisionedGroup.app_id == crm.id))
    assert row is not None and row.group_id == eng.id and row.remote_id == peer.group("engineering")["id"]  # type: ignore[index]
    ops = [(e.detail["operation"], e.detail["group"], e.reason) for e in group_events()]
    assert ops[0] == ("group_create", "engineering", "provisioned") and ops[-1][0] == "group_update"
    assert all(e.app_slug == "crm" and e.protocol == "scim" for e in group_events())

    # a member added: created first, then in the group
    add_user("carol")
    accounts.add_member(users_svc.get_group("engineering"), "carol")
    db.session.commit()
    run_worker()
    assert remote_id(crm.id, "carol") in members_of(peer, "engineering")
    # a member removed: loses access (deactivated) and leaves the app's group
    users_svc.set_user(users_svc.get_user("bob"), remove_groups=["engineering"])
    db.session.commit()
    run_worker()
    assert peer.user("bob")["active"] is False   # type: ignore[index]
    assert members_of(peer, "engineering") == {remote_id(crm.id, "alice"), remote_id(crm.id, "carol")}
    # disabled: out of the group too; back: in again
    accounts.set_disabled(users_svc.get_user("alice"), True)
    db.session.commit()
    run_worker()
    assert members_of(peer, "engineering") == {remote_id(crm.id, "carol")}
    accounts.set_disabled(users_svc.get_user("alice"), False)
    db.session.commit()
    run_worker()
    assert members_of(peer, "engineering") == {remote_id(crm.id, "alice"), remote_id(crm.id, "carol")}
    # a change that alters nothing pushed sends nothing
    before = len(group_events())
    users_svc.set_user(users_svc.get_user("zed"), add_groups=["engineering"])
    users_svc.set_user(users_svc.get_user("zed"), remove_groups=["engineering"])
    db.session.commit()
    run_worker()
    assert len(group_events()) == before
    assert len(peer.groups()) == 1 and len(peer.users()) == 3

    # the policy stops naming the group: it no longer matters to the app and is deleted there
    apps_svc.change_settings(apps_svc.get_app("crm"), allow_groups=("sales",))
    db.session.commit()
    run_worker()
    assert peer.group("engineering") is None
    assert members_of(peer, "sales") == {remote_id(crm.id, "zed"), remote_id(crm.id, "bob")}   # bob is back
    assert peer.user("bob")["active"] is True and peer.user("alice")["active"] is False   # type: ignore[index]
    deleted = [e for e in group_events() if e.detail["operation"] == "group_delete"]
    assert [(e.detail["group"], e.reason) for e in deleted] == [("engineering", "deprovisioned")]
    assert db.session.scalar(select(ProvisionedGroup).where(ProvisionedGroup.group_id == eng.id)) is None


def test_without_a_group_policy_groups_with_provisioned_members_are_pushed_and_deleted(
        app: Flask, peer: ScimPeer) -> None:
    wiki = make_app(app, peer, "wiki", "create,update,deactivate,groups")   # everyone may use it
    users_svc.add_group("empty")
    users_svc.add_group("staff")
    users_svc.add_group("ops")
    db.session.commit()
    add_user("alice", ["staff", "ops"])
    add_user("bob", ["staff"])
    run_worker()
    assert members_of(peer, "staff") == {remote_id(wiki.id, "alice"), remote_id(wiki.id, "bob")}
    assert members_of(peer, "ops") == {remote_id(wiki.id, "alice")}
    assert peer.group("empty") is None   # no provisioned member: not the app's business
    # the last member leaves: the group no longer matters and goes
    users_svc.set_user(users_svc.get_user("alice"), remove_groups=["ops"])
    db.session.commit()
    run_worker()
    assert peer.group("ops") is None
    # the IdP group is deleted: so is the app's
    staff_id = peer.group("staff")["id"]   # type: ignore[index]
    users_svc.remove_group("staff")
    db.session.commit()
    run_worker()
    assert peer.group("staff") is None and peer.groups() == []
    gone = [e for e in group_events() if e.detail["operation"] == "group_delete"]
    assert [e.detail["group"] for e in gone] == ["ops", "staff"]
    jobs = list(db.session.scalars(select(OutboxJob).where(OutboxJob.kind.like("provision.group%"))))
    assert jobs and all(j.state == "done" for j in jobs)
    assert all(j.key.startswith(f"prov:{wiki.id}:group:") for j in jobs)
    assert any(j.kind == "provision.group_remove" and j.payload["remote_id"] == staff_id for j in jobs)
    assert len(peer.users()) == 2   # the users are untouched


def test_reconcile_recreates_a_group_deleted_at_the_app(app: Flask, peer: ScimPeer) -> None:
    users_svc.add_group("engineering")
    db.session.commit()
    crm = make_app(app, peer, "crm", "create,update,deactivate,groups", permitted="admin-approved",
                   allow_groups=("engineering",))
    add_user("alice", ["engineering"])
    run_worker()
    peer.delete_group(peer.group("engineering")["id"])   # type: ignore[index]
    dry = cli(app, "apps", "provisioning", "crm", "--reconcile", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "create     group engineering: the group is gone at the app" in dry.output
    assert "alice" not in dry.output and peer.groups() == []
    r = cli(app, "apps", "provisioning", "crm", "--reconcile")
    assert r.exit_code == 0 and "1 change(s) enqueued" in r.output, r.output
    run_worker()
    assert members_of(peer, "engineering") == {remote_id(crm.id, "alice")}
    assert len(peer.groups()) == 1
    clean = cli(app, "apps", "provisioning", "crm", "--reconcile", "--dry-run")
    assert "0 change(s)" in clean.output, clean.output


@pytest.mark.parametrize("operations", ["create,update,deactivate", "create,update,deactivate,delete"])
def test_groups_off_means_no_groups_calls(app: Flask, peer: ScimPeer, operations: str) -> None:
    users_svc.add_group("engineering")
    db.session.commit()
    make_app(app, peer, "crm", operations, permitted="admin-approved", allow_groups=("engineering",))
    add_user("alice", ["engineering"])
    add_user("bob", ["engineering"])
    run_worker()
    users_svc.set_user(users_svc.get_user("bob"), remove_groups=["engineering"])
    db.session.commit()
    run_worker()
    assert cli(app, "apps", "provisioning", "crm", "--reconcile").exit_code == 0
    make_due()
    run_worker()
    # the access log (before this test looks at /Groups itself): the app was called, never about Groups
    assert peer.requests_to("/Users") and peer.requests_to("/Groups") == []
    assert len(peer.users()) == 2 and peer.groups() == []
    assert group_events() == []
    assert db.session.scalar(select(OutboxJob).where(OutboxJob.kind.like("provision.group%"))) is None
