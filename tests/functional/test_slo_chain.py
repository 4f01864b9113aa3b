"""The front-channel logout chain is bound to the browser that runs it and trusts only verified answers.

Regression: an unsigned (or any) LogoutResponse from a client without the user's cookies, holding only the chain
token every SP in the chain sees in RelayState, used to advance the chain and get the next SP's signed
LogoutRequest with that SP's pairwise NameID and SessionIndex."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

from flask import Flask

from ..webclient import Browser, saml_form
from .conftest import events
from .test_slo import deliver, live_sessions, sign_in

SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
PARTIAL = "urn:oasis:names:tc:SAML:2.0:status:PartialLogout"


def relay_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["RelayState"][0]


def three_apps_then_logout(make_sp, browser):  # type: ignore[no-untyped-def]
    sps = [make_sp("pysaml2") for _ in range(3)]
    results = [sign_in(browser, sp) for sp in sps]
    logout = sps[0].logout_request(results[0].name_id, results[0].session_index, "redirect")
    kind, where = deliver(browser, browser.send(logout))
    assert kind == "redirect" and where.startswith(sps[1].slo_url)
    sps[1].process_logout_request("redirect", query=urlsplit(where).query)
    return sps, results, logout, where


def final_status(sp, browser, resp, logout) -> tuple[str, str | None]:  # type: ignore[no-untyped-def]
    kind, where = deliver(browser, resp)
    assert kind == "redirect" and where.startswith(sp.slo_url)
    status = sp.process_logout_response("redirect", query=urlsplit(where).query, request_id=logout.request_id)
    return status, sp.last_logout_sub_status


def test_chain_token_without_the_browser_does_not_advance(app: Flask, make_sp, browser, alice):  # type: ignore[no-untyped-def]
    sps, results, logout, where = three_apps_then_logout(make_sp, browser)
    token = relay_of(where)
    # sp2's own valid, signed answer, sent from a client that is not the user's browser (no cookies)
    stranger = Browser(app.test_client())
    resp = stranger.send(sps[1].logout_response("redirect", relay_state=token))
    assert resp.status_code == 400
    body = resp.get_data(as_text=True)
    assert "SAMLRequest" not in body and sps[2].slo_url not in (resp.headers.get("Location") or "")
    assert events(event_type="logout")[-1].reason == "logout_not_bound"
    # the user's browser still finishes the chain: sp3 is asked, sp1 gets Success
    kind, where3 = deliver(browser, browser.send(sps[1].logout_response("redirect", relay_state=token)))
    assert kind == "redirect" and where3.startswith(sps[2].slo_url)
    name_id, _ = sps[2].process_logout_request("redirect", query=urlsplit(where3).query)
    assert name_id == results[2].name_id
    resp = browser.send(sps[2].logout_response("redirect", relay_state=relay_of(where3)))
    assert final_status(sps[0], browser, resp, logout) == (SUCCESS, None)
    assert live_sessions() == 0


def test_each_app_logout_is_its_own_event(make_sp, browser, alice):  # type: ignore[no-untyped-def]
    sps, _, logout, where = three_apps_then_logout(make_sp, browser)
    _, where3 = deliver(browser, browser.send(sps[1].logout_response("redirect", relay_state=relay_of(where))))
    sps[2].process_logout_request("redirect", query=urlsplit(where3).query)
    browser.send(sps[2].logout_response("redirect", relay_state=relay_of(where3)))
    per_app = [(e.app_slug, e.reason, e.outcome) for e in events(event_type="logout") if
               (e.detail or {}).get("propagated")]
    assert per_app == [(sps[1].slug, "logout", "success"), (sps[2].slug, "logout", "success")]


def test_unsigned_answer_is_not_trusted_and_logout_is_partial(make_sp, browser, alice):  # type: ignore[no-untyped-def]
    sps, _, logout, where = three_apps_then_logout(make_sp, browser)
    resp = browser.send(sps[1].logout_response("redirect", relay_state=relay_of(where), sign=False))
    kind, where3 = deliver(browser, resp)   # the user's own browser: the chain goes on
    assert where3.startswith(sps[2].slo_url)
    sps[2].process_logout_request("redirect", query=urlsplit(where3).query)
    resp = browser.send(sps[2].logout_response("redirect", relay_state=relay_of(where3)))
    assert final_status(sps[0], browser, resp, logout) == (SUCCESS, PARTIAL)
    ev = [e for e in events(event_type="logout") if e.app_slug == sps[1].slug][-1]
    assert (ev.reason, ev.outcome) == ("bad_signature", "error")


def test_failed_status_and_foreign_answer_make_a_partial_logout(make_sp, browser, alice):  # type: ignore[no-untyped-def]
    sps, _, logout, where = three_apps_then_logout(make_sp, browser)
    # sp2 answers with a failure status
    resp = browser.send(sps[1].logout_response("redirect", relay_state=relay_of(where),
                                               status="urn:oasis:names:tc:SAML:2.0:status:Responder"))
    _, where3 = deliver(browser, resp)
    sps[2].process_logout_request("redirect", query=urlsplit(where3).query)
    # sp2 answers again in sp3's place (its own earlier answer, signed with its key): not sp3's answer
    resp = browser.send(sps[1].logout_response("redirect", relay_state=relay_of(where3)))
    assert final_status(sps[0], browser, resp, logout) == (SUCCESS, PARTIAL)
    by_app = {e.app_slug: e.reason for e in events(event_type="logout") if (e.detail or {}).get("propagated")}
    assert by_app == {sps[1].slug: "logout_failed", sps[2].slug: "malformed_request"}


# ---------------------------------------------------------------- a chain starts only in the session's browser

def test_a_logout_request_from_another_client_ends_the_session_without_the_front_channel(  # type: ignore[no-untyped-def]
        app: Flask, make_sp, browser, alice):
    """A valid, signed LogoutRequest replayed by one app from a client without the user's cookies (it knows the
    NameID and SessionIndex it was given) ends the session, but the other apps' LogoutRequests (their pairwise
    NameIDs) are never shown to that client: the answer says PartialLogout."""
    sps = [make_sp("pysaml2") for _ in range(3)]
    results = [sign_in(browser, sp) for sp in sps]
    logout = sps[0].logout_request(results[0].name_id, results[0].session_index, "redirect")
    stranger = Browser(app.test_client())
    kind, where = deliver(stranger, stranger.send(logout))
    assert kind == "redirect" and where.startswith(sps[0].slo_url)     # straight back to the initiator
    status = sps[0].process_logout_response("redirect", query=urlsplit(where).query, request_id=logout.request_id)
    assert (status, sps[0].last_logout_sub_status) == (SUCCESS, PARTIAL)
    assert live_sessions() == 0
    initiator = [e for e in events(event_type="logout") if not (e.detail or {}).get("propagated")][-1]
    assert "skipped" in initiator.detail["front_channel"]
    # the user's own browser is signed out too (the session ended)
    resp = browser.send(sps[1].authn_request("redirect"))
    assert 'name="password"' in resp.get_data(as_text=True)


def test_a_cross_site_post_is_bounced_once_to_pick_up_the_cookie(app: Flask, make_sp, browser, alice):  # type: ignore[no-untyped-def]
    """A POST-binding LogoutRequest arrives without the SameSite=Lax session cookie: a same-origin auto-submitted
    form brings it along, and then the chain runs in the user's browser as usual."""
    sps = [make_sp("pysaml2") for _ in range(2)]
    results = [sign_in(browser, sp) for sp in sps]
    logout = sps[0].logout_request(results[0].name_id, results[0].session_index, "post", relay_state="bye")
    cookie = browser.client.get_cookie("idp_session")
    assert cookie is not None
    browser.client.delete_cookie("idp_session")                 # what a cross-site POST carries: no Lax cookie
    bounce = browser.client.post("/saml/slo", data=logout.form)
    browser.client.set_cookie("idp_session", cookie.value)
    body = bounce.get_data(as_text=True)
    assert bounce.status_code == 200 and 'action="/saml/slo/resume"' in body and "SAMLRequest" not in body
    token = re.search(r'name="resume" value="([^"]+)"', body).group(1)  # type: ignore[union-attr]
    resp = browser.follow(browser.client.post("/saml/slo/resume", data={"resume": token}))
    kind, where = deliver(browser, resp)
    assert kind == "redirect" and where.startswith(sps[1].slo_url)     # the front channel: the user's browser
    assert live_sessions() == 0
    # the token works once
    again = browser.client.post("/saml/slo/resume", data={"resume": token})
    assert again.status_code == 400 and events(event_type="logout")[-1].reason == "unknown_session"


def test_a_cross_site_post_from_another_client_gets_no_front_channel(app: Flask, make_sp, browser, alice):  # type: ignore[no-untyped-def]
    sps = [make_sp("pysaml2") for _ in range(2)]
    results = [sign_in(browser, sp) for sp in sps]
    logout = sps[0].logout_request(results[0].name_id, results[0].session_index, "post", relay_state="bye")
    stranger = app.test_client()
    bounce = stranger.post("/saml/slo", data=logout.form)
    token = re.search(r'name="resume" value="([^"]+)"', bounce.get_data(as_text=True)).group(1)  # type: ignore[union-attr]
    resp = stranger.post("/saml/slo/resume", data={"resume": token})
    form = saml_form(resp)
    assert form is not None and form.action == sps[0].slo_url and form.relay_state == "bye"
    status = sps[0].process_logout_response("post", saml_response_b64=form.fields["SAMLResponse"],
                                            request_id=logout.request_id)
    assert (status, sps[0].last_logout_sub_status) == (SUCCESS, PARTIAL)
    assert live_sessions() == 0
