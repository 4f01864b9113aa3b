"""Single logout: SP-initiated (Redirect and POST), propagation to other apps, IdP-initiated, hostile requests."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from idp.extensions import db
from idp.models import IdpSession

from ..raw_requests import redirect_query
from ..webclient import saml_form
from .conftest import PASSWORD, events, last_event

KINDS = ["pysaml2", "onelogin"]


def sign_in(browser, sp, binding="redirect"):  # type: ignore[no-untyped-def]
    req = sp.authn_request(binding)
    form = saml_form(browser.sso(req, "alice", PASSWORD))
    assert form is not None
    return sp.process_response(form.saml_response, req.request_id)


def live_sessions() -> int:
    db.session.expire_all()
    return db.session.query(IdpSession).filter(IdpSession.ended_at.is_(None)).count()


def deliver(browser, resp):  # type: ignore[no-untyped-def]
    """What the IdP sends the browser to: ('redirect', url) or ('post', form)."""
    if resp.status_code in (302, 303):
        return "redirect", resp.headers["Location"]
    form = saml_form(resp)
    assert form is not None, resp.get_data(as_text=True)[:300]
    return "post", form


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("binding", ["redirect", "post"])
def test_sp_initiated_logout_propagates_to_other_apps(make_sp, browser, alice, kind, binding):
    sp1, sp2 = make_sp(kind), make_sp(kind)
    r1 = sign_in(browser, sp1)
    r2 = sign_in(browser, sp2)
    assert live_sessions() == 1
    logout = sp1.logout_request(r1.name_id, r1.session_index, binding, relay_state="bye")
    resp = browser.send(logout)
    assert live_sessions() == 0
    # the IdP now asks sp2 to log out (Redirect binding preferred)
    kind2, where = deliver(browser, resp)
    assert kind2 == "redirect" and where.startswith(sp2.slo_url)
    name_id, indexes = sp2.process_logout_request("redirect", query=urlsplit(where).query)
    assert name_id == r2.name_id and indexes == [r2.session_index]
    answer = sp2.logout_response("redirect", relay_state=dict(
        p.split("=", 1) for p in urlsplit(where).query.split("&"))["RelayState"])
    resp = browser.send(answer)
    # finally sp1 gets its LogoutResponse on the binding it used
    kind3, where = deliver(browser, resp)
    if kind3 == "redirect":
        assert where.startswith(sp1.slo_url)
        status = sp1.process_logout_response("redirect", query=urlsplit(where).query,
                                             request_id=logout.request_id)
    else:
        assert where.action == sp1.slo_url and where.relay_state == "bye"
        status = sp1.process_logout_response("post", saml_response_b64=where.fields["SAMLResponse"],
                                             request_id=logout.request_id)
    assert status == "urn:oasis:names:tc:SAML:2.0:status:Success"
    initiator, propagated = sorted(events(event_type="logout"), key=lambda e: bool((e.detail or {}).get("propagated")))
    assert (initiator.outcome, initiator.reason, initiator.username, initiator.app_slug) == (
        "success", "logout", "alice", sp1.slug)
    # sp2's answer is an event of its own (flows.slo: each app's logout outcome)
    assert (propagated.outcome, propagated.reason, propagated.username, propagated.app_slug) == (
        "success", "logout", "alice", sp2.slug)
    # the browser has to sign in again
    resp = browser.send(sp1.authn_request("redirect"))
    assert saml_form(resp) is None and 'name="password"' in resp.get_data(as_text=True)


def test_idp_initiated_logout(make_sp, browser, alice):
    sp = make_sp("onelogin")
    res = sign_in(browser, sp)
    resp = browser.client.get("/logout", headers={"Sec-Fetch-Site": "same-origin"})
    kind, where = deliver(browser, resp)
    assert kind == "redirect" and where.startswith(sp.slo_url)
    name_id, _ = sp.process_logout_request("redirect", query=urlsplit(where).query)
    assert name_id == res.name_id
    relay = dict(p.split("=", 1) for p in urlsplit(where).query.split("&"))["RelayState"]
    final = browser.send(sp.logout_response("redirect", relay_state=relay))
    assert final.status_code == 200 and 'id="signed-out"' in final.get_data(as_text=True)
    assert live_sessions() == 0
    assert last_event().initiated_by == "idp"


def test_unsigned_logout_request_is_refused(make_sp, browser, alice):
    sp = make_sp("pysaml2")
    res = sign_in(browser, sp)
    resp = browser.send(sp.logout_request(res.name_id, res.session_index, "redirect", sign=False))
    assert resp.status_code == 403
    assert live_sessions() == 1
    assert (last_event().event_type, last_event().reason) == ("logout", "bad_signature")


def test_forged_logout_request_is_refused(make_sp, browser, alice, sp_keys):
    sp = make_sp("onelogin", base_url="https://spf.example.com")
    res = sign_in(browser, sp)
    forger = make_sp("onelogin", base_url="https://spf.example.com", register=False, keypair=sp_keys["other"])
    resp = browser.send(forger.logout_request(res.name_id, res.session_index, "post"))
    assert resp.status_code == 403
    assert live_sessions() == 1


def test_logout_request_naming_another_users_session(make_sp, client, alice, bob, app):
    from ..webclient import Browser
    sp = make_sp("onelogin")
    a, b = Browser(client), Browser(app.test_client())
    ra = sign_in(a, sp)
    req = sp.authn_request("redirect")
    form = saml_form(b.sso(req, "bob", PASSWORD))
    rb = sp.process_response(form.saml_response, req.request_id)
    assert live_sessions() == 2
    # alice's NameID with bob's SessionIndex: matches nothing, ends nothing
    resp = b.send(sp.logout_request(ra.name_id, rb.session_index, "redirect"))
    assert resp.status_code in (200, 303)
    assert live_sessions() == 2
    assert last_event().reason == "unknown_session"


def test_replayed_logout_request(make_sp, browser, alice):
    sp = make_sp("pysaml2")
    res = sign_in(browser, sp)
    req = sp.logout_request(res.name_id, res.session_index, "redirect")
    browser.send(req)
    resp = browser.send(req)
    assert resp.status_code == 409
    assert last_event().reason == "replayed_request"


def test_logout_response_with_unknown_relay_state_is_refused_with_an_event(browser):
    q = redirect_query(b"<x/>", param="SAMLResponse")
    resp = browser.get("/saml/slo?" + q)
    assert resp.status_code == 400 and "There was no session to end." in resp.get_data(as_text=True)
    assert last_event().reason == "unknown_session"


def test_slo_without_message(browser):
    resp = browser.get("/saml/slo")
    assert resp.status_code == 400
    assert last_event().reason == "malformed_request"
