"""The app page's provisioning settings form (Flask client, CSRF as a browser posts it) saved through the same
service and validation as `idp apps provisioning`: errors next to their fields and nothing stored, the secret
write-only (never in the page nor in the audit rows, blank keeps it), mapping rows like the attribute editor,
"Dry run" (the planned changes, nothing written) and "Reconcile now" (enqueued, audited) against scim2-server."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from idp.config import Settings
from idp.extensions import db
from idp.models import AdminAudit, AppProvisioning, ConnectedApp, OutboxJob
from idp.services import apps as apps_svc
from idp.services import provisioning as prov
from idp.services import users as users_svc

from ..conftest import make_settings
from ..scim_peer import ScimPeer
from ..webclient import enrol_totp, login_admin

TOKEN = "peer-token-1"
CC_SECRET = "client-secret-Zq81"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def settings(tmp_path: Path, key_template: Path) -> Settings:
    return make_settings(tmp_path, key_template, provisioning_allow_private=True)   # the peer is on loopback


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[ScimPeer]:
    p = ScimPeer(tmp_path / "scim.log", TOKEN).start()
    yield p
    p.stop()


@pytest.fixture
def crm(app: Flask) -> ConnectedApp:
    users_svc.add_group("engineering")
    row, _ = apps_svc.register_oidc_app(name="CRM", slug="crm", settings=apps_svc.initial_settings(
        redirect_uris=("https://crm.example.com/cb",)))
    apps_svc.change_settings(row, permitted="admin-approved", allow_groups=("engineering",))
    db.session.commit()
    return row


@pytest.fixture
def csrf(app: Flask, client: FlaskClient, crm: ConnectedApp) -> str:
    pw = app.extensions["idp.passwords"]
    root = users_svc.add_user("root", email="root@example.com", password_hash=pw.hash("root password 1"),
                              is_admin=True)
    enrol_totp(root)
    db.session.commit()
    login_admin(client, "root", "root password 1")
    m = _CSRF.search(client.get("/admin/apps/crm").get_data(as_text=True))
    assert m is not None
    return m.group(1)


def form(csrf: str, url: str, **over: Any) -> dict[str, Any]:
    rows = [(p, s) for p, s in prov.DEFAULT_MAPPING.items()] + [("title", "formula:user.groups.join(\",\")")]
    data: dict[str, Any] = {
        "csrf_token": csrf, "scim_url": url, "auth_kind": "bearer", "token": TOKEN, "client_id": "",
        "token_url": "", "client_secret": "", "operations": ["create", "update", "deactivate", "groups"],
        "deprovision": "deactivate", "enabled": "1",
        "map_path": [p for p, _ in rows] + ["", ""],
        "map_field": ["formula" if s.startswith("formula:") else s for _, s in rows] + ["", ""],
        "map_formula": [s.removeprefix("formula:") if s.startswith("formula:") else "" for _, s in rows] + ["", ""]}
    data.update(over)
    return data


def stored(app_id: int) -> AppProvisioning | None:
    return db.session.get(AppProvisioning, app_id, populate_existing=True)


def audit_rows() -> list[AdminAudit]:
    return list(db.session.scalars(select(AdminAudit).where(AdminAudit.action.like("app.provisioning%"))
                                   .order_by(AdminAudit.id)))


def page(client: FlaskClient) -> str:
    return client.get("/admin/apps/crm").get_data(as_text=True)


def test_settings_saved_from_the_console_secret_write_only_and_audited(
        client: FlaskClient, csrf: str, crm: ConnectedApp, peer: ScimPeer) -> None:
    before = page(client)
    assert 'id="provisioning-off"' in before and 'id="provisioning-form"' in before
    assert client.post("/admin/apps/crm/provisioning", data={**form(csrf, peer.url), "csrf_token": ""}) \
        .status_code == 400   # no CSRF token
    assert stored(crm.id) is None
    resp = client.post("/admin/apps/crm/provisioning", data=form(csrf, peer.url))
    assert resp.status_code == 303, resp.get_data(as_text=True)[:2000]
    cfg = stored(crm.id)
    assert cfg is not None and cfg.enabled and cfg.base_url == peer.url and cfg.auth_kind == "bearer"
    assert cfg.operations == ["create", "update", "deactivate", "groups"]
    assert cfg.mapping["title"] == 'formula:user.groups.join(",")' and cfg.mapping["userName"] == "username"
    sealed = cfg.secret_sealed
    assert sealed and TOKEN not in sealed and prov.data_keys().open(sealed, prov.SECRET_PURPOSE) == TOKEN
    [row] = audit_rows()
    assert row.actor == "web:root" and row.after["secret_changed"] is True
    body = page(client)
    assert TOKEN not in body and sealed not in body and 'id="provisioning-status"' in body
    assert re.search(r'name="token" value=""', body) and "user.groups.join" in body

    # blank secret keeps the stored one; a path cleared is removed; operations changed
    over = form(csrf, peer.url, token="", operations=["create", "update", "deactivate"])
    over["map_path"] = [p if p != "title" else "" for p in over["map_path"]]
    resp = client.post("/admin/apps/crm/provisioning", data=over)
    assert resp.status_code == 303, re.findall(r"alert\">[^<]*<", resp.get_data(as_text=True))
    cfg = stored(crm.id)
    assert cfg is not None and cfg.secret_sealed == sealed and "title" not in cfg.mapping
    assert cfg.operations == ["create", "update", "deactivate"]
    last = audit_rows()[-1]
    assert "secret_changed" not in last.after and last.after["operations"] == ["create", "update", "deactivate"]

    # client credentials: the secret is required when switching, then write-only too
    switch = form(csrf, peer.url, auth_kind="client_credentials", token="", client_id="idp",
                  token_url=peer.url + "/token")
    resp = client.post("/admin/apps/crm/provisioning", data=switch)
    assert resp.status_code == 422 and 'id="prov-client_secret-error"' in resp.get_data(as_text=True)
    assert stored(crm.id).auth_kind == "bearer"   # type: ignore[union-attr]
    resp = client.post("/admin/apps/crm/provisioning", data={**switch, "client_secret": CC_SECRET})
    assert resp.status_code == 303, resp.get_data(as_text=True)[:2000]
    cfg = stored(crm.id)
    assert cfg is not None and cfg.auth_kind == "client_credentials" and cfg.client_id == "idp"
    assert prov.data_keys().open(cfg.secret_sealed or "", prov.SECRET_PURPOSE) == CC_SECRET
    body = page(client)
    assert CC_SECRET not in body and TOKEN not in body and 'value="idp"' in body
    # the client id changes without giving the secret again
    resp = client.post("/admin/apps/crm/provisioning", data={**switch, "client_id": "idp-2"})
    assert resp.status_code == 303
    assert stored(crm.id).client_id == "idp-2" and stored(crm.id).secret_sealed == cfg.secret_sealed  # type: ignore[union-attr]
    dumped = json.dumps([[a.before, a.after] for a in audit_rows()])
    assert CC_SECRET not in dumped and TOKEN not in dumped


@pytest.mark.parametrize(("over", "field", "message"), [
    ({"scim_url": "ftp://x.example"}, "prov-scim_url-error", "absolute http"),
    ({"token": ""}, "prov-token-error", "Enter the bearer token"),
    ({"operations": ["create", "fly"]}, "prov-operations-error", "unknown operation"),
    ({"deprovision": "delete"}, "prov-deprovision-error", "needs the delete operation"),
    ({"deprovision": "explode"}, "prov-deprovision-error", "must be one of"),
    ({"auth_kind": "client_credentials", "token": "", "client_id": "c1", "token_url": "gopher://x",
      "client_secret": CC_SECRET}, "prov-token_url-error", "absolute http"),
])
def test_refusals_are_shown_next_to_their_field_and_store_nothing(
        client: FlaskClient, csrf: str, crm: ConnectedApp, peer: ScimPeer, over: dict[str, Any], field: str,
        message: str) -> None:
    audits = len(audit_rows())
    resp = client.post("/admin/apps/crm/provisioning", data=form(csrf, peer.url, **over))
    body = resp.get_data(as_text=True)
    assert resp.status_code == 422
    m = re.search(rf'id="{field}" role="alert">([^<]*)<', body)
    assert m is not None and message in m.group(1), body[body.find('id="provisioning"'):][:3000]
    assert stored(crm.id) is None and len(audit_rows()) == audits
    assert TOKEN not in body and CC_SECRET not in body   # a refused secret is not rendered back either


def test_mapping_row_errors_sit_next_to_their_row(client: FlaskClient, csrf: str, crm: ConnectedApp,
                                                  peer: ScimPeer) -> None:
    data = form(csrf, peer.url)
    data["map_path"][-2:] = ["nickName", "active"]
    data["map_field"][-2:] = ["formula", "email"]
    data["map_formula"][-2:] = ["user.email +", ""]
    resp = client.post("/admin/apps/crm/provisioning", data=data)
    body = resp.get_data(as_text=True)
    assert resp.status_code == 422 and stored(crm.id) is None
    n = len(prov.DEFAULT_MAPPING) + 1
    assert "formula error" in re.search(rf'id="prov-map-row-{n}-error" role="alert">([^<]*)<', body).group(1)  # type: ignore[union-attr]
    assert "set by the IdP" in re.search(rf'id="prov-map-row-{n + 1}-error" role="alert">([^<]*)<', body).group(1)  # type: ignore[union-attr]
    assert 'value="nickName"' in body and "user.email +" in body   # shown back as typed
    data = form(csrf, peer.url)
    data["map_path"] = ["displayName"] + [""] * (len(data["map_path"]) - 1)
    resp = client.post("/admin/apps/crm/provisioning", data=data)
    assert resp.status_code == 422 and "must give userName" in resp.get_data(as_text=True)
    assert stored(crm.id) is None


def test_dry_run_shows_the_plan_and_reconcile_now_enqueues_it(client: FlaskClient, csrf: str, crm: ConnectedApp,
                                                              peer: ScimPeer) -> None:
    resp = client.post("/admin/apps/crm/provisioning", data=form(csrf, peer.url, enabled=""))
    assert resp.status_code == 303
    users_svc.add_user("alice", email="alice@example.com", password_hash=None, groups=["engineering"])
    db.session.commit()
    jobs = db.session.scalar(select(func.count(OutboxJob.id)))
    assert 'id="provisioning-reconcile"' in page(client)
    resp = client.post("/admin/apps/crm/provisioning/reconcile", data={"csrf_token": csrf, "dry_run": "1"})
    body = resp.get_data(as_text=True)
    assert resp.status_code == 200 and 'id="provisioning-plan"' in body
    assert "<td>create</td><td>alice</td>" in body and "<td>create</td><td>group engineering</td>" in body
    assert db.session.scalar(select(func.count(OutboxJob.id))) == jobs and peer.users() == []
    assert not [a for a in audit_rows() if a.action == "app.provisioning_reconcile"]
    assert client.post("/admin/apps/crm/provisioning/reconcile", data={}).status_code == 400   # no CSRF token

    resp = client.post("/admin/apps/crm/provisioning/reconcile", data={"csrf_token": csrf}, follow_redirects=True)
    assert resp.status_code == 200 and "2 change(s) enqueued" in resp.get_data(as_text=True)
    queued = list(db.session.scalars(select(OutboxJob).where(OutboxJob.state == "pending")))
    assert {j.kind for j in queued} >= {"provision.user", "provision.group"}
    [row] = [a for a in audit_rows() if a.action == "app.provisioning_reconcile"]
    assert row.actor == "web:root" and row.after == {"changes": 2}

    peer.stop()   # the app cannot be reached: a clear message, nothing written
    resp = client.post("/admin/apps/crm/provisioning/reconcile", data={"csrf_token": csrf, "dry_run": "1"},
                       follow_redirects=True)
    assert resp.status_code == 200 and "Could not compare with the app" in resp.get_data(as_text=True)
