"""A stolen ADMIN password cannot enrol a first factor and reach the console, whatever the enrolment mode.

Before the fix, the org's enrolment modes applied to admins too: with `grace-days:N` (a recently created admin) or
from inside the trusted ranges, the attacker who knew only the admin's password was sent by the console to
/mfa/enroll, saw a fresh TOTP secret, confirmed a code from it, signed in again with the password and that code,
and had the console. Now an admin account's first factor needs an enrolment link (another admin's, or
`idp users enrolment-link` / `idp users mfa-enroll` on the server) in every mode.
"""

from __future__ import annotations

import re
import time

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient

from idp.extensions import db
from idp.models import Passkey, SsoEvent, User
from idp.services import org
from idp.services import users as users_svc

from ..passkey_authenticator import SoftAuthenticator
from ..webclient import Browser, local_path
from .conftest import ADMIN_PASSWORD, PASSWORD, csrf_token, login
from .test_admin_step_up import step_up_target

_SECRET = re.compile(r'id="totp-secret">([A-Z2-7]+)<')


@pytest.fixture
def root(app: Flask) -> User:
    """An admin created a moment ago, with no second factor yet (as after `idp db init`)."""
    pw = app.extensions["idp.passwords"]
    user = users_svc.add_user("root", email="root@example.com", password_hash=pw.hash(ADMIN_PASSWORD), is_admin=True)
    db.session.commit()
    return user


def refusals() -> list[SsoEvent]:
    db.session.expire_all()
    return db.session.query(SsoEvent).filter(SsoEvent.reason == "enrolment_refused").order_by(SsoEvent.id).all()


def no_factor(username: str = "root") -> bool:
    db.session.expire_all()
    user = users_svc.get_user(username)
    return not user.mfa_enrolled and not user.totp_confirmed and db.session.query(Passkey).count() == 0


def _self_enrolment_allowed_for_everyone(setting: str) -> None:
    """The org's rules would let an ordinary user self-enrol here (the test client's address is 127.0.0.1)."""
    if setting == "grace-days":
        org.set_mfa_enrolment("grace-days:30")
    else:
        org.add_trusted_range("127.0.0.0/8")   # default mode trusted-ranges, the attacker inside the ranges
    db.session.commit()


@pytest.mark.parametrize("setting", ["grace-days", "trusted-range"])
def test_stolen_admin_password_enrols_nothing_and_opens_no_console(app: Flask, client: FlaskClient, root: User,
                                                                   alice: User, setting: str) -> None:
    _self_enrolment_allowed_for_everyone(setting)
    assert login(client, "root", ADMIN_PASSWORD).status_code == 303
    # the console sends the admin to enrol ...
    path, nxt = step_up_target(client.get("/admin/users"))
    assert (path, nxt) == ("/mfa/enroll", "/admin/users")
    # ... where an admin's first factor is refused without a link: no secret is shown
    page = client.get("/mfa/enroll?next=/admin/users")
    body = page.get_data(as_text=True)
    assert page.status_code == 403 and _SECRET.search(body) is None
    assert "Ask another administrator for an enrolment link" in body and "idp users enrolment-link root" in body
    # a scripted attacker posts a code anyway, and tries a passkey instead
    token = csrf_token(client, "/account")
    resp = client.post("/mfa/enroll", data={"csrf_token": token, "code": "123456", "next": "/admin/users"})
    assert resp.status_code == 403 and _SECRET.search(resp.get_data(as_text=True)) is None
    opts = client.post("/passkeys/register/options", json={}, headers={"X-CSRFToken": token})
    assert opts.status_code == 403 and "enrolment link" in opts.get_json()["error"]
    fake = SoftAuthenticator().create({"challenge": "AAAA", "rp": {"id": "localhost", "name": "x"},
                                       "user": {"id": "AAAA", "name": "root", "displayName": "root"},
                                       "pubKeyCredParams": [{"type": "public-key", "alg": -7}]})
    resp = client.post("/passkeys/register", json={"credential": fake, "name": "mine"},
                       headers={"X-CSRFToken": token})
    assert resp.status_code == 403
    # the account page offers no enrolment either
    account = client.get("/account").get_data(as_text=True)
    assert 'id="enroll-mfa"' not in account and 'id="passkey-register-form"' not in account
    # nothing enrolled, still no console, every refusal an event with its reason
    assert no_factor()
    assert client.get("/admin/users").status_code == 303
    assert client.post("/admin/groups/new", data={"csrf_token": token, "name": "x"}).status_code == 403
    assert users_svc.find_group("x") is None
    assert refusals() and {e.detail["refusal"] for e in refusals()} == {"admin_needs_link"}
    assert all(e.username == "root" for e in refusals())
    # an ordinary user under the same rules may still enrol herself (the rules did not get stricter for her)
    other = Browser(app.test_client())
    page = other.login(other.get("/mfa/enroll"), "alice", PASSWORD)
    assert page.status_code == 200 and _SECRET.search(page.get_data(as_text=True)) is not None


def test_self_enrolment_off_or_link_only_refuse_an_admin_the_same_way(client: FlaskClient, root: User) -> None:
    org.set_mfa_enrolment("link-only")
    db.session.commit()
    login(client, "root", ADMIN_PASSWORD)
    assert client.get("/mfa/enroll").status_code == 403 and no_factor()
    assert refusals()[-1].detail["refusal"] == "admin_needs_link"


def test_an_enrolment_link_lets_the_admin_in(app: Flask, root: User) -> None:
    """The way in that stays: another admin's (or the server's) one-time link, then the password and the new
    factor, then the console."""
    org.set_mfa_enrolment("grace-days:30")
    db.session.commit()
    r = app.test_cli_runner().invoke(args=["users", "enrolment-link", "root"])
    assert r.exit_code == 0, r.output
    path = local_path(r.stdout.strip())
    b = Browser(app.test_client())
    page = b.login(b.get(path), "root", ADMIN_PASSWORD)
    body = page.get_data(as_text=True)
    secret = _SECRET.search(body)
    assert secret is not None, body[:300]
    t = pyotp.TOTP(secret.group(1))
    token = re.search(r'name="csrf_token" value="([^"]+)"', body).group(1)  # type: ignore[union-attr]
    done = b.client.post(path, data={"csrf_token": token, "code": t.now()})
    assert done.status_code == 200 and 'id="mfa-enrolled"' in done.get_data(as_text=True)
    db.session.expire_all()
    assert users_svc.get_user("root").mfa_enrolled
    # sign in again: password, then a code from the new factor (the next step), then the console
    c = app.test_client()
    assert login(c, "root", ADMIN_PASSWORD).status_code == 303
    mfa = c.get("/mfa?next=/admin/users")
    code = t.at(int(time.time()) + 30)   # the code used to enrol is spent: the next step's
    resp = c.post("/mfa", data={"csrf_token": csrf_token(c, "/mfa?next=/admin/users"), "code": code,
                                "next": "/admin/users"})
    assert mfa.status_code == 200 and resp.status_code == 303, resp.get_data(as_text=True)[:300]
    assert c.get("/admin/users").status_code == 200


def test_mfa_enroll_on_the_server_works_for_an_admin(app: Flask, root: User) -> None:
    org.add_trusted_range("127.0.0.0/8")
    db.session.commit()
    r = app.test_cli_runner().invoke(args=["users", "mfa-enroll", "root"])
    assert r.exit_code == 0 and r.stdout.startswith("otpauth://"), r.output
    db.session.expire_all()
    assert users_svc.get_user("root").mfa_enrolled
