"""Account security changes need a RECENT second factor, and a step-up asserts only what it proved (issue 13 review,
items 1, 5, 6 and 7).

The attacker has alice's password (and, for the ForceAuthn case, a signed-in browser and a code), nothing else.
Before the fix: a password-only session changed the password of a user with a factor (locking her out) and renamed
her passkeys; a second factor passed hours ago in the session was enough to add or remove factors and mint recovery
codes; a TOTP step-up at /mfa?request=<token> satisfied a ForceAuthn that demanded the password, and a passwordless
passkey session stepping up with TOTP was asserted as "pwd otp mfa".
"""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from idp.config import load_settings
from idp.extensions import db
from idp.models import AdminAudit, IdpSession, Passkey, SsoEvent, utcnow
from idp.services import apps as apps_svc
from idp.services import org
from idp.services import users as users_svc

from ..functional.conftest import events
from ..functional.test_passkeys import passkey_login, password_login, register
from ..functional.test_policy_flows import MFA_CLASS, set_policy
from ..passkey_authenticator import SoftAuthenticator
from ..webclient import AUTHENTICATORS, Browser, continuation, enrol_totp, pass_second_factor, saml_form
from .conftest import PASSWORD

NEW_PASSWORD = "brand new pass 1"  # noqa: S105 - a test password
_CSRF = re.compile(r'(?:name="csrf_token" value|data-csrf)="([^"]+)"')


def csrf(client: FlaskClient, path: str = "/account") -> str:
    m = _CSRF.search(client.get(path).get_data(as_text=True))
    assert m, f"no CSRF token on {path}"
    return m.group(1)


def live_session() -> IdpSession:
    db.session.expire_all()
    return db.session.scalars(select(IdpSession).where(IdpSession.ended_at.is_(None))).one()


def age_second_factor(minutes: int) -> None:
    """The live sessions passed their second factor `minutes` ago (a session left open)."""
    db.session.execute(update(IdpSession).where(IdpSession.ended_at.is_(None), IdpSession.mfa_at.is_not(None))
                       .values(mfa_at=utcnow() - timedelta(minutes=minutes)))
    db.session.commit()


def step_up_refusals() -> list[str]:
    db.session.expire_all()
    return [e.detail["change"] for e in events(reason="step_up_required")]


def password_is(app: Flask, password: str) -> bool:
    db.session.expire_all()
    return bool(app.extensions["idp.passwords"].verify(users_svc.get_user("alice").password_hash, password))


def change_password(client: FlaskClient) -> Any:
    return client.post("/account/password", data={"csrf_token": csrf(client), "current_password": PASSWORD,
                                                   "new_password": NEW_PASSWORD,
                                                   "new_password_confirm": NEW_PASSWORD})


@pytest.fixture
def trusted_here(app: Flask) -> None:
    """A first passkey is self-enrolled from the org's trusted ranges (the default mode): loopback here."""
    org.add_trusted_range("127.0.0.0/8")
    db.session.commit()


def passkey_user(app: Flask, **create: Any) -> SoftAuthenticator:
    """alice registers a passkey as her first factor (every session of hers ends)."""
    auth = SoftAuthenticator()
    c = app.test_client()
    password_login(c)
    assert register(c, auth, **create).status_code == 201
    return auth


# ------------------------------------------------------------------ item 1: the password change

def test_a_stolen_password_cannot_change_the_password_of_a_user_with_a_factor(app, alice):
    enrol_totp(alice)
    attacker = app.test_client()
    assert password_login(attacker).status_code == 303   # no app asks: a password-only session
    body = attacker.get("/account").get_data(as_text=True)
    assert 'id="password-step-up"' in body and 'id="change-password"' not in body, "the page offers a step-up"
    assert "/mfa?next=/account" in body
    resp = change_password(attacker)
    assert resp.status_code == 403 and 'id="step_up-error"' in resp.get_data(as_text=True)
    assert password_is(app, PASSWORD), "the password is unchanged: alice can still sign in"
    assert not db.session.query(AdminAudit).filter_by(action="user.password_change").count()
    assert step_up_refusals() == ["password"]
    ev = events(reason="step_up_required")[-1]
    assert (ev.username, ev.outcome, ev.event_type) == ("alice", "denied", "account")
    # alice herself steps up on /mfa and comes back
    real = app.test_client()
    password_login(real)
    assert pass_second_factor(real, "alice", "/account").headers["Location"] == "/account"
    assert change_password(real).status_code == 303
    assert password_is(app, NEW_PASSWORD)


def test_a_user_without_a_factor_still_changes_the_password_with_it(app, alice):
    c = app.test_client()
    password_login(c)
    assert 'id="change-password"' in c.get("/account").get_data(as_text=True)
    assert change_password(c).status_code == 303 and password_is(app, NEW_PASSWORD)


# ------------------------------------------------------------------ item 5: renaming a passkey

def test_a_password_only_session_cannot_rename_passkeys(app, alice, trusted_here):
    auth = passkey_user(app)
    row = db.session.scalars(select(Passkey)).one()
    attacker = app.test_client()
    password_login(attacker)
    body = attacker.get("/account").get_data(as_text=True)
    assert f"/account/passkeys/{row.id}/rename" not in body and 'id="passkey-step-up"' in body
    resp = attacker.post(f"/account/passkeys/{row.id}/rename", data={"csrf_token": csrf(attacker),
                                                                     "name": "old phone - remove me"})
    assert resp.status_code == 403 and 'id="passkey-error"' in resp.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Passkey, row.id).name == "laptop"
    assert step_up_refusals() == ["passkey_rename"]
    # with the passkey (a second factor just now) the owner renames it
    owner = app.test_client()
    assert passkey_login(owner, auth).status_code == 200
    resp = owner.post(f"/account/passkeys/{row.id}/rename", data={"csrf_token": csrf(owner), "name": "YubiKey"})
    assert resp.status_code == 303
    db.session.expire_all()
    assert db.session.get(Passkey, row.id).name == "YubiKey"


# ------------------------------------------------------------------ item 6: a RECENT second factor

def test_a_second_factor_passed_long_ago_changes_nothing(app, alice, trusted_here):
    auth = passkey_user(app)
    row = db.session.scalars(select(Passkey)).one()
    c = app.test_client()
    assert passkey_login(c, auth, next_url="/account").status_code == 200
    assert 'id="regenerate-codes"' in c.get("/account").get_data(as_text=True), "fresh: everything is offered"
    audited = db.session.query(AdminAudit).count()
    age_second_factor(16)     # IDP_STEP_UP_MAX_AGE: 15 minutes by default
    body = c.get("/account").get_data(as_text=True)
    for link in ("password-step-up", "passkey-step-up", "confirm-mfa"):
        assert f'id="{link}"' in body, link
    assert 'id="regenerate-codes"' not in body and f"/account/passkeys/{row.id}/remove" not in body
    token = csrf(c)
    assert change_password(c).status_code == 403
    assert c.post(f"/account/passkeys/{row.id}/rename", data={"csrf_token": token, "name": "x"}).status_code == 403
    assert c.post(f"/account/passkeys/{row.id}/remove", data={"csrf_token": token}).status_code == 403
    assert c.post("/passkeys/register/options", json={}, headers={"X-CSRFToken": token}).status_code == 403
    resp = c.post("/account/recovery-codes", data={"csrf_token": token})
    assert resp.status_code == 403 and 'id="recovery-codes"' not in resp.get_data(as_text=True)
    # adding TOTP as a further factor: sent to step up, then back to the enrolment page
    resp = c.get("/mfa/enroll?next=/account")
    assert resp.status_code == 303
    target = urlsplit(resp.headers["Location"])
    assert target.path == "/mfa" and parse_qs(target.query) == {"next": ["/mfa/enroll?next=/account"]}
    assert 'id="totp-secret"' not in c.get("/mfa/enroll?next=/account", follow_redirects=True).get_data(as_text=True)
    resp = c.post("/mfa/enroll", data={"csrf_token": token, "code": "123456", "next": "/account"})
    assert resp.status_code == 303 and urlsplit(resp.headers["Location"]).path == "/mfa"
    assert step_up_refusals() == ["password", "passkey_rename", "passkey_remove", "passkey_add", "recovery_codes",
                                  "totp_add"]
    db.session.expire_all()
    user = users_svc.get_user("alice")
    assert password_is(app, PASSWORD) and user.totp_secret is None
    assert db.session.query(Passkey).one().name == "laptop"
    assert db.session.query(AdminAudit).count() == audited, "no change audited"
    # the step-up: the passkey on /mfa, then back where the user was going
    back = passkey_login(c, auth, purpose="mfa", page="/mfa?next=/mfa/enroll%3Fnext%3D/account",
                         next_url="/mfa/enroll?next=/account")
    assert back.status_code == 200 and back.get_json()["redirect"] == "/mfa/enroll?next=/account"
    assert 'id="totp-secret"' in c.get("/mfa/enroll?next=/account").get_data(as_text=True)
    resp = c.post("/account/recovery-codes", data={"csrf_token": csrf(c)})
    assert resp.status_code == 200 and 'id="recovery-codes"' in resp.get_data(as_text=True)


def test_the_step_up_age_is_a_setting(app, alice, trusted_here):
    assert load_settings({"IDP_STEP_UP_MAX_AGE": "3600"}).step_up_max_age_s == 3600
    assert load_settings({}).step_up_max_age_s == 15 * 60
    app.extensions["idp.settings"] = dataclasses.replace(app.extensions["idp.settings"], step_up_max_age_s=3600)
    auth = passkey_user(app)
    row = db.session.scalars(select(Passkey)).one()
    c = app.test_client()
    assert passkey_login(c, auth).status_code == 200
    age_second_factor(16)
    assert c.post(f"/account/passkeys/{row.id}/rename", data={"csrf_token": csrf(c), "name": "x"}).status_code == 303
    age_second_factor(61)
    assert c.post(f"/account/passkeys/{row.id}/rename", data={"csrf_token": csrf(c), "name": "y"}).status_code == 403


# ------------------------------------------------------------------ item 7: what a step-up asserts

def test_a_totp_step_up_does_not_satisfy_force_authn(app, make_sp, browser, alice):
    """A signed-in password session; an SP sends ForceAuthn to an MFA app, so the IdP asks for the password again.
    The attacker at that browser skips the password: /mfa?request=<token> with a TOTP code. No assertion."""
    enrol_totp(alice)
    sp = make_sp("pysaml2")
    set_policy(sp, require_mfa=True)
    apps_svc.change_settings(apps_svc.get_app(sp.slug), attributes={"amr": "amr"})
    db.session.commit()
    browser.login(browser.get("/login"), "alice", PASSWORD)
    before = live_session()
    assert before.amr == "pwd" and before.mfa_at is None
    req = sp.authn_request("redirect", force_authn=True)
    login_page = browser.send(req)
    assert 'name="password"' in login_page.get_data(as_text=True), "ForceAuthn asks for the password"
    cont = continuation(login_page.get_data(as_text=True))
    token = cont["request"]
    page = browser.get(f"/mfa?request={token}&next={quote(cont['next'], safe='/')}")
    assert 'name="code"' in page.get_data(as_text=True)
    m = _CSRF.search(page.get_data(as_text=True))
    assert m
    resp = browser.follow(browser.client.post("/mfa", data={"csrf_token": m.group(1),
                                                            "code": AUTHENTICATORS["alice"].code(), **cont}))
    assert saml_form(resp) is None and "SAMLResponse" not in resp.get_data(as_text=True)
    assert 'name="password"' in resp.get_data(as_text=True), "still asked for the password"
    assert not [e for e in events(app_slug=sp.slug) if e.reason == "ok"], "no assertion issued"
    stepped = live_session()
    assert stepped.id != before.id and stepped.authn_at == before.authn_at, "the authentication instant is kept"
    assert stepped.amr == "pwd otp mfa"
    # the password re-entered (a pending sign-in, then the code): pwd otp mfa, authenticated now
    form = saml_form(browser.follow(browser.client.post("/mfa", data={
        "csrf_token": _CSRF.search(browser.login(resp, "alice", PASSWORD).get_data(as_text=True)).group(1),  # type: ignore[union-attr]
        "code": AUTHENTICATORS["alice"].code(), **cont})))
    assert form is not None
    res = sp.process_response(form.saml_response, req.request_id)
    assert res.authn_context == MFA_CLASS and res.attributes["amr"] == ["pwd", "otp", "mfa"]
    assert live_session().authn_at > before.authn_at


@pytest.mark.parametrize(("backup_eligible", "methods"), [(True, "otp swk mfa"), (False, "otp hwk mfa")])
def test_a_passwordless_session_stepping_up_with_totp_claims_no_password(app, make_sp, alice, trusted_here,
                                                                         backup_eligible, methods):
    auth = passkey_user(app, backup_eligible=backup_eligible)
    enrol_totp(users_svc.get_user("alice"))
    c = app.test_client()
    assert passkey_login(c, auth).status_code == 200
    before = live_session()
    assert before.amr == methods.replace("otp ", "")
    pass_second_factor(c, "alice")
    after = live_session()
    assert after.amr == methods and after.mfa_at is not None, "the passkey kept, the code added, no pwd"
    assert after.authn_at == before.authn_at
    sp = make_sp("onelogin")
    apps_svc.change_settings(apps_svc.get_app(sp.slug), attributes={"amr": "amr"})
    db.session.commit()
    req = sp.authn_request("redirect")
    form = saml_form(Browser(c).send(req))
    assert form is not None
    assert sp.process_response(form.saml_response, req.request_id).attributes["amr"] == methods.split()


def test_events_name_no_secret(app, alice):
    """The refusal event carries the change and why, never the password typed."""
    enrol_totp(alice)
    c = app.test_client()
    password_login(c)
    change_password(c)
    ev = db.session.scalars(select(SsoEvent).where(SsoEvent.reason == "step_up_required")).one()
    assert PASSWORD not in str(ev.detail) and NEW_PASSWORD not in str(ev.detail)
    assert ev.detail["change"] == "password" and "second factor" in ev.detail["message"]
