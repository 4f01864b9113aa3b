"""An attacker who knows the password cannot turn the second-factor throttle against the user (review of issue 13,
item 2), and anonymous passkey options are rate-limited per address (item 14).

Wrong TOTP codes and recovery codes count per (user, client address) on keys of their own, failed passkeys per
address only; the per-user long-window cap on TOTP (100 consecutive wrong codes, from anywhere) stays.
"""

from __future__ import annotations

import re
from html import unescape
from typing import Any

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from idp.extensions import db
from idp.flows import signin
from idp.flows.authorize import Client
from idp.models import PendingRequest, SsoEvent, User
from idp.services import org
from idp.throttle import LOGIN_IP_RULE, MFA_RULE, PASSKEY_OPTIONS_RULE, TOTP_MAX_CONSECUTIVE_FAILURES

from ..functional.conftest import events
from ..functional.test_passkeys import csrf, passkey_fields, passkey_login, password_login, register
from ..functional.test_policy_flows import code_for, enrol, set_policy
from ..passkey_authenticator import SoftAuthenticator
from ..webclient import Browser, continuation, saml_form
from .conftest import PASSWORD
from .test_web_attacks import _unused_code, client_at

ATTACKER = "203.0.113.7"
REAL_USER = "198.51.100.9"
REAL_USER_V6 = "2001:db8:77:1::5"


@pytest.fixture
def mfa_sp(make_sp: Any) -> Any:
    sp = make_sp("pysaml2")
    set_policy(sp, require_mfa=True)
    return sp


@pytest.fixture
def factors(app: Flask, alice: User) -> tuple[pyotp.TOTP, SoftAuthenticator, list[str]]:
    """alice with all three: a passkey (her first factor, from a trusted range, with its recovery codes) and an
    authenticator app."""
    org.add_trusted_range("127.0.0.0/8")
    db.session.commit()
    auth = SoftAuthenticator()
    c = app.test_client()
    password_login(c)
    resp = register(c, auth)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    codes = resp.get_json()["recovery_codes"]
    db.session.expire_all()
    totp = enrol(db.session.get(User, alice.id))
    return totp, auth, codes


def _to_mfa(app: Flask, sp: Any, ip: str) -> tuple[Browser, Any, Any]:
    """Password sign-in from `ip` for an app that requires MFA: the browser, the SP request, the /mfa page."""
    browser = Browser(client_at(app, ip))
    req = sp.authn_request("redirect")
    page = browser.sso(req, "alice", PASSWORD)
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and 'name="code"' in body and 'id="passkey-mfa"' in body, body[:300]
    return browser, req, page


def _post_code(browser: Browser, page: Any, code: str, path: str = "/mfa") -> Any:
    body = page.get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', body).group(1)  # type: ignore[union-attr]
    return browser.client.post(path, data={"csrf_token": token, "code": code, **continuation(body)})


def _recovery_page(browser: Browser, page: Any) -> Any:
    fields = continuation(page.get_data(as_text=True))
    resp = browser.client.get("/mfa/recovery", query_string=fields)
    assert resp.status_code == 200 and 'name="code"' in resp.get_data(as_text=True)
    return resp


def _passkey_mfa(browser: Browser, page: Any, auth: SoftAuthenticator, **get: Any) -> Any:
    fields = passkey_fields(page.get_data(as_text=True))
    return passkey_login(browser.client, auth, purpose="mfa", page="/mfa", next_url=fields["next"],
                         request=fields["request"], **get)


def _options(client: FlaskClient, purpose: str = "login", page: str = "/login") -> Any:
    return client.post("/passkeys/login/options", json={"purpose": purpose},
                       headers={"X-CSRFToken": csrf(client, page)})


def _attack(app: Flask, sp: Any, totp: pyotp.TOTP) -> None:
    """The attacker, with alice's password, from one address: wrong codes, wrong recovery codes and failed
    passkeys until each is refused with 429."""
    browser, _req, page = _to_mfa(app, sp, ATTACKER)
    wrong = _unused_code(totp.secret)
    statuses = [_post_code(browser, page, wrong).status_code for _ in range(MFA_RULE.free + 2)]
    assert statuses == [401] * MFA_RULE.free + [429] * 2, statuses
    assert _post_code(browser, page, totp.now()).status_code == 429, "the attacker's address is locked out"
    recovery = _recovery_page(browser, page)
    statuses = [_post_code(browser, recovery, "aaaa-bbbb-cc", "/mfa/recovery").status_code
                for _ in range(MFA_RULE.free + 2)]
    assert statuses == [401] * MFA_RULE.free + [429] * 2, statuses
    stolen = SoftAuthenticator()   # the attacker's own authenticator: a passkey alice never registered
    stolen.create({"rp": {"id": "localhost"}, "user": {"id": "AAAA"}, "challenge": "AAAA"})
    statuses = [_passkey_mfa(browser, page, stolen, credential=stolen.credentials[0]).status_code
                for _ in range(LOGIN_IP_RULE.free)]
    assert statuses == [401] * LOGIN_IP_RULE.free, statuses
    assert _options(browser.client, "mfa", "/mfa").status_code == 429


@pytest.mark.parametrize("real_ip", [REAL_USER, REAL_USER_V6])
def test_wrong_codes_from_one_address_do_not_lock_the_user_out(app, mfa_sp, alice, factors, real_ip):
    """Before: one per-user key for every second factor; 7 wrong codes locked the user's TOTP, passkey and
    recovery codes out from every address."""
    totp, auth, codes = factors
    _attack(app, mfa_sp, totp)

    # the real user, elsewhere, passes with each factor
    browser, req, page = _to_mfa(app, mfa_sp, real_ip)
    resp = browser.follow(_post_code(browser, page, code_for(totp, 1)))
    assert saml_form(resp) is not None, f"TOTP: {resp.status_code} {resp.get_data(as_text=True)[:300]}"
    assert mfa_sp.process_response(saml_form(resp).saml_response, req.request_id).authn_context

    browser, req, page = _to_mfa(app, mfa_sp, real_ip)
    out = _passkey_mfa(browser, page, auth)
    assert out.status_code == 200, f"passkey: {out.get_data(as_text=True)}"
    assert saml_form(browser.get(out.get_json()["redirect"])) is not None

    browser, req, page = _to_mfa(app, mfa_sp, real_ip)
    recovery = _recovery_page(browser, page)
    used = _post_code(browser, recovery, codes[0], "/mfa/recovery")
    assert used.status_code == 200, f"recovery code: {used.get_data(as_text=True)[:300]}"
    assert [e.username for e in events(reason="recovery_code_used")] == ["alice"]
    onward = re.search(r'href="([^"]+)" id="continue"', used.get_data(as_text=True)).group(1)  # type: ignore[union-attr]
    assert saml_form(browser.get(unescape(onward))) is not None


def test_wrong_codes_do_not_block_the_other_factors_at_the_same_address(app, mfa_sp, alice, factors):
    """The user who mistyped codes until locked out may still use a passkey or a recovery code (the way back in)."""
    totp, auth, codes = factors
    browser, _req, page = _to_mfa(app, mfa_sp, REAL_USER)
    wrong = _unused_code(totp.secret)
    for _ in range(MFA_RULE.free + 1):
        last = _post_code(browser, page, wrong)
    assert last.status_code == 429
    out = _passkey_mfa(browser, page, auth)
    assert out.status_code == 200, out.get_data(as_text=True)

    browser, _req, page = _to_mfa(app, mfa_sp, REAL_USER)
    assert _post_code(browser, page, code_for(totp)).status_code == 429, "the codes stay locked at this address"
    used = _post_code(browser, _recovery_page(browser, page), codes[1], "/mfa/recovery")
    assert used.status_code == 200, used.get_data(as_text=True)[:300]


def test_the_long_window_cap_still_counts_per_user_across_addresses(app, alice):
    """Spread over addresses, the short throttle lets MFA_RULE.free - 1 codes pass per address before its lock;
    the per-user cap still suspends the factor after 100 consecutive wrong codes from anywhere."""
    totp = enrol(alice)
    wrong = _unused_code(totp.secret)
    outcomes: list[Any] = []
    address = 0
    while len(outcomes) < TOTP_MAX_CONSECUTIVE_FAILURES:
        address += 1
        for _ in range(MFA_RULE.free):   # the address's lock comes with its 5th wrong code
            outcomes.append(signin.check_totp_code(alice, wrong, None,
                                                   Client(ip=f"203.0.{address // 250}.{address % 250 + 1}",
                                                          user_agent="botnet")))
            db.session.commit()
    assert all(isinstance(o, signin.WrongCode) for o in outcomes[:-1])
    assert isinstance(outcomes[-1], signin.FactorSuspended)
    right = signin.check_totp_code(alice, totp.now(), None, Client(ip=REAL_USER, user_agent="test"))
    assert isinstance(right, signin.FactorSuspended), "suspended for everyone until an admin restores it"


# ---------------------------------------------------------------- passkey registration: per (user, address)

def test_failed_registrations_lock_only_that_address_out(app, alice):
    org.add_trusted_range("203.0.113.0/24")
    org.add_trusted_range("198.51.100.0/24")
    db.session.commit()
    auth = SoftAuthenticator()
    there = client_at(app, ATTACKER)
    password_login(there)
    statuses = [register(there, auth, uv=False).status_code for _ in range(MFA_RULE.free + 1)]
    assert statuses == [400] * MFA_RULE.free + [429], statuses
    here = client_at(app, REAL_USER)
    password_login(here)
    assert register(here, auth).status_code == 201


# ---------------------------------------------------------------- item 14: anonymous options per address

def test_anonymous_passkey_options_are_rate_limited_per_address(app, client):
    flood = client_at(app, ATTACKER)
    token = csrf(flood)
    before = db.session.scalar(select(db.func.count()).select_from(PendingRequest))
    served = 0
    for _ in range(PASSKEY_OPTIONS_RULE.free + 5):
        resp = flood.post("/passkeys/login/options", json={"purpose": "login"}, headers={"X-CSRFToken": token})
        if resp.status_code == 429:
            break
        assert resp.status_code == 200
        served += 1
    assert served == PASSKEY_OPTIONS_RULE.free
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) >= 1 and resp.get_json()["error"]
    stored = db.session.scalar(select(db.func.count()).select_from(PendingRequest)) - before
    assert stored <= PASSKEY_OPTIONS_RULE.free, "a refused request stores no challenge"
    ev = db.session.scalars(select(SsoEvent).order_by(SsoEvent.id.desc())).first()
    assert ev is not None and (ev.reason, ev.client_ip) == ("throttled", ATTACKER)
    assert "passkey options" in ev.detail["message"]
    assert _options(client_at(app, REAL_USER)).status_code == 200, "another address is not affected"
