"""SAML single logout over the SOAP back channel (flows.slo_soap) against a real pysaml2 SP on loopback.

The SP verifies the IdP's signed LogoutRequest with pysaml2 (signature against the IdP's metadata, Destination,
NameID, SessionIndex) and answers with a pysaml2-built SOAP LogoutResponse; every way the answer can fail is a
failure event of its own while the IdP session still ends."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from flask import Flask
from flask.testing import FlaskClient

from idp.config import Settings

from ..conftest import make_settings
from ..hostile.saml_tools import signed
from ..soap_sp import SoapLogoutSP, soap_prefixes
from .conftest import events
from .test_slo import deliver, live_sessions, sign_in

SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
PARTIAL = "urn:oasis:names:tc:SAML:2.0:status:PartialLogout"
SOAP_ACTION = "http://www.oasis-open.org/committees/security"


TIMEOUT_S = 5.0


@pytest.fixture
def settings(tmp_path: Path, key_template: Path, request: pytest.FixtureRequest) -> Settings:
    # the test SPs listen on loopback: allowed here, except where a test asks for the default; a test may
    # override other settings through its param
    # a generous timeout: the test SP verifies with pysaml2 (an xmlsec1 process) in this process's threads, slow
    # under coverage on a busy machine; the "sleep" SP answers only after it
    overrides = {"saml_backchannel_allow_private": True, "saml_backchannel_timeout_s": TIMEOUT_S,
                 **getattr(request, "param", {})}
    if overrides.get("saml_backchannel_client_cert") == "from-pki":
        pki = request.getfixturevalue("pki")
        overrides.update(saml_backchannel_client_cert=pki["client_cert"], saml_backchannel_client_key=pki["client_key"])
    return make_settings(tmp_path, key_template, **overrides)


@pytest.fixture
def soap_sp(client: FlaskClient, tmp_path: Path, sp_keys: Any) -> Iterator[Callable[..., SoapLogoutSP]]:
    """Start a SOAP-logout SP, register it as a connected app (its slug in `.slug`)."""
    from idp.services import apps as apps_svc

    idp_md = client.get("/saml/metadata").get_data(as_text=True)
    started: list[SoapLogoutSP] = []

    def factory(mode: str = "ok", **kw: Any) -> SoapLogoutSP:
        n = len(started) + 1
        workdir = tmp_path / f"soap{n}"
        workdir.mkdir()
        sp = SoapLogoutSP(workdir, idp_md, keypair=sp_keys[f"sp{min(n, 3)}"], mode=mode, **kw)
        started.append(sp)
        sp.slug = apps_svc.register_app(sp.metadata_xml().encode(), slug=f"soap-{n}").slug  # type: ignore[attr-defined]
        return sp

    with soap_prefixes():
        yield factory
    for sp in started:
        sp.close()


def end_sessions(app: Flask) -> None:
    r = app.test_cli_runner().invoke(args=["users", "end-sessions", "alice"])
    assert r.exit_code == 0, r.output


def soap_events() -> list[Any]:
    return [e for e in events(event_type="logout") if e.binding == "soap"]


def test_admin_ends_a_session_and_the_sp_is_told_over_soap(app: Flask, soap_sp, browser, alice):  # type: ignore[no-untyped-def]
    sp = soap_sp("ok")
    result = sign_in(browser, sp)
    end_sessions(app)
    assert live_sessions() == 0
    [got] = sp.received
    assert got.verified, got.error           # pysaml2 verified the IdP's signature against the IdP's metadata
    assert (got.name_id, got.session_indexes) == (result.name_id, [result.session_index])
    assert got.headers["content-type"].startswith("text/xml")
    assert got.headers["soapaction"].strip('"') == SOAP_ACTION
    [ev] = soap_events()
    assert (ev.app_slug, ev.reason, ev.outcome, ev.username, ev.request_id) == (
        sp.slug, "logout", "success", "alice", got.request_id)
    assert ev.detail["propagated"] is True and ev.detail["authenticated_by"] == "signature"
    session_ev = [e for e in events(event_type="logout") if e.binding is None][-1]
    assert session_ev.detail["saml_apps_notified"] == {sp.slug: "logout"}
    assert session_ev.detail["saml_apps_not_notified"] == []


@pytest.mark.parametrize(("mode", "reason", "cause"), [
    ("unsigned", "bad_signature", "not signed"),
    ("wrong_irt", "malformed_request", "InResponseTo"),
    ("fault", "backchannel_logout_failed", "SOAP fault"),
    ("error", "backchannel_logout_failed", "HTTP 500"),
    ("failure", "logout_failed", "Responder"),
    ("sleep", "backchannel_logout_failed", "did not answer within"),
])
def test_a_failed_answer_is_a_failure_event_and_the_session_still_ends(app: Flask, soap_sp, browser, alice,  # type: ignore[no-untyped-def]
                                                                      mode, reason, cause):
    sp = soap_sp(mode, delay=TIMEOUT_S + 1.5)
    sign_in(browser, sp)
    end_sessions(app)
    assert live_sessions() == 0
    assert sp.received and sp.received[0].verified
    [ev] = soap_events()
    assert (ev.app_slug, ev.reason, ev.outcome) == (sp.slug, reason, "error")
    assert cause in ev.detail["error_description"]
    if mode == "sleep":
        assert ev.detail["failure"] == "timeout"
    session_ev = [e for e in events(event_type="logout") if e.binding is None][-1]
    assert session_ev.detail["saml_apps_notified"] == {sp.slug: reason}


def test_an_answer_signed_with_a_key_outside_the_apps_metadata_is_refused(app: Flask, soap_sp, browser, alice,  # type: ignore[no-untyped-def]
                                                                         sp_keys):
    sp = soap_sp("resign", resign=lambda xml: signed(xml, sp_keys["other"]))
    sign_in(browser, sp)
    end_sessions(app)
    [ev] = soap_events()
    assert (ev.reason, ev.outcome) == ("bad_signature", "error")
    assert "does not verify with the app's certificates" in ev.detail["error_description"]


@pytest.mark.parametrize("settings", [{"saml_backchannel_allow_private": False}], indirect=True)
def test_a_private_address_is_refused_without_the_setting(app: Flask, soap_sp, browser, alice):  # type: ignore[no-untyped-def]
    sp = soap_sp("ok")
    sign_in(browser, sp)
    end_sessions(app)
    assert live_sessions() == 0
    assert sp.received == []                 # nothing was sent
    [ev] = soap_events()
    assert (ev.reason, ev.outcome) == ("backchannel_logout_failed", "error")
    assert "IDP_SAML_BACKCHANNEL_ALLOW_PRIVATE" in ev.detail["error_description"]


def test_apps_of_a_session_are_told_in_parallel(app: Flask, soap_sp, make_sp, browser, alice):  # type: ignore[no-untyped-def]
    slow, fast = soap_sp("sleep", delay=0.5), soap_sp("sleep", delay=0.3)   # each answers well within the timeout
    front = make_sp("pysaml2")                 # front channel only: cannot be told without the browser
    for sp in (slow, fast, front):
        sign_in(browser, sp)
    end_sessions(app)
    assert {e.app_slug: e.reason for e in soap_events()} == {slow.slug: "logout", fast.slug: "logout"}
    session_ev = [e for e in events(event_type="logout") if e.binding is None][-1]
    assert session_ev.detail["saml_apps_not_notified"] == [front.slug]
    # both requests were on the wire at once: each SP was asked before the other answered (in turn, the second
    # would only be asked after the first answered)
    [slow_got], [fast_got] = slow.received, fast.received
    assert slow_got.verified and fast_got.verified
    assert slow_got.answered is not None and fast_got.answered is not None
    assert max(slow_got.arrived, fast_got.arrived) < min(slow_got.answered, fast_got.answered)


def test_front_channel_chain_logs_out_a_soap_only_app_first(soap_sp, make_sp, browser, alice):  # type: ignore[no-untyped-def]
    initiator = make_sp("pysaml2")
    soap_only = soap_sp("ok", front_channel=False)
    r1 = sign_in(browser, initiator)
    r2 = sign_in(browser, soap_only)
    logout = initiator.logout_request(r1.name_id, r1.session_index, "redirect")
    kind, where = deliver(browser, browser.send(logout))
    assert live_sessions() == 0
    [got] = soap_only.received
    assert got.verified and got.name_id == r2.name_id
    # no browser step was needed: the initiator gets its answer at once, a full Success
    assert kind == "redirect" and where.startswith(initiator.slo_url)
    from urllib.parse import urlsplit
    status = initiator.process_logout_response("redirect", query=urlsplit(where).query,
                                               request_id=logout.request_id)
    assert (status, initiator.last_logout_sub_status) == (SUCCESS, None)
    [ev] = soap_events()
    assert (ev.app_slug, ev.reason, ev.initiated_by) == (soap_only.slug, "logout", "idp")


def test_front_channel_chain_is_partial_when_the_soap_only_app_fails(soap_sp, make_sp, browser, alice):  # type: ignore[no-untyped-def]
    initiator = make_sp("pysaml2")
    soap_only = soap_sp("fault", front_channel=False)
    r1 = sign_in(browser, initiator)
    sign_in(browser, soap_only)
    logout = initiator.logout_request(r1.name_id, r1.session_index, "redirect")
    kind, where = deliver(browser, browser.send(logout))
    from urllib.parse import urlsplit
    status = initiator.process_logout_response("redirect", query=urlsplit(where).query,
                                               request_id=logout.request_id)
    assert (status, initiator.last_logout_sub_status) == (SUCCESS, PARTIAL)
    assert [e.reason for e in soap_events()] == ["backchannel_logout_failed"]


# ---------------------------------------------------------------- https: TLS authenticates the SP, mutual TLS

def _cert(subject: str, key: Any, issuer: tuple[str, Any] | None, *, ca: bool = False, ip: str | None = None,
          client: bool = False) -> Any:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer[0])]) if issuer else name
    now = datetime.datetime.now(datetime.UTC)
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
         .not_valid_after(now + datetime.timedelta(days=30))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                          content_commitment=False, key_encipherment=False, data_encipherment=False,
                                          key_agreement=False, encipher_only=False, decipher_only=False),
                            critical=True)
    if ip:
        b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if client:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return b.sign(issuer[1] if issuer else key, hashes.SHA256())


def _write(path: Path, *items: Any) -> str:
    pem = b""
    for item in items:
        if isinstance(item, x509.Certificate):
            pem += item.public_bytes(serialization.Encoding.PEM)
        else:
            pem += item.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
    path.write_bytes(pem)
    path.chmod(0o600)
    return str(path)


@pytest.fixture
def pki(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A private CA the IdP trusts (SSL_CERT_FILE: OpenSSL's default verify paths read it), a server certificate for
    127.0.0.1 and a client certificate for the IdP, all signed by it."""
    keys = {n: rsa.generate_private_key(public_exponent=65537, key_size=2048) for n in ("ca", "server", "client")}
    ca = _cert("Test CA", keys["ca"], None, ca=True)
    server = _cert("127.0.0.1", keys["server"], ("Test CA", keys["ca"]), ip="127.0.0.1")
    client = _cert("idp-backchannel", keys["client"], ("Test CA", keys["ca"]), client=True)
    d = tmp_path / "pki"
    d.mkdir()
    paths = {"ca": _write(d / "ca.pem", ca), "server": _write(d / "server.pem", server, keys["server"]),
             "client_cert": _write(d / "client.pem", client), "client_key": _write(d / "client.key", keys["client"])}
    monkeypatch.setenv("SSL_CERT_FILE", paths["ca"])
    return paths


def _server_tls(pki: dict[str, str]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki["server"])
    ctx.load_verify_locations(pki["ca"])
    ctx.verify_mode = ssl.CERT_REQUIRED          # the SP insists on the IdP's client certificate
    return ctx


@pytest.mark.parametrize("settings", [{"saml_backchannel_client_cert": "from-pki"}], indirect=True)
def test_https_unsigned_answer_is_authenticated_by_tls_with_a_client_certificate(app: Flask, soap_sp, browser,  # type: ignore[no-untyped-def]
                                                                                   alice, pki):
    sp = soap_sp("unsigned", tls=_server_tls(pki))
    sign_in(browser, sp)
    end_sessions(app)
    [got] = sp.received
    assert got.verified and got.client_cert_subject == "commonName=idp-backchannel"
    [ev] = soap_events()
    assert (ev.reason, ev.outcome, ev.detail["authenticated_by"]) == ("logout", "success", "tls")


def test_https_without_the_client_certificate_the_sp_refuses_the_connection(app: Flask, soap_sp, browser, alice,  # type: ignore[no-untyped-def]
                                                                           pki):
    sp = soap_sp("ok", tls=_server_tls(pki))
    sign_in(browser, sp)
    end_sessions(app)
    assert live_sessions() == 0 and [r for r in sp.received if r.verified] == []
    [ev] = soap_events()
    assert (ev.reason, ev.outcome) == ("backchannel_logout_failed", "error")
