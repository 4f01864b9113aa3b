"""The console's "Automatic metadata refresh" section: set a metadata URL, mode, trust anchor and interval; refresh
now; a held change shown with its diff and approved or rejected; refusals next to their fields, nothing written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from idp.config import Settings
from idp.extensions import db
from idp.models import AdminAudit, MetadataSource
from idp.services import apps as apps_svc

from ..conftest import make_settings
from .test_admin_apps import admin, field_error, fresh, root, text  # noqa: F401 - fixtures
from .test_metadata_refresh import MetadataServer, plain, server, sp_doc  # noqa: F401 - fixture


@pytest.fixture
def settings(tmp_path: Path, key_template: Path) -> Settings:
    return make_settings(tmp_path, key_template, metadata_fetch_allow_private=True)


@pytest.fixture
def sp(app: Flask) -> Any:
    row = apps_svc.register_app(plain(sp_doc("https://sp.example.org/acs")), slug="sp")
    db.session.commit()
    return row


def post_source(client: FlaskClient, csrf: str, **over: str) -> Any:
    data = {"csrf_token": csrf, "md_url": "", "md_mdq": "", "md_refresh": "auto", "md_max_interval": "",
            "md_anchor": "", **over}
    return client.post("/admin/apps/sp/metadata-source", data=data)


def held() -> str:
    """The SHA-256 of the held document, as the page's Approve / Reject forms carry it."""
    from idp.services import metadata_refresh
    db.session.expire_all()
    src = db.session.get(MetadataSource, fresh("sp").id)
    assert src is not None
    return metadata_refresh.held_sha256(src) or ""


def acs() -> list[str]:
    return [a["location"] for a in (fresh("sp").sp or {})["acs"]]


def test_set_source_refresh_now_hold_approve_reject(client: FlaskClient, admin: str, sp: Any,  # noqa: F811
                                                    server: MetadataServer, sp_keys: Any) -> None:  # noqa: F811
    page = text(client.get("/admin/apps/sp"))
    assert 'id="metadata-refresh"' in page and "not fetched automatically" in page
    server.docs["/md.xml"] = plain(sp_doc("https://sp.example.org/acs", "https://sp.example.org/two"))
    resp = post_source(client, admin, md_url=server.url("/md.xml"), md_refresh="approve", md_max_interval="12h",
                       md_anchor="")
    assert resp.status_code == 303, text(resp)[:2000]
    page = text(client.get("/admin/apps/sp"))
    assert server.url("/md.xml") in page and "approve · at most every 12h" in page

    resp = client.post("/admin/apps/sp/metadata-source/refresh", data={"csrf_token": admin})
    assert resp.status_code == 303
    page = text(client.get("/admin/apps/sp"))
    assert 'id="held-change"' in page and "https://sp.example.org/two" in page and 'id="approve-held"' in page
    assert acs() == ["https://sp.example.org/acs"]

    # reject: dropped, and the same document is not held again
    assert held() in page
    assert client.post("/admin/apps/sp/metadata-source/reject",
                       data={"csrf_token": admin, "held_sha256": held()}).status_code == 303
    assert 'id="held-change"' not in text(client.get("/admin/apps/sp"))
    client.post("/admin/apps/sp/metadata-source/refresh", data={"csrf_token": admin})
    assert 'id="held-change"' not in text(client.get("/admin/apps/sp"))
    assert db.session.query(AdminAudit).filter_by(action="app.metadata_rejected").count() == 1

    # a new change is held again and approved
    server.docs["/md.xml"] = plain(sp_doc("https://sp.example.org/acs", "https://sp.example.org/three"))
    client.post("/admin/apps/sp/metadata-source/refresh", data={"csrf_token": admin})
    assert 'id="held-change"' in text(client.get("/admin/apps/sp"))
    assert client.post("/admin/apps/sp/metadata-source/approve",
                       data={"csrf_token": admin, "held_sha256": held()}).status_code == 303
    assert acs() == ["https://sp.example.org/acs", "https://sp.example.org/three"]
    page = text(client.get("/admin/apps/sp"))
    assert "applied" in page and 'id="held-change"' not in page

    # the trust anchor: its fingerprint is shown; an unsigned document is then refused and the error shown
    from idp.certs.x509 import fingerprint
    kp = sp_keys["other"]
    assert post_source(client, admin, md_url=server.url("/md.xml"), md_refresh="auto",
                       md_anchor=kp.cert_pem).status_code == 303
    page = text(client.get("/admin/apps/sp"))
    assert fingerprint(kp.cert_pem) in page
    server.docs["/md.xml"] = plain(sp_doc("https://sp.example.org/acs", "https://sp.example.org/four"))
    client.post("/admin/apps/sp/metadata-source/refresh", data={"csrf_token": admin})
    page = text(client.get("/admin/apps/sp"))
    assert 'id="last-refresh-error"' in page and "not signed" in page
    assert acs() == ["https://sp.example.org/acs", "https://sp.example.org/three"]


def test_approve_applies_only_the_document_reviewed(client: FlaskClient, admin: str, sp: Any,  # noqa: F811
                                                     server: MetadataServer) -> None:  # noqa: F811
    """Review M2: the Approve form names the held document shown (its SHA-256); when a refresh has held another
    document since, the approval is refused and nothing is applied."""
    server.docs["/md.xml"] = plain(sp_doc("https://sp.example.org/acs", "https://sp.example.org/shown"))
    assert post_source(client, admin, md_url=server.url("/md.xml"), md_refresh="approve").status_code == 303
    client.post("/admin/apps/sp/metadata-source/refresh", data={"csrf_token": admin})
    shown = held()
    assert shown in text(client.get("/admin/apps/sp"))
    # another document arrives and replaces the held one before the admin presses Approve
    server.docs["/md.xml"] = plain(sp_doc("https://sp.example.org/acs", "https://evil.example.net/acs"))
    client.post("/admin/apps/sp/metadata-source/refresh", data={"csrf_token": admin})
    assert held() != shown
    resp = client.post("/admin/apps/sp/metadata-source/approve", data={"csrf_token": admin, "held_sha256": shown})
    assert resp.status_code == 409 and "not the one reviewed" in text(resp)
    assert acs() == ["https://sp.example.org/acs"]
    # a form without the hash is refused too
    resp = client.post("/admin/apps/sp/metadata-source/approve", data={"csrf_token": admin})
    assert resp.status_code == 400 and acs() == ["https://sp.example.org/acs"]
    # the change now shown is approved with its own hash
    assert "https://evil.example.net/acs" in text(client.get("/admin/apps/sp"))
    assert client.post("/admin/apps/sp/metadata-source/approve",
                       data={"csrf_token": admin, "held_sha256": held()}).status_code == 303
    assert acs() == ["https://sp.example.org/acs", "https://evil.example.net/acs"]


def test_refusals_next_to_their_fields_and_nothing_written(client: FlaskClient, admin: str, sp: Any,  # noqa: F811
                                                           sp_keys: Any) -> None:
    resp = post_source(client, admin, md_url="ftp://x.example.org/md.xml")
    assert resp.status_code == 422 and "http" in field_error(resp, "md_url")
    resp = post_source(client, admin, md_url="https://md.example.org/a.xml", md_anchor=sp_keys["other"].key_pem)
    assert resp.status_code == 422 and "PEM certificate" in field_error(resp, "md_anchor")
    resp = post_source(client, admin, md_url="https://md.example.org/a.xml", md_max_interval="1m")
    assert resp.status_code == 422 and "between" in field_error(resp, "md_max_interval")
    resp = post_source(client, admin, md_url="https://md.example.org/a.xml", md_refresh="sometimes")
    assert resp.status_code == 422 and "refresh mode" in field_error(resp, "md_refresh")
    db.session.expire_all()
    assert db.session.query(MetadataSource).count() == 0
