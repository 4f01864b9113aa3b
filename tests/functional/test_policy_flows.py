"""Per-app access policies end to end: each outcome with an independent SP, no assertion on denial, event rows."""

from __future__ import annotations

import base64
import re
import time
from datetime import timedelta

import pyotp
import pytest

from idp.auth import totp
from idp.cli import app_flags
from idp.extensions import db
from idp.models import IdpSession, SsoEvent, utcnow
from idp.services import apps as apps_svc
from idp.services import org
from idp.services import users as users_svc

from ..webclient import Browser, continuation, saml_form
from .conftest import PASSWORD, last_event

MFA_CLASS = "https://refeds.org/profile/mfa"
PPT = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"


def set_policy(sp, **kw):  # type: ignore[no-untyped-def]
    app = apps_svc.get_app(sp.slug)
    changes = app_flags.policy_changes(apps_svc.AppSettings.from_dict(app.settings), **kw)
    apps_svc.change_settings(app, **changes)


def enrol(user) -> pyotp.TOTP:  # type: ignore[no-untyped-def]
    secret = totp.start_enrolment(user)
    user.totp_confirmed = True
    db.session.commit()
    return pyotp.TOTP(secret)


def code_for(t: pyotp.TOTP, offset_steps: int = 0) -> str:
    return t.at(time.time() + 30 * offset_steps)


def submit_code(browser: Browser, resp, code: str, path: str = "/mfa"):  # type: ignore[no-untyped-def]
    body = resp.get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', body).group(1)
    return browser.follow(browser.client.post(path, data={"csrf_token": token, "code": code, **continuation(body)}))


def denied_page(resp, reason):  # type: ignore[no-untyped-def]
    body = resp.get_data(as_text=True)
    assert resp.status_code == 403, body[:300]
    assert saml_form(resp) is None and "SAMLResponse" not in body
    ev = last_event()
    assert (ev.outcome, ev.reason) == ("denied", reason)
    assert f">{ev.id}</code>" in body
    assert "policy" in ev.detail and ev.detail["policy"]["explanation"]
    return ev


@pytest.mark.parametrize("kind", ["pysaml2", "onelogin"])
def test_admin_approved_groups_and_assignments(make_sp, app, alice, bob, kind):
    sp = make_sp(kind)
    set_policy(sp, permitted="admin-approved", allow_groups=["engineering"])
    a, b = Browser(app.test_client()), Browser(app.test_client())
    req = sp.authn_request("redirect")
    assert sp.process_response(saml_form(a.sso(req, "alice", PASSWORD)).saml_response, req.request_id)
    ev = denied_page(b.sso(sp.authn_request("redirect"), "bob", PASSWORD), "user_not_permitted")
    assert ev.detail["policy"]["check"] == "permitted_users" and ev.username == "bob"
    set_policy(sp, assign_users=["bob"])
    req = sp.authn_request("redirect")
    assert sp.process_response(saml_form(b.send(req)).saml_response, req.request_id).name_id == "bob"


def test_deny_group_and_idp_initiated_launch_use_the_same_engine(make_sp, browser, alice):
    sp = make_sp("onelogin")
    set_policy(sp, deny_groups=["engineering"])
    resp = browser.get(f"/apps/{sp.slug}/sso")
    resp = browser.login(resp, "alice", PASSWORD)
    ev = denied_page(resp, "user_not_permitted")
    assert ev.initiated_by == "idp"


def test_ip_enforce_ignores_spoofed_forwarded_for_without_trusted_proxies(make_sp, browser, alice):
    sp = make_sp("pysaml2")
    set_policy(sp, ip_policy="enforce", ip_ranges=["10.0.0.0/8"])
    browser.client.environ_base["HTTP_X_FORWARDED_FOR"] = "10.1.2.3"
    resp = browser.sso(sp.authn_request("redirect"), "alice", PASSWORD)
    ev = denied_page(resp, "ip_not_allowed")
    assert ev.client_ip == "127.0.0.1"
    assert ev.detail["policy"]["inputs"]["matched_range"] is None


def test_org_trusted_range_allows(make_sp, browser, alice):
    sp = make_sp("pysaml2")
    set_policy(sp, ip_policy="enforce")
    org.add_trusted_range("127.0.0.0/8")
    req = sp.authn_request("redirect")
    assert saml_form(browser.sso(req, "alice", PASSWORD)) is not None
    org.remove_trusted_range("127.0.0.0/8")
    org.add_trusted_range("10.0.0.0/8")
    denied_page(browser.send(sp.authn_request("redirect")), "ip_not_allowed")


@pytest.fixture
def proxied_app(tmp_path, key_template):  # type: ignore[no-untyped-def]
    from idp import create_app

    from ..conftest import IsolatedClient, make_settings, reset_backends
    s = make_settings(tmp_path, key_template, trusted_proxies=1)
    flask_app = create_app(s, TESTING=True)
    flask_app.test_client_class = IsolatedClient
    with flask_app.app_context():
        reset_backends(flask_app)
        yield flask_app
        db.session.remove()
        db.drop_all()
        db.engine.dispose()


def test_ip_from_one_trusted_proxy(proxied_app, tmp_path, sp_keys):
    from ..sp_harness import OneLoginSP
    client = proxied_app.test_client()
    pw = proxied_app.extensions["idp.passwords"]
    users_svc.add_user("carol", email="carol@example.com", password_hash=pw.hash(PASSWORD))
    md = client.get("/saml/metadata").get_data(as_text=True)
    sp = OneLoginSP(tmp_path / "sp", md, keypair=sp_keys["sp1"])
    sp.slug = apps_svc.register_app(sp.metadata_xml().encode(), slug="proxied").slug  # type: ignore[attr-defined]
    set_policy(sp, ip_policy="enforce", ip_ranges=["198.51.100.0/24"])
    b = Browser(client)
    # the proxy appends the real client; anything further left was sent by the client and is ignored
    client.environ_base["HTTP_X_FORWARDED_FOR"] = "198.51.100.9, 203.0.113.5"
    denied_page(b.sso(sp.authn_request("redirect"), "carol", PASSWORD), "ip_not_allowed")
    client.environ_base["HTTP_X_FORWARDED_FOR"] = "203.0.113.5, 198.51.100.9"
    req = sp.authn_request("redirect")
    assert sp.process_response(saml_form(b.send(req)).saml_response, req.request_id).name_id == "carol"
    assert last_event().client_ip == "198.51.100.9"


@pytest.mark.parametrize("kind", ["pysaml2", "onelogin"])
def test_relax_with_mfa_outside_range_steps_up_then_succeeds(make_sp, browser, alice, kind):
    sp = make_sp(kind)
    set_policy(sp, ip_policy="relax-with-mfa", ip_ranges=["10.0.0.0/8"])
    t = enrol(alice)
    req = sp.authn_request("post")
    resp = browser.sso(req, "alice", PASSWORD)
    assert 'name="code"' in resp.get_data(as_text=True), "outside the range the second factor is asked"
    assert db.session.query(IdpSession).count() == 0, "only a pending user until the second factor passes"
    form = saml_form(submit_code(browser, resp, code_for(t)))
    assert form is not None
    res = sp.process_response(form.saml_response, req.request_id)
    assert res.authn_context == MFA_CLASS
    assert last_event().detail["policy"]["check"] == "authn_context"


def test_require_mfa_step_up_for_existing_session_renews_session(make_sp, browser, alice):
    plain, secure = make_sp("onelogin"), make_sp("onelogin")
    set_policy(secure, require_mfa=True)
    t = enrol(alice)
    r1 = plain.authn_request("redirect")
    res1 = plain.process_response(saml_form(browser.sso(r1, "alice", PASSWORD)).saml_response, r1.request_id)
    assert res1.authn_context == PPT
    before = db.session.query(IdpSession).one().id
    r2 = secure.authn_request("redirect")
    resp = browser.send(r2)
    assert 'name="code"' in resp.get_data(as_text=True)
    form = saml_form(submit_code(browser, resp, code_for(t)))
    assert secure.process_response(form.saml_response, r2.request_id).authn_context == MFA_CLASS
    db.session.expire_all()
    live = db.session.query(IdpSession).filter(IdpSession.ended_at.is_(None)).one()
    assert live.id != before and live.mfa_at is not None


def test_wrong_code_reprompts_and_is_logged_then_same_request_succeeds(make_sp, browser, alice):
    sp = make_sp("pysaml2")
    set_policy(sp, require_mfa=True)
    t = enrol(alice)
    req = sp.authn_request("redirect")
    resp = browser.sso(req, "alice", PASSWORD)
    resp = submit_code(browser, resp, "000000" if code_for(t) != "000000" else "111111")
    assert resp.status_code == 401 and 'name="code"' in resp.get_data(as_text=True)
    ev = last_event()
    assert (ev.reason, ev.outcome, ev.app_slug, ev.request_id) == ("mfa_failed", "denied", sp.slug, req.request_id)
    form = saml_form(submit_code(browser, resp, code_for(t)))
    assert sp.process_response(form.saml_response, req.request_id).name_id == "alice"


def test_totp_code_cannot_be_replayed_across_sessions(make_sp, app, alice):
    sp = make_sp("onelogin")
    set_policy(sp, require_mfa=True)
    t = enrol(alice)
    code = code_for(t)
    a, b = Browser(app.test_client()), Browser(app.test_client())
    ra = a.sso(sp.authn_request("redirect"), "alice", PASSWORD)
    rb = b.sso(sp.authn_request("redirect"), "alice", PASSWORD)
    assert saml_form(submit_code(a, ra, code)) is not None
    replay = submit_code(b, rb, code)
    assert replay.status_code == 401 and saml_form(replay) is None


def test_mfa_attempts_are_throttled(make_sp, browser, alice):
    sp = make_sp("onelogin")
    set_policy(sp, require_mfa=True)
    t = enrol(alice)
    good = code_for(t)
    resp = browser.sso(sp.authn_request("redirect"), "alice", PASSWORD)
    wrong = "123456" if good != "123456" else "654321"
    for _ in range(5):
        resp = submit_code(browser, resp, wrong)
    resp = submit_code(browser, resp, good)
    assert resp.status_code == 429 and "Wait" in resp.get_data(as_text=True)
    assert saml_form(resp) is None


def test_block_mode_denies_without_prompt(make_sp, browser, alice):
    sp = make_sp("pysaml2")
    set_policy(sp, require_mfa=True, mfa_action="block")
    enrol(alice)
    denied_page(browser.sso(sp.authn_request("redirect"), "alice", PASSWORD), "mfa_required")


def test_not_enrolled_user_enrols_from_a_trusted_range_then_signs_in_again(make_sp, browser, alice):
    """Self-enrolment (from the org's trusted ranges, the default mode) never completes the SSO it was needed for:
    the user signs in again with the password and the new factor (issue 13, hole 1)."""
    sp = make_sp("onelogin")
    set_policy(sp, require_mfa=True)
    org.add_trusted_range("127.0.0.0/8")
    req = sp.authn_request("redirect")
    resp = browser.sso(req, "alice", PASSWORD)
    body = resp.get_data(as_text=True)
    assert 'id="enroll-now"' in body
    href = re.search(r'id="enroll-now" href="([^"]+)"', body).group(1).replace("&amp;", "&")
    page = browser.get(href)
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page.get_data(as_text=True)).group(1)
    assert "<svg" in page.get_data(as_text=True)
    done = submit_code(browser, page, pyotp.TOTP(secret).now(), path="/mfa/enroll")
    assert saml_form(done) is None and 'id="mfa-enrolled"' in done.get_data(as_text=True)
    codes = re.findall(r"<li><code>[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{2}</code></li>", done.get_data(as_text=True))
    assert len(codes) == 10
    again = re.search(r'id="sign-in-again" href="([^"]+)"', done.get_data(as_text=True)).group(1).replace("&amp;", "&")
    resp = browser.login(browser.get(again), "alice", PASSWORD)
    assert 'name="code"' in resp.get_data(as_text=True)
    form = saml_form(submit_code(browser, resp, code_for(pyotp.TOTP(secret), 1)))
    assert form is not None
    assert sp.process_response(form.saml_response, req.request_id).authn_context == MFA_CLASS


def test_not_enrolled_without_self_enrolment_is_told_to_contact_admin(make_sp, browser, alice):
    sp = make_sp("onelogin")
    set_policy(sp, require_mfa=True)
    org.add_trusted_range("127.0.0.0/8")
    org.set_mfa_self_enroll(False)
    resp = browser.sso(sp.authn_request("redirect"), "alice", PASSWORD)
    assert resp.status_code == 403 and 'id="enrolment-refused"' in resp.get_data(as_text=True)
    assert last_event().reason == "enrolment_refused" and last_event().detail["refusal"] == "self_enrol_off"
    assert browser.get("/mfa/enroll").status_code == 403  # the same explanation, enrols nothing
    db.session.expire_all()
    assert users_svc.get_user("alice").totp_secret is None


def test_session_timeout_forces_reauthentication(make_sp, browser, alice):
    sp = make_sp("pysaml2")
    set_policy(sp, session_timeout=5)
    req = sp.authn_request("redirect")
    form = saml_form(browser.sso(req, "alice", PASSWORD))
    root = base64.b64decode(form.saml_response).decode()
    assert "SessionNotOnOrAfter" in root
    s = db.session.query(IdpSession).one()
    s.authn_at = utcnow() - timedelta(minutes=10)
    db.session.commit()
    resp = browser.send(sp.authn_request("redirect"))
    assert saml_form(resp) is None and 'name="password"' in resp.get_data(as_text=True)
    req = sp.authn_request("redirect")
    resp = browser.send(req)
    form = saml_form(browser.login(resp, "alice", PASSWORD))
    assert sp.process_response(form.saml_response, req.request_id).name_id == "alice"


def test_requested_mfa_context_steps_up(make_sp, browser, alice):
    sp = make_sp("onelogin")
    t = enrol(alice)
    req = sp.authn_request("redirect", requested_authn_context=("minimum", [MFA_CLASS]))
    resp = browser.sso(req, "alice", PASSWORD)
    form = saml_form(submit_code(browser, resp, code_for(t)))
    assert sp.process_response(form.saml_response, req.request_id).authn_context == MFA_CLASS


@pytest.mark.parametrize("comparison,refs,expected", [
    ("exact", [PPT], PPT),
    ("minimum", ["urn:oasis:names:tc:SAML:2.0:ac:classes:Password"], PPT),
    ("maximum", [PPT], PPT),
])
def test_requested_context_comparisons(make_sp, browser, alice, comparison, refs, expected):
    sp = make_sp("onelogin")
    req = sp.authn_request("redirect", requested_authn_context=(comparison, refs))
    form = saml_form(browser.sso(req, "alice", PASSWORD))
    assert sp.process_response(form.saml_response, req.request_id).authn_context == expected


def test_is_passive_with_step_up_needed_returns_no_passive(make_sp, browser, alice):
    sp = make_sp("onelogin")
    set_policy(sp, require_mfa=True)
    enrol(alice)
    saml_form(browser.sso(make_sp("onelogin").authn_request("redirect"), "alice", PASSWORD))
    form = saml_form(browser.send(sp.authn_request("redirect", is_passive=True)))
    assert form is not None and "NoPassive" in base64.b64decode(form.saml_response).decode()


def test_launcher_shows_only_permitted_apps(make_sp, browser, alice, bob):
    make_sp("onelogin", slug="open-app")
    closed_app = make_sp("onelogin", slug="closed-app")
    set_policy(closed_app, permitted="admin-approved", allow_groups=["engineering"])
    b = Browser(browser.client.application.test_client())
    resp = b.login(b.get("/login"), "bob", PASSWORD)
    body = b.get("/").get_data(as_text=True)
    assert 'data-slug="open-app"' in body and 'data-slug="closed-app"' not in body
    resp = browser.login(browser.get("/login"), "alice", PASSWORD)
    body = browser.get("/").get_data(as_text=True)
    assert 'data-slug="open-app"' in body and 'data-slug="closed-app"' in body
    assert resp is not None


def test_access_check_cli(app, make_sp, alice, bob):
    sp = make_sp("pysaml2", slug="workday")
    set_policy(sp, permitted="admin-approved", allow_groups=["engineering"], ip_policy="relax-with-mfa",
               ip_ranges=["10.0.0.0/8"])
    runner = app.test_cli_runner()
    r = runner.invoke(args=["access", "check", "--user", "bob", "--app", "workday"])
    assert r.exit_code == 0 and "DENY" in r.output and "permitted_users" in r.output
    r = runner.invoke(args=["access", "check", "--user", "alice", "--app", "workday", "--ip", "192.0.2.1"])
    assert "STEP-UP" in r.output and "outside the trusted ranges" in r.output
    r = runner.invoke(args=["access", "check", "--user", "alice", "--app", "workday", "--ip", "192.0.2.1", "--mfa"])
    assert "ALLOW" in r.output
    r = runner.invoke(args=["access", "check", "--user", "alice", "--app", "workday", "--ip", "10.2.3.4",
                            "--format", "json"])
    assert '"decision": "allow"' in r.output
    r = runner.invoke(args=["access", "check", "--user", "nobody", "--app", "workday"])
    assert r.exit_code != 0 and "no user" in r.output
    assert db.session.query(SsoEvent).count() == 0, "a dry run issues and records nothing"


def test_policy_cli_options(app, make_sp, alice):
    make_sp("pysaml2", slug="crm")
    runner = app.test_cli_runner()
    r = runner.invoke(args=["apps", "set", "crm", "--permitted", "admin-approved", "--allow-group", "engineering",
                            "--ip-policy", "enforce", "--ip-range", "10.0.0.0/8", "--ip-range", "2001:db8::/32",
                            "--require-mfa", "--mfa-action", "block", "--session-timeout", "30"])
    assert r.exit_code == 0, r.output
    s = apps_svc.AppSettings.from_dict(apps_svc.get_app("crm").settings)
    assert (s.permitted, s.allow_groups, s.ip_policy, s.ip_ranges, s.require_mfa, s.mfa_action,
            s.session_timeout) == ("admin-approved", ("engineering",), "enforce", ("10.0.0.0/8", "2001:db8::/32"),
                                   True, "block", 30)
    for bad in (["--allow-group", "nope"], ["--ip-range", "10.0.0.1/8"], ["--assign-user", "ghost"]):
        r = runner.invoke(args=["apps", "set", "crm", *bad])
        assert r.exit_code != 0 and "Traceback" not in r.output
    db.session.expire_all()
    assert apps_svc.AppSettings.from_dict(apps_svc.get_app("crm").settings).ip_ranges == ("10.0.0.0/8",
                                                                                          "2001:db8::/32")
    r = runner.invoke(args=["apps", "set", "crm", "--clear-ip-ranges", "--session-timeout", "0", "--no-require-mfa"])
    db.session.expire_all()
    s = apps_svc.AppSettings.from_dict(apps_svc.get_app("crm").settings)
    assert (s.ip_ranges, s.session_timeout, s.require_mfa) == ((), None, False)
    r = runner.invoke(args=["org", "ip-ranges", "add", "192.0.2.0/24"])
    assert r.exit_code == 0
    r = runner.invoke(args=["org", "ip-ranges", "list"])
    assert "192.0.2.0/24" in r.output
    r = runner.invoke(args=["org", "ip-ranges", "add", "bogus"])
    assert r.exit_code != 0
    r = runner.invoke(args=["users", "mfa-enroll", "alice"])
    assert r.output.startswith("otpauth://totp/")
    r = runner.invoke(args=["users", "mfa-enroll", "alice"])
    assert r.exit_code != 0
    r = runner.invoke(args=["users", "mfa-reset", "alice"])
    assert r.exit_code == 0
    db.session.expire_all()
    assert not totp.is_enrolled(users_svc.get_user("alice"))
