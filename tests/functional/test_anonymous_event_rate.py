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
from idp.models import SsoEvent

from ..conftest import make_settings
from ..webclient import Browser
from .conftest import PASSWORD

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
    """A failed sign-in names an account but is not authenticated: the guesser's rows are limited as well."""
    guesser = Browser(from_ip(app, "203.0.113.9"))
    for _ in range(3 * LIMIT):
        guesser.login(guesser.get("/login"), "alice", "wrong guess")
    assert count(client_ip="203.0.113.9") == LIMIT


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
