"""Every request-validation reason code: the right HTTP answer, no assertion, and an event row."""

from __future__ import annotations

import base64
import zlib

import pytest

from idp.services import apps as apps_svc

from ..raw_requests import authn_request_xml, deflate_b64, old_instant, redirect_query
from ..webclient import saml_form
from .conftest import PASSWORD, last_event


def assert_refused(resp, status: int, reason: str, outcome: str = "error"):  # type: ignore[no-untyped-def]
    body = resp.get_data(as_text=True)
    assert resp.status_code == status, body[:400]
    assert "SAMLResponse" not in body
    assert "Traceback" not in body
    ev = last_event()
    assert (ev.reason, ev.outcome) == (reason, outcome)
    assert f"event <code id=\"event-id\">{ev.id}</code>" in body
    return ev


def test_unknown_sp(make_sp, browser, alice):
    sp = make_sp("pysaml2", register=False)
    ev = assert_refused(browser.send(sp.authn_request("redirect")), 403, "unknown_sp")
    assert ev.sp_entity_id == sp.entity_id and ev.app_slug is None


@pytest.mark.parametrize("acs", [
    "https://sp1.example.com/acs/", "https://SP1.example.com/acs", "https://sp1.example.com:8443/acs",
    "https://sp1.example.com/acs?x=1", "https://evil@sp1.example.com/acs", "https://sp1.example.com/acs/../acs",
    "https://sp1.example.com.evil.com/acs", "http://sp1.example.com/acs",
])
def test_acs_url_lookalikes_are_not_registered(make_sp, browser, alice, acs):
    sp = make_sp("onelogin", base_url="https://sp1.example.com")
    assert sp.acs_url == "https://sp1.example.com/acs"
    ev = assert_refused(browser.send(sp.authn_request("redirect", acs_url=acs)), 403, "acs_not_registered")
    assert ev.app_slug == sp.slug


def test_acs_index_out_of_range(make_sp, browser, alice):
    sp = make_sp("pysaml2")
    assert_refused(browser.send(sp.authn_request("redirect", acs_index=7)), 403, "acs_not_registered")


def test_acs_index_zero_is_accepted(make_sp, browser, alice):
    sp = make_sp("pysaml2")
    req = sp.authn_request("redirect", acs_index=0)
    form = saml_form(browser.sso(req, "alice", PASSWORD))
    assert form is not None and form.action == sp.acs_url


@pytest.mark.parametrize("binding", ["redirect", "post"])
def test_unsigned_request_when_app_requires_signatures(make_sp, browser, alice, binding):
    sp = make_sp("pysaml2", sign_requests=False, settings={"require_signed_requests": True})
    assert_refused(browser.send(sp.authn_request(binding)), 403, "bad_signature")


@pytest.mark.parametrize("kind", ["pysaml2", "onelogin"])
@pytest.mark.parametrize("binding", ["redirect", "post"])
def test_request_signed_with_a_key_not_in_metadata(make_sp, browser, alice, sp_keys, kind, binding):
    registered = make_sp(kind, sign_requests=True, base_url="https://spx.example.com")
    impostor = make_sp(kind, sign_requests=True, base_url="https://spx.example.com", register=False,
                       keypair=sp_keys["other"])
    ev = assert_refused(browser.send(impostor.authn_request(binding)), 403, "bad_signature")
    assert ev.app_slug == registered.slug


def test_redirect_parameters_altered_after_signing(make_sp, browser, alice):
    sp = make_sp("onelogin", sign_requests=True)
    req = sp.authn_request("redirect", relay_state="good")
    tampered = req.url.replace("RelayState=good", "RelayState=evil")
    assert tampered != req.url
    assert_refused(browser.get(tampered.split("localhost", 1)[1]), 403, "bad_signature")


def test_redirect_parameter_duplicated_after_signing(make_sp, browser, alice):
    sp = make_sp("onelogin", sign_requests=True)
    req = sp.authn_request("redirect", relay_state="good")
    path = req.url.split("localhost", 1)[1] + "&RelayState=evil"
    resp = browser.get(path)
    assert resp.status_code == 400 and last_event().reason == "malformed_request"


def test_sha1_signature_refused_unless_allowed(make_sp, browser, alice):
    sha1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
    sp = make_sp("onelogin", sign_requests=True, sig_alg=sha1)
    assert_refused(browser.send(sp.authn_request("redirect")), 403, "bad_signature")
    apps_svc.change_settings(apps_svc.get_app(sp.slug), allow_sha1=True)
    req = sp.authn_request("redirect")
    form = saml_form(browser.sso(req, "alice", PASSWORD))
    assert form is not None


def test_request_expired(make_sp, browser, alice):
    sp = make_sp("pysaml2")
    xml = authn_request_xml(sp.entity_id, issue_instant=old_instant(3600))
    ev = assert_refused(browser.get("/saml/sso?" + redirect_query(xml)), 400, "request_expired")
    assert ev.app_slug == sp.slug


def test_request_from_the_future(make_sp, browser, alice):
    sp = make_sp("pysaml2")
    xml = authn_request_xml(sp.entity_id, issue_instant=old_instant(-3600))
    assert_refused(browser.get("/saml/sso?" + redirect_query(xml)), 400, "request_expired")


@pytest.mark.parametrize("binding", ["redirect", "post"])
def test_replayed_request(make_sp, browser, alice, binding):
    sp = make_sp("onelogin", sign_requests=True)
    req = sp.authn_request(binding)
    assert saml_form(browser.sso(req, "alice", PASSWORD)) is not None
    ev = assert_refused(browser.send(req), 409, "replayed_request")
    assert ev.request_id == req.request_id


def test_replay_across_bindings(make_sp, browser, alice):
    sp = make_sp("pysaml2")
    xml = authn_request_xml(sp.entity_id, req_id="_same-id-1")
    assert saml_form(browser.sso_path("/saml/sso?" + redirect_query(xml), "alice", PASSWORD)) is not None
    resp = browser.follow(browser.client.post("/saml/sso", data={"SAMLRequest": base64.b64encode(xml).decode()}))
    assert_refused(resp, 409, "replayed_request")


def test_wrong_destination(make_sp, browser, alice):
    sp = make_sp("pysaml2")
    xml = authn_request_xml(sp.entity_id, destination="https://evil.example.com/saml/sso")
    assert_refused(browser.get("/saml/sso?" + redirect_query(xml)), 400, "wrong_destination")


def test_signed_request_without_destination(make_sp, browser, alice, sp_keys):
    sp = make_sp("pysaml2", sign_requests=True)
    xml = authn_request_xml(sp.entity_id, destination=None)
    q = redirect_query(xml, key_pem=sp_keys["sp1"].key_pem)
    assert_refused(browser.get("/saml/sso?" + q), 400, "wrong_destination")


@pytest.mark.parametrize("query", [
    "SAMLRequest=%%%not-base64",
    "SAMLRequest=" + base64.b64encode(b"not deflate at all").decode(),
    "SAMLRequest=" + deflate_b64(b"<not-xml"),
    "SAMLRequest=" + deflate_b64(b"<samlp:Response xmlns:samlp='urn:oasis:names:tc:SAML:2.0:protocol'/>"),
    "SAMLRequest=" + deflate_b64(b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>'),
    "",
    "RelayState=x",
])
def test_malformed_redirect_requests(browser, query):
    assert_refused(browser.get("/saml/sso?" + query), 400, "malformed_request")


def test_deflate_bomb_is_capped(browser):
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = bomb.compress(b"<" + b"a" * 50_000_000) + bomb.flush()
    q = "SAMLRequest=" + base64.b64encode(data).decode().replace("+", "%2B").replace("/", "%2F")
    assert_refused(browser.get("/saml/sso?" + q), 400, "malformed_request")


def test_malformed_post_request(browser):
    resp = browser.follow(browser.client.post("/saml/sso", data={"SAMLRequest": "!!!"}))
    assert_refused(resp, 400, "malformed_request")


def test_relay_state_too_long_or_with_markup(make_sp, browser, alice):
    sp = make_sp("pysaml2")
    for rs in ("x" * 81, '<script>alert(1)</script>'):
        xml = authn_request_xml(sp.entity_id)
        assert_refused(browser.get("/saml/sso?" + redirect_query(xml, relay_state=rs)), 400, "malformed_request")


def test_unsupported_protocol_binding(make_sp, browser, alice):
    sp = make_sp("pysaml2")
    xml = authn_request_xml(sp.entity_id, protocol_binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Artifact")
    assert_refused(browser.get("/saml/sso?" + redirect_query(xml)), 400, "unsupported_binding")


def test_app_disabled(make_sp, browser, alice):
    sp = make_sp("onelogin", settings={}, )
    apps_svc.change_settings(apps_svc.get_app(sp.slug), enabled=False)
    assert_refused(browser.send(sp.authn_request("redirect")), 403, "app_disabled", "denied")
    assert_refused(browser.get(f"/apps/{sp.slug}/sso"), 403, "app_disabled", "denied")


def test_unknown_app_launch(browser, alice):
    assert_refused(browser.get("/apps/nope/sso"), 404, "unknown_app")


def test_comment_injection_in_issuer_uses_full_text(make_sp, browser, alice):
    make_sp("pysaml2", base_url="https://sp1.example.com")
    # "https://sp1.example.com/metadata" split by a comment must still be read as the whole string
    issuer = "<saml:Issuer>https://sp1.example.com<!-- x -->/metadata</saml:Issuer>"
    xml = authn_request_xml("", issuer_xml=issuer)
    resp = browser.sso_path("/saml/sso?" + redirect_query(xml), "alice", PASSWORD)
    assert saml_form(resp) is not None
    issuer2 = "<saml:Issuer>https://sp1.example.com/metadata<!-- x -->.evil</saml:Issuer>"
    xml = authn_request_xml("", issuer_xml=issuer2)
    assert_refused(browser.get("/saml/sso?" + redirect_query(xml)), 403, "unknown_sp")


def test_no_authn_context(make_sp, browser, alice):
    sp = make_sp("onelogin")
    req = sp.authn_request("redirect", requested_authn_context=("exact", ["urn:example:unknown-class"]))
    form = saml_form(browser.sso(req, "alice", PASSWORD))
    assert form is not None and form.action == sp.acs_url
    assert "NoAuthnContext" in base64.b64decode(form.saml_response).decode()
    assert "Assertion" not in base64.b64decode(form.saml_response).decode()
    ev = last_event()
    assert (ev.outcome, ev.reason) == ("denied", "no_authn_context")


def test_unsupported_nameid_policy(make_sp, browser, alice):
    sp = make_sp("onelogin")
    req = sp.authn_request("redirect", name_id_format="urn:oasis:names:tc:SAML:2.0:nameid-format:kerberos")
    form = saml_form(browser.sso(req, "alice", PASSWORD))
    assert form is not None
    xml = base64.b64decode(form.saml_response).decode()
    assert "InvalidNameIDPolicy" in xml and "Assertion" not in xml
    assert last_event().reason == "unsupported_nameid_format"
