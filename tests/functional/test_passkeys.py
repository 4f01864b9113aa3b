"""Passkeys end to end through the test client, with a software authenticator (tests/passkey_authenticator.py)
and py_webauthn on the server: registration on /account, passwordless sign-in (also continuing SP-initiated
SSO to an MFA app), the second factor on /mfa, and the attacks: counter regression (cloned authenticator),
replayed or expired challenge, wrong origin or RP ID, unknown credential, another user's passkey, no user
verification, a changed backup-eligible flag, throttling."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update

from idp.auth import passkeys as passkeys_auth
from idp.auth.passkeys import PasskeyError
from idp.extensions import db
from idp.models import AdminAudit, IdpSession, Passkey, PendingRequest, SsoEvent, User, utcnow
from idp.services import accounts, org
from idp.services import users as users_svc

from ..passkey_authenticator import SoftAuthenticator
from ..webclient import Browser, continuation, saml_form
from .conftest import PASSWORD
from .test_policy_flows import MFA_CLASS, code_for, enrol, set_policy, submit_code

_CSRF = re.compile(r'(?:name="csrf_token" value|data-csrf)="([^"]+)"')


def csrf(client: FlaskClient, path: str = "/login") -> str:
    """The session's CSRF token, from `path` (or /account when `path` redirects a signed-in browser)."""
    resp = client.get(path)
    if resp.status_code in (302, 303):
        resp = client.get("/account")
    m = _CSRF.search(resp.get_data(as_text=True))
    assert m, f"no CSRF token on {path}"
    return m.group(1)


def passkey_fields(body: str) -> dict[str, str]:
    """`next` and `request` of the passkey box (data attributes read by static/passkeys.js)."""
    out = {}
    for name in ("next", "request"):
        m = re.search(rf'data-{name}="([^"]*)"', body)
        if m:
            out[name] = unescape(m.group(1))
    return out


def password_login(client: FlaskClient, username: str = "alice", next_url: str = "/") -> Any:
    return client.post("/login", data={"csrf_token": csrf(client), "username": username, "password": PASSWORD,
                                       "next": next_url})


def register(client: FlaskClient, auth: SoftAuthenticator, name: str = "laptop", link: str | None = None,
             **create: Any) -> Any:
    """Register a passkey from /account (with an enrolment link's token when `link` is given)."""
    token = csrf(client, "/account")
    extra = {"link": link} if link else {}
    opts = client.post("/passkeys/register/options", json=extra, headers={"X-CSRFToken": token})
    if opts.status_code != 200:
        return opts
    credential = auth.create(opts.get_json(), **create)
    return client.post("/passkeys/register", json={"credential": credential, "name": name, **extra},
                       headers={"X-CSRFToken": token})


def passkey_login(client: FlaskClient, auth: SoftAuthenticator, *, purpose: str = "login", page: str = "/login",
                  next_url: str = "/", request: str | None = None, **get: Any) -> Any:
    token = csrf(client, page)
    opts = client.post("/passkeys/login/options", json={"purpose": purpose}, headers={"X-CSRFToken": token})
    assert opts.status_code == 200, opts.get_data(as_text=True)
    credential = auth.get(opts.get_json(), **get)
    return client.post("/passkeys/login", json={"credential": credential, "purpose": purpose, "next": next_url,
                                                "request": request}, headers={"X-CSRFToken": token})


def live_sessions(user: User) -> list[IdpSession]:
    db.session.expire_all()
    return list(db.session.scalars(select(IdpSession).where(IdpSession.user_id == user.id,
                                                            IdpSession.ended_at.is_(None))))


def last_signin_event() -> SsoEvent:
    db.session.expire_all()
    ev = db.session.scalars(select(SsoEvent).order_by(SsoEvent.id.desc())).first()
    assert ev is not None
    return ev


@pytest.fixture(autouse=True)
def trusted_here(app: Any) -> None:
    """Self-enrolment of a FIRST factor (a passkey too) is allowed from the org's trusted ranges only (the default
    enrolment mode): the test client's loopback address is one here."""
    org.add_trusted_range("127.0.0.0/8")
    db.session.commit()


@pytest.fixture
def auth() -> SoftAuthenticator:
    return SoftAuthenticator()


@pytest.fixture
def alice_key(app: Any, alice: User, auth: SoftAuthenticator) -> SoftAuthenticator:
    """alice with one registered passkey (made from a password-only session: she had no factor)."""
    c = app.test_client()
    password_login(c)
    assert register(c, auth).status_code == 201
    return auth


# ------------------------------------------------------------------ registration

def test_first_passkey_is_audited_gives_recovery_codes_and_ends_every_session(app, client, alice, auth):
    other = app.test_client()
    password_login(other)
    password_login(client)
    resp = register(client, auth, name="  work   laptop ")
    assert resp.status_code == 201, resp.get_data(as_text=True)
    data = resp.get_json()
    assert len(data["recovery_codes"]) == 10 and data["login_url"] == "/login" and "redirect" not in data
    assert resp.headers["Cache-Control"] == "no-store"
    row = db.session.scalars(select(Passkey)).one()
    assert (row.user_id, row.name, row.backup_eligible) == (alice.id, "work laptop", False)
    assert row.transports == ["internal"]
    db.session.refresh(alice)
    assert alice.mfa_enrolled and alice.webauthn_user_id
    assert alice.webauthn_user_id.encode() not in b"alice" and "alice" not in alice.webauthn_user_id
    audit = db.session.scalars(select(AdminAudit).where(AdminAudit.action == "mfa.enrolled")
                               .order_by(AdminAudit.id)).all()
    assert [(a.target, a.after["kind"]) for a in audit] == [("alice", "passkey"), ("alice", "recovery_codes")]
    ev = db.session.scalars(select(SsoEvent).where(SsoEvent.reason == "mfa_enrolled")).first()
    assert ev is not None and (ev.event_type, ev.outcome, ev.username) == ("account", "success", "alice")
    # a first factor never satisfies anything in the session that enrolled it: every session ends, this one too
    assert live_sessions(alice) == []
    assert other.get("/account").status_code == 302 and client.get("/account").status_code == 302


def test_first_passkey_follows_the_enrolment_rules(app, client, alice, auth):
    """A stolen password from outside the trusted ranges cannot put the attacker's passkey on the account."""
    org.remove_trusted_range("127.0.0.0/8")
    db.session.commit()
    password_login(client)
    resp = client.post("/passkeys/register/options", json={}, headers={"X-CSRFToken": csrf(client, "/account")})
    assert resp.status_code == 403 and "enrolment link" in resp.get_json()["error"]
    assert db.session.scalars(select(SsoEvent).order_by(SsoEvent.id.desc())).first().reason == "enrolment_refused"
    assert register(client, auth).status_code == 403
    assert db.session.scalars(select(Passkey)).all() == []


def test_first_passkey_with_an_enrolment_link(app, client, alice, auth):
    """link-only: the password alone registers nothing; the admin's link (offered on its page) does, once."""
    from idp.models import EnrolmentLink
    from idp.services import accounts
    org.remove_trusted_range("127.0.0.0/8")
    org.set_mfa_enrolment("link-only")
    token = accounts.issue_enrolment_link(alice)
    db.session.commit()
    password_login(client)
    assert register(client, auth).status_code == 403
    page = client.get(f"/mfa/enroll/link/{token}").get_data(as_text=True)
    assert f'data-link="{token}"' in page and 'id="passkey-register-form"' in page
    headers = {"X-CSRFToken": csrf(client, "/account")}
    opts = client.post("/passkeys/register/options", json={"link": token}, headers=headers)
    assert opts.status_code == 200, opts.get_data(as_text=True)
    resp = client.post("/passkeys/register", json={"credential": auth.create(opts.get_json()), "name": "key",
                                                   "link": token}, headers=headers)
    assert resp.status_code == 201 and len(resp.get_json()["recovery_codes"]) == 10
    db.session.expire_all()
    assert db.session.scalars(select(EnrolmentLink)).one().used_at is not None
    assert db.session.scalars(select(Passkey)).one().user_id == alice.id


def test_further_passkey_keeps_this_session(app, alice, alice_key):
    c = app.test_client()
    passkey_login(c, alice_key)
    other = app.test_client()
    password_login(other)
    resp = register(c, SoftAuthenticator(), name="phone")
    assert resp.status_code == 201 and resp.get_json()["redirect"] == "/account"
    assert "recovery_codes" not in resp.get_json()
    assert len(live_sessions(alice)) == 1 and c.get("/account").status_code == 200


def test_registration_options_ask_for_discoverable_credential_and_user_verification(client, alice):
    password_login(client)
    opts = client.post("/passkeys/register/options", json={}, headers={"X-CSRFToken": csrf(client, "/account")})
    data = opts.get_json()
    assert data["rp"]["id"] == "localhost"
    assert data["authenticatorSelection"]["residentKey"] == "required"
    assert data["authenticatorSelection"]["userVerification"] == "required"
    assert data["user"]["name"] == "alice" and "alice" not in data["user"]["id"]
    assert opts.headers["Cache-Control"] == "no-store"


def test_second_passkey_needs_a_session_that_passed_the_second_factor(app, alice_key):
    """A stolen password is not enough to add the attacker's passkey to an account that has a factor."""
    attacker = app.test_client()
    password_login(attacker)
    resp = register(attacker, SoftAuthenticator(), name="evil")
    assert resp.status_code == 403 and "second factor" in resp.get_json()["error"]
    assert db.session.query(Passkey).count() == 1
    # the real user, signed in with her passkey (multi-factor), adds a second one
    c = app.test_client()
    assert passkey_login(c, alice_key).status_code == 200
    assert register(c, SoftAuthenticator(), name="phone").status_code == 201
    assert db.session.query(Passkey).count() == 2


def test_totp_user_cannot_add_a_passkey_with_the_password_only(app, client, alice):
    enrol(alice)
    password_login(client)
    assert register(client, SoftAuthenticator()).status_code == 403
    assert db.session.query(Passkey).count() == 0


def test_registration_with_wrong_origin_or_without_user_verification_is_refused(client, alice, auth):
    password_login(client)
    for kw in ({"origin": "https://evil.example"}, {"rp_id": "evil.example"}, {"uv": False}):
        resp = register(client, auth, **kw)
        assert resp.status_code == 400, kw
        assert resp.get_json()["error"]
        ev = last_signin_event()
        assert (ev.reason, ev.event_type, ev.username) == ("passkey_failed", "account", "alice")
    assert db.session.query(Passkey).count() == 0


def test_registration_challenge_is_single_use(client, alice, auth):
    """A refused attempt consumes the challenge too: the same options cannot be answered again."""
    password_login(client)
    token = csrf(client, "/account")
    opts = client.post("/passkeys/register/options", json={}, headers={"X-CSRFToken": token}).get_json()
    first = client.post("/passkeys/register", json={"credential": auth.create(opts, uv=False)},
                        headers={"X-CSRFToken": token})
    assert first.status_code == 400
    again = client.post("/passkeys/register", json={"credential": auth.create(opts)}, headers={"X-CSRFToken": token})
    assert again.status_code == 400 and "expired or was already used" in again.get_json()["error"]
    assert db.session.query(Passkey).count() == 0


# ------------------------------------------------------------------ passwordless sign-in

def test_passwordless_sign_in_is_multi_factor(app, alice, alice_key):
    c = app.test_client()
    resp = passkey_login(c, alice_key, next_url="/account")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json()["redirect"] == "/account"
    assert c.get("/account").status_code == 200
    (s,) = live_sessions(alice)[-1:]
    assert s.mfa_at is not None
    row = db.session.scalars(select(Passkey)).one()
    assert row.sign_count == alice_key.credentials[0].sign_count and row.last_used_at is not None


def test_login_page_offers_passkey_sign_in_with_the_parked_request(client):
    body = client.get("/login?next=/x&request=abc").get_data(as_text=True)
    assert 'id="passkey-login"' in body and 'data-request="abc"' in body and "passkeys.js" in body
    assert "<script>" not in body, "no inline script (the CSP forbids it)"


def test_passwordless_sso_to_an_mfa_app_continues_the_parked_request(app, make_sp, browser, alice, alice_key):
    sp = make_sp("pysaml2")
    set_policy(sp, require_mfa=True)
    req = sp.authn_request("redirect")
    page = browser.send(req)
    body = page.get_data(as_text=True)
    assert 'id="passkey-login"' in body
    fields = continuation(body)
    resp = passkey_login(browser.client, alice_key, next_url=fields["next"], request=fields["request"])
    assert resp.status_code == 200, resp.get_data(as_text=True)
    form = saml_form(browser.get(resp.get_json()["redirect"]))
    assert form is not None, "the parked SSO request continues after the passkey"
    result = sp.process_response(form.saml_response, req.request_id)
    assert result.authn_context == MFA_CLASS


def test_disabled_user_cannot_sign_in_with_a_passkey(app, alice, alice_key):
    alice.disabled = True
    db.session.commit()
    resp = passkey_login(app.test_client(), alice_key)
    assert resp.status_code == 403
    assert last_signin_event().reason == "passkey_failed"


# ------------------------------------------------------------------ second factor on /mfa

def test_passkey_as_second_factor_after_the_password(app, make_sp, browser, alice, alice_key):
    sp = make_sp("onelogin")
    set_policy(sp, require_mfa=True)
    req = sp.authn_request("redirect")
    resp = browser.sso(req, "alice", PASSWORD)
    body = resp.get_data(as_text=True)
    assert 'id="passkey-mfa"' in body and 'name="code"' not in body, "a passkey user is not sent to enrol TOTP"
    fields = passkey_fields(body)
    out = passkey_login(browser.client, alice_key, purpose="mfa", page="/mfa", next_url=fields["next"],
                        request=fields["request"])
    assert out.status_code == 200, out.get_data(as_text=True)
    form = saml_form(browser.get(out.get_json()["redirect"]))
    assert form is not None
    assert sp.process_response(form.saml_response, req.request_id).authn_context == MFA_CLASS


def test_another_users_passkey_is_refused_on_mfa(app, make_sp, browser, alice, bob, alice_key):
    """bob's passkey (bob is the attacker, or his key was stolen) cannot stand in for alice's second factor."""
    bob_auth = SoftAuthenticator()
    c = app.test_client()
    password_login(c, "bob")
    assert register(c, bob_auth).status_code == 201
    sp = make_sp("pysaml2")
    set_policy(sp, require_mfa=True)
    req = sp.authn_request("redirect")
    resp = browser.sso(req, "alice", PASSWORD)
    fields = passkey_fields(resp.get_data(as_text=True))
    token = csrf(browser.client, "/mfa")
    opts = browser.client.post("/passkeys/login/options", json={"purpose": "mfa"}, headers={"X-CSRFToken": token})
    cred = bob_auth.get(opts.get_json(), credential=bob_auth.credentials[0])
    out = browser.client.post("/passkeys/login", json={"credential": cred, "purpose": "mfa", **fields},
                              headers={"X-CSRFToken": token})
    assert out.status_code == 403 and "another account" in out.get_json()["error"]
    ev = last_signin_event()
    assert (ev.reason, ev.username, ev.app_slug) == ("passkey_failed", "alice", sp.slug)
    assert "wrong_user" in ev.detail["message"]
    # no session, no assertion: the MFA page is shown again
    assert not [s for s in live_sessions(alice) if s.mfa_at is not None]
    again = browser.get(fields["next"])
    assert saml_form(again) is None


def test_passkey_with_a_forged_user_handle_is_refused(app, alice, bob, alice_key):
    bob_auth = SoftAuthenticator()
    c = app.test_client()
    password_login(c, "bob")
    register(c, bob_auth)
    db.session.refresh(alice)
    forged = passkey_login(app.test_client(), alice_key,
                           user_handle=bob_auth.credentials[0].user_handle)
    assert forged.status_code == 403


# ------------------------------------------------------------------ attacks on the assertion

def test_counter_regression_is_refused_as_a_cloned_authenticator(app, alice, alice_key):
    assert passkey_login(app.test_client(), alice_key, sign_count=10).status_code == 200
    for count in (10, 3):
        resp = passkey_login(app.test_client(), alice_key, sign_count=count)
        assert resp.status_code == 403 and "copied" in resp.get_json()["error"]
        ev = last_signin_event()
        assert (ev.reason, ev.username, ev.outcome) == ("passkey_cloned", "alice", "denied")
        assert ev.client_ip and ev.user_agent is not None or ev.client_ip
    assert db.session.scalars(select(Passkey)).one().sign_count == 10
    assert passkey_login(app.test_client(), alice_key, sign_count=11).status_code == 200


def test_zero_counter_authenticators_still_work(app, alice):
    auth = SoftAuthenticator(counter_step=0)
    c = app.test_client()
    password_login(c)
    register(c, auth)
    for _ in range(2):
        assert passkey_login(app.test_client(), auth).status_code == 200


def test_replayed_assertion_is_refused(app, alice, alice_key):
    c = app.test_client()
    token = csrf(c)
    opts = c.post("/passkeys/login/options", json={"purpose": "login"}, headers={"X-CSRFToken": token}).get_json()
    cred = alice_key.get(opts)
    assert c.post("/passkeys/login", json={"credential": cred}, headers={"X-CSRFToken": token}).status_code == 200
    # the same assertion again, from the same browser and from another one
    for client in (c, app.test_client()):
        t = csrf(client)
        resp = client.post("/passkeys/login", json={"credential": cred}, headers={"X-CSRFToken": t})
        assert resp.status_code == 400 and "already used" in resp.get_json()["error"]
        assert last_signin_event().reason == "passkey_failed"


def test_challenge_is_consumed_once_even_with_its_token(app, alice, alice_key):
    """The store itself: a ceremony token answers once, and a second-factor challenge only for its user."""
    db.session.expire_all()  # the registration's requests changed alice (the test's session keeps objects)
    opts, token = passkeys_auth.authentication_options(None)
    import json
    cred = alice_key.get(json.loads(opts))
    passkeys_auth.authenticate(token, cred, user=None)
    with pytest.raises(PasskeyError) as exc:
        passkeys_auth.authenticate(token, cred, user=None)
    assert exc.value.code == "challenge"
    bob = users_svc.add_user("bob2", email="b@example.com", password_hash=None)
    db.session.flush()
    opts, token = passkeys_auth.authentication_options(bob)
    with pytest.raises(PasskeyError) as exc:
        passkeys_auth.authenticate(token, alice_key.get(json.loads(opts)), user=None)
    assert exc.value.code == "challenge"


def test_expired_challenge_is_refused(app, alice, alice_key):
    c = app.test_client()
    token = csrf(c)
    opts = c.post("/passkeys/login/options", json={"purpose": "login"}, headers={"X-CSRFToken": token}).get_json()
    db.session.execute(update(PendingRequest).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    resp = c.post("/passkeys/login", json={"credential": alice_key.get(opts)}, headers={"X-CSRFToken": token})
    assert resp.status_code == 400 and "expired" in resp.get_json()["error"]


@pytest.mark.parametrize("kw", [{"origin": "https://idp.example.evil"}, {"origin": "http://localhost:8080"},
                                {"rp_id": "evil.example"}, {"uv": False}, {"tamper": True},
                                {"backup_eligible": True}])
def test_bad_assertions_are_refused_with_an_event(app, alice, alice_key, kw):
    c = app.test_client()
    resp = passkey_login(c, alice_key, **kw)
    assert resp.status_code in (400, 403), resp.get_data(as_text=True)
    assert resp.get_json()["error"]
    ev = last_signin_event()
    assert (ev.event_type, ev.reason, ev.username) == ("signin", "passkey_failed", "alice")
    assert ev.client_ip == "127.0.0.1"
    assert c.get("/account").status_code == 302, "not signed in"


def test_unknown_credential_is_refused(app, alice, alice_key):
    stranger = SoftAuthenticator()
    stranger.create({"rp": {"id": "localhost"}, "user": {"id": "AAAA"}, "challenge": "AAAA"})  # never registered
    resp = passkey_login(app.test_client(), stranger)
    assert resp.status_code == 401 and "not registered" in resp.get_json()["error"]
    ev = last_signin_event()
    assert (ev.reason, ev.username) == ("passkey_failed", None)


def test_second_factor_failures_are_throttled_per_address_not_per_user(app, make_sp, browser, alice, alice_key):
    """A signature cannot be guessed: failed passkeys lock the failing address out (as passwordless), never the
    user, who still passes from another address."""
    sp = make_sp("pysaml2")
    set_policy(sp, require_mfa=True)
    resp = browser.sso(sp.authn_request("redirect"), "alice", PASSWORD)
    fields = passkey_fields(resp.get_data(as_text=True))
    statuses = [passkey_login(browser.client, alice_key, purpose="mfa", page="/mfa", tamper=True, **{
        "next_url": fields["next"], "request": fields["request"]}).status_code for _ in range(30)]
    assert statuses == [400] * 30
    tok = csrf(browser.client, "/mfa")
    opts = browser.client.post("/passkeys/login/options", json={"purpose": "mfa"}, headers={"X-CSRFToken": tok})
    assert opts.status_code == 429 and opts.headers["Retry-After"]
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "192.0.2.7"
    elsewhere = Browser(other).sso(sp.authn_request("redirect"), "alice", PASSWORD)
    fields = passkey_fields(elsewhere.get_data(as_text=True))
    out = passkey_login(other, alice_key, purpose="mfa", page="/mfa", next_url=fields["next"],
                        request=fields["request"])
    assert out.status_code == 200, out.get_data(as_text=True)


def test_passwordless_failures_are_throttled_per_address(app, alice, alice_key):
    c = app.test_client()
    for _ in range(30):
        assert passkey_login(c, alice_key, tamper=True).status_code == 400
    tok = csrf(c)
    assert c.post("/passkeys/login/options", json={"purpose": "login"}, headers={"X-CSRFToken": tok}).status_code == 429
    # from another address the owner still gets in
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "192.0.2.7"
    assert passkey_login(other, alice_key).status_code == 200


# ------------------------------------------------------------------ policy sees a passkey user as enrolled

def test_session_view_counts_passkeys_as_enrolled(app, alice, alice_key):
    from idp.auth.sessions import read_session
    c = app.test_client()
    password_login(c)
    s = live_sessions(alice)[-1]
    view = read_session(s.id)
    assert view is not None and view.user.mfa_enrolled


def test_mfa_page_offers_totp_and_passkey_to_a_user_with_both(app, make_sp, browser, alice, alice_key):
    t = enrol(alice)
    sp = make_sp("pysaml2")
    set_policy(sp, require_mfa=True)
    resp = browser.sso(sp.authn_request("redirect"), "alice", PASSWORD)
    body = resp.get_data(as_text=True)
    assert 'name="code"' in body and 'id="passkey-mfa"' in body
    assert saml_form(submit_code(browser, resp, code_for(t))) is not None


# ------------------------------------------------------------------ removal

def test_remove_needs_mfa_session_and_ends_other_sessions(app, alice, alice_key):
    pw_only = app.test_client()
    password_login(pw_only)
    row = db.session.scalars(select(Passkey)).one()
    resp = pw_only.post(f"/account/passkeys/{row.id}/remove", data={"csrf_token": csrf(pw_only, "/account")})
    assert resp.status_code == 403
    assert db.session.query(Passkey).count() == 1
    c = app.test_client()
    passkey_login(c, alice_key)
    resp = c.post(f"/account/passkeys/{row.id}/remove", data={"csrf_token": csrf(c, "/account")})
    assert resp.status_code == 303
    assert db.session.query(Passkey).count() == 0
    (kept,) = live_sessions(alice)
    assert kept.mfa_at is None, "the kept session loses its multi-factor assurance"
    assert pw_only.get("/account").status_code == 302
    audit = db.session.scalars(select(AdminAudit).where(AdminAudit.action == "user.passkey_removed")).one()
    assert audit.target == "alice"


def test_cannot_remove_or_rename_another_users_passkey(app, alice, bob, alice_key):
    row = db.session.scalars(select(Passkey)).one()
    bob_auth = SoftAuthenticator()
    c = app.test_client()
    password_login(c, "bob")
    register(c, bob_auth)
    c2 = app.test_client()
    passkey_login(c2, bob_auth)
    assert c2.post(f"/account/passkeys/{row.id}/remove", data={"csrf_token": csrf(c2, "/account")}).status_code == 404
    assert c2.post(f"/account/passkeys/{row.id}/rename", data={"csrf_token": csrf(c2, "/account"),
                                                               "name": "x"}).status_code == 404
    db.session.expire_all()
    assert db.session.get(Passkey, row.id).name == "laptop"


def test_rename(app, alice, alice_key):
    c = app.test_client()
    passkey_login(c, alice_key)
    row = db.session.scalars(select(Passkey)).one()
    assert c.post(f"/account/passkeys/{row.id}/rename", data={"csrf_token": csrf(c, "/account"),
                                                              "name": "YubiKey 5"}).status_code == 303
    db.session.expire_all()
    assert db.session.get(Passkey, row.id).name == "YubiKey 5"


# ------------------------------------------------------------------ admin console and CLI

@pytest.fixture
def admin_key(app: Any) -> SoftAuthenticator:
    pw = app.extensions["idp.passwords"]
    admin = users_svc.add_user("admin", email="admin@example.com", password_hash=pw.hash(PASSWORD), is_admin=True)
    # an admin's first factor needs an enrolment link, even from the trusted ranges (`trusted_here`)
    link = accounts.issue_enrolment_link(admin)
    auth = SoftAuthenticator()
    c = app.test_client()
    password_login(c, "admin")
    assert register(c, auth, name="admin key").status_code == 403
    assert register(c, auth, name="admin key", link=link).status_code == 201
    return auth


def test_admin_console_lists_and_removes_a_users_passkey(app, alice, alice_key, admin_key):
    admin = app.test_client()
    assert passkey_login(admin, admin_key).status_code == 200   # a multi-factor session (the console will ask one)
    page = admin.get("/admin/users/alice").get_data(as_text=True)
    assert 'id="admin-passkeys"' in page and "laptop" in page and "device-bound" in page
    row = db.session.scalars(select(Passkey).where(Passkey.name == "laptop")).one()
    confirm = admin.get(f"/admin/users/alice/passkeys/{row.id}/remove")
    assert confirm.status_code == 200 and "laptop" in confirm.get_data(as_text=True)
    token = _CSRF.search(confirm.get_data(as_text=True)).group(1)
    resp = admin.post(f"/admin/users/alice/passkeys/{row.id}/remove", data={"csrf_token": token})
    assert resp.status_code == 303
    assert db.session.scalars(select(Passkey).where(Passkey.name == "laptop")).first() is None
    audit = db.session.scalars(select(AdminAudit).where(AdminAudit.action == "user.passkey_removed")).one()
    assert (audit.actor, audit.target) == ("web:admin", "alice")
    # and alice sees it on /account: an `mfa_removed` event (README), not only the audit row
    ev = db.session.scalars(select(SsoEvent).where(SsoEvent.reason == "mfa_removed")).one()
    assert (ev.event_type, ev.outcome, ev.username) == ("account", "success", "alice")
    assert ev.detail["by"] == "admin" and "laptop" in ev.detail["message"]
    assert passkey_login(app.test_client(), alice_key).status_code == 401


def test_cli_mfa_reset_removes_passkeys_and_ends_sessions(app, alice, alice_key):
    c = app.test_client()
    passkey_login(c, alice_key)
    result = app.test_cli_runner().invoke(args=["users", "mfa-reset", "alice"])
    assert result.exit_code == 0, result.output
    assert "1 passkey" in result.output
    assert db.session.query(Passkey).count() == 0
    assert c.get("/account").status_code == 302
    db.session.refresh(alice)
    assert not alice.mfa_enrolled
    assert db.session.scalars(select(AdminAudit).where(AdminAudit.action == "user.passkeys_removed")).one()


def test_relying_party_follows_the_base_url(settings):
    from dataclasses import replace
    rp = passkeys_auth.relying_party(replace(settings, base_url="https://idp.example.org:8443"))
    assert (rp.id, rp.origin) == ("idp.example.org", "https://idp.example.org:8443")
    rp = passkeys_auth.relying_party(replace(settings, base_url="https://IdP.Example.org:443/sub"))
    assert (rp.id, rp.origin) == ("idp.example.org", "https://idp.example.org")


def test_browser_refusals_are_json_not_pages(client, alice):
    resp = client.post("/passkeys/register/options", json={}, headers={"X-CSRFToken": csrf(client)})
    assert resp.status_code == 401 and resp.get_json()["error"]


def test_passkey_user_cannot_enrol_totp_past_the_passkey_with_the_password_only(app, make_sp, browser, alice,
                                                                                 alice_key):
    """A stolen password must not let the attacker add their own TOTP to a passkey user's account."""
    sp = make_sp("pysaml2")
    set_policy(sp, require_mfa=True)
    req = sp.authn_request("redirect")
    browser.sso(req, "alice", PASSWORD)
    resp = browser.client.get("/mfa/enroll?next=/")
    assert resp.status_code == 303 and "/mfa?" in resp.headers["Location"]
    db.session.refresh(alice)
    assert not alice.totp_secret
    # from a session that passed the passkey, adding TOTP is allowed
    c = app.test_client()
    passkey_login(c, alice_key)
    assert c.get("/mfa/enroll?next=/account").status_code == 200
    # ... and confirming it keeps this session (a further factor), ends the others and issues no new codes
    other = app.test_client()
    passkey_login(other, alice_key)
    page = c.get("/mfa/enroll?next=/account").get_data(as_text=True)
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page).group(1)  # type: ignore[union-attr]
    import pyotp
    resp = c.post("/mfa/enroll", data={"csrf_token": csrf(c, "/account"), "code": pyotp.TOTP(secret).now(),
                                       "next": "/account"})
    assert resp.status_code == 303 and resp.headers["Location"] == "/account"
    db.session.refresh(alice)
    assert alice.totp_confirmed and c.get("/account").status_code == 200
    assert other.get("/account").status_code == 302, "a new factor ends the user's other sessions"
    audit = db.session.scalars(select(AdminAudit).where(AdminAudit.action == "mfa.enrolled")
                               .order_by(AdminAudit.id.desc())).first()
    assert audit is not None and audit.after["kind"] == "totp"
