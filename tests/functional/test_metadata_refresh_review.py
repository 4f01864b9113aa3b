"""Review fixes of the metadata refresh: expired trust-anchored metadata is not trusted past its validUntil (a 304
or a failing source does not keep it alive; SSO and SLO with the app are refused until a fresh signed document is
applied), approval of exactly the document reviewed, the dangerous-change rule against an admin-approved baseline,
downgrade redirects, non-UTF-8 held documents, xml:id uniqueness, and the plain-http warnings of unattended
changes."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from flask import Flask
from lxml import etree

from idp.config import Settings
from idp.extensions import db
from idp.models import ConnectedApp, SsoEvent
from idp.saml.constants import SignatureAlgorithm
from idp.saml.signing import sign_element
from idp.services import apps as apps_svc

from ..conftest import make_settings
from ..webclient import saml_form
from .conftest import PASSWORD
from .test_metadata_refresh import MetadataServer, anchor_file, audits, cli, ok, plain, show, signed, sp_doc
from .test_slo_soap import pki  # noqa: F401 - fixture


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


def _register(app: Flask, tmp_path: Path, xml: bytes, slug: str = "sp") -> None:
    path = tmp_path / f"{slug}.xml"
    path.write_bytes(xml)
    ok(app, "apps", "add", "--metadata", str(path), "--slug", slug)


def _acs(slug: str = "sp") -> list[str]:
    db.session.expire_all()
    row = db.session.query(ConnectedApp).filter_by(slug=slug).one()
    return [a["location"] for a in (row.sp or {})["acs"]]


def test_yes_applies_only_the_held_document(app: Flask, tmp_path: Path, server: MetadataServer) -> None:
    """Review M2: `--yes` applies the held document (the diff shown), never a fresh fetch; `--sha256` binds it."""
    _register(app, tmp_path, plain(sp_doc("https://sp.example.org/acs")))
    server.docs["/md.xml"] = plain(sp_doc("https://sp.example.org/acs", "https://sp.example.org/reviewed"))
    ok(app, "apps", "set", "sp", "--metadata-url", server.url("/md.xml"), "--refresh", "approve")
    result = ok(app, "apps", "refresh", "sp")
    held = show(app, "sp")["metadata_refresh"]["held_sha256"]
    assert f"idp apps refresh sp --yes --sha256 {held}" in result.stderr
    # the source now serves something nobody reviewed
    server.docs["/md.xml"] = plain(sp_doc("https://evil.example.net/acs"))
    fetches = len(server.requests)
    result = cli(app, "apps", "refresh", "sp", "--yes", "--sha256", "0" * 64)
    assert result.exit_code == 1 and "not the one reviewed" in result.output
    assert _acs() == ["https://sp.example.org/acs"]
    assert "applied" in ok(app, "apps", "refresh", "sp", "--yes", "--sha256", held).stdout
    assert len(server.requests) == fetches   # nothing fetched: the held document was applied
    assert _acs() == ["https://sp.example.org/acs", "https://sp.example.org/reviewed"]
    # nothing held: --yes refreshes as usual, and a dangerous change is held, not applied
    result = ok(app, "apps", "refresh", "sp", "--yes")
    assert "held" in result.stdout and "Nothing was held before" in result.stderr
    assert _acs() == ["https://sp.example.org/acs", "https://sp.example.org/reviewed"]


def test_non_utf8_signed_document_is_held_and_approved_intact(app: Flask, tmp_path: Path, server: MetadataServer,
                                                              sp_keys: Any) -> None:
    """Review L4: an ISO-8859-1 signed document is held as fetched and verifies again when approved."""
    kp = sp_keys["other"]
    _register(app, tmp_path, plain(sp_doc("https://sp.example.org/acs")))
    ok(app, "apps", "set", "sp", "--metadata-url", server.url("/md.xml"), "--refresh", "approve", "--trust-anchor",
       anchor_file(tmp_path, kp))
    root = sp_doc("https://sp.example.org/acs", "https://sp.example.org/caf\u00e9",
                  valid_until=datetime.now(UTC) + timedelta(days=7))
    key = serialization.load_pem_private_key(kp.key_pem.encode(), None)
    sign_element(root, key, SignatureAlgorithm.RSA_SHA256, kp.cert_b64)  # type: ignore[arg-type]
    body = etree.tostring(root, xml_declaration=True, encoding="ISO-8859-1")
    assert b"caf\xe9" in body
    server.docs["/md.xml"] = body
    assert "held" in ok(app, "apps", "refresh", "sp").stdout
    result = ok(app, "apps", "refresh", "sp", "--yes")
    assert "applied" in result.stdout, result.output
    assert _acs()[-1] == "https://sp.example.org/caf\u00e9"


def test_two_unattended_steps_cannot_replace_the_approved_acs_and_keys(app: Flask, tmp_path: Path,
                                                                        server: MetadataServer,
                                                                        sp_keys: Any) -> None:
    """Review M1: the dangerous-change rule compares against the admin-approved baseline, not only the last
    document: step 1 adds an endpoint and a key (kept: the old ones stay), step 2 drops the approved ones: held."""
    kp = sp_keys["other"]
    until = datetime.now(UTC) + timedelta(days=2)
    old_cert, new_cert = sp_keys["sp1"].cert_b64, sp_keys["sp2"].cert_b64
    _register(app, tmp_path, plain(sp_doc("https://sp.example.org/acs", certs=(old_cert,))))
    ok(app, "apps", "set", "sp", "--metadata-url", server.url("/md.xml"), "--trust-anchor", anchor_file(tmp_path, kp))
    server.docs["/md.xml"] = signed(sp_doc("https://sp.example.org/acs", "https://other.example.net/acs",
                                           certs=(old_cert, new_cert), valid_until=until), kp)
    assert "applied" in ok(app, "apps", "refresh", "sp").stdout
    server.docs["/md.xml"] = signed(sp_doc("https://other.example.net/acs", certs=(new_cert,), valid_until=until,
                                           doc_id="_md2"), kp)
    out = ok(app, "apps", "refresh", "sp").stdout
    assert "held" in out and "approved by an admin" in out
    assert _acs() == ["https://sp.example.org/acs", "https://other.example.net/acs"]
    # an admin approves: that becomes the baseline, and the next change is judged against it
    ok(app, "apps", "refresh", "sp", "--yes")
    assert _acs() == ["https://other.example.net/acs"]
    server.docs["/md.xml"] = signed(sp_doc("https://other.example.net/acs", "https://other.example.net/b",
                                           certs=(new_cert,), valid_until=until, doc_id="_md3"), kp)
    assert "applied" in ok(app, "apps", "refresh", "sp").stdout


def test_unauthenticated_metadata_never_adds_hosts_or_keys_unattended(app: Flask, tmp_path: Path,
                                                                      server: MetadataServer,
                                                                      sp_keys: Any) -> None:
    """Review M1: without a trust anchor a change adding an ACS host or a signing certificate is held; over plain
    http:// every change is held, with a warning when the URL is set."""
    from idp.saml.sp_metadata import SpMetadata, parse_sp_metadata
    from idp.services.metadata_refresh import unauthenticated_additions

    def sp(*acs: str, certs: tuple[str, ...] = ()) -> SpMetadata:
        return parse_sp_metadata(plain(sp_doc(*acs, certs=certs)))

    base = sp("https://sp.example.org/acs")
    assert unauthenticated_additions(base, sp("https://sp.example.org/acs", "https://sp.example.org/x")) is None
    assert "host (https://evil.example.net" in (
        unauthenticated_additions(base, sp("https://sp.example.org/acs", "https://evil.example.net/acs")) or "")
    assert "adds a signing certificate" in (unauthenticated_additions(
        base, sp("https://sp.example.org/acs", certs=(sp_keys["sp1"].cert_b64,))) or "")

    _register(app, tmp_path, plain(sp_doc("https://sp.example.org/acs")))
    result = ok(app, "apps", "set", "sp", "--metadata-url", server.url("/md.xml"))
    assert "plain http:// without a trust anchor" in result.stderr
    assert show(app, "sp")["metadata_refresh"]["warning"]
    server.docs["/md.xml"] = plain(sp_doc("https://sp.example.org/acs", "https://sp.example.org/x"))
    out = ok(app, "apps", "refresh", "sp").stdout
    assert "held" in out and "plain http://" in out
    assert _acs() == ["https://sp.example.org/acs"]


def test_https_to_http_redirect_is_refused(app: Flask, tmp_path: Path, server: MetadataServer,
                                           pki: Any) -> None:  # noqa: F811 - the fixture
    """Review L2: a metadata URL over https that redirects to plain http is refused (not followed)."""
    target = server.url("/md.xml")
    server.docs["/md.xml"] = plain(sp_doc("https://sp.example.org/acs", "https://sp.example.org/x"))

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki["server"])
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        _register(app, tmp_path, plain(sp_doc("https://sp.example.org/acs")))
        ok(app, "apps", "set", "sp", "--metadata-url", f"https://127.0.0.1:{httpd.server_address[1]}/md.xml")
        result = cli(app, "apps", "refresh", "sp")
        assert result.exit_code == 1 and "redirected from https:// to a plain http://" in result.stdout, result.output
        assert not server.requests   # never followed
        assert _acs() == ["https://sp.example.org/acs"]
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_root_id_must_be_unique_counting_xml_id(app: Flask, tmp_path: Path, server: MetadataServer,
                                                sp_keys: Any) -> None:
    """Review L5: an xml:id equal to the root's ID (here inside the unsigned KeyInfo) makes the Reference
    ambiguous: refused."""
    kp = sp_keys["other"]
    _register(app, tmp_path, plain(sp_doc("https://sp.example.org/acs")))
    ok(app, "apps", "set", "sp", "--metadata-url", server.url("/md.xml"), "--trust-anchor", anchor_file(tmp_path, kp))
    root = etree.fromstring(signed(sp_doc("https://sp.example.org/acs", "https://sp.example.org/x",
                                          valid_until=datetime.now(UTC) + timedelta(days=7)), kp))
    data = root.find("{http://www.w3.org/2000/09/xmldsig#}Signature/{http://www.w3.org/2000/09/xmldsig#}KeyInfo/"
                     "{http://www.w3.org/2000/09/xmldsig#}X509Data")
    assert data is not None
    data.set("{http://www.w3.org/XML/1998/namespace}id", "_md1")
    server.docs["/md.xml"] = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    result = cli(app, "apps", "refresh", "sp")
    assert result.exit_code == 1 and "ID is not unique" in result.stdout, result.output
    assert _acs() == ["https://sp.example.org/acs"]


def test_unattended_apply_records_plain_http_warnings(app: Flask, tmp_path: Path, server: MetadataServer,
                                                      sp_keys: Any) -> None:
    """Review L7: a change applied by `--due` (or the worker) records the plain-http endpoint warnings an admin
    gets when uploading by hand: printed, and in the app.metadata_refresh audit row."""
    kp = sp_keys["other"]
    _register(app, tmp_path, plain(sp_doc("https://sp.example.org/acs")))
    ok(app, "apps", "set", "sp", "--metadata-url", server.url("/md.xml"), "--trust-anchor", anchor_file(tmp_path, kp))
    server.docs["/md.xml"] = signed(sp_doc("https://sp.example.org/acs", "http://sp.example.org/plain",
                                           valid_until=datetime.now(UTC) + timedelta(days=2)), kp)
    result = ok(app, "apps", "refresh", "--due")
    assert "applied" in result.stdout
    assert "Warning: app sp:" in result.stderr and "http://sp.example.org/plain" in result.stderr
    row = audits("app.metadata_refresh")[-1]
    assert any("http://sp.example.org/plain" in w for w in row.after["warnings"])


def test_due_commits_each_app_before_fetching_the_next(app: Flask, tmp_path: Path, server: MetadataServer,
                                                       sp_keys: Any) -> None:
    """Review M3: `idp apps refresh --due` commits each app's outcome before fetching the next one (the SQLite
    write lock is not held across the other fetches): another connection sees app one's outcome while app two's
    document is being fetched. Run it on PostgreSQL too (tests/with-services.sh sets IDP_TEST_DATABASE_URL): there
    the old single transaction hid app one's outcome (and held its row lock) until the end of the run; on SQLite
    pysqlite's release of the outermost savepoint happened to commit."""
    import sqlalchemy as sa

    from idp.models import MetadataSource

    kp = sp_keys["other"]
    _register(app, tmp_path, plain(sp_doc()), slug="one")
    _register(app, tmp_path, plain(sp_doc(entity_id="https://two.example.org/sp")), slug="two")
    server.docs["/one.xml"] = signed(sp_doc("https://sp.example.org/acs", "https://sp.example.org/one",
                                            valid_until=datetime.now(UTC) + timedelta(days=2)), kp)
    server.docs["/two.xml"] = plain(sp_doc(entity_id="https://two.example.org/sp"))
    ok(app, "apps", "set", "one", "--metadata-url", server.url("/one.xml"), "--trust-anchor", anchor_file(tmp_path, kp))
    ok(app, "apps", "set", "two", "--metadata-url", server.url("/two.xml"))
    for slug, ago in (("one", 120), ("two", 60)):   # one is due first
        row = db.session.query(ConnectedApp).filter_by(slug=slug).one()
        src = db.session.get(MetadataSource, row.id)
        assert src is not None
        src.next_due_at = datetime.now(UTC) - timedelta(seconds=ago)
    db.session.commit()
    one_id = db.session.query(ConnectedApp).filter_by(slug="one").one().id
    other = sa.create_engine(db.engine.url)
    seen: list[str | None] = []

    def look() -> None:
        with other.connect() as conn:
            seen.append(conn.execute(sa.text("SELECT last_outcome FROM app_metadata_sources WHERE app_id = :i"),
                                     {"i": one_id}).scalar())

    server.hooks["/two.xml"] = look
    try:
        assert "2 app(s) refreshed, 0 refused" in ok(app, "apps", "refresh", "--due").stdout
    finally:
        other.dispose()
    assert seen == ["applied"]
