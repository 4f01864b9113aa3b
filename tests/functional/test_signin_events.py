"""Failed sign-ins are events (issue 13, hole 6): a wrong or throttled password or second factor is one
`signin` row with the name as typed, IP, user agent and the pending app, and never the password or code."""

from __future__ import annotations

import json
import re

import pytest
from flask import Flask

from idp.events import event_dict
from idp.models import SsoEvent

from ..webclient import Browser, enrol_totp, login_admin, saml_form
from .conftest import PASSWORD, events, last_event
from .test_policy_flows import code_for, enrol, set_policy, submit_code

GUESS = "Tr0ub4dor&3-not-the-password"   # noqa: S105 - a wrong password the log must never hold
UA = "GuessBot/1.0 (+https://attacker.example)"
IP = "198.51.100.23"


def row_json(ev: SsoEvent) -> str:
    return json.dumps(event_dict(ev), default=str)


def assert_signin_event(ev: SsoEvent, reason: str, username: str, *secrets: str) -> None:
    assert (ev.event_type, ev.reason, ev.outcome, ev.username) == ("signin", reason, "denied", username)
    assert (ev.client_ip, ev.user_agent) == (IP, UA)
    text = row_json(ev)
    for secret in secrets:
        assert secret not in text, f"{secret!r} was logged"


@pytest.fixture
def guesser(app: Flask) -> Browser:
    c = app.test_client()
    c.environ_base.update(REMOTE_ADDR=IP, HTTP_USER_AGENT=UA)
    return Browser(c)


def wrong_code(t) -> str:  # type: ignore[no-untyped-def]
    good = {code_for(t, d) for d in (-1, 0, 1)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in good)


def test_wrong_password_without_pending_sso(guesser, alice):
    for name in ("alice", "nosuchuser"):
        resp = guesser.login(guesser.get("/login"), name, GUESS)
        assert resp.status_code == 401
        ev = last_event()
        assert_signin_event(ev, "bad_credentials", name, GUESS)
        assert ev.app_slug is None and ev.request_id is None
    assert len(events(reason="bad_credentials")) == 2


def test_unknown_and_known_names_answer_the_same(guesser, alice):
    pages = []
    for name in ("alice", "nosuchuser"):
        body = guesser.login(guesser.get("/login"), name, GUESS).get_data(as_text=True)
        # CSRF tokens carry a timestamp (the form field and the passkey box's data-csrf): not part of the answer
        pages.append(re.sub(r'(name="csrf_token" value|data-csrf)="[^"]+"', "", body.replace(name, "USER")))
    assert pages[0] == pages[1]


def test_wrong_password_during_pending_sso_names_the_app(make_sp, guesser, alice):
    sp = make_sp("pysaml2")
    req = sp.authn_request("redirect")
    resp = guesser.sso(req, "alice", GUESS)
    assert resp.status_code == 401 and saml_form(resp) is None
    ev = last_event()
    assert_signin_event(ev, "bad_credentials", "alice", GUESS)
    assert (ev.app_slug, ev.request_id, ev.initiated_by) == (sp.slug, req.request_id, "sp")
    # the same filter finds it: events for alice with this reason
    assert [e.id for e in events(username="alice", reason="bad_credentials")] == [ev.id]


def test_throttled_password_is_an_event(guesser, alice):
    resp = None
    for _ in range(60):
        resp = guesser.login(guesser.get("/login"), "alice", GUESS)
        if resp.status_code == 429:
            break
    assert resp is not None and resp.status_code == 429, "never throttled"
    ev = last_event()
    assert_signin_event(ev, "throttled", "alice", GUESS)
    # even the right password, while throttled, is an event without the password in it
    resp = guesser.login(guesser.get("/login"), "alice", PASSWORD)
    assert resp.status_code == 429
    ev = last_event()
    assert_signin_event(ev, "throttled", "alice", PASSWORD, GUESS)
    assert len(events(reason="throttled")) == 2


def test_wrong_and_throttled_codes_are_events(make_sp, guesser, alice):
    sp = make_sp("onelogin")
    set_policy(sp, require_mfa=True)
    t = enrol(alice)
    req = sp.authn_request("redirect")
    resp = guesser.sso(req, "alice", PASSWORD)
    assert 'name="code"' in resp.get_data(as_text=True)
    bad = wrong_code(t)
    resp = submit_code(guesser, resp, bad)
    assert resp.status_code == 401
    ev = last_event()
    assert_signin_event(ev, "mfa_failed", "alice", bad, PASSWORD)
    assert (ev.app_slug, ev.request_id) == (sp.slug, req.request_id)
    for _ in range(60):
        resp = submit_code(guesser, resp, bad)
        if resp.status_code == 429:
            break
    assert resp.status_code == 429, "never throttled"
    good = code_for(t)
    resp = submit_code(guesser, resp, good)
    assert resp.status_code == 429 and saml_form(resp) is None
    ev = last_event()
    assert_signin_event(ev, "throttled", "alice", good, bad, PASSWORD)
    assert (ev.app_slug, ev.request_id) == (sp.slug, req.request_id)


def test_wrong_code_at_step_up_without_pending_sso_is_an_event(guesser, alice):
    t = enrol(alice)
    guesser.login(guesser.get("/login"), "alice", PASSWORD)
    page = guesser.get("/mfa")
    bad = wrong_code(t)
    resp = submit_code(guesser, page, bad)
    assert resp.status_code == 401
    ev = last_event()
    assert_signin_event(ev, "mfa_failed", "alice", bad)
    assert ev.app_slug is None


def test_cli_filters_by_the_new_reasons(app, guesser, alice):
    guesser.login(guesser.get("/login"), "alice", GUESS)
    out = app.test_cli_runner().invoke(args=["events", "--reason", "bad_credentials", "--format", "json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    assert [(r["username"], r["event_type"], r["client_ip"]) for r in rows] == [("alice", "signin", IP)]
    assert GUESS not in out.output


def test_console_event_log_shows_failed_sign_ins(app, guesser, alice):
    from idp.services import users as users_svc

    from .test_admin_console import ADMIN_PASSWORD
    guesser.login(guesser.get("/login"), "alice", GUESS)
    pw = app.extensions["idp.passwords"]
    root = users_svc.add_user("root", email="root@example.com", password_hash=pw.hash(ADMIN_PASSWORD), is_admin=True)
    enrol_totp(root)  # the console needs the second factor
    admin = Browser(app.test_client())
    login_admin(admin.client, "root", ADMIN_PASSWORD)
    body = admin.get("/admin/events?reason=bad_credentials").get_data(as_text=True)
    assert "bad_credentials" in body and "alice" in body and IP in body and GUESS not in body
