"""A stolen password is not enough to pass "require MFA" (issue 13, hole 1).

The attacker knows alice's password, nothing else. Before the fix: SP-initiated SSO to an MFA app, the second-factor
page offered enrolment, /mfa/enroll showed a fresh TOTP secret, and a code from it completed the SSO with an MFA
authentication context (and the attacker's authenticator became alice's factor). Now a first factor can be enrolled
only under the org's enrolment rules (trusted ranges by default, an admin-issued link, or a grace window), and even
then the enrolment never completes the SSO it was needed for: every session ends and the user signs in again with
the password and the new factor. Enrolment links are one-time, per user and expiring; recovery codes are single-use
and throttled like TOTP codes.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pyotp
import pytest
from sqlalchemy import update

from idp.extensions import db
from idp.models import AdminAudit, EnrolmentLink, IdpSession, User, utcnow
from idp.services import org
from idp.services import users as users_svc

from ..functional.conftest import events, last_event
from ..functional.test_policy_flows import MFA_CLASS, code_for, set_policy
from ..webclient import Browser, continuation, local_path, saml_form
from .conftest import PASSWORD

_SECRET = re.compile(r'id="totp-secret">([A-Z2-7]+)<')


def _csrf(body: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', body)
    assert m, body[:300]
    return m.group(1)


def enrol_own_authenticator(browser: Browser, resp: Any) -> tuple[Any, pyotp.TOTP | None]:
    """The attack: from wherever the sign-in stopped (the second-factor page), open the enrolment page with the same
    continuation, and confirm an authenticator of the attacker's own. Returns the last page (and the TOTP if a
    secret was shown)."""
    args = resp.request.args
    cont = {k: args[k] for k in ("next", "request") if args.get(k)} or continuation(resp.get_data(as_text=True))
    page = browser.get("/mfa/enroll?" + urlencode(cont))
    m = _SECRET.search(page.get_data(as_text=True))
    if m is None:   # no secret shown: post a code anyway, as a scripted attacker would
        token = _csrf(browser.get("/login").get_data(as_text=True)) if 'csrf_token' not in page.get_data(
            as_text=True) else _csrf(page.get_data(as_text=True))
        last = browser.follow(browser.client.post("/mfa/enroll", data={"csrf_token": token, "code": "123456",
                                                                       **cont}))
        return last, None
    t = pyotp.TOTP(m.group(1))
    last = browser.follow(browser.client.post("/mfa/enroll", data={"csrf_token": _csrf(page.get_data(as_text=True)),
                                                                   "code": t.now(), **cont}))
    return last, t


def assert_no_assertion(resp: Any) -> None:
    body = resp.get_data(as_text=True)
    assert saml_form(resp) is None and "SAMLResponse" not in body, "an assertion left the IdP"


def no_factor(username: str = "alice") -> bool:
    db.session.expire_all()
    user = users_svc.get_user(username)
    return not user.totp_confirmed


def live_sessions() -> list[IdpSession]:
    db.session.expire_all()
    return db.session.query(IdpSession).filter(IdpSession.ended_at.is_(None)).all()


# ---------------------------------------------------------------- the reported attack, default settings

@pytest.mark.parametrize("kind", ["pysaml2", "onelogin"])
def test_stolen_password_cannot_enrol_through_require_mfa(make_sp, browser, alice, kind):
    sp = make_sp(kind)
    set_policy(sp, require_mfa=True)
    resp = browser.sso(sp.authn_request("redirect"), "alice", PASSWORD)
    assert_no_assertion(resp)
    last, shown = enrol_own_authenticator(browser, resp)
    assert_no_assertion(last)
    assert shown is None, "no TOTP secret may be shown to a password-only sign-in by default"
    assert last.status_code == 403 and 'id="enrolment-refused"' in last.get_data(as_text=True)
    assert no_factor(), "the attacker's authenticator is not alice's factor"
    ev = last_event()
    assert (ev.event_type, ev.reason, ev.username) == ("account", "enrolment_refused", "alice")
    assert ev.detail["refusal"] == "outside_trusted_ranges" and ev.app_slug == sp.slug
    assert f"<code>{ev.id}</code>" in last.get_data(as_text=True)


def test_stolen_password_cannot_enrol_through_relax_with_mfa_outside_the_ranges(make_sp, browser, alice):
    sp = make_sp("pysaml2")
    org.add_trusted_range("10.0.0.0/8")       # the office; the attacker is elsewhere (127.0.0.1)
    set_policy(sp, ip_policy="relax-with-mfa", ip_ranges=["10.0.0.0/8"])
    resp = browser.sso(sp.authn_request("post"), "alice", PASSWORD)
    assert_no_assertion(resp)
    last, shown = enrol_own_authenticator(browser, resp)
    assert_no_assertion(last)
    assert shown is None and no_factor()
    assert last.status_code == 403 and last_event().reason == "enrolment_refused"


@pytest.mark.parametrize("setting", ["trusted-range", "grace-days"])
def test_an_allowed_enrolment_never_completes_the_sso_it_was_needed_for(make_sp, browser, alice, app, setting):
    """Even where self-enrolment is allowed, the enrolment is not the second factor: no assertion, every session
    ends, and the SSO resumes only after the password AND a code from the new authenticator."""
    sp = make_sp("onelogin")
    set_policy(sp, require_mfa=True)
    if setting == "trusted-range":
        org.add_trusted_range("127.0.0.0/8")
    elif setting == "grace-days":
        org.set_mfa_enrolment("grace-days:7")
    other = Browser(app.test_client())
    other.login(other.get("/login"), "alice", PASSWORD)      # an earlier session of alice's
    req = sp.authn_request("redirect")
    resp = browser.sso(req, "alice", PASSWORD)
    last, shown = enrol_own_authenticator(browser, resp)
    assert shown is not None and last.status_code == 200
    assert_no_assertion(last)
    assert 'id="mfa-enrolled"' in last.get_data(as_text=True)
    assert live_sessions() == [], "a first enrolment ends every session of the user"
    assert other.client.get("/").status_code == 302
    # the legitimate way on: the link back to the sign-in page carries the parked request
    again = re.search(r'id="sign-in-again" href="([^"]+)"', last.get_data(as_text=True)).group(1)  # type: ignore[union-attr]
    page = browser.get(again.replace("&amp;", "&"))
    assert 'name="password"' in page.get_data(as_text=True)
    page = browser.login(page, "alice", PASSWORD)
    assert_no_assertion(page)
    assert 'name="code"' in page.get_data(as_text=True), "the new factor is asked for"
    body = page.get_data(as_text=True)
    form = saml_form(browser.follow(browser.client.post("/mfa", data={"csrf_token": _csrf(body),
                                                                       "code": code_for(shown, 1),
                                                                       **continuation(body)})))
    assert form is not None
    assert sp.process_response(form.saml_response, req.request_id).authn_context == MFA_CLASS
    assert db.session.query(AdminAudit).filter_by(action="mfa.enrolled", target="alice").count() == 2  # totp, codes


@pytest.mark.parametrize("mode,created_days_ago,expected", [
    ("link-only", 0, "link_required"),
    ("grace-days:3", 4, "grace_expired"),
])
def test_enrolment_modes_refuse(make_sp, browser, alice, mode, created_days_ago, expected):
    org.add_trusted_range("127.0.0.0/8")      # would allow in the default mode: the mode decides
    org.set_mfa_enrolment(mode)
    db.session.execute(update(User).where(User.id == alice.id)
                       .values(created_at=utcnow() - timedelta(days=created_days_ago, hours=1)))
    sp = make_sp("pysaml2")
    set_policy(sp, require_mfa=True)
    resp = browser.sso(sp.authn_request("redirect"), "alice", PASSWORD)
    last, shown = enrol_own_authenticator(browser, resp)
    assert_no_assertion(last)
    assert shown is None and no_factor() and last.status_code == 403
    assert last_event().detail["refusal"] == expected


def test_a_user_with_a_factor_cannot_add_another_with_the_password_alone(make_sp, browser, alice):
    from ..functional.test_policy_flows import enrol
    enrol(alice)
    org.add_trusted_range("127.0.0.0/8")
    sp = make_sp("pysaml2")
    set_policy(sp, require_mfa=True)
    resp = browser.sso(sp.authn_request("redirect"), "alice", PASSWORD)
    last, shown = enrol_own_authenticator(browser, resp)
    assert_no_assertion(last)
    assert shown is None and 'name="code"' in last.get_data(as_text=True), "sent to the existing factor"


# ---------------------------------------------------------------- enrolment links

def issue_link(app, username: str, *extra: str) -> str:  # type: ignore[no-untyped-def]
    r = app.test_cli_runner().invoke(args=["users", "enrolment-link", username, *extra])
    assert r.exit_code == 0, r.output
    url = r.stdout.strip()
    assert url.startswith("http://localhost/mfa/enroll/link/")
    return local_path(url)


def enrol_with_link(browser: Browser, path: str, username: str = "alice") -> tuple[Any, pyotp.TOTP | None]:
    page = browser.get(path)
    if 'name="password"' in page.get_data(as_text=True):
        page = browser.login(page, username, PASSWORD)
    m = _SECRET.search(page.get_data(as_text=True))
    if m is None:
        return page, None
    t = pyotp.TOTP(m.group(1))
    body = page.get_data(as_text=True)
    return browser.follow(browser.client.post(path, data={"csrf_token": _csrf(body), "code": t.now(),
                                                          **continuation(body)})), t


def test_enrolment_link_works_in_link_only_mode_survives_login_and_is_one_time(app, browser, alice):
    org.set_mfa_enrolment("link-only")
    path = issue_link(app, "alice")
    stored = db.session.query(EnrolmentLink).one()
    assert path.rsplit("/", 1)[1] not in stored.token_hash, "only a hash is stored"
    done, t = enrol_with_link(browser, path)     # signs in with the password on the way
    assert t is not None and done.status_code == 200 and 'id="mfa-enrolled"' in done.get_data(as_text=True)
    assert not no_factor() and live_sessions() == []
    db.session.refresh(stored)
    assert stored.used_at is not None
    # the same link again (even signed in again): refused, nothing changes
    again = Browser(app.test_client())
    resp = again.get(path)
    assert resp.status_code == 410 and saml_form(resp) is None
    assert last_event().reason == "enrolment_link_invalid" and last_event().detail["link_state"] == "used"
    audit = db.session.query(AdminAudit).filter_by(action="users.enrolment_link").one()
    assert path.rsplit("/", 1)[1] not in str(audit.after)


def test_enrolment_link_of_another_user_is_refused(app, browser, alice, bob):
    path = issue_link(app, "bob")
    page, t = enrol_with_link(browser, path, "alice")   # alice's stolen password, bob's link
    assert t is None and page.status_code == 403 and no_factor("alice") and no_factor("bob")
    assert last_event().reason == "enrolment_link_invalid" and last_event().username == "alice"
    db.session.expire_all()
    assert db.session.query(EnrolmentLink).one().used_at is None, "not spent by the wrong user"


def test_enrolment_link_unknown_expired_or_replaced(app, browser, alice):
    resp = browser.get("/mfa/enroll/link/not-a-real-token")
    assert resp.status_code == 404 and last_event().detail["link_state"] == "unknown"
    first = issue_link(app, "alice")
    second = issue_link(app, "alice", "--valid-hours", "1")
    resp = browser.get(first)
    assert resp.status_code == 410 and last_event().detail["link_state"] == "expired", "a newer link replaced it"
    db.session.execute(update(EnrolmentLink).values(expires_at=utcnow() - timedelta(seconds=1)))
    resp = browser.get(second)
    assert resp.status_code == 410 and 'name="password"' not in resp.get_data(as_text=True)
    assert no_factor()
    r = app.test_cli_runner().invoke(args=["users", "enrolment-link", "alice", "--valid-hours", "721"])
    assert r.exit_code != 0


def test_wrong_codes_on_a_link_do_not_spend_it(app, browser, alice):
    path = issue_link(app, "alice")
    page = browser.login(browser.get(path), "alice", PASSWORD)
    body = page.get_data(as_text=True)
    resp = browser.client.post(path, data={"csrf_token": _csrf(body), "code": "000000", **continuation(body)})
    assert resp.status_code == 401 and no_factor()
    db.session.expire_all()
    assert db.session.query(EnrolmentLink).one().used_at is None


# ---------------------------------------------------------------- recovery codes

@pytest.fixture
def alice_with_codes(app, alice):  # type: ignore[no-untyped-def]
    from idp.auth import recovery_codes

    from ..functional.test_policy_flows import enrol
    t = enrol(alice)
    codes = recovery_codes.issue(alice)
    db.session.commit()
    return t, codes


def post_recovery(browser: Browser, resp: Any, code: str) -> Any:
    args = resp.request.args
    cont = {k: args[k] for k in ("next", "request") if args.get(k)}
    page = browser.get("/mfa/recovery?" + urlencode(cont))
    body = page.get_data(as_text=True)
    return browser.client.post("/mfa/recovery", data={"csrf_token": _csrf(body), "code": code, **continuation(body)})


def test_recovery_code_needs_the_password_first(client, alice_with_codes):
    _, codes = alice_with_codes
    resp = client.get("/mfa/recovery")
    assert resp.status_code == 303 and "/login" in resp.headers["Location"]


def test_recovery_codes_are_single_use_per_user_and_throttled(make_sp, browser, alice_with_codes, app, bob):
    from idp.auth import recovery_codes
    _, codes = alice_with_codes
    bobs = recovery_codes.issue(bob)
    db.session.commit()
    sp = make_sp("pysaml2")
    set_policy(sp, require_mfa=True)
    resp = browser.sso(sp.authn_request("redirect"), "alice", PASSWORD)
    wrong = post_recovery(browser, resp, bobs[0])              # another user's code
    assert wrong.status_code == 401 and saml_form(wrong) is None
    assert last_event().reason == "mfa_failed" and last_event().username == "alice"
    assert codes[0] not in str([e.detail for e in events()]), "never a code in the event log"
    statuses = [post_recovery(browser, resp, "aaaa-aaaa-aa").status_code for _ in range(8)]
    assert 429 in statuses, "wrong recovery codes are throttled like TOTP codes"
    assert events(reason="throttled")[-1].username == "alice"
    # the right code is refused while throttled, then works once
    assert post_recovery(browser, resp, codes[0]).status_code == 429
    db.session.execute(update(User).values(totp_failures=0))
    from idp.models import ThrottleCounter
    db.session.query(ThrottleCounter).delete()
    db.session.commit()
    ok = post_recovery(browser, resp, codes[0].upper().replace("-", " "))
    assert ok.status_code == 200 and 'id="recovery-remaining"' in ok.get_data(as_text=True)
    assert recovery_codes.remaining(users_svc.get_user("alice")) == 9
    # replayed from another browser: refused
    other = Browser(app.test_client())
    resp = other.sso(sp.authn_request("redirect"), "alice", PASSWORD)
    assert post_recovery(other, resp, codes[0]).status_code == 401


def test_regenerating_recovery_codes_needs_a_second_factor_session(client, alice_with_codes):
    from .conftest import login
    login(client)
    body = client.get("/account").get_data(as_text=True)
    assert 'id="regenerate-codes"' not in body
    resp = client.post("/account/recovery-codes", data={"csrf_token": _csrf(body)})
    assert resp.status_code == 403 and 'id="recovery-codes"' not in resp.get_data(as_text=True)
    from idp.auth import recovery_codes
    assert recovery_codes.remaining(users_svc.get_user("alice")) == 10


# ---------------------------------------------------------------- a link never outlives the enrolment it was for

def test_an_unused_link_dies_when_the_user_enrols_another_way_and_stays_dead_after_a_reset(app, browser, alice):
    """The link mailed to alice stays in her mailbox unused: she enrolled from the office instead. Months later an
    admin resets her factors; an attacker with her password and that old link (valid up to 720 h) must not be
    able to enrol: before the fix the link was still open and worked again once she had no factor."""
    org.add_trusted_range("127.0.0.0/8")
    path = issue_link(app, "alice", "--valid-hours", "720")
    page = browser.login(browser.get("/mfa/enroll"), "alice", PASSWORD)   # from the trusted range, no link
    secret = _SECRET.search(page.get_data(as_text=True))
    assert secret is not None
    body = page.get_data(as_text=True)
    code = pyotp.TOTP(secret.group(1)).now()
    done = browser.client.post("/mfa/enroll", data={"csrf_token": _csrf(body), "code": code, **continuation(body)})
    assert done.status_code == 200 and not no_factor()
    r = app.test_cli_runner().invoke(args=["users", "mfa-reset", "alice"])
    assert r.exit_code == 0 and no_factor()
    org.remove_trusted_range("127.0.0.0/8")
    org.set_mfa_enrolment("link-only")
    db.session.commit()
    attacker = Browser(app.test_client())
    page, t = enrol_with_link(attacker, path)
    assert t is None and page.status_code == 410 and no_factor()
    assert last_event().reason == "enrolment_link_invalid" and last_event().detail["link_state"] == "expired"
    assert db.session.query(AdminAudit).filter_by(action="users.enrolment_links_revoked", target="alice").count() == 1


def test_a_reset_ends_the_users_open_links(app, browser, alice):
    path = issue_link(app, "alice")
    assert app.test_cli_runner().invoke(args=["users", "mfa-reset", "alice"]).exit_code == 0
    page, t = enrol_with_link(browser, path)
    assert t is None and page.status_code == 410 and no_factor()
