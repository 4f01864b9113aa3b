"""GET|POST /oauth2/authorize end to end through the test client with a real session: the code and its record,
the gate (login detour, prompt, max_age, acr_values and app step-up, policy refusals), consent, and events."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from idp.config import Settings
from idp.extensions import db
from idp.flows.oidc_codes import peek_code
from idp.flows.oidc_subject import subject_for
from idp.models import IdpSession, OidcGrant, SessionParticipant, User, utcnow
from idp.oidc.jose import sign_jwt, signing_key
from idp.oidc.tokens import AccessTokenSpec, issue_access_token
from idp.services import apps as apps_svc

from ..conftest import IDP_BASE, make_settings
from ..webclient import Browser, continuation, enrol_totp
from .oidc_authz import (
    CB,
    CHALLENGE,
    answer_consent,
    at_rp,
    authorize_url,
    is_consent_page,
    is_login_page,
    last_event,
    make_client,
    params,
    sign_in,
)

MFA = "https://refeds.org/profile/mfa"
PAPE_MFA = "http://schemas.openid.net/pape/policies/2007/06/multi-factor"


@pytest.fixture
def settings(tmp_path: Path, key_template: Path) -> Settings:
    return make_settings(tmp_path, key_template, oidc_enabled=True)


def _session_of(username: str) -> IdpSession:
    db.session.expire_all()
    user = db.session.query(User).filter_by(username=username).one()
    return db.session.query(IdpSession).filter_by(user_id=user.id, ended_at=None).order_by(
        IdpSession.created_at.desc()).first()


# ---------------------------------------------------------------- success


def test_code_flow_redirects_with_code_state_iss_and_records_everything(app: Flask, browser: Browser,
                                                                       alice: Any) -> None:
    client_id = make_client()
    resp = browser.get(authorize_url(client_id, login_hint="alice"))
    assert is_login_page(resp)
    assert 'value="alice"' in resp.get_data(as_text=True)          # login_hint prefills the username
    resp = browser.login(resp, "alice", "correct horse battery")
    assert is_consent_page(resp)
    body = resp.get_data(as_text=True)
    assert "RP" in body and 'data-scope="openid"' in body and 'data-scope="profile"' in body
    assert "Your name and username" in body
    got = at_rp(answer_consent(browser, resp))
    assert set(got) == {"code", "state", "iss"} and got["state"] == "st-1" and got["iss"] == IDP_BASE
    record = peek_code(got["code"])
    assert record is not None
    session = _session_of("alice")
    user = db.session.get(User, alice.id)
    assert (record.client_id, record.user_id, record.username, record.redirect_uri) == (client_id, alice.id,
                                                                                        "alice", CB)
    assert record.scopes == ("openid", "profile") and record.nonce == "n-1"
    assert (record.code_challenge, record.code_challenge_method) == (CHALLENGE, "S256")
    assert record.session_id == session.id and record.auth_time == int(session.authn_at.timestamp())
    assert record.amr == ("pwd",) and record.acr == "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
    grant = db.session.query(OidcGrant).one()
    assert record.grant_id == grant.id and grant.consent == "user" and grant.scopes == ["openid", "profile"]
    assert grant.first_used_at is not None and grant.last_used_at is not None and grant.revoked_at is None
    part = db.session.query(SessionParticipant).one()
    assert (part.protocol, part.name_id, part.name_id_format, part.session_index) == (
        "oidc", subject_for(user), "oidc", record.sid)
    ev = last_event()
    assert (ev.event_type, ev.protocol, ev.reason, ev.outcome) == ("sso", "oidc", "ok", "success")
    assert ev.app_slug == "rp" and ev.sp_entity_id == client_id and ev.username == "alice"
    assert ev.detail["client_id"] == client_id and ev.detail["scopes"] == ["openid", "profile"]
    assert ev.detail["response_type"] == "code" and ev.detail["grant"] == "authorization_code"
    assert got["code"] not in json.dumps(ev.detail)
    consent_ev = last_event(reason="consent_given")
    assert consent_ev.protocol == "oidc" and consent_ev.username == "alice"

    # a second authorization in the same session: no login, no consent, the same sid, a new code
    again = at_rp(browser.get(authorize_url(client_id, state="st-2")))
    assert again["state"] == "st-2" and again["code"] != got["code"]
    second = peek_code(again["code"])
    assert second is not None and second.sid == record.sid and second.grant_id == grant.id
    assert db.session.query(SessionParticipant).count() == 1


def test_plain_oauth_without_openid_and_registered_query_kept(app: Flask, browser: Browser, alice: Any) -> None:
    cb = "https://rp.example.com/cb?tenant=7"
    client_id = make_client(redirect_uris=(cb,), resources=("https://api.example.com/orders",))
    got = at_rp(sign_in(browser, authorize_url(client_id, redirect_uri=cb, scope="orders:read", nonce=None,
                                               resource="https://api.example.com/orders")), cb)
    assert got["tenant"] == "7" and "code" in got
    record = peek_code(got["code"])
    assert record is not None and record.scopes == ("orders:read",) and record.nonce is None
    assert record.resources == ("https://api.example.com/orders",) and record.redirect_uri == cb


def test_post_authorization_request_without_cookie_continues_by_get(app: Flask, browser: Browser,
                                                                    alice: Any) -> None:
    client_id = make_client()
    sign_in(browser, authorize_url(client_id))          # consent remembered
    browser.client.delete_cookie(app.config["SESSION_COOKIE_NAME"])
    resp = browser.client.post("/oauth2/authorize", data=params(client_id))
    assert resp.status_code == 303 and "/oauth2/authorize/continue/" in resp.headers["Location"]
    resp = browser.follow(resp)
    assert is_login_page(resp)
    assert "code" in at_rp(browser.login(resp, "alice", "correct horse battery"))


# ---------------------------------------------------------------- IdP pages: the client or redirect URI is untrusted


@pytest.mark.parametrize("case", ["unknown", "missing", "disabled", "no-redirect", "other-redirect"])
def test_untrusted_client_or_redirect_uri_gets_a_page_never_a_redirect(app: Flask, client: FlaskClient,
                                                                       case: str) -> None:
    client_id = make_client()
    over: dict[str, Any] = {}
    reason = {"unknown": "invalid_client", "missing": "invalid_request", "disabled": "app_disabled",
              "no-redirect": "redirect_uri_mismatch", "other-redirect": "redirect_uri_mismatch"}[case]
    if case == "unknown":
        over["client_id"] = "no-such-client"
    elif case == "missing":
        over["client_id"] = None
    elif case == "disabled":
        apps_svc.change_settings(apps_svc.get_app("rp"), enabled=False)
        db.session.commit()
    elif case == "no-redirect":
        over["redirect_uri"] = None
    else:
        over["redirect_uri"] = "https://evil.example.com/cb"
    resp = client.get(authorize_url(client_id, **over))
    body = resp.get_data(as_text=True)
    assert resp.status_code == 400 and "Location" not in resp.headers
    assert "evil.example.com" not in body and "no-such-client" not in body
    ev = last_event()
    assert (ev.protocol, ev.reason, ev.outcome != "success") == ("oidc", reason, True)
    assert f">{ev.id}</code>" in body
    if case == "unknown":
        assert ev.sp_entity_id is None and ev.detail["requested_client_id"] == "no-such-client"


# ---------------------------------------------------------------- redirect errors


@pytest.mark.parametrize(("over", "error"), [
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"response_type": "code id_token"}, "unsupported_response_type"),
    ({"scope": "profile admin"}, "invalid_scope"),
    ({"scope": None}, "invalid_scope"),
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"code_challenge_method": None}, "invalid_request"),       # the RFC 7636 default is plain
    ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
    ({"code_challenge": "short"}, "invalid_request"),
    ({"response_mode": "fragment"}, "invalid_request"),
    ({"prompt": "none login"}, "invalid_request"),
    ({"prompt": "select_account"}, "invalid_request"),
    ({"max_age": "-1"}, "invalid_request"),
    ({"max_age": "soon"}, "invalid_request"),
    ({"request": "eyJhbGciOiJub25lIn0.e30."}, "request_not_supported"),
    ({"request_uri": "https://rp.example.com/req.jwt"}, "request_uri_not_supported"),
    ({"resource": "not-absolute"}, "invalid_target"),
    ({"id_token_hint": "not.a.jwt"}, "invalid_request"),
])
def test_errors_after_the_redirect_uri_is_trusted_go_back_with_state_and_iss(
        app: Flask, browser: Browser, alice: Any, over: dict[str, Any], error: str) -> None:
    client_id = make_client()
    sign_in(browser, authorize_url(client_id))
    got = at_rp(browser.client.get(authorize_url(client_id, **over)))
    assert got["error"] == error and got["state"] == "st-1" and got["iss"] == IDP_BASE and "code" not in got
    assert got["error_description"]
    ev = last_event()
    assert ev.protocol == "oidc" and ev.reason in (error, "invalid_request") and ev.outcome != "success"
    assert ev.detail["error"] == error


def test_client_without_code_grant_is_unauthorized(app: Flask, client: FlaskClient) -> None:
    client_id = make_client(grant_types=("authorization_code",))
    row = apps_svc.get_app("rp")
    apps_svc.change_oidc(row, grant_types=("client_credentials", "authorization_code"))
    db.session.commit()
    assert at_rp(client.get(authorize_url(client_id, response_type="token")))["error"] == \
        "unsupported_response_type"
    other_row, _ = apps_svc.register_oidc_app(name="M2M", slug="m2m", settings=apps_svc.initial_settings(
        grant_types=("client_credentials",), redirect_uris=(CB,)))
    db.session.commit()
    assert other_row.oidc is not None
    got = at_rp(client.get(authorize_url(other_row.oidc.client_id)))
    assert got["error"] == "unauthorized_client"
    assert last_event().reason == "unauthorized_client"


def test_public_client_needs_pkce_even_when_require_pkce_is_off_elsewhere(app: Flask, client: FlaskClient) -> None:
    public_id = make_client("spa", public=True)
    assert at_rp(client.get(authorize_url(public_id, code_challenge=None, code_challenge_method=None)))[
        "error"] == "invalid_request"
    relaxed = make_client("legacy", require_pkce=False)
    resp = client.get(authorize_url(relaxed, code_challenge=None, code_challenge_method=None))
    assert resp.status_code == 303 and "/login" in resp.headers["Location"]   # accepted: on to sign-in


# ---------------------------------------------------------------- prompt, max_age, id_token_hint


def test_prompt_none_without_session_is_login_required(app: Flask, client: FlaskClient) -> None:
    client_id = make_client()
    got = at_rp(client.get(authorize_url(client_id, prompt="none")))
    assert got["error"] == "login_required" and got["state"] == "st-1"
    ev = last_event()
    assert (ev.reason, ev.protocol, ev.outcome) == ("login_required", "oidc", "denied")


def test_prompt_none_needing_consent_is_consent_required(app: Flask, browser: Browser, alice: Any) -> None:
    other = make_client("other")
    client_id = make_client()
    sign_in(browser, authorize_url(other))                       # a session, consent only for "other"
    got = at_rp(browser.get(authorize_url(client_id, prompt="none")))
    assert got["error"] == "consent_required"
    assert last_event().reason == "consent_required"
    assert db.session.query(OidcGrant).count() == 1


def test_prompt_none_needing_mfa_is_interaction_required(app: Flask, browser: Browser, alice: Any) -> None:
    client_id = make_client(policy={"permitted": "admin-approved", "assigned_users": ("alice",),
                                    "require_mfa": True})
    plain = make_client("plain")
    enrol_totp(alice)
    sign_in(browser, authorize_url(plain))
    got = at_rp(browser.get(authorize_url(client_id, prompt="none")))
    assert got["error"] == "interaction_required"
    assert last_event().reason == "interaction_required"


def test_prompt_none_with_session_and_consent_answers_silently(app: Flask, browser: Browser, alice: Any) -> None:
    client_id = make_client()
    sign_in(browser, authorize_url(client_id))
    assert "code" in at_rp(browser.get(authorize_url(client_id, prompt="none")))


def test_prompt_login_forces_reauthentication(app: Flask, browser: Browser, alice: Any) -> None:
    client_id = make_client()
    first = at_rp(sign_in(browser, authorize_url(client_id)))
    before = peek_code(first["code"])
    assert before is not None
    resp = browser.get(authorize_url(client_id, prompt="login"))
    assert is_login_page(resp) and 'name="force" value="1"' in resp.get_data(as_text=True)
    got = at_rp(browser.login(resp, "alice", "correct horse battery"))
    after = peek_code(got["code"])
    assert after is not None and after.auth_time >= before.auth_time and after.session_id != before.session_id


def test_max_age_exceeded_forces_reauthentication(app: Flask, browser: Browser, alice: Any) -> None:
    client_id = make_client()
    sign_in(browser, authorize_url(client_id))
    session = _session_of("alice")
    session.authn_at = utcnow() - timedelta(minutes=10)
    db.session.commit()
    assert "code" in at_rp(browser.get(authorize_url(client_id, max_age="3600")))   # young enough
    resp = browser.get(authorize_url(client_id, max_age="60"))
    assert is_login_page(resp)
    got = at_rp(browser.login(resp, "alice", "correct horse battery"))
    record = peek_code(got["code"])
    assert record is not None and utcnow().timestamp() - record.auth_time < 60
    assert at_rp(browser.get(authorize_url(client_id, max_age="60", prompt="none")))["code"]
    _session_of("alice").authn_at = utcnow() - timedelta(minutes=10)
    db.session.commit()
    assert at_rp(browser.get(authorize_url(client_id, max_age="60", prompt="none")))["error"] == "login_required"


def test_app_session_timeout_asks_for_the_password_again(app: Flask, browser: Browser, alice: Any) -> None:
    client_id = make_client(policy={"session_timeout": 5})
    sign_in(browser, authorize_url(client_id))
    _session_of("alice").authn_at = utcnow() - timedelta(minutes=6)
    db.session.commit()
    assert is_login_page(browser.get(authorize_url(client_id)))


def test_id_token_hint(app: Flask, browser: Browser, alice: Any, bob: Any) -> None:
    client_id = make_client()
    sign_in(browser, authorize_url(client_id))
    key = signing_key(app.extensions["idp.keystore"].current())
    now = int(utcnow().timestamp())

    def hint(user: Any, **extra: Any) -> str:
        claims = {"iss": IDP_BASE, "sub": subject_for(user), "aud": client_id, "iat": now - 7200,
                  "exp": now - 3600, **extra}
        return sign_jwt(claims, key)

    # an expired hint for the signed-in user is fine
    assert "code" in at_rp(browser.get(authorize_url(client_id, id_token_hint=hint(alice), prompt="none")))
    # a hint for another user: prompt=none -> login_required; otherwise a fresh sign-in
    assert at_rp(browser.get(authorize_url(client_id, id_token_hint=hint(bob), prompt="none")))[
        "error"] == "login_required"
    assert is_login_page(browser.get(authorize_url(client_id, id_token_hint=hint(bob))))
    # a hint issued to another client or by someone else is refused
    assert at_rp(browser.get(authorize_url(client_id, id_token_hint=hint(alice, aud="someone-else"))))[
        "error"] == "invalid_request"
    assert at_rp(browser.get(authorize_url(client_id, id_token_hint=hint(alice, iss="https://evil.example"))))[
        "error"] == "invalid_request"



def test_an_access_token_is_not_an_id_token_hint(app: Flask, browser: Browser, alice: Any) -> None:
    """An access token of the same client (typ at+jwt, aud = the client id, sub = the user) is signed by the same
    key and would pass every other check: only its `typ` tells it apart (RFC 8725 3.11)."""
    client_id = make_client()
    sign_in(browser, authorize_url(client_id))
    key = signing_key(app.extensions["idp.keystore"].current())
    access_token = issue_access_token(AccessTokenSpec(
        issuer=IDP_BASE, client_id=client_id, audiences=(client_id,), scopes=("openid",), issued_at=utcnow(),
        lifetime=timedelta(minutes=5), subject=subject_for(alice)), key)
    got = at_rp(browser.get(authorize_url(client_id, id_token_hint=access_token, prompt="none")))
    assert got["error"] == "invalid_request" and "code" not in got
    assert last_event().detail["error"] == "invalid_request"
    # the same claims as an ID token (typ JWT) are a good hint
    id_token = sign_jwt({"iss": IDP_BASE, "sub": subject_for(alice), "aud": client_id,
                         "iat": int(utcnow().timestamp()), "exp": int(utcnow().timestamp()) + 300}, key)
    assert "code" in at_rp(browser.get(authorize_url(client_id, id_token_hint=id_token, prompt="none")))


# ---------------------------------------------------------------- step-up: acr_values and --require-mfa


@pytest.mark.parametrize("how", ["acr_values", "pape", "require_mfa"])
def test_mfa_step_up_then_code(app: Flask, browser: Browser, alice: Any, how: str) -> None:
    enrol_totp(alice)
    from ..webclient import AUTHENTICATORS
    client_id = make_client(policy={"require_mfa": True} if how == "require_mfa" else None)
    asked = {"acr_values": MFA, "pape": PAPE_MFA}.get(how)
    over = {"acr_values": f"urn:unknown {asked}"} if asked else {}
    resp = browser.get(authorize_url(client_id, **over))
    resp = browser.login(resp, "alice", "correct horse battery")
    body = resp.get_data(as_text=True)
    assert 'name="code"' in body, body[:300]
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', body)
    assert csrf
    resp = browser.follow(browser.client.post("/mfa", data={"csrf_token": csrf.group(1),
                                                            "code": AUTHENTICATORS["alice"].code(),
                                                            **continuation(body)}))
    resp = answer_consent(browser, resp) if is_consent_page(resp) else resp
    record = peek_code(at_rp(resp)["code"])
    assert record is not None and record.acr == (asked or MFA) and "otp" in record.amr


def test_unknown_acr_values_are_ignored(app: Flask, browser: Browser, alice: Any) -> None:
    client_id = make_client()
    got = at_rp(sign_in(browser, authorize_url(client_id, acr_values="urn:example:gold")))
    record = peek_code(got["code"])
    assert record is not None and record.acr.endswith("PasswordProtectedTransport")


def test_existing_session_steps_up_for_acr_mfa(app: Flask, browser: Browser, alice: Any) -> None:
    enrol_totp(alice)
    client_id = make_client()
    sign_in(browser, authorize_url(client_id))
    resp = browser.get(authorize_url(client_id, acr_values=MFA))
    assert resp.status_code == 200 and 'name="code"' in resp.get_data(as_text=True)
    assert at_rp(browser.get(authorize_url(client_id, acr_values=MFA, prompt="none")))["error"] == \
        "interaction_required"


# ---------------------------------------------------------------- consent


def test_consent_deny_redirects_access_denied(app: Flask, browser: Browser, alice: Any) -> None:
    client_id = make_client()
    got = at_rp(sign_in(browser, authorize_url(client_id), consent="deny"))
    assert got["error"] == "access_denied" and got["state"] == "st-1" and "code" not in got
    ev = last_event()
    assert (ev.reason, ev.protocol, ev.outcome) == ("consent_denied", "oidc", "denied")
    assert db.session.query(OidcGrant).count() == 0


def test_consent_remembered_new_scope_asks_again_prompt_consent_always(app: Flask, browser: Browser,
                                                                       alice: Any) -> None:
    client_id = make_client()
    sign_in(browser, authorize_url(client_id))
    assert "code" in at_rp(browser.get(authorize_url(client_id, scope="profile openid")))     # remembered
    resp = browser.get(authorize_url(client_id, scope="openid email"))                        # beyond it
    assert is_consent_page(resp) and 'data-scope="email"' in resp.get_data(as_text=True)
    at_rp(answer_consent(browser, resp))
    db.session.expire_all()
    assert sorted(db.session.query(OidcGrant).one().scopes) == ["email", "openid", "profile"]
    resp = browser.get(authorize_url(client_id, prompt="consent"))
    assert is_consent_page(resp)
    assert "code" in at_rp(answer_consent(browser, resp))


def test_consent_page_needs_csrf_and_has_no_get_side_effects(app: Flask, browser: Browser, alice: Any) -> None:
    client_id = make_client()
    resp = sign_in(browser, authorize_url(client_id), consent=None)
    assert is_consent_page(resp)
    assert resp.headers.get("X-Frame-Options") == "DENY"
    token = re.search(r'name="request" value="([^"]*)"', resp.get_data(as_text=True))
    assert token
    forged = browser.client.post("/oauth2/authorize/consent", data={"request": token.group(1),
                                                                    "decision": "allow"})
    assert forged.status_code == 400 and "Location" not in forged.headers
    assert browser.client.get("/oauth2/authorize/consent").status_code == 405
    assert db.session.query(OidcGrant).count() == 0
    assert "code" in at_rp(answer_consent(browser, resp))


def test_consent_of_one_user_cannot_be_answered_by_another(app: Flask, alice: Any, bob: Any) -> None:
    client_id = make_client()
    a, b = Browser(app.test_client()), Browser(app.test_client())
    page = sign_in(a, authorize_url(client_id), consent=None)
    token = re.search(r'name="request" value="([^"]*)"', page.get_data(as_text=True))
    assert token
    sign_in(b, authorize_url(make_client("other")), "bob")
    bob_page = b.get("/oauth2/authorize/continue/" + token.group(1))
    # bob is asked on his own page (and alice's consent stays unanswered)
    assert is_consent_page(bob_page) and "bob" in bob_page.get_data(as_text=True)
    assert db.session.query(OidcGrant).filter_by(user_id=alice.id).count() == 0


def test_revoked_grant_is_reset_on_new_consent(app: Flask, browser: Browser, alice: Any) -> None:
    client_id = make_client()
    sign_in(browser, authorize_url(client_id))
    grant = db.session.query(OidcGrant).one()
    grant.revoked_at = utcnow()
    created = grant.created_at
    db.session.commit()
    resp = browser.get(authorize_url(client_id, scope="openid"))
    assert is_consent_page(resp)
    at_rp(answer_consent(browser, resp))
    db.session.expire_all()
    grant = db.session.query(OidcGrant).one()
    assert grant.revoked_at is None and grant.scopes == ["openid"] and grant.created_at >= created


# ---------------------------------------------------------------- admin-approved apps and policy refusals


def test_admin_approved_no_consent_page_and_not_permitted_refused(app: Flask, alice: Any, bob: Any) -> None:
    client_id = make_client(policy={"permitted": "admin-approved", "allow_groups": ("engineering",)})
    a, b = Browser(app.test_client()), Browser(app.test_client())
    got = at_rp(sign_in(a, authorize_url(client_id), consent=None))
    assert "code" in got
    grant = db.session.query(OidcGrant).one()
    assert grant.consent == "admin" and grant.user_id == alice.id
    refused = at_rp(sign_in(b, authorize_url(client_id), "bob", consent=None))
    assert refused["error"] == "access_denied" and "code" not in refused
    assert "engineering" not in refused["error_description"]
    ev = last_event()
    assert (ev.reason, ev.username, ev.protocol) == ("user_not_permitted", "bob", "oidc")
    assert ev.detail["policy"]["check"] == "permitted_users"


def test_admin_approval_is_not_the_users_consent_when_the_app_becomes_self_authorize(app: Flask, browser: Browser,
                                                                                     alice: Any) -> None:
    client_id = make_client(policy={"permitted": "admin-approved", "allow_groups": ("engineering",)})
    assert "code" in at_rp(sign_in(browser, authorize_url(client_id, scope="openid profile email"), consent=None))
    apps_svc.change_settings(apps_svc.get_app("rp"), permitted="all")
    db.session.commit()
    resp = browser.get(authorize_url(client_id, scope="openid"))
    assert is_consent_page(resp)                      # the user never saw the admin-approved scopes
    assert "code" in at_rp(answer_consent(browser, resp))
    db.session.expire_all()
    grant = db.session.query(OidcGrant).one()
    assert grant.consent == "user" and grant.scopes == ["openid"]     # nothing carried over from the approval


def test_ip_range_refusal(app: Flask, browser: Browser, alice: Any) -> None:
    client_id = make_client(policy={"ip_policy": "enforce", "ip_ranges": ("10.0.0.0/8",)})
    browser.client.environ_base["REMOTE_ADDR"] = "192.0.2.7"
    got = at_rp(sign_in(browser, authorize_url(client_id)))
    assert got["error"] == "access_denied"
    ev = last_event()
    assert ev.reason == "ip_not_allowed" and ev.client_ip == "192.0.2.7"
    browser.client.environ_base["REMOTE_ADDR"] = "10.1.2.3"
    assert "code" in at_rp(sign_in(browser, authorize_url(client_id)))


def test_app_disabled_while_request_parked(app: Flask, browser: Browser, alice: Any) -> None:
    client_id = make_client()
    resp = browser.get(authorize_url(client_id))
    assert is_login_page(resp)
    apps_svc.change_settings(apps_svc.get_app("rp"), enabled=False)
    db.session.commit()
    got = at_rp(browser.login(resp, "alice", "correct horse battery"))
    assert got["error"] == "access_denied"
    assert last_event().reason == "app_disabled"


def test_access_check_dry_run_for_an_oidc_only_app(app: Flask, alice: Any, bob: Any) -> None:
    make_client(policy={"permitted": "admin-approved", "assigned_users": ("alice",), "require_mfa": True})
    runner = app.test_cli_runner()
    out = runner.invoke(args=["access", "check", "--user", "alice", "--app", "rp", "--format", "json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["decision"] == "step_up"
    out = runner.invoke(args=["access", "check", "--user", "alice", "--app", "rp", "--mfa"])
    assert out.exit_code == 0 and "ALLOW" in out.output
    out = runner.invoke(args=["access", "check", "--user", "bob", "--app", "rp", "--mfa"])
    assert out.exit_code == 0 and "DENY" in out.output and "user_not_permitted" in out.output


def test_app_with_saml_and_oidc_has_one_participant_per_protocol(app: Flask, browser: Browser, alice: Any,
                                                                 make_sp: Any) -> None:
    from ..webclient import saml_form
    sp = make_sp("pysaml2")
    row = apps_svc.get_app(sp.slug)
    client, _ = apps_svc.add_oidc(row, apps_svc.initial_settings(redirect_uris=(CB,)))
    db.session.commit()
    req = sp.authn_request("redirect")
    assert saml_form(browser.sso(req, "alice", "correct horse battery")) is not None
    record = peek_code(at_rp(sign_in(browser, authorize_url(client.client_id)))["code"])
    assert record is not None
    db.session.expire_all()
    rows = {p.protocol: p for p in db.session.query(SessionParticipant)}
    assert set(rows) == {"saml", "oidc"} and rows["oidc"].session_index == record.sid
    assert rows["saml"].session_index != record.sid and rows["saml"].name_id != rows["oidc"].name_id
    # SAML again in the same session keeps its own row and SessionIndex
    assert saml_form(browser.sso(sp.authn_request("redirect"))) is not None
    db.session.expire_all()
    assert db.session.query(SessionParticipant).count() == 2


def test_discovery_lists_the_acr_values_understood(client: FlaskClient) -> None:
    doc = client.get("/.well-known/openid-configuration").get_json()
    assert MFA in doc["acr_values_supported"] and PAPE_MFA in doc["acr_values_supported"]


# ---------------------------------------------------------------- what conformance RPs send (OIDF Basic OP plan)


def test_unknown_parameters_display_locales_claims_and_unknown_scopes_are_ignored(app: Flask, browser: Browser,
                                                                                    alice: Any) -> None:
    """oidcc-ensure-request-with-unknown-parameter-succeeds, oidcc-display-page / -popup, oidcc-ui-locales,
    oidcc-claims-locales, oidcc-claims-essential (the `claims` parameter is not supported: ignored) and
    oidcc-scope-address / -phone (OIDC Core 3.1.2.1: scopes not understood are ignored)."""
    client_id = make_client()
    url = authorize_url(client_id, scope="openid profile address phone", display="popup", ui_locales="de-CH fr",
                        claims_locales="de", claims=json.dumps({"userinfo": {"name": {"essential": True}}}),
                        extension_parameter="whatever")
    got = at_rp(sign_in(browser, url))
    assert set(got) == {"code", "state", "iss"}
    record = peek_code(got["code"])
    assert record is not None and record.scopes == ("openid", "profile")
