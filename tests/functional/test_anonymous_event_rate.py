"""Events of unauthenticated requests are rate-limited per client IP (IDP_ANON_EVENTS_PER_MINUTE): garbage
cannot fill the disk. Past the limit the events are not stored but counted (idp_events_dropped_total); another
address, a signed-in user's events and successful events are never dropped."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from idp.config import Settings
from idp.extensions import db
from idp.models import SsoEvent, User

from ..conftest import make_settings
from ..webclient import Browser
from .conftest import PASSWORD
from .test_policy_flows import code_for, enrol, set_policy, submit_code

LIMIT = 10
GARBAGE = "/saml/sso?SAMLRequest=not-a-saml-request"


@pytest.fixture
def settings(tmp_path: Path, key_template: Path) -> Settings:
    return make_settings(tmp_path, key_template, anon_events_per_minute=LIMIT)


def count(**where: str) -> int:
    q = select(func.count()).select_from(SsoEvent)
    for k, v in where.items():
        q = q.where(getattr(SsoEvent, k) == v)
    return int(db.session.scalar(q) or 0)


def dropped(client: FlaskClient) -> int:
    text = client.get("/metrics").get_data(as_text=True)
    m = re.search(r'^idp_events_dropped_total\{reason="rate_limited"\} (\d+)$', text, re.M)
    return int(m.group(1)) if m else 0


def from_ip(app: Flask, ip: str) -> FlaskClient:
    c = app.test_client()
    c.environ_base["REMOTE_ADDR"] = ip
    return c


def test_anonymous_client_cannot_write_unbounded_rows(app: Flask, client: FlaskClient) -> None:
    """The issue's fact: every garbage request from one anonymous client wrote a row (~130/s)."""
    attacker = from_ip(app, "203.0.113.7")
    before = dropped(client)
    for _ in range(5 * LIMIT):
        resp = attacker.get(GARBAGE)
        assert resp.status_code == 400 and "Traceback" not in resp.get_data(as_text=True)
    assert count(client_ip="203.0.113.7") == LIMIT
    assert dropped(client) - before == 4 * LIMIT
    # another address still has its own allowance
    other = from_ip(app, "198.51.100.4")
    for _ in range(3):
        other.get(GARBAGE)
    assert count(client_ip="198.51.100.4") == 3


def test_throttled_password_guesses_are_limited_too(app: Flask, alice: object) -> None:
    """A failed sign-in is not authenticated: the guesser's throttled tries and unknown names are limited; its
    wrong passwords for an existing account are all kept (the throttle itself bounds those)."""
    guesser = Browser(from_ip(app, "203.0.113.9"))
    for _ in range(3 * LIMIT):
        guesser.login(guesser.get("/login"), "alice", "wrong guess")
    for i in range(3 * LIMIT):
        guesser.login(guesser.get("/login"), f"nobody{i}", "wrong guess")
    checked = count(client_ip="203.0.113.9", reason="bad_credentials", username="alice")
    assert 1 <= checked < LIMIT          # the address was locked out after a few
    assert count(client_ip="203.0.113.9") == LIMIT + checked


def test_junk_cannot_hide_sign_in_evidence(app: Flask, make_sp, alice: User) -> None:  # type: ignore[no-untyped-def]
    """The anonymous budget used up with garbage: a wrong password for an existing account, and a wrong second
    factor after the right password (authenticated by then), are still stored; an unknown name is not."""
    t = enrol(alice)
    ip = "203.0.113.10"
    attacker = Browser(from_ip(app, ip))
    for _ in range(2 * LIMIT):
        attacker.get(GARBAGE)
    assert count(client_ip=ip) == LIMIT
    attacker.login(attacker.get("/login"), "nobody", "wrong guess")
    assert count(client_ip=ip, reason="bad_credentials") == 0          # junk: within the used-up budget
    attacker.login(attacker.get("/login"), "alice", "wrong guess")
    assert count(client_ip=ip, reason="bad_credentials", username="alice") == 1
    sp = make_sp("onelogin")
    set_policy(sp, require_mfa=True)
    resp = attacker.sso(sp.authn_request("redirect"), "alice", PASSWORD)     # the right password, then a code
    assert 'name="code"' in resp.get_data(as_text=True)
    good = {code_for(t, d) for d in (-1, 0, 1)}
    resp = submit_code(attacker, resp, next(c for c in ("000000", "111111", "222222") if c not in good))
    assert resp.status_code == 401
    assert count(client_ip=ip, reason="mfa_failed", username="alice") == 1


def test_signed_in_users_and_successes_are_never_dropped(app: Flask, make_sp, browser, alice) -> None:  # type: ignore[no-untyped-def]
    browser.client.environ_base["REMOTE_ADDR"] = "203.0.113.8"
    for _ in range(2 * LIMIT):     # anonymous garbage first: the allowance of this address is used up
        browser.get(GARBAGE)
    assert count(client_ip="203.0.113.8") == LIMIT
    sp = make_sp("pysaml2")
    form = browser.sso(sp.authn_request("redirect"), "alice", PASSWORD)
    assert form is not None
    assert count(client_ip="203.0.113.8", outcome="success") >= 1
    for _ in range(3):             # the signed-in user's own errors are recorded whatever the rate
        browser.get(GARBAGE)
    assert count(client_ip="203.0.113.8", username="alice", outcome="error") == 3
