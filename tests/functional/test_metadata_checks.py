"""Issue 15, metadata checks: SP metadata whose entityID is the IdP's own is refused everywhere metadata comes in
(idp apps add, idp apps set --metadata, idp apps sync, the console's New app and metadata refresh) with nothing
written or audited; metadata whose validUntil is past is accepted with a warning (CLI standard error, exit 0;
a console flash)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from idp.extensions import db
from idp.models import AdminAudit, ConnectedApp

from ..conftest import SP_METADATA_DIR
from .test_admin_apps import admin, field_error, fresh, root, snapshot, text  # noqa: F401 - fixtures and helpers

IDP_ENTITY_ID = "http://localhost/saml/metadata"     # IDP_BASE_URL of the tests + /saml/metadata
OWN_MESSAGE = "this is the IdP's own entity ID: register the SP's metadata, not the IdP's"
NO_KEYS = SP_METADATA_DIR / "python3-saml-no-keydescriptor.xml"        # validUntil 2037
NO_KEYS_ENTITY = "http://stuff.com/endpoints/metadata.php"
EXPIRED = SP_METADATA_DIR / "python3-saml-signed-sha1-expired.xml"     # validUntil 2015-01-17T11:39:11Z
EXPIRED_ENTITY = "https://example.com//demo1/metadata.php"
CB = "https://crm.example.com/oidc/callback"


def cli(app: Flask, *args: str) -> Any:
    result = app.test_cli_runner().invoke(args=list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result


def state() -> tuple[list[tuple[str, str | None, str | None]], int]:
    """The apps (slug, entityID, metadata) and the number of audit rows."""
    db.session.expire_all()
    apps = sorted((a.slug, a.entity_id, a.metadata_xml) for a in db.session.query(ConnectedApp))
    return apps, db.session.query(AdminAudit).count()


@pytest.fixture
def own(tmp_path: Path) -> Path:
    """SP metadata that names the IdP's own entity ID (as if the IdP's entityID were pasted into an SP's)."""
    path = tmp_path / "own.xml"
    path.write_text(NO_KEYS.read_text().replace(NO_KEYS_ENTITY, IDP_ENTITY_ID))
    return path


# ---------------------------------------------------------------- the IdP's own entity ID: CLI


def test_cli_add_refuses_the_idps_own_entity_id(app: Flask, own: Path) -> None:
    before = state()
    r = cli(app, "apps", "add", "--metadata", str(own), "--slug", "mine")
    assert r.exit_code == 1 and OWN_MESSAGE in r.stderr, r.output
    assert state() == before
    # the control: the same document with the SP's entityID registers
    ok = cli(app, "apps", "add", "--metadata", str(NO_KEYS), "--slug", "mine")
    assert ok.exit_code == 0, ok.output


def test_cli_set_metadata_refuses_the_idps_own_entity_id(app: Flask, own: Path) -> None:
    assert cli(app, "apps", "add", "--oidc", "--name", "CRM", "--slug", "crm", "--redirect-uri", CB).exit_code == 0
    before = state()
    r = cli(app, "apps", "set", "crm", "--metadata", str(own))
    assert r.exit_code == 1 and OWN_MESSAGE in r.stderr, r.output
    assert state() == before


def test_sync_refuses_the_idps_own_entity_id(app: Flask, own: Path, tmp_path: Path) -> None:
    folder = tmp_path / "metadata"
    folder.mkdir()
    shutil.copy(own, folder / "mine.xml")
    shutil.copy(NO_KEYS, folder / "stuff.xml")
    r = cli(app, "apps", "sync", str(folder))
    assert r.exit_code == 1
    assert f"refused   mine.xml: {OWN_MESSAGE}" in r.stdout, r.stdout
    assert "added     stuff" in r.stdout
    db.session.expire_all()
    assert [a.slug for a in db.session.query(ConnectedApp)] == ["stuff"]


# ---------------------------------------------------------------- the IdP's own entity ID: console


def test_console_new_app_refuses_the_idps_own_entity_id(client: FlaskClient, admin: str, own: Path) -> None:  # noqa: F811
    before = state()
    resp = client.post("/admin/apps/new", data={"csrf_token": admin, "metadata_xml": own.read_text()})
    assert resp.status_code == 422
    assert "the IdP&#39;s own entity ID" in field_error(resp, "metadata_xml")
    resp = client.post("/admin/apps/new", data={
        "csrf_token": admin, "entity_id": IDP_ENTITY_ID, "acs_url": "https://hand.example.com/acs",
        "acs_binding": "HTTP-POST", "slug": "hand"})
    assert resp.status_code == 422
    assert "the IdP&#39;s own entity ID" in field_error(resp, "entity_id")
    assert state() == before


def test_console_refresh_refuses_the_idps_own_entity_id(app: Flask, client: FlaskClient, admin: str,  # noqa: F811
                                                         own: Path) -> None:
    assert cli(app, "apps", "add", "--oidc", "--name", "CRM", "--slug", "crm", "--redirect-uri", CB).exit_code == 0
    before = state()
    resp = client.post("/admin/apps/crm/refresh", data={"csrf_token": admin, "metadata_xml": own.read_text()})
    assert resp.status_code == 422
    message = field_error(resp, "metadata_xml").replace("&#39;", "'")
    assert message == OWN_MESSAGE and 'name="token"' not in text(resp)
    assert state() == before


# ---------------------------------------------------------------- validUntil in the past


def test_cli_add_warns_about_expired_metadata(app: Flask) -> None:
    r = cli(app, "apps", "add", "--metadata", str(EXPIRED), "--slug", "old")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == "old"
    assert "Warning: app old:" in r.stderr and "validUntil (2015-01-17 11:39 UTC) is in the past" in r.stderr
    assert fresh("old").entity_id == EXPIRED_ENTITY
    # current metadata: no validUntil warning (its plain-http endpoints are warned about: see below)
    r = cli(app, "apps", "add", "--metadata", str(NO_KEYS), "--slug", "current")
    assert r.exit_code == 0 and "in the past" not in r.stderr, r.output


def test_cli_set_metadata_warns_about_expired_metadata(app: Flask, tmp_path: Path) -> None:
    fresh_doc = tmp_path / "fresh.xml"
    fresh_doc.write_text(EXPIRED.read_text().replace('validUntil="2015-01-17T11:39:11Z"',
                                                     'validUntil="2099-01-01T00:00:00Z"'))
    assert cli(app, "apps", "add", "--metadata", str(fresh_doc), "--slug", "old").stderr == ""
    r = cli(app, "apps", "set", "old", "--metadata", str(EXPIRED))
    assert r.exit_code == 0 and "SAML metadata updated" in r.stdout, r.output
    assert "Warning: app old:" in r.stderr and "in the past" in r.stderr
    assert fresh("old").sp["valid_until"].startswith("2015-01-17")


def test_sync_warns_about_expired_metadata(app: Flask, tmp_path: Path) -> None:
    folder = tmp_path / "metadata"
    folder.mkdir()
    shutil.copy(EXPIRED, folder / "old.xml")
    shutil.copy(NO_KEYS, folder / "stuff.xml")
    r = cli(app, "apps", "sync", str(folder))
    assert r.exit_code == 0, r.output
    assert "Warning: old.xml:" in r.stderr and "in the past" in r.stderr
    assert "Warning: stuff.xml:" in r.stderr and "in the past" not in r.stderr.split("Warning: stuff.xml:", 1)[1]
    assert r.stdout.splitlines()[-1] == "2 added, 0 updated, 0 unchanged, 0 refused"


def test_console_flashes_expired_metadata_on_add_and_refresh(client: FlaskClient, admin: str,  # noqa: F811
                                                             tmp_path: Path) -> None:
    resp = client.post("/admin/apps/new", data={"csrf_token": admin, "metadata_xml": EXPIRED.read_text(),
                                                "slug": "old"})
    assert resp.status_code == 303
    page = text(client.get(resp.headers["Location"]))
    assert 'class="flash warning"' in page and "validUntil (2015-01-17 11:39 UTC) is in the past" in page
    assert "in the past</span>" in page   # the page's own badge
    assert 'class="flash warning"' not in text(client.get("/admin/apps/old"))   # said once

    # a refresh to another expired document says it again; one that is current does not
    later = EXPIRED.read_text().replace("2015-01-17T11:39:11Z", "2016-01-17T11:39:11Z")
    resp = client.post("/admin/apps/old/refresh", data={"csrf_token": admin, "metadata_xml": later})
    token = resp.get_data(as_text=True).split('name="token" value="', 1)[1].split('"', 1)[0]
    resp = client.post("/admin/apps/old/refresh/apply", data={"csrf_token": admin, "token": token})
    assert resp.status_code == 303
    page = text(client.get(resp.headers["Location"]))
    assert "Metadata updated." in page and "validUntil (2016-01-17 11:39 UTC) is in the past" in page
    current = EXPIRED.read_text().replace("2015-01-17T11:39:11Z", "2099-01-17T11:39:11Z")
    resp = client.post("/admin/apps/old/refresh", data={"csrf_token": admin, "metadata_xml": current})
    token = resp.get_data(as_text=True).split('name="token" value="', 1)[1].split('"', 1)[0]
    resp = client.post("/admin/apps/old/refresh/apply", data={"csrf_token": admin, "token": token})
    page = text(client.get(resp.headers["Location"]))
    assert "Metadata updated." in page and 'class="flash warning"' not in page


# ---------------------------------------------------------------- plain-http endpoints: accepted, with a warning

PLAIN = "http://stuff.com/endpoints/endpoints/acs.php"


def test_plain_http_endpoints_are_accepted_with_a_warning(app: Flask, client: FlaskClient, admin: str,  # noqa: F811
                                                          tmp_path: Path) -> None:
    r = cli(app, "apps", "add", "--metadata", str(NO_KEYS), "--slug", "stuff")
    assert r.exit_code == 0 and r.stdout.strip() == "stuff"
    assert f"Warning: app stuff: the AssertionConsumerService {PLAIN} is plain http://" in r.stderr
    assert "SingleLogoutService http://stuff.com/endpoints/endpoints/sls.php is plain http://" in r.stderr
    shown = cli(app, "apps", "show", "stuff")
    assert f"Warning: the AssertionConsumerService {PLAIN} is plain http://" in shown.stdout
    import json
    warnings = json.loads(cli(app, "apps", "show", "stuff", "--format", "json").stdout)["warnings"]
    assert len(warnings) == 2 and all("unencrypted" in w for w in warnings)
    page = text(client.get("/admin/apps/stuff"))
    assert 'id="metadata-warnings"' in page and PLAIN in page
    # loopback http (a developer's SP) and https: no warning
    local = tmp_path / "local.xml"
    local.write_text(NO_KEYS.read_text().replace("http://stuff.com/endpoints/endpoints/", "http://127.0.0.1:8080/")
                     .replace(NO_KEYS_ENTITY, "https://local.example.com/sp"))
    r = cli(app, "apps", "add", "--metadata", str(local), "--slug", "local")
    assert r.exit_code == 0 and "Warning" not in r.stderr, r.stderr
    assert json.loads(cli(app, "apps", "show", "local", "--format", "json").stdout)["warnings"] == []
    assert 'id="metadata-warnings"' not in text(client.get("/admin/apps/local"))
