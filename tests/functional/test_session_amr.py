"""How the user signed in (RFC 8176 amr) on the session and in the assertion, and apps that require a passkey
(phishing-resistant sign-in): a password, a TOTP or a recovery code never gets an assertion for them."""

from __future__ import annotations

import re

import pytest

from idp.extensions import db
from idp.models import IdpSession, SsoEvent, utcnow
from idp.services import apps as apps_svc

from ..webclient import Browser, saml_form
from .conftest import PASSWORD, last_event
from .test_policy_flows import MFA_CLASS, PPT, code_for, enrol, set_policy, submit_code

AMR = "amr"    # the SAML attribute name the test apps release the methods under


def live_session() -> IdpSession:
    db.session.expire_all()
    return db.session.query(IdpSession).filter(IdpSession.ended_at.is_(None)).one()


def release_amr(sp) -> None:  # type: ignore[no-untyped-def]
    apps_svc.change_settings(apps_svc.get_app(sp.slug), attributes={AMR: "amr", "mail": "email"})
    db.session.commit()


def as_passkey_session(amr: str) -> IdpSession:
    """What the passkey routes leave behind (they come with the passkeys branch): the browser's live session now
    records a passkey sign-in."""
    s = live_session()
    s.amr, s.mfa_at = amr, utcnow()
    db.session.commit()
    return s


# ------------------------------------------------------------------ amr on the session and in the assertion

@pytest.mark.parametrize("kind", ["pysaml2", "onelogin"])
def test_password_sign_in_records_and_releases_pwd(make_sp, browser, alice, kind):
    sp = make_sp(kind)
    release_amr(sp)
    req = sp.authn_request("redirect")
    res = sp.process_response(saml_form(browser.sso(req, "alice", PASSWORD)).saml_response, req.request_id)
    assert res.attributes[AMR] == ["pwd"] and res.authn_context == PPT
    s = live_session()
    assert s.amr == "pwd" and s.mfa_at is None


@pytest.mark.parametrize("kind", ["pysaml2", "onelogin"])
def test_totp_sign_in_records_and_releases_pwd_otp_mfa(make_sp, browser, alice, kind):
    sp = make_sp(kind)
    release_amr(sp)
    set_policy(sp, require_mfa=True)
    t = enrol(alice)
    req = sp.authn_request("redirect")
    resp = browser.sso(req, "alice", PASSWORD)
    form = saml_form(submit_code(browser, resp, code_for(t)))
    assert form is not None
    res = sp.process_response(form.saml_response, req.request_id)
    assert res.attributes[AMR] == ["pwd", "otp", "mfa"], "multi-valued, in the fixed order"
    assert res.authn_context == MFA_CLASS
    s = live_session()
    assert s.amr == "pwd otp mfa" and s.mfa_at is not None


def test_force_authn_with_password_only_records_pwd_only(make_sp, browser, alice):
    secure, plain = make_sp("pysaml2"), make_sp("onelogin")
    set_policy(secure, require_mfa=True)
    release_amr(plain)
    t = enrol(alice)
    req = secure.authn_request("redirect")
    assert saml_form(submit_code(browser, browser.sso(req, "alice", PASSWORD), code_for(t))) is not None
    assert live_session().amr == "pwd otp mfa"
    req = plain.authn_request("redirect", force_authn=True)
    form = saml_form(browser.login(browser.send(req), "alice", PASSWORD))
    assert form is not None
    res = plain.process_response(form.saml_response, req.request_id)
    assert res.attributes[AMR] == ["pwd"], "only what was re-proved now: no otp, no mfa"
    assert res.authn_context == PPT
    s = live_session()
    assert s.amr == "pwd" and s.mfa_at is None


def test_idp_initiated_launch_releases_amr(make_sp, browser, alice):
    sp = make_sp("onelogin")
    release_amr(sp)
    form = saml_form(browser.sso_path(f"/apps/{sp.slug}/sso", "alice", PASSWORD))
    assert form is not None
    assert sp.process_response(form.saml_response, None).attributes[AMR] == ["pwd"]


def test_amr_attribute_source_from_the_cli(app, make_sp, browser, alice):
    sp = make_sp("pysaml2")
    r = app.test_cli_runner().invoke(args=["apps", "set", sp.slug, "--attribute", "amr=amr"])
    assert r.exit_code == 0, r.output
    assert apps_svc.AppSettings.from_dict(apps_svc.get_app(sp.slug).settings).attributes == {"amr": "amr"}
    r = app.test_cli_runner().invoke(args=["apps", "set", sp.slug, "--attribute", "amr=acr"])
    assert r.exit_code != 0 and "amr" in r.output, "unknown sources are refused; the message lists amr"


def test_factor_reset_drops_the_methods_of_the_kept_session(app, browser, alice):
    from idp.services import accounts

    browser.login(browser.get("/login"), "alice", PASSWORD)
    s = as_passkey_session("pwd hwk mfa")
    accounts.end_sessions_for_factor_change(alice, keep_session=s.id)
    db.session.commit()
    s = live_session()
    assert s.amr == "pwd" and s.mfa_at is None


# ------------------------------------------------------------------ apps that require a passkey

def phishing_resistant_app(make_sp, kind="pysaml2"):  # type: ignore[no-untyped-def]
    sp = make_sp(kind)
    set_policy(sp, require_phishing_resistant=True)
    db.session.commit()
    settings = apps_svc.AppSettings.from_dict(apps_svc.get_app(sp.slug).settings)
    assert settings.require_phishing_resistant and settings.require_mfa, "phishing-resistant implies MFA"
    return sp


def assert_passkey_missing_page(resp) -> SsoEvent:  # type: ignore[no-untyped-def]
    body = resp.get_data(as_text=True)
    assert resp.status_code == 403, body[:300]
    assert saml_form(resp) is None and "SAMLResponse" not in body
    assert "This app requires a passkey or security key" in body and 'id="passkey-missing"' in body
    assert 'name="code"' not in body, "no TOTP offered"
    ev = last_event()
    assert (ev.outcome, ev.reason, ev.username) == ("denied", "phishing_resistant_required", "alice")
    assert f">{ev.id}</code>" in body
    return ev


@pytest.mark.parametrize("kind", ["pysaml2", "onelogin"])
def test_phishing_resistant_app_refuses_a_totp_user_sp_initiated(make_sp, browser, alice, kind):
    sp = phishing_resistant_app(make_sp, kind)
    t = enrol(alice)
    resp = browser.sso(sp.authn_request("redirect"), "alice", PASSWORD)
    ev = assert_passkey_missing_page(resp)
    assert ev.app_slug == sp.slug
    # the attacker (or the user) posts a valid TOTP code anyway, with the parked request
    m = re.search(r"request=([^&\"]+)", browser.last.request.url if browser.last else "")  # type: ignore[union-attr]
    assert m, "the /mfa page carries the parked request"
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/login").get_data(as_text=True))
    assert csrf
    resp = browser.follow(browser.client.post("/mfa", data={"csrf_token": csrf.group(1), "code": code_for(t),
                                                            "request": m.group(1), "next": "/"}))
    assert resp.status_code == 403 and saml_form(resp) is None
    assert db.session.query(IdpSession).filter(IdpSession.ended_at.is_(None)).count() == 0, "no session opened"
    assert not [e for e in db.session.query(SsoEvent).all() if e.reason == "ok"], "no assertion issued"


def test_phishing_resistant_app_refuses_an_existing_totp_session(make_sp, browser, alice):
    mfa_app, pr_app = make_sp("pysaml2"), phishing_resistant_app(make_sp, "onelogin")
    set_policy(mfa_app, require_mfa=True)
    t = enrol(alice)
    assert saml_form(submit_code(browser, browser.sso(mfa_app.authn_request("redirect"), "alice", PASSWORD),
                                 code_for(t))) is not None
    assert live_session().amr == "pwd otp mfa"
    assert_passkey_missing_page(browser.send(pr_app.authn_request("redirect")))
    assert_passkey_missing_page(browser.get(f"/apps/{pr_app.slug}/sso")), "IdP-initiated too"
    assert live_session().amr == "pwd otp mfa", "the session is untouched"


def test_phishing_resistant_app_refuses_a_password_only_user(make_sp, browser, alice):
    sp = phishing_resistant_app(make_sp)
    assert_passkey_missing_page(browser.sso(sp.authn_request("redirect"), "alice", PASSWORD))


def test_phishing_resistant_app_with_block_denies_totp(make_sp, browser, alice):
    sp = phishing_resistant_app(make_sp)
    set_policy(sp, mfa_action="block")
    t = enrol(alice)
    other = make_sp("onelogin")
    set_policy(other, require_mfa=True)
    assert saml_form(submit_code(browser, browser.sso(other.authn_request("redirect"), "alice", PASSWORD),
                                 code_for(t))) is not None
    resp = browser.send(sp.authn_request("redirect"))
    assert resp.status_code == 403 and saml_form(resp) is None
    assert last_event().reason == "phishing_resistant_required"


def test_a_user_with_a_passkey_sees_no_code_form_and_a_code_is_refused(app, make_sp, browser, alice):
    from idp.services import org

    from ..passkey_authenticator import SoftAuthenticator
    from .test_passkeys import password_login, register
    org.add_trusted_range("127.0.0.0/8")   # alice registers a passkey as her first factor (trusted range)
    db.session.commit()
    c = app.test_client()
    password_login(c)
    assert register(c, SoftAuthenticator()).status_code == 201
    sp = phishing_resistant_app(make_sp)
    t = enrol(alice)
    resp = browser.sso(sp.authn_request("redirect"), "alice", PASSWORD)
    body = resp.get_data(as_text=True)
    assert resp.status_code == 200 and 'id="passkey-required"' in body
    assert "This app requires a passkey or security key" in body and 'name="code"' not in body
    m = re.search(r"request=([^&\"]+)", browser.last.request.url)  # type: ignore[union-attr]
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/login").get_data(as_text=True))
    resp = browser.follow(browser.client.post("/mfa", data={"csrf_token": csrf.group(1),  # type: ignore[union-attr]
                                                            "code": code_for(t), "request": m.group(1),  # type: ignore[union-attr]
                                                            "next": "/"}))
    assert resp.status_code == 403 and saml_form(resp) is None
    assert "a code is not accepted" in resp.get_data(as_text=True)
    assert last_event().reason == "phishing_resistant_required"


@pytest.mark.parametrize("kind", ["pysaml2", "onelogin"])
@pytest.mark.parametrize("methods", ["pwd hwk mfa", "swk mfa"])
def test_passkey_session_gets_in_with_the_refeds_mfa_context(make_sp, browser, alice, kind, methods):
    sp = phishing_resistant_app(make_sp, kind)
    release_amr(sp)
    browser.login(browser.get("/login"), "alice", PASSWORD)
    as_passkey_session(methods)
    req = sp.authn_request("redirect")
    form = saml_form(browser.send(req))
    assert form is not None, "a passkey session satisfies the app"
    res = sp.process_response(form.saml_response, req.request_id)
    assert res.authn_context == MFA_CLASS
    assert res.attributes[AMR] == methods.split()


def test_cli_sets_shows_and_explains_phishing_resistant(app, make_sp, alice):
    sp = make_sp("pysaml2", slug="payroll")
    runner = app.test_cli_runner()
    r = runner.invoke(args=["apps", "set", "payroll", "--require-phishing-resistant"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(args=["apps", "show", "payroll"])
    assert "require_phishing_resistant: True" in r.output and "require_mfa: True" in r.output
    r = runner.invoke(args=["apps", "set", "payroll", "--no-require-mfa"])
    assert r.exit_code != 0 and "phishing-resistant" in r.output
    r = runner.invoke(args=["access", "check", "--user", "alice", "--app", "payroll", "--mfa"])
    assert r.exit_code == 0 and "STEP-UP (passkey or security key required)" in r.output
    assert "phishing_resistant_required" in r.output
    r = runner.invoke(args=["access", "check", "--user", "alice", "--app", "payroll", "--passkey"])
    assert "ALLOW" in r.output and MFA_CLASS in r.output
    r = runner.invoke(args=["apps", "set", "payroll", "--no-require-phishing-resistant", "--no-require-mfa"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(args=["access", "check", "--user", "alice", "--app", "payroll"])
    assert "ALLOW" in r.output
    assert sp is not None


def admin_with_mfa(app) -> Browser:  # type: ignore[no-untyped-def]
    """An admin in the console after a TOTP step-up (the console may require it)."""
    from idp.services import users as users_svc

    from .test_admin_console import ADMIN_PASSWORD
    pw = app.extensions["idp.passwords"]
    admin = users_svc.add_user("root", email="root@example.com", password_hash=pw.hash(ADMIN_PASSWORD),
                               is_admin=True)
    t = enrol(admin)
    b = Browser(app.test_client())
    b.login(b.get("/login"), "root", ADMIN_PASSWORD)
    page = b.get("/mfa?next=/admin/apps")
    if 'name="code"' in page.get_data(as_text=True):
        submit_code(b, page, code_for(t))
    return b


def test_console_sets_phishing_resistant_and_the_access_check_explains(app, make_sp, alice):
    from .test_admin_apps import policy_form

    sp = make_sp("onelogin", slug="payroll")
    admin = admin_with_mfa(app)
    page = admin.get("/admin/apps/payroll")
    body = page.get_data(as_text=True)
    assert 'id="require_phishing_resistant"' in body
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', body).group(1)  # type: ignore[union-attr]
    resp = admin.client.post("/admin/apps/payroll/policy", data={"csrf_token": csrf, **policy_form(
        permitted="all", allow_groups=None, ip_policy="relax", ip_ranges="", require_mfa=None, session_timeout="",
        require_phishing_resistant="1")})
    assert resp.status_code == 303, resp.get_data(as_text=True)[:500]
    db.session.expire_all()
    s = apps_svc.AppSettings.from_dict(apps_svc.get_app("payroll").settings)
    assert s.require_phishing_resistant and s.require_mfa
    assert "passkey or security key" in admin.get("/admin/apps/payroll").get_data(as_text=True)
    page = admin.get("/admin/access").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    resp = admin.client.post("/admin/access", data={"csrf_token": csrf, "username": "alice", "app": "payroll",
                                                    "mfa": "1"})
    body = resp.get_data(as_text=True)
    assert "Passkey or security key required" in body and "phishing_resistant_required" in body
    resp = admin.client.post("/admin/access", data={"csrf_token": csrf, "username": "alice", "app": "payroll",
                                                    "passkey": "1"})
    assert "Allowed" in resp.get_data(as_text=True)
    assert sp is not None
