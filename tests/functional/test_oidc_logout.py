"""OIDC logout: RP-initiated logout (/oauth2/logout) and Back-Channel Logout 1.0, run from the same logout as SAML
single logout. Grants, refresh tokens and OIDC session participants are seeded through the models (tests/oidc_seed);
back-channel POSTs go to a real HTTP server on loopback and the logout token is checked with tests/jwt_check."""

from __future__ import annotations

import re
import socket
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from flask.testing import FlaskClient

from idp.config import Settings
from idp.extensions import db
from idp.models import IdpSession, OidcRefreshToken, utcnow
from idp.oidc.logout_token import BACKCHANNEL_LOGOUT_EVENT

from .. import jwt_check
from ..conftest import IDP_BASE, make_settings
from ..oidc_seed import add_grant, add_oidc_app, add_refresh, id_token, join_session, live_session, receiver
from ..webclient import Browser, saml_form
from .conftest import PASSWORD, events, last_event

BYE = "https://rp.example.com/bye"


@pytest.fixture
def settings(request: pytest.FixtureRequest, tmp_path: Path, key_template: Path) -> Settings:
    """OIDC on; back-channel POSTs may reach loopback (the receiver runs there) unless a test says otherwise."""
    return make_settings(tmp_path, key_template, oidc_enabled=True,
                         oidc_backchannel_allow_private=getattr(request, "param", True),
                         oidc_backchannel_timeout_s=2.0)


def sign_in(client: FlaskClient, username: str = "alice") -> None:
    b = Browser(client)
    resp = b.login(b.get("/login"), username, PASSWORD)
    assert resp.status_code == 200


def ended(session: IdpSession) -> bool:
    db.session.expire_all()
    return db.session.get(IdpSession, session.id).ended_at is not None


def csrf_of(body: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', body)
    assert m, body[:300]
    return m.group(1)


def check_logout_token(client: FlaskClient, token: str, client_id: str, sub: str, sid: str) -> dict:
    """An independent check (cryptography, not joserfc) of a logout token against the published JWKS."""
    header, claims = jwt_check.verify(token, client.get("/oauth2/jwks").get_json())
    assert header["typ"] == "logout+jwt"
    assert claims["iss"] == IDP_BASE and claims["aud"] == client_id
    assert claims["sub"] == sub and claims["sid"] == sid
    assert claims["events"] == {BACKCHANNEL_LOGOUT_EVENT: {}}
    assert "nonce" not in claims
    assert claims["exp"] - claims["iat"] == 120 and abs(claims["iat"] - utcnow().timestamp()) < 30
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16
    return claims


# ---------------------------------------------------------------- RP-initiated logout


def test_valid_hint_signs_out_at_once_and_returns_to_the_registered_uri_with_state(app, client, alice):
    rp, _ = add_oidc_app("rp", post_logout=(BYE,))
    sign_in(client)
    session = live_session(alice)
    sid = join_session(session, rp, alice)
    hint = id_token(app, rp, alice, sid=sid)
    resp = client.get("/oauth2/logout?" + urlencode({"id_token_hint": hint, "post_logout_redirect_uri": BYE,
                                                     "state": "s t&1", "ui_locales": "de"}))
    assert resp.status_code == 303
    loc = urlsplit(resp.headers["Location"])
    assert f"{loc.scheme}://{loc.netloc}{loc.path}" == BYE and parse_qs(loc.query) == {"state": ["s t&1"]}
    assert ended(session)
    ev = events(event_type="logout")[-1]
    assert (ev.protocol, ev.reason, ev.app_slug, ev.username, ev.sp_entity_id) == (
        "oidc", "logout", "rp", "alice", rp.oidc.client_id)
    assert hint not in str(ev.detail)
    # the browser is signed out
    assert client.get("/account").status_code in (302, 303)


def test_post_with_client_id_and_expired_hint(app, client, alice):
    rp, _ = add_oidc_app("rp", post_logout=(BYE,))
    sign_in(client)
    session = live_session(alice)
    hint = id_token(app, rp, alice, issued_at=utcnow() - timedelta(days=2))
    resp = client.post("/oauth2/logout", data={"id_token_hint": hint, "client_id": rp.oidc.client_id,
                                               "post_logout_redirect_uri": BYE})
    assert resp.status_code == 303 and resp.headers["Location"] == BYE
    assert ended(session)


def test_without_hint_the_user_confirms_with_a_csrf_protected_form(app, client, alice):
    rp, _ = add_oidc_app("rp", post_logout=(BYE,))
    sign_in(client)
    session = live_session(alice)
    resp = client.get("/oauth2/logout?" + urlencode({"client_id": rp.oidc.client_id,
                                                     "post_logout_redirect_uri": BYE, "state": "x"}))
    body = resp.get_data(as_text=True)
    assert resp.status_code == 200 and 'id="logout-confirm"' in body and "RP" in body
    assert not ended(session)
    token = re.search(r'name="request" value="([^"]+)"', body).group(1)
    # a foreign page cannot post the confirmation: no CSRF token, nothing ends
    assert client.post("/oauth2/logout/confirm", data={"request": token}).status_code == 400
    assert not ended(session)
    resp = client.post("/oauth2/logout/confirm", data={"request": token, "csrf_token": csrf_of(body)})
    assert resp.status_code == 303 and resp.headers["Location"] == BYE + "?state=x"
    assert ended(session)
    assert last_event().detail.get("confirmed") is True


def test_hint_for_another_user_asks_first(app, client, alice, bob):
    rp, _ = add_oidc_app("rp", post_logout=(BYE,))
    sign_in(client)
    session = live_session(alice)
    resp = client.get("/oauth2/logout?" + urlencode({"id_token_hint": id_token(app, rp, bob),
                                                     "post_logout_redirect_uri": BYE}))
    assert resp.status_code == 200 and 'id="logout-confirm"' in resp.get_data(as_text=True)
    assert not ended(session)


@pytest.mark.parametrize("uri", ["https://evil.example.com/", BYE + "/x", BYE + "?a=1", "https://RP.example.com/bye"])
def test_unregistered_post_logout_uri_is_never_a_redirect(app, client, alice, uri):
    rp, _ = add_oidc_app("rp", post_logout=(BYE,))
    sign_in(client)
    session = live_session(alice)
    resp = client.get("/oauth2/logout?" + urlencode({"id_token_hint": id_token(app, rp, alice),
                                                     "post_logout_redirect_uri": uri}))
    body = resp.get_data(as_text=True)
    assert resp.status_code == 200 and 'id="uri-refused"' in body and "Location" not in resp.headers
    assert (last_event().reason, last_event().protocol) == ("redirect_uri_mismatch", "oidc")
    assert not ended(session)
    token = re.search(r'name="request" value="([^"]+)"', body).group(1)
    resp = client.post("/oauth2/logout/confirm", data={"request": token, "csrf_token": csrf_of(body)})
    assert resp.status_code == 200 and 'id="signed-out"' in resp.get_data(as_text=True)
    assert ended(session)


def test_post_logout_uri_without_a_client_is_not_followed(client, alice):
    sign_in(client)
    resp = client.get("/oauth2/logout?" + urlencode({"post_logout_redirect_uri": BYE}))
    assert resp.status_code == 200 and 'id="uri-refused"' in resp.get_data(as_text=True)


def test_bad_requests_get_an_idp_page_and_an_event(app, client, alice, tmp_path):
    from idp.certs.keystore import KeyStore
    from idp.oidc.jose import sign_jwt, signing_key

    rp, _ = add_oidc_app("rp", post_logout=(BYE,))
    other, _ = add_oidc_app("other", post_logout=(BYE,))
    sign_in(client)
    session = live_session(alice)
    foreign = KeyStore(tmp_path / "foreign")
    foreign.generate_first("https://evil.example.com", "rsa2048", 1)
    now = int(utcnow().timestamp())
    forged = sign_jwt({"iss": IDP_BASE, "aud": rp.oidc.client_id, "sub": "x", "iat": now, "exp": now + 60},
                      signing_key(foreign.current()))
    at = sign_jwt({"iss": IDP_BASE, "aud": rp.oidc.client_id, "sub": "x", "iat": now, "exp": now + 60},
                  signing_key(app.extensions["idp.keystore"].current()), typ="at+jwt")
    cases = [
        ({"id_token_hint": forged, "post_logout_redirect_uri": BYE}, "invalid_request"),
        ({"id_token_hint": "not-a-jwt", "post_logout_redirect_uri": BYE}, "invalid_request"),
        ({"id_token_hint": at, "post_logout_redirect_uri": BYE}, "invalid_request"),   # an access token
        ({"id_token_hint": id_token(app, rp, alice), "client_id": other.oidc.client_id,
          "post_logout_redirect_uri": BYE}, "invalid_request"),                        # mix-up
        ({"client_id": "nope", "post_logout_redirect_uri": BYE}, "invalid_client"),
        ({"client_id": "x" * 500}, "invalid_request"),
        ({"state": "a\x00b"}, "invalid_request"),
        ({"id_token_hint": "a.b.c" * 10000}, "invalid_request"),
    ]
    for params, reason in cases:
        resp = client.get("/oauth2/logout?" + urlencode(params))
        assert resp.status_code == 400, params
        assert "Location" not in resp.headers
        assert "still signed in" in resp.get_data(as_text=True)
        ev = last_event()
        assert (ev.event_type, ev.protocol, ev.reason) == ("logout", "oidc", reason), params
    resp = client.get("/oauth2/logout?client_id=a&client_id=b")
    assert resp.status_code == 400
    assert not ended(session)


def test_signed_out_browser_with_valid_hint_goes_back_to_the_rp(app, client, alice):
    rp, _ = add_oidc_app("rp", post_logout=(BYE,))
    resp = client.get("/oauth2/logout?" + urlencode({"id_token_hint": id_token(app, rp, alice),
                                                     "post_logout_redirect_uri": BYE, "state": "q"}))
    assert resp.status_code == 303 and resp.headers["Location"] == BYE + "?state=q"
    resp = client.get("/oauth2/logout")
    assert resp.status_code == 200 and 'id="signed-out"' in resp.get_data(as_text=True)


# ---------------------------------------------------------------- back-channel logout


def test_back_channel_logout_token_and_refresh_tokens(app, client, alice):
    with receiver() as rec:
        rp, _ = add_oidc_app("rp", backchannel=rec.url, post_logout=(BYE,))
        quiet, _ = add_oidc_app("quiet")     # no back-channel URI: nothing is posted to it
        sign_in(client)
        session = live_session(alice)
        sid = join_session(session, rp, alice)
        join_session(session, quiet, alice)
        grant = add_grant(rp, alice)
        bound = add_refresh(grant, session_id=session.id)
        offline = add_refresh(grant, offline=True)
        other_session = add_refresh(grant, session_id="another-session")
        db.session.commit()
        resp = client.get("/oauth2/logout?" + urlencode({"id_token_hint": id_token(app, rp, alice, sid=sid),
                                                         "post_logout_redirect_uri": BYE}))
        assert resp.status_code == 303
    assert len(rec.posts) == 1
    post = rec.posts[0]
    assert post["path"] == "/backchannel" and post["content_type"] == "application/x-www-form-urlencoded"
    from idp.flows.oidc_subject import subject_for
    claims = check_logout_token(client, post["form"]["logout_token"], rp.oidc.client_id, subject_for(alice), sid)
    db.session.expire_all()
    assert db.session.get(OidcRefreshToken, bound.id).revoked_at is not None
    assert db.session.get(OidcRefreshToken, bound.id).revoke_reason == "logout"
    assert db.session.get(OidcRefreshToken, offline.id).revoked_at is None
    assert db.session.get(OidcRefreshToken, other_session.id).revoked_at is None
    ev = [e for e in events(event_type="logout") if (e.detail or {}).get("backchannel")][-1]
    assert (ev.reason, ev.protocol, ev.app_slug, ev.binding) == ("logout", "oidc", "rp", "back-channel")
    assert ev.detail["logout_token_jti"] == claims["jti"] and post["form"]["logout_token"] not in str(ev.detail)


def test_idp_logout_ends_saml_and_oidc_sessions_alike(app, client, alice, make_sp):
    with receiver() as rec:
        rp, _ = add_oidc_app("rp", backchannel=rec.url)
        sp = make_sp("pysaml2")
        browser = Browser(client)
        req = sp.authn_request("redirect")
        form = saml_form(browser.sso(req, "alice", PASSWORD))
        res = sp.process_response(form.saml_response, req.request_id)
        session = live_session(alice)
        sid = join_session(session, rp, alice)
        resp = client.get("/logout", headers={"Sec-Fetch-Site": "same-origin"})
        # the SAML SP gets its front-channel LogoutRequest, only the SAML SP (no LogoutRequest for the RP)
        assert resp.status_code == 303 and resp.headers["Location"].startswith(sp.slo_url)
        name_id, indexes = sp.process_logout_request("redirect", query=urlsplit(resp.headers["Location"]).query)
        assert name_id == res.name_id and indexes == [res.session_index]
        relay = parse_qs(urlsplit(resp.headers["Location"]).query)["RelayState"][0]
        final = browser.send(sp.logout_response("redirect", relay_state=relay))
        assert final.status_code == 200 and 'id="signed-out"' in final.get_data(as_text=True)
    assert ended(session)
    assert len(rec.posts) == 1
    from idp.flows.oidc_subject import subject_for
    check_logout_token(client, rec.posts[0]["form"]["logout_token"], rp.oidc.client_id, subject_for(alice), sid)


def test_saml_sp_initiated_logout_reaches_the_oidc_rp(app, client, alice, make_sp):
    with receiver() as rec:
        rp, _ = add_oidc_app("rp", backchannel=rec.url)
        sp = make_sp("onelogin")
        browser = Browser(client)
        req = sp.authn_request("redirect")
        res = sp.process_response(saml_form(browser.sso(req, "alice", PASSWORD)).saml_response, req.request_id)
        session = live_session(alice)
        join_session(session, rp, alice)
        resp = browser.send(sp.logout_request(res.name_id, res.session_index, "redirect", relay_state="r"))
        assert resp.status_code in (200, 303)
        # the only SAML participant started it: its LogoutResponse comes straight back, no LogoutRequest to the RP
        if resp.status_code == 303:
            assert resp.headers["Location"].startswith(sp.slo_url) and "SAMLResponse=" in resp.headers["Location"]
    assert ended(session)
    assert len(rec.posts) == 1


def test_rp_initiated_logout_runs_the_saml_chain_then_returns_to_the_rp(app, client, alice, make_sp):
    rp, _ = add_oidc_app("rp", post_logout=(BYE,))
    sp = make_sp("pysaml2")
    browser = Browser(client)
    req = sp.authn_request("redirect")
    sp.process_response(saml_form(browser.sso(req, "alice", PASSWORD)).saml_response, req.request_id)
    session = live_session(alice)
    sid = join_session(session, rp, alice)
    resp = client.get("/oauth2/logout?" + urlencode({"id_token_hint": id_token(app, rp, alice, sid=sid),
                                                     "post_logout_redirect_uri": BYE, "state": "st"}))
    assert resp.status_code == 303 and resp.headers["Location"].startswith(sp.slo_url)
    sp.process_logout_request("redirect", query=urlsplit(resp.headers["Location"]).query)
    relay = parse_qs(urlsplit(resp.headers["Location"]).query)["RelayState"][0]
    resp = client.get("/saml/slo?" + urlsplit(sp.logout_response("redirect", relay_state=relay).url).query)
    assert resp.status_code == 303 and resp.headers["Location"] == BYE + "?state=st"
    assert ended(session)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("failure", ["http500", "unreachable", "slow"])
def test_delivery_failure_is_an_event_and_the_logout_completes(app, client, alice, failure):
    with receiver(status=500 if failure == "http500" else 200, delay_s=4 if failure == "slow" else 0) as bad, \
            receiver() as good:
        url = f"http://127.0.0.1:{_closed_port()}/bc" if failure == "unreachable" else bad.url
        rp, _ = add_oidc_app("rp", backchannel=url)
        ok, _ = add_oidc_app("ok", backchannel=good.url)
        sign_in(client)
        session = live_session(alice)
        join_session(session, rp, alice)
        join_session(session, ok, alice)
        resp = client.get("/logout", headers={"Sec-Fetch-Site": "same-origin"})
        assert resp.status_code == 200 and 'id="signed-out"' in resp.get_data(as_text=True)
    assert ended(session) and len(good.posts) == 1
    failed = events(reason="backchannel_logout_failed")
    assert len(failed) == 1 and failed[0].app_slug == "rp" and failed[0].outcome == "error"
    assert failed[0].protocol == "oidc" and failed[0].detail["backchannel"] == "failed"
    if failure == "http500":
        assert failed[0].detail["http_status"] == 500
    assert [e.app_slug for e in events(reason="logout") if (e.detail or {}).get("backchannel")] == ["ok"]


@pytest.mark.parametrize("settings", [False], indirect=True)
def test_ssrf_guard_refuses_loopback_by_default(app, client, alice):
    with receiver() as rec:
        rp, _ = add_oidc_app("rp", backchannel=rec.url)
        sign_in(client)
        session = live_session(alice)
        join_session(session, rp, alice)
        resp = client.get("/logout", headers={"Sec-Fetch-Site": "same-origin"})
        assert resp.status_code == 200
    assert rec.posts == [] and ended(session)
    ev = events(reason="backchannel_logout_failed")[-1]
    assert "non-public address" in ev.detail["error_description"]
    assert "IDP_OIDC_BACKCHANNEL_ALLOW_PRIVATE" in ev.detail["error_description"]


def test_logout_with_no_oidc_participants_posts_nothing_and_still_revokes_bound_tokens(app, client, alice):
    rp, _ = add_oidc_app("rp")
    sign_in(client)
    session = live_session(alice)
    t = add_refresh(add_grant(rp, alice), session_id=session.id)
    db.session.commit()
    client.get("/logout", headers={"Sec-Fetch-Site": "same-origin"})
    db.session.expire_all()
    assert db.session.get(OidcRefreshToken, t.id).revoked_at is not None


# ---------------------------------------------------------------- sessions ended by a security change


def test_ending_sessions_revokes_their_session_bound_refresh_tokens(app, alice):
    from idp.services import accounts
    rp, _ = add_oidc_app("rp")
    session = IdpSession(id="s-security-change", user_id=alice.id)
    kept = IdpSession(id="s-kept", user_id=alice.id)
    db.session.add_all([session, kept])
    grant = add_grant(rp, alice)
    bound = add_refresh(grant, session_id=session.id)
    in_kept = add_refresh(grant, session_id=kept.id)
    offline = add_refresh(grant, offline=True)
    db.session.commit()
    assert accounts.end_sessions(alice, except_id=kept.id) == 1
    db.session.commit()
    db.session.expire_all()
    assert db.session.get(OidcRefreshToken, bound.id).revoke_reason == "session_ended"
    assert db.session.get(OidcRefreshToken, in_kept.id).revoked_at is None
    assert db.session.get(OidcRefreshToken, offline.id).revoked_at is None


def test_disabling_a_user_revokes_all_their_refresh_tokens_offline_ones_too(app, alice):
    from idp.services import accounts
    rp, _ = add_oidc_app("rp")
    grant = add_grant(rp, alice)
    offline = add_refresh(grant, offline=True)
    db.session.commit()
    accounts.set_disabled(alice, True)
    db.session.commit()
    db.session.expire_all()
    assert db.session.get(OidcRefreshToken, offline.id).revoke_reason == "user_disabled"
