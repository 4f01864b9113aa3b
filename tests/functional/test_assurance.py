"""Assurance follows the factors: a factor change ends other sessions and clears MFA; re-authentication
asserts only what was proved again (issue 13, holes 2 and 3)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pyotp

from idp.extensions import db
from idp.models import IdpSession, SessionParticipant, utcnow
from idp.services import users as users_svc

from ..webclient import Browser, enrol_totp, login_admin, saml_form
from .conftest import PASSWORD
from .test_policy_flows import MFA_CLASS, PPT, code_for, enrol, set_policy, submit_code


def authn_instant(result) -> datetime:  # type: ignore[no-untyped-def]
    m = re.search(r'AuthnInstant="([^"]+)"', result.raw_xml)
    assert m, "no AuthnStatement"
    return datetime.fromisoformat(m.group(1).replace("Z", "+00:00"))


def mfa_login(browser: Browser, sp, t):  # type: ignore[no-untyped-def]
    """SSO to an MFA app with password and TOTP code; returns the SP's view of the assertion."""
    req = sp.authn_request("redirect")
    resp = browser.sso(req, "alice", PASSWORD)
    assert 'name="code"' in resp.get_data(as_text=True)
    form = saml_form(submit_code(browser, resp, code_for(t)))
    assert form is not None
    res = sp.process_response(form.saml_response, req.request_id)
    assert res.authn_context == MFA_CLASS
    return res


# ------------------------------------------------------------------ hole 3: ForceAuthn

def test_force_authn_to_mfa_app_with_password_only_asks_for_the_code(make_sp, browser, alice):
    sp = make_sp("pysaml2")
    set_policy(sp, require_mfa=True)
    t = enrol(alice)
    first = mfa_login(browser, sp, t)
    req = sp.authn_request("redirect", force_authn=True)
    resp = browser.send(req)
    assert saml_form(resp) is None and 'name="password"' in resp.get_data(as_text=True)
    resp = browser.login(resp, "alice", PASSWORD)
    assert saml_form(resp) is None, "the password alone must not be asserted as MFA"
    assert 'name="code"' in resp.get_data(as_text=True)
    form = saml_form(submit_code(browser, resp, code_for(t, 1)))
    assert form is not None
    res = sp.process_response(form.saml_response, req.request_id)
    assert res.authn_context == MFA_CLASS
    assert authn_instant(res) >= authn_instant(first)
    assert utcnow() - authn_instant(res) < timedelta(seconds=30)


def test_force_authn_to_plain_app_asserts_password_only(make_sp, browser, alice):
    secure, plain = make_sp("pysaml2"), make_sp("pysaml2")
    set_policy(secure, require_mfa=True)
    t = enrol(alice)
    mfa_login(browser, secure, t)
    req = plain.authn_request("redirect", force_authn=True)
    resp = browser.login(browser.send(req), "alice", PASSWORD)
    form = saml_form(resp)
    assert form is not None, "a plain app needs the password only"
    res = plain.process_response(form.saml_response, req.request_id)
    assert res.authn_context == PPT
    db.session.expire_all()
    live = db.session.query(IdpSession).filter(IdpSession.ended_at.is_(None)).one()
    assert live.mfa_at is None
    # single logout still reaches both apps: their participation moved to the new session
    parts = db.session.query(SessionParticipant).all()
    assert len(parts) == 2 and {p.session_id for p in parts} == {live.id}
    # and the MFA app asks for the second factor again on the re-authenticated session
    req = secure.authn_request("redirect")
    resp = browser.send(req)
    assert saml_form(resp) is None and 'name="code"' in resp.get_data(as_text=True)


# ------------------------------------------------------------------ hole 2: a factor change ends MFA sessions

def live_sessions() -> list[IdpSession]:
    db.session.expire_all()
    return db.session.query(IdpSession).filter(IdpSession.ended_at.is_(None)).all()


def no_mfa_assertion(browser: Browser, sp) -> str:  # type: ignore[no-untyped-def]
    """The browser's next SSO to the MFA app yields no assertion; returns the page it got instead."""
    resp = browser.send(sp.authn_request("redirect"))
    assert saml_form(resp) is None, "an assertion after the factor was reset"
    return resp.get_data(as_text=True)


def test_cli_mfa_reset_ends_mfa_sessions(app, make_sp, browser, alice):
    sp = make_sp("pysaml2")
    set_policy(sp, require_mfa=True)
    mfa_login(browser, sp, enrol(alice))
    r = app.test_cli_runner().invoke(args=["users", "mfa-reset", "alice"])
    assert r.exit_code == 0, r.output
    body = no_mfa_assertion(browser, sp)
    assert 'name="password"' in body, "sent to sign in again"
    assert live_sessions() == [] and "1 session(s) ended" in r.output


def admin_browser(app) -> Browser:  # type: ignore[no-untyped-def]
    """A second admin, signed in to the console in a browser of their own."""
    from .test_admin_console import ADMIN_PASSWORD
    pw = app.extensions["idp.passwords"]
    root = users_svc.add_user("root", email="root@example.com", password_hash=pw.hash(ADMIN_PASSWORD), is_admin=True)
    enrol_totp(root)  # the console needs the second factor
    b = Browser(app.test_client())
    login_admin(b.client, "root", ADMIN_PASSWORD)
    return b


def post_form(b: Browser, page: str, action: str, data: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    m = re.search(r'name="csrf_token" value="([^"]+)"', b.get(page).get_data(as_text=True))
    assert m, f"no form on {page}"
    return b.client.post(action, data={"csrf_token": m.group(1), **(data or {})})


def test_console_mfa_reset_ends_mfa_sessions(app, make_sp, browser, alice):
    sp = make_sp("onelogin")
    set_policy(sp, require_mfa=True)
    t = enrol(alice)
    mfa_login(browser, sp, t)
    other = Browser(app.test_client())
    other.login(other.get("/login"), "alice", PASSWORD)
    admin = admin_browser(app)
    resp = post_form(admin, "/admin/users/alice/mfa-reset", "/admin/users/alice/mfa-reset")
    assert resp.status_code == 303
    assert [s.user.username for s in live_sessions()] == ["root"], "every session of alice ended"
    assert 'name="password"' in no_mfa_assertion(browser, sp)
    assert other.client.get("/").status_code == 302


def test_own_mfa_reset_clears_assurance_of_current_session(app, make_sp, browser, alice):
    sp = make_sp("pysaml2")
    set_policy(sp, require_mfa=True)
    t = enrol(alice)
    mfa_login(browser, sp, t)
    other = Browser(app.test_client())
    other.login(other.get("/login"), "alice", PASSWORD)
    assert len(live_sessions()) == 2
    resp = post_form(browser, "/account", "/account/mfa/reset", {"code": code_for(t, 1)})
    assert resp.status_code == 303
    (kept,) = live_sessions()
    assert kept.mfa_at is None, "the session that stays is no longer multi-factor"
    assert browser.client.get("/account").status_code == 200, "still signed in here"
    assert other.client.get("/").status_code == 302, "signed out elsewhere"
    body = no_mfa_assertion(browser, sp)
    assert 'name="password"' not in body, "the session lives on; the MFA app asks for a second factor"


def test_new_enrolment_ends_every_session(app, browser, alice):
    from idp.services import org
    org.add_trusted_range("127.0.0.0/8")
    other = Browser(app.test_client())
    other.login(other.get("/login"), "alice", PASSWORD)
    page = browser.login(browser.get("/mfa/enroll"), "alice", PASSWORD)
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page.get_data(as_text=True)).group(1)  # type: ignore[union-attr]
    resp = submit_code(browser, page, pyotp.TOTP(secret).now(), path="/mfa/enroll")
    assert resp.status_code == 200 and 'id="mfa-enrolled"' in resp.get_data(as_text=True)
    assert live_sessions() == [], "a first enrolment ends every session, the enrolling one too"
    assert other.client.get("/").status_code == 302, "the session from before the enrolment ended"
    assert browser.client.get("/account").status_code == 302, "sign in again with the new factor"


def test_cli_mfa_enroll_ends_sessions(app, browser, alice):
    browser.login(browser.get("/login"), "alice", PASSWORD)
    r = app.test_cli_runner().invoke(args=["users", "mfa-enroll", "alice"])
    assert r.exit_code == 0 and r.output.startswith("otpauth://")
    assert live_sessions() == []
