"""SP-initiated and IdP-initiated SSO round trips with two independent SP implementations."""

from __future__ import annotations

import base64

import pytest
from lxml import etree

from ..sp_harness import SPValidationError
from ..webclient import saml_form
from .conftest import PASSWORD, events, last_event

KINDS = ["pysaml2", "onelogin"]
NS = {"samlp": "urn:oasis:names:tc:SAML:2.0:protocol", "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
      "ds": "http://www.w3.org/2000/09/xmldsig#"}


def response_xml(form) -> etree._Element:  # type: ignore[no-untyped-def]
    return etree.fromstring(base64.b64decode(form.saml_response))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("binding", ["redirect", "post"])
@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_sp_initiated_login_round_trip(make_sp, browser, alice, kind, binding, signed):
    sp = make_sp(kind, sign_requests=signed,
                 settings={"attributes": {"email": "email", "urn:oid:2.5.4.42": "first_name", "groups": "groups"}})
    req = sp.authn_request(binding, relay_state="state-123")
    resp = browser.send(req)
    assert resp.status_code == 200
    assert 'name="username"' in resp.get_data(as_text=True), "an unauthenticated user must be sent to /login"
    resp = browser.login(resp, "alice", PASSWORD)
    form = saml_form(resp)
    assert form is not None, resp.get_data(as_text=True)[:500]
    assert form.action == sp.acs_url
    assert form.relay_state == "state-123"
    result = sp.process_response(form.saml_response, req.request_id)
    assert result.name_id == "alice"
    assert result.attributes["email"] == ["alice@example.com"]
    assert result.attributes["urn:oid:2.5.4.42"] == ["Alice"]
    assert result.attributes["groups"] == ["engineering"]
    assert result.session_index
    assert result.in_response_to == req.request_id
    assert result.authn_context == "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
    ev = last_event()
    assert (ev.outcome, ev.reason, ev.username, ev.app_slug) == ("success", "ok", "alice", sp.slug)
    assert (ev.initiated_by, ev.binding, ev.request_id) == ("sp", binding, req.request_id)
    root = response_xml(form)
    assert ev.response_id == root.get("ID")
    assert ev.assertion_id == root.find("saml:Assertion", NS).get("ID")


def test_response_and_assertion_are_signed_rsa_sha256_exc_c14n(make_sp, browser, alice):
    sp = make_sp("pysaml2")
    req = sp.authn_request("redirect")
    form = saml_form(browser.sso(req, "alice", PASSWORD))
    root = response_xml(form)
    assertion = root.find("saml:Assertion", NS)
    for el in (root, assertion):
        sig = el.find("ds:Signature", NS)
        assert sig is not None
        assert sig.find("ds:SignedInfo/ds:SignatureMethod", NS).get("Algorithm").endswith("rsa-sha256")
        assert sig.find("ds:SignedInfo/ds:CanonicalizationMethod", NS).get("Algorithm") == \
            "http://www.w3.org/2001/10/xml-exc-c14n#"
        refs = sig.findall("ds:SignedInfo/ds:Reference", NS)
        assert [r.get("URI") for r in refs] == ["#" + el.get("ID")]
    assert root.get("Destination") == sp.acs_url
    conf = assertion.find("saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData", NS)
    assert conf.get("Recipient") == sp.acs_url and conf.get("InResponseTo") == req.request_id
    assert assertion.find("saml:Conditions/saml:AudienceRestriction/saml:Audience", NS).text == sp.entity_id
    assert assertion.find("saml:Issuer", NS).text == "http://localhost/saml/metadata"
    # independent third verifier
    from signxml import XMLVerifier

    from .conftest import SP_KINDS  # noqa: F401
    cert = browser.client.application.extensions["idp.keystore"].current().active.cert_pem
    XMLVerifier().verify(etree.tostring(root), x509_cert=cert, expect_references=1)


@pytest.mark.parametrize("kind", KINDS)
def test_session_reused_across_two_apps(make_sp, browser, alice, kind):
    sp1, sp2 = make_sp(kind), make_sp(kind)
    r1 = sp1.authn_request("redirect")
    form1 = saml_form(browser.sso(r1, "alice", PASSWORD))
    sp1.process_response(form1.saml_response, r1.request_id)
    r2 = sp2.authn_request("post")
    resp = browser.send(r2)
    form2 = saml_form(resp)
    assert form2 is not None, "the second app must not ask for a password"
    res2 = sp2.process_response(form2.saml_response, r2.request_id)
    assert res2.name_id == "alice"
    assert len(events(outcome="success")) == 2


@pytest.mark.parametrize("kind", KINDS)
def test_idp_initiated_with_relay_state(make_sp, browser, alice, kind):
    sp = make_sp(kind)
    resp = browser.get(f"/apps/{sp.slug}/sso?RelayState=/deep/link")
    resp = browser.login(resp, "alice", PASSWORD)
    form = saml_form(resp)
    assert form is not None
    assert form.relay_state == "/deep/link"
    root = response_xml(form)
    assert root.get("InResponseTo") is None
    result = sp.process_response(form.saml_response, None)
    assert result.name_id == "alice"
    ev = last_event()
    assert (ev.initiated_by, ev.outcome, ev.binding) == ("idp", "success", None)


@pytest.mark.parametrize("kind", KINDS)
def test_force_authn_asks_for_password_again(make_sp, browser, alice, kind):
    sp = make_sp(kind)
    r1 = sp.authn_request("redirect")
    saml_form(browser.sso(r1, "alice", PASSWORD))
    r2 = sp.authn_request("redirect", force_authn=True)
    resp = browser.send(r2)
    assert saml_form(resp) is None
    assert 'name="password"' in resp.get_data(as_text=True)
    resp = browser.login(resp, "alice", PASSWORD)
    form = saml_form(resp)
    assert form is not None
    assert sp.process_response(form.saml_response, r2.request_id).name_id == "alice"


@pytest.mark.parametrize("kind", KINDS)
def test_is_passive_without_session_returns_no_passive(make_sp, browser, alice, kind):
    sp = make_sp(kind)
    req = sp.authn_request("redirect", is_passive=True)
    form = saml_form(browser.send(req))
    assert form is not None and form.action == sp.acs_url
    root = response_xml(form)
    codes = [c.get("Value") for c in root.iter(f"{{{NS['samlp']}}}StatusCode")]
    assert codes[-1] == "urn:oasis:names:tc:SAML:2.0:status:NoPassive"
    assert root.find("saml:Assertion", NS) is None
    with pytest.raises(SPValidationError, match="NoPassive"):
        sp.process_response(form.saml_response, req.request_id)
    ev = last_event()
    assert (ev.outcome, ev.reason) == ("denied", "no_passive")


def test_post_binding_request_survives_login_without_cookies(make_sp, client, alice):
    """A cross-site POST arrives without the SameSite=Lax cookie: the request is parked, not lost."""
    from ..webclient import Browser
    sp = make_sp("onelogin")
    b = Browser(client)
    # log in first (cookie exists), then drop the cookie for the POST as a browser would cross-site
    saml_form(b.sso(sp.authn_request("redirect"), "alice", PASSWORD))
    cookie = client.get_cookie("idp_session")
    assert cookie is not None
    client.delete_cookie("idp_session")
    req = sp.authn_request("post")
    resp = client.post("/saml/sso", data=req.form)
    assert resp.status_code == 303 and "/saml/continue/" in resp.headers["Location"]
    client.set_cookie("idp_session", cookie.value)  # the same-site GET carries it again
    form = saml_form(b.follow(resp))
    assert form is not None
    assert sp.process_response(form.saml_response, req.request_id).name_id == "alice"


@pytest.mark.parametrize("fmt,field,expected", [
    ("email", "email", "alice@example.com"),
    ("unspecified", "username", "alice"),
    ("unspecified", "id", None),
])
def test_nameid_formats(make_sp, browser, alice, fmt, field, expected):
    sp = make_sp("onelogin", settings={"nameid_format": fmt, "nameid_field": field})
    req = sp.authn_request("redirect")
    form = saml_form(browser.sso(req, "alice", PASSWORD))
    res = sp.process_response(form.saml_response, req.request_id)
    assert res.name_id == (expected if expected is not None else str(alice.id))


def test_persistent_nameid_is_pairwise_and_stable(make_sp, browser, alice):
    sp1 = make_sp("pysaml2", settings={"nameid_format": "persistent"})
    sp2 = make_sp("pysaml2", settings={"nameid_format": "persistent"})
    ids = []
    for sp in (sp1, sp2, sp1):
        req = sp.authn_request("redirect")
        form = saml_form(browser.sso(req, "alice", PASSWORD))
        res = sp.process_response(form.saml_response, req.request_id)
        assert res.name_id_format == "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
        ids.append(res.name_id)
    assert ids[0] == ids[2] and ids[0] != ids[1]
    assert "alice" not in ids[0]


def test_transient_nameid_changes_every_time(make_sp, browser, alice):
    sp = make_sp("onelogin", settings={"nameid_format": "transient"})
    seen = set()
    for _ in range(2):
        req = sp.authn_request("redirect")
        form = saml_form(browser.sso(req, "alice", PASSWORD))
        seen.add(sp.process_response(form.saml_response, req.request_id).name_id)
    assert len(seen) == 2


@pytest.mark.parametrize("mode", ["response", "assertion", "both"])
def test_sign_modes(make_sp, browser, alice, mode):
    sp = make_sp("onelogin", want_response_signed=mode != "assertion", want_assertions_signed=mode != "response",
                 settings={"sign": mode})
    req = sp.authn_request("redirect")
    form = saml_form(browser.sso(req, "alice", PASSWORD))
    root = response_xml(form)
    assert (root.find("ds:Signature", NS) is not None) == (mode in ("response", "both"))
    assert (root.find("saml:Assertion/ds:Signature", NS) is not None) == (mode in ("assertion", "both"))
    assert sp.process_response(form.saml_response, req.request_id).name_id == "alice"
