"""Review fixes of the metadata refresh: expired trust-anchored metadata is not trusted past its validUntil (a 304
or a failing source does not keep it alive; SSO and SLO with the app are refused until a fresh signed document is
applied), approval of exactly the document reviewed, the dangerous-change rule against an admin-approved baseline,
downgrade redirects, non-UTF-8 held documents, xml:id uniqueness, and the plain-http warnings of unattended
changes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from lxml import etree

from idp.config import Settings
from idp.extensions import db
from idp.models import SsoEvent
from idp.services import apps as apps_svc

from ..conftest import make_settings
from ..webclient import saml_form
from .conftest import PASSWORD
from .test_metadata_refresh import MetadataServer, anchor_file, audits, cli, ok, show, signed, sp_doc


@pytest.fixture
def settings(tmp_path: Path, key_template: Path) -> Settings:
    return make_settings(tmp_path, key_template, metadata_fetch_allow_private=True)


@pytest.fixture
def server() -> Iterator[MetadataServer]:
    srv = MetadataServer()
    yield srv
    srv.close()


def _harness_doc(sp: Any, valid_until: datetime, doc_id: str) -> etree._Element:
    return sp_doc(sp.acs_url, entity_id=sp.entity_id, valid_until=valid_until, doc_id=doc_id)


def _events(reason: str) -> list[SsoEvent]:
    db.session.expire_all()
    return db.session.query(SsoEvent).filter_by(reason=reason).all()


def test_expired_anchored_metadata_refuses_sso_until_a_fresh_document(app: Flask, tmp_path: Path,
                                                                       server: MetadataServer, make_sp: Any,
                                                                       browser: Any, alice: Any,
                                                                       sp_keys: Any) -> None:
    kp = sp_keys["other"]
    sp = make_sp("pysaml2", register=False)
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=8)
    doc = signed(_harness_doc(sp, soon, "_md1"), kp)
    apps_svc.register_app(doc, slug="harness")
    db.session.commit()
    sp.slug = "harness"
    server.docs["/sp.xml"] = doc
    ok(app, "apps", "set", "harness", "--metadata-url", server.url("/sp.xml"), "--trust-anchor",
       anchor_file(tmp_path, kp))
    assert "unchanged" in ok(app, "apps", "refresh", "harness").stdout   # validators stored for the 304
    time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 1)

    # the source answers 304 forever: the stored document is checked again, it is expired
    server.always_304.add("/sp.xml")
    result = cli(app, "apps", "refresh", "harness")
    assert result.exit_code == 1, result.output
    assert "refused" in result.stdout and "not modified" in result.stdout and "expired" in result.stdout
    info = show(app, "harness")["metadata_refresh"]
    assert info["last_outcome"] == "refused"
    assert audits("app.metadata_refresh_failed")[-1].after["reason"] == "metadata_expired"

    # SSO (SP-initiated and IdP-initiated) is refused with the reason, on a readable page
    resp = browser.send(sp.authn_request("redirect"))
    assert resp.status_code == 403
    assert "configuration has expired" in resp.get_data(as_text=True)
    assert _events("metadata_expired")
    assert browser.client.get("/apps/harness/sso").status_code == 403

    # the source fails: still expired, still said so
    del server.docs["/sp.xml"]
    server.always_304.clear()
    result = cli(app, "apps", "refresh", "harness")
    assert result.exit_code == 1 and "expired" in result.stdout and "HTTP 404" in result.stdout

    # a fresh signed document lifts it
    fresh = signed(_harness_doc(sp, datetime.now(UTC) + timedelta(days=7), "_md2"), kp)
    server.docs["/sp.xml"] = fresh
    assert "applied" in ok(app, "apps", "refresh", "harness").stdout
    req = sp.authn_request("redirect")
    form = saml_form(browser.sso(req, "alice", PASSWORD))
    assert form is not None and form.action == sp.acs_url
    assert sp.process_response(form.saml_response, req.request_id).name_id == "alice"
