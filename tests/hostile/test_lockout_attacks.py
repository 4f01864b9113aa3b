"""Throttling an attacker cannot turn against the user (issue 13, hole 5).

Guesses for an account lock the guessing address out of that account (growing lock-outs) and the
address out of every account (IPv6 per /64); the account itself is only slowed by a few seconds,
so the real user from another address still gets in. A TOTP factor is suspended after 100
consecutive wrong codes until an admin restores it. Both shared-state backends behave the same.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from idp.extensions import db
from idp.flows import signin
from idp.flows.authorize import Client
from idp.models import AdminAudit, ThrottleCounter, User, utcnow
from idp.state.db_state import DbState
from idp.throttle import LOGIN_ACCOUNT_IP_RULE, LOGIN_ACCOUNT_RULE, client_net

from ..functional.conftest import events
from ..webclient import login_admin
from .conftest import ADMIN_PASSWORD, PASSWORD, login
from .test_web_attacks import _enrol, _unused_code, client_at

ATTACKER = "203.0.113.7"
REAL_USER = "198.51.100.9"
SPELLINGS = ("alice", "ALICE", "Alice", " aLiCe ", "alicE")


# ---------------------------------------------------------------- the two backends

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A private redis-server on a random loopback port, stopped after the module."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed")
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="idp-redis-")
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", workdir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.skip("redis-server did not start")
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(params=["database", "redis"])
def backend(request: pytest.FixtureRequest, app: Flask) -> Iterator[str]:
    """Run the test against the database state and against a private Redis (swapped into the app)."""
    saved = app.extensions["idp.state"]
    if request.param == "database":
        app.extensions["idp.state"] = DbState()
    else:
        from idp.state.redis_state import RedisState
        state = RedisState(request.getfixturevalue("redis_url"))
        state.client.flushdb()
        app.extensions["idp.state"] = state
    try:
        yield str(request.param)
    finally:
        app.extensions["idp.state"] = saved


def _password(username: str, password: str, ip: str) -> signin.PasswordOutcome:
    outcome = signin.check_password(username, password, None, Client(ip=ip, user_agent="test"), _passwords())
    db.session.commit()
    return outcome


def _passwords() -> Any:
    from flask import current_app
    return current_app.extensions["idp.passwords"]


def _wait_out(outcome: signin.PasswordOutcome) -> None:
    if isinstance(outcome, signin.Throttled):
        time.sleep(outcome.retry_after_s)


# ---------------------------------------------------------------- (a) the victim still gets in

def test_guessing_from_one_address_does_not_lock_the_real_user_out(app, client, alice):  # type: ignore[no-untyped-def]
    attacker = client_at(app, ATTACKER)
    for i in range(50):
        resp = login(attacker, SPELLINGS[i % len(SPELLINGS)], f"guess {i}")
        assert resp.status_code in (401, 429), i
    assert resp.status_code == 429
    real = client_at(app, REAL_USER)
    assert login(real, "alice", PASSWORD).status_code == 303  # straight in: no wait at all


def test_distributed_guessing_only_slows_the_account(backend, app, alice):  # type: ignore[no-untyped-def]
    """52 addresses guess once each: the account is slowed by seconds, never locked for minutes."""
    waits = []
    for i in range(52):  # 50 free, then waits of 1 s and 2 s
        outcome = _password(SPELLINGS[i % len(SPELLINGS)], f"guess {i}", f"203.0.{113 + i // 250}.{i % 250 + 1}")
        assert isinstance(outcome, signin.BadCredentials | signin.Throttled), outcome
        if isinstance(outcome, signin.Throttled):
            assert outcome.retry_after_s <= LOGIN_ACCOUNT_RULE.max_lock_s, (i, outcome)
            waits.append(outcome.retry_after_s)
            time.sleep(outcome.retry_after_s)  # the guesser waits too, so its guesses keep counting
    outcome = _password("alice", PASSWORD, REAL_USER)
    if isinstance(outcome, signin.Throttled):  # slowed: a few seconds at most
        assert outcome.retry_after_s <= LOGIN_ACCOUNT_RULE.max_lock_s
        _wait_out(outcome)
        outcome = _password("alice", PASSWORD, REAL_USER)
    assert isinstance(outcome, signin.PasswordAccepted)


# ---------------------------------------------------------------- (b) the attacker's own address is locked

@pytest.fixture
def db_state(app: Flask) -> Iterator[None]:
    """Time travel needs the database state backend: swapped in when the run uses Redis (the PostgreSQL run)."""
    saved = app.extensions["idp.state"]
    if saved.name != "database":
        app.extensions["idp.state"] = DbState()
    try:
        yield
    finally:
        app.extensions["idp.state"] = saved


def _expire_locks() -> None:
    db.session.execute(update(ThrottleCounter).values(locked_until=utcnow()))
    db.session.commit()


def test_the_guessing_address_gets_growing_lockouts(app, alice, db_state):  # type: ignore[no-untyped-def]
    attacker = client_at(app, ATTACKER)
    waits = []
    for round_ in range(3):
        for i in range(5 if round_ == 0 else 1):
            assert login(attacker, SPELLINGS[i], "wrong guess").status_code == 401
        for name in SPELLINGS:
            resp = login(attacker, name, PASSWORD)  # even the right password waits, whatever the spelling
            assert resp.status_code == 429, name
        waits.append(int(resp.headers["Retry-After"]))
        # meanwhile the real user, elsewhere, signs in at once
        assert login(client_at(app, f"198.51.100.{round_ + 1}"), "alice", PASSWORD).status_code == 303
        _expire_locks()
    assert 1 <= waits[0] < waits[1] < waits[2], waits


def test_pair_lockout_grows_on_both_backends(backend, alice):  # type: ignore[no-untyped-def]
    for i in range(LOGIN_ACCOUNT_IP_RULE.free):
        assert isinstance(_password(SPELLINGS[i], "wrong", ATTACKER), signin.BadCredentials)
    locked = _password("ALICE", PASSWORD, ATTACKER)
    assert isinstance(locked, signin.Throttled) and 1 <= locked.retry_after_s <= LOGIN_ACCOUNT_IP_RULE.base_lock_s
    assert isinstance(_password("alice", PASSWORD, REAL_USER), signin.PasswordAccepted)


# ---------------------------------------------------------------- (c) IPv6 per /64

def test_client_net_units() -> None:
    assert client_net("203.0.113.7") == "203.0.113.7"
    assert client_net("2001:db8:1:2::10") == client_net("2001:db8:1:2:ffff:ffff:ffff:1") == "2001:db8:1:2::/64"
    assert client_net("2001:db8:1:3::10") != client_net("2001:db8:1:2::10")
    assert client_net("::ffff:203.0.113.7") == "203.0.113.7"
    assert client_net(None) == "unknown"


def test_ipv6_addresses_in_one_64_share_the_address_throttle(backend, alice, bob):  # type: ignore[no-untyped-def]
    for i in range(30):  # spraying, each guess from another address of the same /64
        outcome = _password(f"user{i}", "Winter2024!", f"2001:db8:1:2::{i + 1:x}")
        assert isinstance(outcome, signin.BadCredentials), i
    assert isinstance(_password("bob", PASSWORD, "2001:db8:1:2:ffff::1"), signin.Throttled)
    assert isinstance(_password("bob", PASSWORD, "2001:db8:1:3::1"), signin.PasswordAccepted)


def test_ipv6_rotation_inside_a_64_does_not_escape_the_pair_lockout(app, alice):  # type: ignore[no-untyped-def]
    for i in range(5):
        assert login(client_at(app, f"2001:db8:5:6::{i + 1}"), "alice", "wrong").status_code == 401
    assert login(client_at(app, "2001:db8:5:6::99"), "alice", PASSWORD).status_code == 429
    assert login(client_at(app, "2001:db8:5:7::1"), "alice", PASSWORD).status_code == 303


# ---------------------------------------------------------------- (d) TOTP long-window cap

@pytest.fixture
def no_short_mfa_throttle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signin, "retry_after", lambda key: 0)
    monkeypatch.setattr(signin, "record_failure", lambda key, rule: 0)


def _code(user: User, code: str) -> signin.CodeOutcome:
    outcome = signin.check_totp_code(user, code, None, Client(ip=ATTACKER, user_agent="guesser"))
    db.session.commit()
    return outcome


def test_totp_is_suspended_after_100_consecutive_wrong_codes(backend, app, alice,  # type: ignore[no-untyped-def]
                                                             no_short_mfa_throttle):
    secret = _enrol(alice)
    wrong = _unused_code(secret)
    for i in range(99):
        assert isinstance(_code(alice, wrong), signin.WrongCode), i
    assert isinstance(_code(alice, wrong), signin.FactorSuspended)  # the 100th
    assert isinstance(_code(alice, pyotp.TOTP(secret).now()), signin.FactorSuspended), "the right code is refused"
    suspended = events(reason="mfa_suspended")
    assert len(suspended) == 1 and suspended[0].username == "alice" and suspended[0].client_ip == ATTACKER
    db.session.expire_all()
    assert db.session.get(User, alice.id).totp_suspended_at is not None  # durable: on the user row

    result = app.test_cli_runner().invoke(args=["users", "mfa-unsuspend", "alice"])
    assert result.exit_code == 0 and "restored" in result.output, result.output
    db.session.expire_all()
    alice = db.session.get(User, alice.id)
    assert alice.totp_suspended_at is None and alice.totp_failures == 0
    assert db.session.query(AdminAudit).filter_by(action="user.mfa_unsuspended", target="alice").count() == 1
    assert isinstance(_code(alice, pyotp.TOTP(secret).now()), signin.CodeAccepted)


def test_a_right_code_resets_the_consecutive_count(app, alice, no_short_mfa_throttle):  # type: ignore[no-untyped-def]
    secret = _enrol(alice)
    wrong = _unused_code(secret)
    for _ in range(99):
        _code(alice, wrong)
    assert isinstance(_code(alice, pyotp.TOTP(secret).now()), signin.CodeAccepted)
    assert alice.totp_failures == 0
    for _ in range(99):
        assert isinstance(_code(alice, wrong), signin.WrongCode)


def test_suspended_factor_page_and_console_restore(app, client, alice, admin,  # type: ignore[no-untyped-def]
                                                   no_short_mfa_throttle):
    secret = _enrol(alice)
    wrong = _unused_code(secret)
    for _ in range(100):
        _code(alice, wrong)
    # the user, signed in with the password, asks for the second factor: the suspended page, no code form
    assert login(client, "alice", PASSWORD).status_code == 303
    resp = client.get("/mfa")
    body = resp.get_data(as_text=True)
    assert resp.status_code == 403 and "suspended after too many wrong codes" in body
    assert "ask your administrator" in body
    # the admin sees it and restores it
    admin_client: FlaskClient = app.test_client()
    assert login_admin(admin_client, "admin", ADMIN_PASSWORD).status_code == 303
    page = admin_client.get("/admin/users/alice").get_data(as_text=True)
    assert 'id="mfa-suspended"' in page and 'id="unsuspend-mfa"' in page
    import re
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    assert admin_client.post("/admin/users/alice/mfa-unsuspend", data={}).status_code == 400  # no CSRF token
    resp = admin_client.post("/admin/users/alice/mfa-unsuspend", data={"csrf_token": token})
    assert resp.status_code == 303
    db.session.expire_all()
    assert db.session.get(User, alice.id).totp_suspended_at is None
    assert 'id="mfa-suspended"' not in admin_client.get("/admin/users/alice").get_data(as_text=True)


def test_mfa_reset_clears_a_suspension(app, alice, no_short_mfa_throttle):  # type: ignore[no-untyped-def]
    secret = _enrol(alice)
    for _ in range(100):
        _code(alice, _unused_code(secret))
    assert app.test_cli_runner().invoke(args=["users", "mfa-reset", "alice"]).exit_code == 0
    db.session.expire_all()
    alice = db.session.get(User, alice.id)
    assert alice.totp_suspended_at is None and alice.totp_failures == 0 and alice.totp_secret is None
