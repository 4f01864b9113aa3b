"""Per-app metadata URLs with automatic refresh: conditional GET against a real loopback HTTP server, auto apply
with its audited diff, approve mode and safety holds, trust-anchor signature checks (unsigned, foreign key, SHA-1,
signature wrapping), validUntil rules, the MDQ request form, the worker's schedule, and an SSO round trip with an
independent SP after a refresh changed its ACS."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from cryptography.hazmat.primitives import serialization
from flask import Flask
from lxml import etree

from idp.config import Settings
from idp.extensions import db
from idp.models import AdminAudit, ConnectedApp, MetadataSource
from idp.saml.constants import SignatureAlgorithm
from idp.saml.signing import sign_element
from idp.services import metadata_refresh

from ..conftest import make_settings
from ..sp_harness import KeyPair
from ..webclient import saml_form
from .conftest import PASSWORD

POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
ENTITY = "https://sp.example.org/sp"


@pytest.fixture
def settings(tmp_path: Path, key_template: Path) -> Settings:
    return make_settings(tmp_path, key_template, metadata_fetch_allow_private=True)


class MetadataServer:
    """A loopback HTTP server serving one document per path, with ETags (304 on If-None-Match)."""

    def __init__(self) -> None:
        self.docs: dict[str, bytes] = {}
        self.etags: dict[str, str] = {}          # path -> ETag sent instead of the document's hash
        self.always_304: set[str] = set()        # paths that answer 304 whatever was asked
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.hooks: dict[str, Any] = {}          # path -> called (no arguments) before the answer
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                outer.requests.append((self.path, dict(self.headers.items())))
                if self.path in outer.hooks:
                    outer.hooks[self.path]()
                body = outer.docs.get(self.path)
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                etag = outer.etags.get(self.path) or '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                if self.headers.get("If-None-Match") == etag or self.path in outer.always_304:
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/samlmetadata+xml")
                self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[MetadataServer]:
    srv = MetadataServer()
    yield srv
    srv.close()


def sp_doc(*acs: str, doc_id: str = "_md1", valid_until: datetime | None = None, cache: str | None = None,
           certs: tuple[str, ...] = (), entity_id: str = ENTITY) -> etree._Element:
    attrs = f' ID="{doc_id}"'
    if valid_until is not None:
        attrs += f' validUntil="{valid_until.strftime("%Y-%m-%dT%H:%M:%SZ")}"'
    if cache is not None:
        attrs += f' cacheDuration="{cache}"'
    keys = "".join(f'<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{c}'
                   f"</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>" for c in certs)
    endpoints = "".join(f'<md:AssertionConsumerService Binding="{POST}" Location="{loc}" index="{i}"/>'
                        for i, loc in enumerate(acs or ("https://sp.example.org/acs",)))
    return etree.fromstring(
        f'<md:EntityDescriptor xmlns:md="{MD}" xmlns:ds="{DS}" entityID="{entity_id}"{attrs}>'
        f'<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">{keys}{endpoints}'
        f"</md:SPSSODescriptor></md:EntityDescriptor>")


def signed(root: etree._Element, kp: KeyPair, algorithm: str = SignatureAlgorithm.RSA_SHA256) -> bytes:
    key = serialization.load_pem_private_key(kp.key_pem.encode(), None)
    sign_element(root, key, algorithm, kp.cert_b64)  # type: ignore[arg-type]
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def plain(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def anchored(kp: KeyPair, *acs: str, **kw: Any) -> bytes:
    """A document signed by the trust anchor `kp`, valid for two days: what a source is auto-applied from (an
    unsigned document over plain http:// is always held)."""
    return signed(sp_doc(*acs, valid_until=datetime.now(UTC).replace(microsecond=0) + timedelta(days=2), **kw), kp)


def cli(app: Flask, *args: str) -> Result:
    result = app.test_cli_runner().invoke(args=list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result


def ok(app: Flask, *args: str) -> Result:
    result = cli(app, *args)
    assert result.exit_code == 0, result.output
    return result


def register(app: Flask, tmp_path: Path, xml: bytes, slug: str = "sp") -> str:
    path = tmp_path / f"{slug}.xml"
    path.write_bytes(xml)
    return ok(app, "apps", "add", "--metadata", str(path), "--slug", slug).stdout.strip()


def show(app: Flask, slug: str) -> dict[str, Any]:
    return json.loads(ok(app, "apps", "show", slug, "--format", "json").stdout)


def acs_of(slug: str) -> list[str]:
    db.session.expire_all()
    row = db.session.query(ConnectedApp).filter_by(slug=slug).one()
    return [a["location"] for a in (row.sp or {})["acs"]]


def audits(action: str) -> list[AdminAudit]:
    db.session.expire_all()
    return db.session.query(AdminAudit).filter_by(action=action).order_by(AdminAudit.id).all()


def anchor_file(tmp_path: Path, kp: KeyPair, name: str = "anchor.pem") -> str:
    path = tmp_path / name
    path.write_text(kp.cert_pem)
    return str(path)


# ---------------------------------------------------------------- fetch, ETag, auto apply, audit


def test_auto_refresh_applies_audits_the_diff_and_uses_etags(app: Flask, tmp_path: Path,
                                                              server: MetadataServer, sp_keys: Any) -> None:
    kp = sp_keys["other"]
    first = anchored(kp, "https://sp.example.org/acs")
    register(app, tmp_path, first)
    server.docs["/md.xml"] = first
    out = ok(app, "apps", "set", "sp", "--metadata-url", server.url("/md.xml"), "--max-interval", "6h",
             "--trust-anchor", anchor_file(tmp_path, kp)).stdout
    assert "refresh auto" in out and "trust anchor SHA-256" in out
    assert "unchanged" in ok(app, "apps", "refresh", "sp").stdout

    server.docs["/md.xml"] = anchored(kp, "https://sp.example.org/acs", "https://sp.example.org/acs2")
    out = ok(app, "apps", "refresh", "sp").stdout
    assert "applied" in out and "+ HTTP-POST https://sp.example.org/acs2 index=1" in out
    assert acs_of("sp") == ["https://sp.example.org/acs", "https://sp.example.org/acs2"]
    row = audits("app.metadata_refresh")[-1]
    assert row.after["outcome"] == "applied"
    assert row.after["diff"][0]["added"] == ["HTTP-POST https://sp.example.org/acs2 index=1"]
    assert audits("app.metadata")[-1].after["acs"] == acs_of("sp")

    # the next fetch is conditional: the server answers 304, nothing changes, the next refresh is scheduled
    assert "not modified" in ok(app, "apps", "refresh", "sp").stdout
    assert server.requests[-1][1].get("If-None-Match", "").startswith('"')
    info = show(app, "sp")["metadata_refresh"]
    assert info["last_outcome"] == "unchanged" and info["refresh"] == "auto" and info["max_interval"] == "6h"
    due = datetime.fromisoformat(info["next_due"].replace("Z", "+00:00"))
    assert timedelta(hours=5) < due - datetime.now(UTC) <= timedelta(hours=6)

    # metadata replaced by hand: the validators no longer stand for what the app has, so the next fetch is
    # unconditional and the URL's document comes back
    (tmp_path / "hand.xml").write_bytes(first)
    ok(app, "apps", "set", "sp", "--metadata", str(tmp_path / "hand.xml"))
    assert acs_of("sp") == ["https://sp.example.org/acs"]
    assert "applied" in ok(app, "apps", "refresh", "sp").stdout
    assert "If-None-Match" not in server.requests[-1][1]
    assert acs_of("sp") == ["https://sp.example.org/acs", "https://sp.example.org/acs2"]


def test_cache_duration_and_valid_until_shorten_the_interval(app: Flask, tmp_path: Path,
                                                             server: MetadataServer) -> None:
    doc = plain(sp_doc(cache="PT1H"))
    register(app, tmp_path, doc)
    server.docs["/md.xml"] = doc
    ok(app, "apps", "set", "sp", "--metadata-url", server.url("/md.xml"))
    ok(app, "apps", "refresh", "sp")
    due = datetime.fromisoformat(show(app, "sp")["metadata_refresh"]["next_due"].replace("Z", "+00:00"))
    assert timedelta(minutes=55) < due - datetime.now(UTC) <= timedelta(hours=1)
    # cacheDuration below the minimum interval: the minimum (5 minutes) applies
    server.docs["/md.xml"] = plain(sp_doc(cache="PT10S"))
    ok(app, "apps", "refresh", "sp")
    due = datetime.fromisoformat(show(app, "sp")["metadata_refresh"]["next_due"].replace("Z", "+00:00"))
    assert timedelta(minutes=4) < due - datetime.now(UTC) <= timedelta(minutes=5)


# ---------------------------------------------------------------- approve mode and safety holds


def test_approve_mode_holds_and_yes_applies(app: Flask, tmp_path: Path, server: MetadataServer) -> None:
    register(app, tmp_path, plain(sp_doc("https://sp.example.org/acs")))
    server.docs["/md.xml"] = plain(sp_doc("https://sp.example.org/acs", "https://sp.example.org/new"))
    ok(app, "apps", "set", "sp", "--metadata-url", server.url("/md.xml"), "--refresh", "approve")
    result = ok(app, "apps", "refresh", "sp")
    assert "held" in result.stdout and "idp apps refresh sp --yes" in result.stderr
    assert acs_of("sp") == ["https://sp.example.org/acs"]
    info = show(app, "sp")["metadata_refresh"]
    assert info["held"] is True and info["last_outcome"] == "held"
    assert info["held_diff"][0]["added"] == ["HTTP-POST https://sp.example.org/new index=1"]
    assert len(audits("app.metadata_held")) == 1
    out = ok(app, "apps", "refresh", "sp").stdout   # 304: the held change still waits, not audited twice
    assert "held: not modified (HTTP 304); the held change still waits" in out
    assert len(audits("app.metadata_held")) == 1
    assert "held change:" in ok(app, "apps", "show", "sp").stdout
    out = ok(app, "apps", "refresh", "sp", "--yes").stdout   # 304 from the server: the held document is applied
    assert "applied" in out
    assert acs_of("sp") == ["https://sp.example.org/acs", "https://sp.example.org/new"]
    assert show(app, "sp")["metadata_refresh"]["held"] is False


@pytest.mark.parametrize("what", ["acs", "signing"])
def test_removing_every_acs_or_signing_cert_is_held_even_in_auto(app: Flask, tmp_path: Path,
                                                                 server: MetadataServer, sp_keys: Any,
                                                                 what: str) -> None:
    certs = (sp_keys["sp1"].cert_b64,)
    register(app, tmp_path, plain(sp_doc("https://sp.example.org/acs", certs=certs)))
    new = sp_doc("https://evil.example.net/acs", certs=certs) if what == "acs" else \
        sp_doc("https://sp.example.org/acs", certs=(sp_keys["sp2"].cert_b64,))
    server.docs["/md.xml"] = plain(new)
    ok(app, "apps", "set", "sp", "--metadata-url", server.url("/md.xml"))
    assert "held" in ok(app, "apps", "refresh", "sp").stdout
    info = show(app, "sp")["metadata_refresh"]
    assert "removes every " + ("Assertion Consumer Service" if what == "acs" else "signing certificate") \
        in info["held_reason"]
    assert acs_of("sp") == ["https://sp.example.org/acs"]


# ---------------------------------------------------------------- trust anchor


def wrapped(kind: str, kp: KeyPair) -> bytes:
    """Signature-wrapping forgeries built from a genuinely signed document."""
    good = sp_doc("https://sp.example.org/acs", valid_until=datetime.now(UTC) + timedelta(days=7))
    signed(good, kp)
    sig = good.find(f"{{{DS}}}Signature")
    evil_id = "_md1" if kind in ("duplicate_id", "same_id_new_content") else "_evil"
    evil = sp_doc("https://evil.example.net/acs", doc_id=evil_id,
                  valid_until=datetime.now(UTC) + timedelta(days=7))
    role = evil.find(f"{{{MD}}}SPSSODescriptor")
    if kind == "nested":              # the signed original hidden in Extensions, the root unsigned
        ext = etree.SubElement(evil, f"{{{MD}}}Extensions")
        ext.append(good)
        evil.insert(0, ext)
    elif kind == "ref_to_nested":     # the signature on the root, its Reference at the nested original
        good.remove(sig)
        ext = etree.Element(f"{{{MD}}}Extensions")
        ext.append(good)
        evil.insert(0, ext)
        evil.insert(0, sig)
    elif kind == "duplicate_id":      # the root takes the original's ID, the original nested
        good.remove(sig)
        ext = etree.Element(f"{{{MD}}}Extensions")
        ext.append(good)
        evil.insert(0, ext)
        evil.insert(0, sig)
    else:                             # same ID, the signature copied over other content
        good.remove(sig)
        evil.insert(0, sig)
    assert role is not None
    return plain(evil)


def _anchored(app: Flask, tmp_path: Path, server: MetadataServer, kp: KeyPair) -> None:
    register(app, tmp_path, plain(sp_doc("https://sp.example.org/acs")))
    ok(app, "apps", "set", "sp", "--metadata-url", server.url("/md.xml"), "--trust-anchor", anchor_file(tmp_path, kp))


def test_trust_anchor_accepts_its_signature(app: Flask, tmp_path: Path, server: MetadataServer,
                                            sp_keys: Any) -> None:
    kp = sp_keys["other"]
    register(app, tmp_path, plain(sp_doc("https://sp.example.org/acs")))
    out = ok(app, "apps", "set", "sp", "--metadata-url", server.url("/md.xml"), "--trust-anchor",
             anchor_file(tmp_path, kp)).stdout
    from idp.certs.x509 import fingerprint
    assert f"trust anchor SHA-256 {fingerprint(kp.cert_pem)}" in out
    server.docs["/md.xml"] = signed(sp_doc("https://sp.example.org/acs", "https://sp.example.org/acs2",
                                           valid_until=datetime.now(UTC) + timedelta(days=7)), kp)
    assert "applied" in ok(app, "apps", "refresh", "sp").stdout
    assert acs_of("sp")[-1] == "https://sp.example.org/acs2"
    assert show(app, "sp")["metadata_refresh"]["trust_anchor_sha256"] == fingerprint(kp.cert_pem)
    # an independent verifier agrees the document is validly signed
    from signxml import XMLVerifier
    XMLVerifier().verify(server.docs["/md.xml"], x509_cert=kp.cert_pem, expect_references=1)


@pytest.mark.parametrize("case", ["unsigned", "other_key", "sha1", "nested", "ref_to_nested", "duplicate_id",
                                  "same_id_new_content", "tampered"])
def test_trust_anchor_refusals(app: Flask, tmp_path: Path, server: MetadataServer, sp_keys: Any,
                               case: str) -> None:
    kp = sp_keys["other"]
    _anchored(app, tmp_path, server, kp)
    later = datetime.now(UTC) + timedelta(days=7)
    doc = sp_doc("https://evil.example.net/acs", "https://sp.example.org/acs", valid_until=later)
    if case == "unsigned":
        body = plain(doc)
    elif case == "other_key":
        body = signed(doc, sp_keys["sp1"])
    elif case == "sha1":
        body = signed(doc, kp, SignatureAlgorithm.RSA_SHA1)
    elif case == "tampered":
        body = signed(doc, kp).replace(b"https://evil.example.net/acs", b"https://evil.example.net/ac5")
    else:
        body = wrapped(case, kp)
    server.docs["/md.xml"] = body
    result = cli(app, "apps", "refresh", "sp")
    assert result.exit_code == 1, result.output
    assert "refused" in result.stdout
    expected = {"unsigned": "not signed", "sha1": "SHA-256 or stronger", "nested": "not signed"}.get(case)
    if expected:
        assert expected in result.stdout
    assert acs_of("sp") == ["https://sp.example.org/acs"]
    info = show(app, "sp")["metadata_refresh"]
    assert info["last_outcome"] == "refused" and info["last_error"]
    row = audits("app.metadata_refresh_failed")[-1]
    assert row.after["reason"].startswith("signature_")
    # a second identical failure is not audited again (one row per run of the same error)
    cli(app, "apps", "refresh", "sp")
    assert len(audits("app.metadata_refresh_failed")) == 1


def test_trust_anchor_must_be_a_certificate(app: Flask, tmp_path: Path, sp_keys: Any) -> None:
    register(app, tmp_path, plain(sp_doc()))
    bad = tmp_path / "key.pem"
    bad.write_text(sp_keys["other"].key_pem)
    result = cli(app, "apps", "set", "sp", "--metadata-url", "https://md.example.org/sp.xml", "--trust-anchor",
                 str(bad))
    assert result.exit_code == 1 and "one PEM certificate" in result.stderr
    assert db.session.get(MetadataSource, 1) is None   # nothing written


@pytest.mark.parametrize("case", ["past", "too_far", "missing"])
def test_valid_until_rules(app: Flask, tmp_path: Path, server: MetadataServer, sp_keys: Any, case: str) -> None:
    kp = sp_keys["other"]
    now = datetime.now(UTC)
    if case == "past":      # refused with or without a trust anchor
        register(app, tmp_path, plain(sp_doc()))
        ok(app, "apps", "set", "sp", "--metadata-url", server.url("/md.xml"))
        server.docs["/md.xml"] = plain(sp_doc("https://sp.example.org/acs", "https://sp.example.org/b",
                                              valid_until=now - timedelta(hours=1)))
        fragment = "has passed"
    else:
        _anchored(app, tmp_path, server, kp)
        server.docs["/md.xml"] = signed(sp_doc("https://sp.example.org/acs", "https://sp.example.org/b",
                                               valid_until=now + timedelta(days=400) if case == "too_far"
                                               else None), kp)
        fragment = "more than 30 days ahead" if case == "too_far" else "must carry validUntil"
    result = cli(app, "apps", "refresh", "sp")
    assert result.exit_code == 1 and fragment in result.stdout, result.stdout
    assert acs_of("sp") == ["https://sp.example.org/acs"]


def test_fetch_failure_is_refused_and_retried_later(app: Flask, tmp_path: Path, server: MetadataServer) -> None:
    register(app, tmp_path, plain(sp_doc()))
    ok(app, "apps", "set", "sp", "--metadata-url", server.url("/missing.xml"))
    result = cli(app, "apps", "refresh", "sp")
    assert result.exit_code == 1 and "HTTP 404" in result.stdout
    info = show(app, "sp")["metadata_refresh"]
    due = datetime.fromisoformat(info["next_due"].replace("Z", "+00:00"))
    assert due - datetime.now(UTC) <= timedelta(minutes=5)
    assert audits("app.metadata_refresh_failed")[-1].after["reason"] == "fetch_failed"


def test_hostile_validators(app: Flask, tmp_path: Path, server: MetadataServer, sp_keys: Any) -> None:
    register(app, tmp_path, plain(sp_doc()))
    # an ETag too long to echo is not stored, so it is never sent back
    server.docs["/md.xml"] = anchored(sp_keys["other"], "https://sp.example.org/acs", "https://sp.example.org/b")
    server.etags["/md.xml"] = '"' + "x" * 600 + '"'
    ok(app, "apps", "set", "sp", "--metadata-url", server.url("/md.xml"), "--trust-anchor",
       anchor_file(tmp_path, sp_keys["other"]))
    assert "applied" in ok(app, "apps", "refresh", "sp").stdout
    ok(app, "apps", "refresh", "sp")
    assert "If-None-Match" not in server.requests[-1][1]
    # a 304 to a request that sent no validator is an error, not "unchanged"
    server.always_304.add("/md.xml")
    result = cli(app, "apps", "refresh", "sp")
    assert result.exit_code == 1 and "HTTP 304" in result.stdout


# ---------------------------------------------------------------- MDQ


def test_mdq_request_form(app: Flask, tmp_path: Path, server: MetadataServer, sp_keys: Any) -> None:
    kp = sp_keys["other"]
    register(app, tmp_path, plain(sp_doc()))
    path = "/mdq/entities/https%3A%2F%2Fsp.example.org%2Fsp"
    server.docs[path] = signed(sp_doc("https://sp.example.org/acs", "https://sp.example.org/mdq",
                                      valid_until=datetime.now(UTC) + timedelta(days=2)), kp)
    ok(app, "apps", "set", "sp", "--mdq", server.url("/mdq/"), "--trust-anchor", anchor_file(tmp_path, kp))
    assert "applied" in ok(app, "apps", "refresh", "sp").stdout
    req_path, headers = server.requests[-1]
    assert req_path == path and headers["Accept"] == "application/samlmetadata+xml"
    info = show(app, "sp")["metadata_refresh"]
    assert info["mdq"] == server.url("/mdq") and info["request_url"] == server.url(path)
    assert metadata_refresh.mdq_request_url("https://mdq.example.org/", "urn:x:a b") == \
        "https://mdq.example.org/entities/urn%3Ax%3Aa%20b"


# ---------------------------------------------------------------- the schedule: --due and the worker


def test_due_and_worker_schedule(app: Flask, tmp_path: Path, server: MetadataServer, sp_keys: Any) -> None:
    kp = sp_keys["other"]
    register(app, tmp_path, plain(sp_doc()), slug="one")
    register(app, tmp_path, plain(sp_doc(entity_id="https://two.example.org/sp")), slug="two")
    server.docs["/one.xml"] = anchored(kp, "https://sp.example.org/acs", "https://sp.example.org/one")
    server.docs["/two.xml"] = plain(sp_doc("https://two.example.org/acs2", entity_id="https://two.example.org/sp"))
    ok(app, "apps", "set", "one", "--metadata-url", server.url("/one.xml"), "--trust-anchor", anchor_file(tmp_path, kp))
    ok(app, "apps", "set", "two", "--metadata-url", server.url("/two.xml"), "--refresh", "off")
    out = ok(app, "apps", "refresh", "--due").stdout
    assert "1 app(s) refreshed, 0 refused" in out    # "two" is off: only refreshed by hand
    assert acs_of("one")[-1] == "https://sp.example.org/one"
    assert "0 app(s) refreshed" in ok(app, "apps", "refresh", "--due").stdout   # not due again yet

    # the worker: its periodic step enqueues a job per due app, the job refreshes it
    server.docs["/one.xml"] = anchored(kp, "https://sp.example.org/acs", "https://sp.example.org/worker")
    db.session.get(MetadataSource, db.session.query(ConnectedApp).filter_by(slug="one").one().id).next_due_at = \
        datetime.now(UTC) - timedelta(seconds=1)
    db.session.commit()
    out = ok(app, "worker", "--once").stdout
    assert "ran 1 job(s)" in out
    assert acs_of("one")[-1] == "https://sp.example.org/worker"
    assert audits("app.metadata_refresh")[-1].actor == "worker"
    assert acs_of("two") == ["https://sp.example.org/acs"]   # "off": the worker leaves it alone


# ---------------------------------------------------------------- an SSO round trip after a refresh


def test_sso_round_trip_after_refresh_changed_the_acs(app: Flask, server: MetadataServer, make_sp: Any,
                                                      browser: Any, alice: Any) -> None:
    sp = make_sp("pysaml2", register=False)
    real = sp.metadata_xml().encode()
    old = real.replace(sp.acs_url.encode(), b"https://old.example.com/acs")
    from idp.services import apps as apps_svc
    apps_svc.register_app(old, slug="harness")
    db.session.commit()
    sp.slug = "harness"
    server.docs["/sp.xml"] = real
    ok(app, "apps", "set", "harness", "--metadata-url", server.url("/sp.xml"))
    req = sp.authn_request("redirect")
    resp = browser.send(req)          # the request's ACS is not in the stored metadata yet: refused
    assert resp.status_code >= 400
    # the only ACS is replaced: held even in auto mode, until an admin says yes
    assert "removes every Assertion Consumer Service" in ok(app, "apps", "refresh", "harness").stdout
    assert "applied" in ok(app, "apps", "refresh", "harness", "--yes").stdout
    req = sp.authn_request("redirect")
    form = saml_form(browser.sso(req, "alice", PASSWORD))
    assert form is not None and form.action == sp.acs_url
    result = sp.process_response(form.saml_response, req.request_id)
    assert result.name_id == "alice"


# ---------------------------------------------------------------- admins are told of a refused refresh


def test_refused_refresh_is_emailed_to_admins_once_per_error(app: Flask, tmp_path: Path,
                                                              server: MetadataServer) -> None:
    from idp.services import mailer

    from ..smtp_sink import SmtpSink
    from .test_email import run_worker

    sink = SmtpSink().start()
    try:
        mailer.set_smtp(sink.url(), "idp@example.org")
        db.session.commit()
        ok(app, "org", "set", "--admin-email", "ops@example.org")
        register(app, tmp_path, plain(sp_doc()))
        ok(app, "apps", "set", "sp", "--metadata-url", server.url("/gone.xml"))
        assert cli(app, "apps", "refresh", "sp").exit_code == 1
        assert cli(app, "apps", "refresh", "sp").exit_code == 1     # the same error: no second email
        run_worker()
        assert [(r.rcpt_tos[0], r.message["Subject"]) for r in sink.received] == \
            [("ops@example.org", "Metadata refresh of sp refused")]
        body = sink.received[0].part("plain")
        assert "HTTP 404" in body and "fetch_failed" in body and server.url("/gone.xml") in body
    finally:
        sink.stop()


def test_source_changes_are_audited(app: Flask, tmp_path: Path, sp_keys: Any) -> None:
    register(app, tmp_path, plain(sp_doc()))
    ok(app, "apps", "set", "sp", "--metadata-url", "https://md.example.org/sp.xml")
    ok(app, "apps", "set", "sp", "--refresh", "approve", "--trust-anchor", anchor_file(tmp_path, sp_keys["other"]))
    ok(app, "apps", "set", "sp", "--no-trust-anchor", "--refresh", "off")
    rows = audits("app.metadata_source")
    assert rows[0].before is None and rows[0].after["url"] == "https://md.example.org/sp.xml"
    assert rows[1].before == {"refresh": "auto", "trust_anchor_sha256": None}
    assert rows[1].after["refresh"] == "approve" and rows[1].after["trust_anchor_sha256"]
    assert rows[2].after == {"refresh": "off", "trust_anchor_sha256": None}
    assert show(app, "sp")["metadata_refresh"]["next_due"] is None      # off: not scheduled
    result = cli(app, "apps", "set", "sp", "--metadata-url", "https://a.example.org/x", "--mdq", "https://b.example.org")
    assert result.exit_code == 1 and "not both" in result.stderr
    result = cli(app, "apps", "refresh", "sp", "--due")
    assert result.exit_code != 0 and "not both" in result.stderr
