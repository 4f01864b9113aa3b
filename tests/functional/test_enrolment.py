"""Factor enrolment end to end: recovery codes (sign-in, suspension, regeneration, own reset), the account page's
security events, the org enrolment mode (CLI and console), enrolment links from the console, `idp users factors`,
and the audit trail of enrolments (issue 13)."""

from __future__ import annotations

import json
import re
from typing import Any

import pyotp
import pytest
from flask import Flask

from idp.auth import enrolment_links, recovery_codes, totp
from idp.auth.enrolment_links import LinkState
from idp.extensions import db
from idp.models import AdminAudit, EnrolmentLink, IdpSession, RecoveryCode, SsoEvent, User
from idp.services import org
from idp.services import users as users_svc
from idp.throttle import TOTP_MAX_CONSECUTIVE_FAILURES

from ..webclient import Browser, continuation, enrol_totp, local_path, login_admin, saml_form
from .conftest import PASSWORD, last_event
from .test_admin_console import ADMIN_PASSWORD, post
from .test_cli import fails, ok
from .test_policy_flows import MFA_CLASS, code_for, enrol, set_policy, submit_code

CODE_RE = re.compile(r"<li><code>([a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{2})</code></li>")
PLAIN_CODE_RE = re.compile(r"\b([a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{2})\b")


def csrf(body: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', body)
    assert m
    return m.group(1)


@pytest.fixture
def enrolled(alice: User) -> tuple[pyotp.TOTP, list[str]]:
    t = enrol(alice)
    codes = recovery_codes.issue(alice)
    db.session.commit()
    return t, codes


# ---------------------------------------------------------------- recovery codes: the module

def test_codes_look_right_are_stored_keyed_and_single_use(app: Flask, alice: User) -> None:
    codes = recovery_codes.issue(alice)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(re.fullmatch(r"[2-9a-hjkmnp-z]{4}-[2-9a-hjkmnp-z]{4}-[2-9a-hjkmnp-z]{2}", c) for c in codes)
    stored = [r.code_hash for r in db.session.query(RecoveryCode)]
    for c in codes:
        assert not any(c.replace("-", "") in h for h in stored)
    assert all(re.fullmatch(r"[0-9a-f]{8}:[0-9a-f]{64}", h) for h in stored), "kid:HMAC-SHA256"
    assert recovery_codes.consume(alice, " " + codes[3].upper().replace("-", " ") + " ")
    assert not recovery_codes.consume(alice, codes[3]), "single use"
    assert recovery_codes.remaining(alice) == 9
    assert not recovery_codes.consume(alice, "1111-1111-11") and not recovery_codes.consume(alice, "")
    new = recovery_codes.issue(alice)
    assert recovery_codes.remaining(alice) == 10 and not recovery_codes.consume(alice, codes[0]), "replaced"
    assert recovery_codes.consume(alice, new[0])


def test_codes_of_one_user_do_not_work_for_another(app: Flask, alice: User, bob: User) -> None:
    codes = recovery_codes.issue(alice)
    recovery_codes.issue(bob)
    assert not recovery_codes.consume(bob, codes[0]) and recovery_codes.consume(alice, codes[0])


@pytest.mark.parametrize("value,expected", [
    ("trusted-ranges", "trusted-ranges"), (" Link-Only ", "link-only"), ("grace-days:14", "grace-days:14"),
    ("grace-days:007", "grace-days:7"), ("grace-days:0", None), ("grace-days:366", None), ("grace-days:x", None),
    ("grace-days:", None), ("anyone", None), ("", None),
])
def test_enrolment_mode_values(app: Flask, value: str, expected: str | None) -> None:
    from idp.services import ServiceError
    if expected is None:
        with pytest.raises(ServiceError):
            org.parse_enrolment_mode(value)
    else:
        assert org.parse_enrolment_mode(value) == expected


# ---------------------------------------------------------------- recovery codes on /mfa

def test_recovery_code_completes_sso_to_an_mfa_app(make_sp, browser: Browser, enrolled: Any) -> None:
    _, codes = enrolled
    sp = make_sp("pysaml2")
    set_policy(sp, require_mfa=True)
    req = sp.authn_request("redirect")
    resp = browser.sso(req, "alice", PASSWORD)
    body = resp.get_data(as_text=True)
    href = re.search(r'href="([^"]+)" id="use-recovery-code"', body).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
    page = browser.get(href)
    body = page.get_data(as_text=True)
    used = browser.client.post("/mfa/recovery", data={"csrf_token": csrf(body), "code": codes[0],
                                                       **continuation(body)})
    text = used.get_data(as_text=True)
    assert used.status_code == 200 and "<strong>9</strong>" in text
    ev = last_event()
    assert (ev.event_type, ev.reason, ev.detail["remaining"]) == ("account", "recovery_code_used", 9)
    assert codes[0] not in json.dumps(ev.detail)
    cont = re.search(r'href="([^"]+)" id="continue"', text).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
    form = saml_form(browser.get(cont))
    assert form is not None
    assert sp.process_response(form.saml_response, req.request_id).authn_context == MFA_CLASS
    account = browser.get("/account").get_data(as_text=True)
    assert 'id="recovery-left">9 unused' in account and 'data-reason="recovery_code_used"' in account


def test_recovery_code_clears_a_totp_suspension(make_sp, browser: Browser, enrolled: Any, alice: User) -> None:
    t, codes = enrolled
    from idp.models import utcnow
    alice.totp_failures, alice.totp_suspended_at = TOTP_MAX_CONSECUTIVE_FAILURES, utcnow()
    db.session.commit()
    sp = make_sp("onelogin")
    set_policy(sp, require_mfa=True)
    resp = browser.sso(sp.authn_request("redirect"), "alice", PASSWORD)
    assert resp.status_code == 403 and 'id="use-recovery-code"' in resp.get_data(as_text=True)
    page = browser.get(re.search(r'href="([^"]+)" id="use-recovery-code"',  # type: ignore[union-attr]
                                 resp.get_data(as_text=True)).group(1).replace("&amp;", "&"))
    body = page.get_data(as_text=True)
    used = browser.client.post("/mfa/recovery", data={"csrf_token": csrf(body), "code": codes[1],
                                                       **continuation(body)})
    assert used.status_code == 200 and 'id="recovery-unsuspended"' in used.get_data(as_text=True)
    db.session.expire_all()
    assert users_svc.get_user("alice").totp_suspended_at is None
    assert db.session.query(AdminAudit).filter_by(action="user.mfa_unsuspended", actor="web:alice").count() == 1
    assert last_event().detail["totp_unsuspended"] is True


def test_regenerate_recovery_codes_after_step_up(app: Flask, browser: Browser, enrolled: Any) -> None:
    t, old = enrolled
    browser.login(browser.get("/login"), "alice", PASSWORD)
    page = browser.get("/account")
    assert 'id="confirm-mfa"' in page.get_data(as_text=True)
    step_up = browser.get("/mfa?next=/account")
    back = submit_code(browser, step_up, code_for(t))
    body = back.get_data(as_text=True)
    assert 'id="regenerate-codes"' in body
    resp = browser.client.post("/account/recovery-codes", data={"csrf_token": csrf(body)})
    new = CODE_RE.findall(resp.get_data(as_text=True))
    assert resp.status_code == 200 and len(new) == 10 and not set(new) & set(old)
    alice = users_svc.get_user("alice")
    assert not recovery_codes.consume(alice, old[0]) and recovery_codes.consume(alice, new[0])
    row = db.session.query(AdminAudit).filter_by(action="mfa.enrolled").order_by(AdminAudit.id.desc()).first()
    assert row is not None and row.after["kind"] == "recovery_codes" and row.actor == "web:alice"
    assert new[1] not in json.dumps(row.after)


def test_own_reset_with_a_recovery_code_removes_factor_and_codes(browser: Browser, enrolled: Any) -> None:
    _, codes = enrolled
    browser.login(browser.get("/login"), "alice", PASSWORD)
    body = browser.get("/account").get_data(as_text=True)
    resp = browser.client.post("/account/mfa/reset", data={"csrf_token": csrf(body), "code": codes[2]})
    assert resp.status_code == 303
    db.session.expire_all()
    alice = users_svc.get_user("alice")
    assert not totp.is_enrolled(alice) and recovery_codes.remaining(alice) == 0
    account = browser.get("/account").get_data(as_text=True)
    assert 'data-reason="mfa_reset"' in account
    assert 'id="enroll-ask-admin"' in account, "a new first factor follows the enrolment rules (no trusted range)"


# ---------------------------------------------------------------- first enrolment: what the user sees

def test_self_enrolment_shows_codes_once_and_the_account_lists_the_event(browser: Browser, alice: User) -> None:
    org.add_trusted_range("127.0.0.0/8")
    browser.login(browser.get("/login"), "alice", PASSWORD)
    account = browser.get("/account").get_data(as_text=True)
    assert 'id="enroll-mfa"' in account
    page = browser.get("/mfa/enroll?next=/account")
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page.get_data(as_text=True)).group(1)  # type: ignore[union-attr]
    done = submit_code(browser, page, pyotp.TOTP(secret).now(), path="/mfa/enroll")
    codes = CODE_RE.findall(done.get_data(as_text=True))
    assert len(codes) == 10
    assert recovery_codes.consume(users_svc.get_user("alice"), codes[0])
    db.session.rollback()
    again = browser.login(browser.get("/account"), "alice", PASSWORD)
    body = again.get_data(as_text=True)
    assert "My account" in body   # /account itself needs only the password
    assert 'data-reason="mfa_enrolled"' in body and 'id="mfa-state">enrolled' in body
    audit = db.session.query(AdminAudit).filter_by(action="mfa.enrolled", target="alice").all()
    assert sorted(a.after["kind"] for a in audit) == ["recovery_codes", "totp"]
    assert all(a.actor == "web:alice" for a in audit)
    assert secret not in json.dumps([a.after for a in audit])


# ---------------------------------------------------------------- CLI

def test_org_set_and_show(app: Flask) -> None:
    shown = json.loads(ok(app, "org", "show", "--format", "json").stdout)
    assert shown == {"trusted_ip_ranges": [], "mfa_self_enroll": True, "mfa_enrolment": "trusted-ranges",
                     "mfa_enrolment_help": "", "admin_ip_ranges": [], "scim_delete": "deactivate",
                     "smtp_url": None, "smtp_source": None, "smtp_from": None, "admin_emails": []}
    assert ok(app, "org", "set", "--mfa-enrolment", "grace-days:14").stdout == "mfa enrolment: grace-days:14\n"
    ok(app, "org", "set", "--enrolment-help", "Call the IT desk, extension 4711.")
    table = ok(app, "org", "show").stdout
    assert "grace-days:14" in table and "Call the IT desk" in table and "mfa_self_enroll      on" in table
    fails(app, "org", "set", "--mfa-enrolment", "grace-days:400", fragment="1 to 365")
    fails(app, "org", "set", "--mfa-enrolment", "everyone", fragment="unknown enrolment mode")
    fails(app, "org", "set", fragment="nothing to change")
    assert org.mfa_enrolment() == "grace-days:14"
    rows = db.session.query(AdminAudit).filter_by(action="org.setting", target="mfa_enrolment").all()
    assert [(r.before, r.after) for r in rows] == [(None, "grace-days:14")]


def test_refusal_page_shows_the_org_help_text(app: Flask, browser: Browser, alice: User) -> None:
    ok(app, "org", "set", "--enrolment-help", "Call the IT desk <b>now</b>.")
    browser.login(browser.get("/login"), "alice", PASSWORD)
    resp = browser.get("/mfa/enroll")
    body = resp.get_data(as_text=True)
    assert resp.status_code == 403 and "Call the IT desk &lt;b&gt;now&lt;/b&gt;." in body


def test_cli_enrolment_link_factors_enrol_and_reset(app: Flask, alice: User) -> None:
    r = ok(app, "users", "enrolment-link", "alice", "--valid-hours", "5")
    assert re.fullmatch(r"http://localhost/mfa/enroll/link/[A-Za-z0-9_-]{43}\n", r.stdout)
    link_token = r.stdout.strip().rsplit("/", 1)[1]
    link = db.session.query(EnrolmentLink).one()
    assert link.created_by.startswith("cli") and round((link.expires_at - link.created_at).total_seconds()) == 5 * 3600
    assert ok(app, "users", "factors", "alice").stdout == "alice has no second factor\n"
    assert ok(app, "users", "factors", "alice", "--format", "json").stdout.strip() == "[]"
    r = ok(app, "users", "mfa-enroll", "alice")
    uri = r.stdout.strip()
    assert uri.startswith("otpauth://") and "\n" not in uri, "stdout: the URI only"
    # a first factor from the CLI comes with its recovery codes, shown once on stderr, and they work
    codes = PLAIN_CODE_RE.findall(r.stderr)
    assert len(codes) == 10 and "recovery codes" in r.stderr and not PLAIN_CODE_RE.search(r.stdout)
    assert recovery_codes.consume(users_svc.get_user("alice"), codes[3])
    rows = db.session.query(AdminAudit).filter_by(action="mfa.enrolled").order_by(AdminAudit.id).all()
    assert [r.after for r in rows] == [{"kind": "totp", "via": "cli"}, {"kind": "recovery_codes", "count": 10}]
    assert rows[0].actor.startswith("cli")
    assert db.session.query(SsoEvent).filter_by(reason="mfa_enrolled", username="alice").count() == 2
    # the enrolment ended the open link: it never works later (e.g. after a reset)
    db.session.expire_all()
    assert enrolment_links.check(link_token).state is LinkState.EXPIRED
    recovery_codes.issue(users_svc.get_user("alice"))
    factors = json.loads(ok(app, "users", "factors", "alice", "--format", "json").stdout)
    assert [f["kind"] for f in factors] == ["totp", "recovery_codes"]
    assert factors[1]["detail"] == "10 of 10 left" and factors[0]["created_at"].endswith("Z")
    assert "Authenticator app (TOTP)" in ok(app, "users", "factors", "alice").stdout
    fails(app, "users", "enrolment-link", "alice", fragment="already has a second factor")
    fails(app, "users", "enrolment-link", "nobody", fragment="no user")
    r = ok(app, "users", "mfa-reset", "alice")
    db.session.expire_all()
    assert db.session.query(RecoveryCode).count() == 0 and not totp.is_enrolled(users_svc.get_user("alice"))
    assert last_event().reason == "mfa_reset"


def test_db_init_hints_at_the_admins_enrolment_link(app: Flask) -> None:
    assert "idp users enrolment-link admin" in ok(app, "db", "init").stdout


# ---------------------------------------------------------------- console

@pytest.fixture
def admin_client(app: Flask) -> Any:
    pw = app.extensions["idp.passwords"]
    root = users_svc.add_user("root", email="root@example.com", password_hash=pw.hash(ADMIN_PASSWORD),
                              is_admin=True)
    enrol_totp(root)   # the console needs a session that passed the second factor
    c = app.test_client()
    login_admin(c, "root", ADMIN_PASSWORD)
    return c


def test_console_enrolment_mode(admin_client: Any) -> None:
    body = admin_client.get("/admin/org").get_data(as_text=True)
    assert 'id="enrolment-mode">trusted-ranges<' in body and 'name="mfa_enrolment"' in body
    resp = post(admin_client, "/admin/org/enrolment", {"mfa_enrolment": "grace-days", "grace_days": "0"},
                "/admin/org")
    assert resp.status_code == 422 and 'id="grace_days-error"' in resp.get_data(as_text=True)
    assert org.mfa_enrolment() == "trusted-ranges"
    resp = post(admin_client, "/admin/org/enrolment", {"mfa_enrolment": "grace-days", "grace_days": "21",
                                                       "enrolment_help": "Ask Ada."}, "/admin/org")
    assert resp.status_code == 303
    org._cache.clear()
    assert org.mfa_enrolment() == "grace-days:21" and org.mfa_enrolment_help() == "Ask Ada."
    resp = post(admin_client, "/admin/org/enrolment", {"mfa_enrolment": "anyone"}, "/admin/org")
    assert resp.status_code == 422


def test_console_enrolment_link_is_shown_once_and_works(app: Flask, admin_client: Any, alice: User) -> None:
    org.set_mfa_enrolment("link-only")
    body = admin_client.get("/admin/users/alice").get_data(as_text=True)
    assert 'id="enrolment-link"' in body
    resp = post(admin_client, "/admin/users/alice/enrolment-link", {}, "/admin/users/alice")
    text = resp.get_data(as_text=True)
    url = re.search(r'id="enrolment-link-url">([^<]+)<', text).group(1)  # type: ignore[union-attr]
    assert resp.status_code == 200 and url.startswith("http://localhost/mfa/enroll/link/")
    assert url not in admin_client.get("/admin/users/alice").get_data(as_text=True), "shown once"
    audit = db.session.query(AdminAudit).filter_by(action="users.enrolment_link").one()
    assert audit.actor == "web:root" and url.rsplit("/", 1)[1] not in json.dumps(audit.after)
    user = Browser(app.test_client())
    page = user.login(user.get(local_path(url)), "alice", PASSWORD)
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page.get_data(as_text=True)).group(1)  # type: ignore[union-attr]
    body = page.get_data(as_text=True)
    done = user.client.post(local_path(url), data={"csrf_token": csrf(body), "code": pyotp.TOTP(secret).now(),
                                                  **continuation(body)})
    assert done.status_code == 200 and len(CODE_RE.findall(done.get_data(as_text=True))) == 10
    db.session.expire_all()
    assert db.session.query(IdpSession).filter(IdpSession.ended_at.is_(None),
                                               IdpSession.user_id == users_svc.get_user("alice").id).count() == 0
    row = db.session.query(AdminAudit).filter_by(action="mfa.enrolled", target="alice").first()
    assert row is not None and row.after == {"kind": "totp", "via": "link"}
    body = admin_client.get("/admin/users/alice").get_data(as_text=True)
    assert 'id="factor-list"' in body and "10 of 10 left" in body and 'id="enrolment-link"' not in body


def test_console_enrolment_link_takes_its_validity_in_hours(admin_client: Any, alice: User) -> None:
    body = admin_client.get("/admin/users/alice").get_data(as_text=True)
    assert 'name="valid_hours"' in body and 'value="72"' in body
    for bad in ("abc", "0", "721", "-3", "1.5"):
        resp = post(admin_client, "/admin/users/alice/enrolment-link", {"valid_hours": bad}, "/admin/users/alice")
        text = resp.get_data(as_text=True)
        assert resp.status_code == 422 and 'id="valid_hours-error"' in text and "1 to 720" in text, bad
        assert 'id="enrolment-link-url"' not in text
    assert db.session.query(EnrolmentLink).count() == 0, "no link for a refused form"
    resp = post(admin_client, "/admin/users/alice/enrolment-link", {"valid_hours": "5"}, "/admin/users/alice")
    assert resp.status_code == 200 and "for 5 hours" in resp.get_data(as_text=True)
    link = db.session.query(EnrolmentLink).one()
    assert round((link.expires_at - link.created_at).total_seconds()) == 5 * 3600
    audit = db.session.query(AdminAudit).filter_by(action="users.enrolment_link").one()
    assert audit.after["valid_hours"] == 5 and audit.actor == "web:root"


# ---------------------------------------------------------------- only one first enrolment of a user can win

def _link_gate(alice: User) -> tuple[str, Any]:
    from idp.flows.enrolment import EnrolmentAllowed, first_factor_gate
    from idp.services import accounts
    token = accounts.issue_enrolment_link(alice)
    db.session.commit()
    gate = first_factor_gate(alice, "192.0.2.7", token)
    assert isinstance(gate, EnrolmentAllowed) and gate.via == "link"
    return token, gate


def test_a_second_enrolment_with_one_link_loses_and_the_saved_codes_stay(app: Flask, alice: User) -> None:
    """Two tabs enrol with the same link at once. The flow-level interleaving of the race (both passed the gate;
    the other one finished and committed first): before the fix the second also succeeded, and its
    recovery_codes.issue() replaced the codes the user had just saved."""
    from idp.flows.authorize import Client
    from idp.flows.enrolment import EnrolmentRefused, FirstFactorEnrolled, finish_first_enrolment
    token, gate = _link_gate(alice)
    client = Client(ip="192.0.2.7", user_agent="tab")
    first = finish_first_enrolment(alice, "totp", client, gate.via, token)     # tab 1 wins ...
    assert isinstance(first, FirstFactorEnrolled) and len(first.recovery_codes) == 10
    db.session.commit()
    second = finish_first_enrolment(alice, "passkey", client, gate.via, token)  # ... tab 2 had passed the gate
    assert isinstance(second, EnrolmentRefused) and second.reason == "enrolled_meanwhile"
    db.session.rollback()   # what the web layer does with that refusal
    assert recovery_codes.consume(alice, first.recovery_codes[0]), "the codes the user saved still work"
    assert recovery_codes.remaining(alice) == 9


def test_a_link_spent_meanwhile_stops_the_enrolment(app: Flask, alice: User) -> None:
    from idp.auth import enrolment_links
    from idp.flows.authorize import Client
    from idp.flows.enrolment import EnrolmentRefused, finish_first_enrolment
    token, gate = _link_gate(alice)
    assert enrolment_links.consume(token, alice)    # the other request spent it (and committed)
    db.session.commit()
    done = finish_first_enrolment(alice, "totp", Client(ip=None, user_agent=None), gate.via, token)
    assert isinstance(done, EnrolmentRefused) and done.reason == "link_spent"
    assert recovery_codes.remaining(alice) == 0


def test_the_losing_request_keeps_nothing_and_says_so(app: Flask, alice: User) -> None:
    """The web layer's side of a lost race (mfa_views): roll back, then a 409 page and an event."""
    from idp.flows.authorize import Client
    from idp.flows.enrolment import EnrolmentRefused, finish_first_enrolment, record_refusal
    token, gate = _link_gate(alice)
    recovery_codes.issue(alice)   # the other enrolment's codes (committed)
    db.session.commit()
    secret = totp.start_enrolment(alice)
    alice.totp_confirmed = True     # this request's factor, about to be undone
    done = finish_first_enrolment(alice, "totp", Client(ip=None, user_agent=None), gate.via, token)
    assert isinstance(done, EnrolmentRefused)
    db.session.rollback()
    record_refusal(alice, done, Client(ip=None, user_agent=None))
    db.session.commit()
    db.session.expire_all()
    fresh = users_svc.get_user("alice")
    assert not fresh.totp_confirmed and totp.secret_of(fresh) != secret
    assert last_event().reason == "enrolment_refused" and last_event().detail["refusal"] == "enrolled_meanwhile"


# ---------------------------------------------------------------- factor events the user sees on /account

def _suspend(username: str) -> None:
    from idp.models import utcnow
    user = users_svc.get_user(username)
    user.totp_failures = TOTP_MAX_CONSECUTIVE_FAILURES
    user.totp_suspended_at = utcnow()
    db.session.commit()


def _account_events(username: str, reason: str) -> list[SsoEvent]:
    db.session.expire_all()
    return db.session.query(SsoEvent).filter_by(username=username, reason=reason).order_by(SsoEvent.id).all()


def test_console_and_cli_unsuspend_are_events_on_the_account(app: Flask, admin_client: Any, alice: User,
                                                             bob: User) -> None:
    enrol(alice)
    enrol(bob)
    _suspend("alice")
    _suspend("bob")
    resp = post(admin_client, "/admin/users/alice/mfa-unsuspend", {}, "/admin/users/alice")
    assert resp.status_code == 303
    ok(app, "users", "mfa-unsuspend", "bob")
    for name in ("alice", "bob"):
        (ev,) = _account_events(name, "mfa_unsuspended")
        assert (ev.event_type, ev.outcome, ev.detail["by"]) == ("account", "success", "admin")
    user = Browser(app.test_client())   # bob's own view: his /account lists it
    user.login(user.get("/login"), "bob", PASSWORD)
    account = user.get("/account").get_data(as_text=True)
    assert 'data-reason="mfa_unsuspended"' in account and "authenticator restored" in account


def test_own_reset_records_the_recovery_code_and_wrong_or_throttled_codes(app: Flask, browser: Browser,
                                                                          enrolled: Any) -> None:
    from idp.throttle import MFA_RULE
    _, codes = enrolled
    browser.login(browser.get("/login"), "alice", PASSWORD)
    body = browser.get("/account").get_data(as_text=True)
    resp = browser.client.post("/account/mfa/reset", data={"csrf_token": csrf(body), "code": "000000"})
    assert resp.status_code == 422
    (ev,) = _account_events("alice", "mfa_failed")
    assert ev.event_type == "account" and "000000" not in json.dumps(ev.detail)
    for _ in range(MFA_RULE.free):
        resp = browser.client.post("/account/mfa/reset", data={"csrf_token": csrf(body), "code": "000000"})
    assert resp.status_code == 429
    assert _account_events("alice", "throttled"), "a throttled attempt is an event too"
    from idp.throttle import reset, totp_code_key
    reset(totp_code_key(users_svc.get_user("alice").id, "127.0.0.1"))
    db.session.commit()
    resp = browser.client.post("/account/mfa/reset", data={"csrf_token": csrf(body), "code": codes[4]})
    assert resp.status_code == 303
    (used,) = _account_events("alice", "recovery_code_used")
    assert used.detail["purpose"] == "factor reset" and codes[4] not in json.dumps(used.detail)
    account = browser.get("/account").get_data(as_text=True)
    assert 'data-reason="recovery_code_used"' in account and 'data-reason="mfa_reset"' in account
    assert "recovery codes were removed" in account


def test_own_reset_with_a_passkey_left_keeps_the_codes_and_says_so(app: Flask, browser: Browser,
                                                                  enrolled: Any) -> None:
    from idp.models import Passkey, utcnow
    t, _ = enrolled
    alice = users_svc.get_user("alice")
    db.session.add(Passkey(user_id=alice.id, credential_id=b"\x01" * 16, public_key=b"k", sign_count=0,
                           name="laptop", created_at=utcnow(), transports=[], backup_eligible=False,
                           backup_state=False))
    db.session.commit()
    browser.login(browser.get("/login"), "alice", PASSWORD)
    body = browser.get("/account").get_data(as_text=True)
    resp = browser.client.post("/account/mfa/reset", data={"csrf_token": csrf(body), "code": t.now()})
    assert resp.status_code == 303
    account = browser.get("/account").get_data(as_text=True)
    assert "Your authenticator app was removed" in account and "recovery codes were removed" not in account
    assert recovery_codes.remaining(users_svc.get_user("alice")) == 10


def test_a_wrong_code_while_confirming_a_new_authenticator_is_an_event(app: Flask, browser: Browser,
                                                                     alice: User) -> None:
    org.add_trusted_range("127.0.0.0/8")
    page = browser.login(browser.get("/mfa/enroll"), "alice", PASSWORD)
    body = page.get_data(as_text=True)
    resp = browser.client.post("/mfa/enroll", data={"csrf_token": csrf(body), "code": "000000",
                                                    **continuation(body)})
    assert resp.status_code == 401
    (ev,) = _account_events("alice", "mfa_failed")
    assert "new authenticator" in ev.detail["message"] and "000000" not in json.dumps(ev.detail)
