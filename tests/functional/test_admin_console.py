"""Admin console and account page over the test client: guards, CSRF, validation, escaping, exports, audit."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta
from typing import Any

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from idp.errors import EventContext
from idp.events import record_event
from idp.extensions import db
from idp.models import (
    AdminAudit,
    EnrolmentLink,
    Group,
    IdpSession,
    OrgSetting,
    RecoveryCode,
    SsoEvent,
    User,
    utcnow,
)
from idp.reasons import Outcome, Reason
from idp.services import apps as apps_svc
from idp.services import org as org_svc
from idp.services import users as users_svc

from ..conftest import SP_METADATA_DIR
from ..webclient import AUTHENTICATORS, enrol_totp, pass_second_factor
from .conftest import PASSWORD

ADMIN_PASSWORD = "admin passphrase 1"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def admin(app: Flask) -> User:
    pw = app.extensions["idp.passwords"]
    user = users_svc.add_user("admin", email="admin@example.com", password_hash=pw.hash(ADMIN_PASSWORD),
                              first_name="Ada", is_admin=True)
    enrol_totp(user)  # the console needs a session that passed the second factor
    return user


@pytest.fixture
def people(admin: User, alice: User, bob: User) -> None:
    """admin (admin), alice (engineering), bob."""


@pytest.fixture
def connected_app(app: Flask) -> str:
    xml = (SP_METADATA_DIR / "python3-saml-no-keydescriptor.xml").read_bytes()
    return apps_svc.register_app(xml, slug="wiki", name="Team wiki").slug


def login(client: FlaskClient, username: str, password: str) -> None:
    """Sign in; a user with an authenticator (the admin) also passes the second factor, as the console needs."""
    token = _CSRF.search(client.get("/login").get_data(as_text=True)).group(1)  # type: ignore[union-attr]
    resp = client.post("/login", data={"csrf_token": token, "username": username, "password": password, "next": "/"})
    assert resp.status_code == 303, resp.get_data(as_text=True)[:300]
    if username in AUTHENTICATORS:
        pass_second_factor(client, username)


def token(client: FlaskClient, path: str = "/account") -> str:
    m = _CSRF.search(client.get(path).get_data(as_text=True))
    assert m, f"no form on {path}"
    return m.group(1)


def post(client: FlaskClient, path: str, data: dict[str, Any], form_page: str = "/account") -> Any:
    return client.post(path, data={"csrf_token": token(client, form_page), **data})


def snapshot(app: Flask) -> dict[str, Any]:
    """Everything an admin form can change."""
    db.session.expire_all()
    users = {u.username: (u.email, u.first_name, u.last_name, u.is_admin, u.disabled, u.password_hash,
                          u.totp_secret, u.group_names) for u in db.session.query(User)}
    cert_dir = app.extensions["idp.settings"].cert_dir
    return {
        "users": users,
        "groups": sorted(g.name for g in db.session.query(Group)),
        "org": {s.key: s.value for s in db.session.query(OrgSetting)},
        "audit": db.session.query(AdminAudit).count(),
        "sessions_ended": sorted(s.id for s in db.session.query(IdpSession) if s.ended_at),
        "enrolment_links": db.session.query(EnrolmentLink).count(),
        "recovery_codes": db.session.query(RecoveryCode).count(),
        "keystore": (cert_dir / "keystore.json").read_text(),
    }


# Every admin form (path, valid-looking data) and every admin page.
ADMIN_POSTS = [
    ("/admin/users/new", {"username": "carol", "email": "carol@example.com", "password": "long password 1",
                          "password_confirm": "long password 1"}),
    ("/admin/users/bob", {"email": "bob2@example.com", "first_name": "B"}),
    ("/admin/users/bob/status", {"disabled": "1"}),
    ("/admin/users/bob/password", {"password": "new password 22", "password_confirm": "new password 22"}),
    ("/admin/users/bob/mfa-reset", {}),
    ("/admin/users/bob/mfa-unsuspend", {}),
    ("/admin/users/bob/enrolment-link", {}),
    ("/admin/groups/new", {"name": "sales"}),
    ("/admin/groups/engineering/members", {"username": "bob"}),
    ("/admin/groups/engineering/members/remove", {"username": "alice"}),
    ("/admin/groups/engineering/delete", {}),
    ("/admin/org/ranges", {"cidr": "10.0.0.0/8"}),
    ("/admin/org/ranges/remove", {"cidr": "192.0.2.0/24"}),
    ("/admin/org/mfa", {"self_enroll": "0"}),
    ("/admin/org/enrolment", {"mfa_enrolment": "link-only", "grace_days": "30", "enrolment_help": "x"}),
    ("/admin/access", {"username": "alice", "app": "wiki"}),
    ("/admin/certs/rotate", {"key_type": "rsa2048", "days": "30"}),
    ("/admin/certs/activate", {}),
    ("/admin/certs/retire", {}),
]
ADMIN_GETS = [
    "/admin/users", "/admin/users/new", "/admin/users/bob", "/admin/users/bob/mfa-reset", "/admin/groups",
    "/admin/groups/engineering", "/admin/groups/engineering/delete", "/admin/org",
    "/admin/org/ranges/remove?cidr=192.0.2.0/24", "/admin/events",
    "/admin/events/export.csv", "/admin/events/export.json", "/admin/access", "/admin/certs",
    "/admin/certs/rotate", "/admin/certs/activate", "/admin/certs/retire", "/admin/audit",
]
ACCOUNT_POSTS = [
    ("/account/password", {"current_password": PASSWORD, "new_password": "brand new pass 1",
                           "new_password_confirm": "brand new pass 1"}),
    ("/account/mfa/reset", {"code": "123456"}),
    ("/account/recovery-codes", {}),
]


@pytest.fixture
def world(app: Flask, people: None, connected_app: str) -> None:
    org_svc.add_trusted_range("192.0.2.0/24")


# ---------------------------------------------------------------- guards

@pytest.mark.parametrize("path", ADMIN_GETS + ["/account"])
def test_anonymous_is_sent_to_login(client: FlaskClient, world: None, path: str) -> None:
    resp = client.get(path)
    assert resp.status_code == 302
    assert resp.headers["Location"].startswith("/login?next=")


def test_anonymous_posts_change_nothing(client: FlaskClient, app: Flask, world: None) -> None:
    before = snapshot(app)
    for path, data in ADMIN_POSTS + ACCOUNT_POSTS:
        resp = client.post(path, data={"csrf_token": token(client, "/login"), **data})
        assert resp.status_code in (302, 303), path
        assert "/login" in resp.headers["Location"]
    assert snapshot(app) == before


def test_non_admin_gets_403_everywhere_and_nothing_changes(client: FlaskClient, app: Flask, world: None) -> None:
    login(client, "alice", PASSWORD)
    before = snapshot(app)
    for path in ADMIN_GETS:
        assert client.get(path).status_code == 403, path
    for path, data in ADMIN_POSTS:
        assert post(client, path, data).status_code == 403, path
    assert snapshot(app) == before


def test_post_without_csrf_is_refused_everywhere(client: FlaskClient, app: Flask, world: None) -> None:
    login(client, "admin", ADMIN_PASSWORD)
    before = snapshot(app)
    for path, data in ADMIN_POSTS + ACCOUNT_POSTS:
        resp = client.post(path, data=data)
        assert resp.status_code == 400, path
        assert "Form expired" in resp.get_data(as_text=True)
        resp = client.post(path, data={**data, "csrf_token": "forged"})
        assert resp.status_code == 400, path
    assert snapshot(app) == before


def test_every_admin_page_renders(client: FlaskClient, world: None) -> None:
    login(client, "admin", ADMIN_PASSWORD)
    for path in ADMIN_GETS:
        resp = client.get(path)
        assert resp.status_code == 200, path
    nav = client.get("/admin/users").get_data(as_text=True)
    for label in ("Users", "Groups", "Event log", "Access check", "Certificates", "Org settings", "Audit trail"):
        assert f">{label}</a>" in nav


@pytest.mark.parametrize("path", ["/admin/users/nobody", "/admin/groups/nogroup", "/admin/certs/explode",
                                  "/admin/org/ranges/remove?cidr=10.9.9.0/24"])
def test_unknown_things_are_404(client: FlaskClient, world: None, path: str) -> None:
    login(client, "admin", ADMIN_PASSWORD)
    assert client.get(path).status_code == 404


# ---------------------------------------------------------------- users

def test_create_user_records_audit_with_web_actor(client: FlaskClient, app: Flask, world: None) -> None:
    login(client, "admin", ADMIN_PASSWORD)
    resp = post(client, "/admin/users/new", {"username": "carol", "email": "carol@example.com", "first_name": "Carol",
                                             "password": "long password 1", "password_confirm": "long password 1",
                                             "groups": ["engineering"], "is_admin": "1"}, "/admin/users/new")
    assert resp.status_code == 303 and resp.headers["Location"] == "/admin/users/carol"
    carol = users_svc.get_user("carol")
    assert carol.group_names == ["engineering"] and carol.is_admin
    assert app.extensions["idp.passwords"].verify(carol.password_hash, "long password 1")
    row = db.session.query(AdminAudit).filter_by(action="user.add", target="carol").one()
    assert row.actor == "web:admin"
    page = client.get("/admin/users?q=car").get_data(as_text=True)
    assert 'data-username="carol"' in page and 'data-username="bob"' not in page


@pytest.mark.parametrize(("data", "field"), [
    ({"username": "bad name!"}, "username"),
    ({"username": "alice"}, "username"),                      # exists
    ({"email": "not-an-email"}, "email"),
    ({"email": ""}, "email"),
    ({"password": "short", "password_confirm": "short"}, "password"),
    ({"password_confirm": "something else"}, "password_confirm"),
    ({"groups": ["ghosts"]}, "groups"),
    ({"first_name": "x" * 151}, "first_name"),
])
def test_create_user_invalid_input(client: FlaskClient, app: Flask, world: None, data: dict[str, Any],
                                   field: str) -> None:
    login(client, "admin", ADMIN_PASSWORD)
    before = snapshot(app)
    form = {"username": "carol", "email": "carol@example.com", "password": "long password 1",
            "password_confirm": "long password 1", **data}
    resp = post(client, "/admin/users/new", form, "/admin/users/new")
    body = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert f'id="{field}-error"' in body and re.search(f'aria-describedby="[^"]*{field}-error"', body)
    assert snapshot(app) == before


def test_edit_user_profile_and_groups(client: FlaskClient, world: None) -> None:
    login(client, "admin", ADMIN_PASSWORD)
    resp = post(client, "/admin/users/bob", {"email": "bob@new.example", "first_name": "Robert", "last_name": "B",
                                             "groups": ["engineering"]}, "/admin/users/bob")
    assert resp.status_code == 303
    db.session.expire_all()
    bob = users_svc.get_user("bob")
    assert (bob.email, bob.first_name, bob.group_names) == ("bob@new.example", "Robert", ["engineering"])
    row = db.session.query(AdminAudit).filter_by(action="user.update", target="bob").one()
    assert row.before["email"] == "bob@example.com" and row.after["groups"] == ["engineering"]


def test_edit_user_invalid_email_changes_nothing(client: FlaskClient, app: Flask, world: None) -> None:
    login(client, "admin", ADMIN_PASSWORD)
    before = snapshot(app)
    resp = post(client, "/admin/users/bob", {"email": "bad", "first_name": "Changed", "groups": ["engineering"]},
                "/admin/users/bob")
    assert resp.status_code == 422 and 'id="email-error"' in resp.get_data(as_text=True)
    assert snapshot(app) == before


def test_last_enabled_admin_cannot_be_demoted_or_disabled(client: FlaskClient, app: Flask, world: None) -> None:
    login(client, "admin", ADMIN_PASSWORD)
    before = snapshot(app)
    resp = post(client, "/admin/users/admin", {"email": "admin@example.com"}, "/admin/users/admin")  # no is_admin
    assert resp.status_code == 422 and "last enabled admin" in resp.get_data(as_text=True)
    assert 'id="is_admin-error"' in resp.get_data(as_text=True)
    resp = post(client, "/admin/users/admin/status", {"disabled": "1"}, "/admin/users/admin")
    assert resp.status_code == 409 and "last enabled admin" in resp.get_data(as_text=True)
    assert snapshot(app) == before
    # with a second enabled admin, demoting yourself is allowed
    users_svc.get_user("bob").is_admin = True
    db.session.commit()
    resp = post(client, "/admin/users/admin", {"email": "admin@example.com"}, "/admin/users/admin")
    assert resp.status_code == 303
    db.session.expire_all()
    assert not users_svc.get_user("admin").is_admin


def test_disable_enable_user_ends_sessions(client: FlaskClient, app: Flask, world: None) -> None:
    other = app.test_client()
    login(other, "bob", PASSWORD)
    assert other.get("/").status_code == 200
    login(client, "admin", ADMIN_PASSWORD)
    assert post(client, "/admin/users/bob/status", {"disabled": "1"}, "/admin/users/bob").status_code == 303
    db.session.expire_all()
    assert users_svc.get_user("bob").disabled
    assert other.get("/").status_code == 302
    assert 'badge bad">disabled' in client.get("/admin/users").get_data(as_text=True)
    assert post(client, "/admin/users/bob/status", {"disabled": "0"}, "/admin/users/bob").status_code == 303
    db.session.expire_all()
    assert not users_svc.get_user("bob").disabled
    assert post(client, "/admin/users/bob/status", {"disabled": "maybe"}, "/admin/users/bob").status_code == 400


def test_admin_resets_password_and_mfa(client: FlaskClient, app: Flask, world: None) -> None:
    from idp.auth import totp
    bob = users_svc.get_user("bob")
    totp.start_enrolment(bob)
    bob.totp_confirmed = True
    db.session.commit()
    login(client, "admin", ADMIN_PASSWORD)
    resp = post(client, "/admin/users/bob/password", {"password": "short", "password_confirm": "short"},
                "/admin/users/bob")
    assert resp.status_code == 422 and 'id="password-error"' in resp.get_data(as_text=True)
    resp = post(client, "/admin/users/bob/password", {"password": "new password 22",
                                                      "password_confirm": "new password 22"}, "/admin/users/bob")
    assert resp.status_code == 303
    db.session.expire_all()
    assert app.extensions["idp.passwords"].verify(users_svc.get_user("bob").password_hash, "new password 22")
    assert "badge info\">MFA" in client.get("/admin/users").get_data(as_text=True)
    confirm = client.get("/admin/users/bob/mfa-reset")
    assert confirm.status_code == 200 and "Reset the second factor of bob?" in confirm.get_data(as_text=True)
    assert post(client, "/admin/users/bob/mfa-reset", {}, "/admin/users/bob/mfa-reset").status_code == 303
    db.session.expire_all()
    assert not totp.is_enrolled(users_svc.get_user("bob"))
    actions = [r.action for r in db.session.query(AdminAudit).filter_by(target="bob", actor="web:admin")]
    assert "user.password_reset" in actions and "user.mfa_reset" in actions


def test_markup_in_names_is_escaped(client: FlaskClient, world: None) -> None:
    login(client, "admin", ADMIN_PASSWORD)
    evil = "<script>alert(1)</script>"
    resp = post(client, "/admin/users/bob", {"email": "bob@example.com", "first_name": evil, "last_name": "<b>x</b>"},
                "/admin/users/bob")
    assert resp.status_code == 303
    ctx = EventContext(app_slug="wiki", username="bob", detail={"message": evil, evil: [evil]})
    record_event(ctx, Reason.USER_NOT_PERMITTED, client_ip="192.0.2.1", user_agent=evil)
    db.session.commit()  # record_event writes in the caller's unit of work
    for path in ("/admin/users", "/admin/users/bob", "/admin/groups/engineering", "/admin/audit", "/admin/events",
                 "/admin/audit?target=" + evil):
        body = client.get(path).get_data(as_text=True)
        assert "<script>alert" not in body and "<b>x</b>" not in body, path
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in client.get("/admin/users").get_data(as_text=True)


# ---------------------------------------------------------------- groups

def test_groups_create_add_remove_members(client: FlaskClient, world: None) -> None:
    login(client, "admin", ADMIN_PASSWORD)
    assert post(client, "/admin/groups/new", {"name": "sales"}, "/admin/groups").status_code == 303
    for bad, status in (("", 422), ("sales", 422), ("bad/name", 422), ("<x>", 422)):
        resp = post(client, "/admin/groups/new", {"name": bad}, "/admin/groups")
        assert resp.status_code == status and 'id="name-error"' in resp.get_data(as_text=True), bad
    assert post(client, "/admin/groups/sales/members", {"username": "bob"}, "/admin/groups/sales").status_code == 303
    resp = post(client, "/admin/groups/sales/members", {"username": "ghost"}, "/admin/groups/sales")
    assert resp.status_code == 422 and 'id="username-error"' in resp.get_data(as_text=True)
    resp = post(client, "/admin/groups/sales/members", {"username": "bob"}, "/admin/groups/sales")
    assert resp.status_code == 422 and "already a member" in resp.get_data(as_text=True)
    listing = client.get("/admin/groups").get_data(as_text=True)
    assert re.search(r'data-group="sales"><td>.*?</td><td class="right">1</td>', listing)
    db.session.expire_all()
    assert users_svc.get_user("bob").group_names == ["sales"]
    resp = post(client, "/admin/groups/sales/members/remove", {"username": "bob"}, "/admin/groups/sales")
    assert resp.status_code == 303
    db.session.expire_all()
    assert users_svc.get_user("bob").group_names == []
    actions = {r.action for r in db.session.query(AdminAudit).filter_by(target="sales", actor="web:admin")}
    assert actions == {"group.add", "group.add_member", "group.remove_member"}


def test_group_delete_confirms_then_ends_memberships(client: FlaskClient, world: None) -> None:
    login(client, "admin", ADMIN_PASSWORD)
    page = client.get("/admin/groups/engineering/delete").get_data(as_text=True)
    assert 'id="confirm-delete"' in page and '<dd id="member-count">1</dd>' in page
    assert users_svc.get_user("alice").group_names == ["engineering"]
    resp = post(client, "/admin/groups/engineering/delete", {}, "/admin/groups/engineering/delete")
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/admin/groups")
    db.session.expire_all()
    assert [g.name for g in db.session.query(Group)] == []
    assert users_svc.get_user("alice").group_names == []  # the account stays, the membership is gone
    row = db.session.query(AdminAudit).filter_by(action="group.remove", target="engineering").one()
    assert row.actor == "web:admin" and row.before == {"members": ["alice"]}
    assert client.get("/admin/groups/engineering/delete").status_code == 404


@pytest.mark.parametrize("field", ["allow_groups", "deny_groups"])
def test_group_named_by_a_policy_cannot_be_deleted(client: FlaskClient, world: None, field: str) -> None:
    """Deleting an allowed group would lock members out; deleting a denied one would let them in."""
    row = apps_svc.get_app("wiki")
    apps_svc.change_settings(row, permitted="admin-approved", **{field: ("engineering",)})
    login(client, "admin", ADMIN_PASSWORD)
    page = client.get("/admin/groups/engineering/delete").get_data(as_text=True)
    assert 'id="group-in-use"' in page and 'id="confirm-delete"' not in page
    assert "wiki</a> (" + ("allowed" if field == "allow_groups" else "denied") + ")" in page
    resp = post(client, "/admin/groups/engineering/delete", {}, "/admin/groups/engineering")
    assert resp.status_code == 409 and "named in the access policy of wiki" in resp.get_data(as_text=True)
    db.session.expire_all()
    assert users_svc.get_user("alice").group_names == ["engineering"]
    assert db.session.query(AdminAudit).filter_by(action="group.remove").count() == 0


# ---------------------------------------------------------------- org settings

def test_trusted_ranges_and_self_enrolment(client: FlaskClient, app: Flask, world: None) -> None:
    login(client, "admin", ADMIN_PASSWORD)
    before = snapshot(app)
    for bad in ("10.0.0.1/8", "not-a-range", "", "192.0.2.0/24"):   # host bits, junk, empty, duplicate
        resp = post(client, "/admin/org/ranges", {"cidr": bad}, "/admin/org")
        body = resp.get_data(as_text=True)
        assert resp.status_code == 422 and 'id="cidr-error"' in body, bad
        assert 'aria-describedby="cidr-hint cidr-error"' in body, bad
    assert snapshot(app) == before
    assert post(client, "/admin/org/ranges", {"cidr": "2001:db8::/32"}, "/admin/org").status_code == 303
    db.session.expire_all()
    assert org_svc.trusted_ranges() == ("192.0.2.0/24", "2001:db8::/32")
    confirm = client.get("/admin/org/ranges/remove?cidr=192.0.2.0/24").get_data(as_text=True)
    assert "Remove the trusted range 192.0.2.0/24?" in confirm
    assert post(client, "/admin/org/ranges/remove", {"cidr": "192.0.2.0/24"}, "/admin/org").status_code == 303
    db.session.expire_all()
    assert org_svc.trusted_ranges() == ("2001:db8::/32",)
    assert post(client, "/admin/org/mfa", {"self_enroll": "0"}, "/admin/org").status_code == 303
    db.session.expire_all()
    assert org_svc.mfa_self_enroll() is False
    assert post(client, "/admin/org/mfa", {"self_enroll": "x"}, "/admin/org").status_code == 400
    assert {r.actor for r in db.session.query(AdminAudit).filter_by(target_type="org")} == {"system", "web:admin"}


# ---------------------------------------------------------------- access check

def test_access_check(client: FlaskClient, world: None) -> None:
    login(client, "admin", ADMIN_PASSWORD)
    resp = post(client, "/admin/access", {"username": "alice", "app": "wiki", "ip": "203.0.113.9"}, "/admin/access")
    body = resp.get_data(as_text=True)
    assert resp.status_code == 200 and 'id="decision"' in body and "Allowed" in body
    apps_svc.change_settings(apps_svc.get_app("wiki"), ip_policy="enforce")
    resp = post(client, "/admin/access", {"username": "alice", "app": "wiki", "ip": "203.0.113.9"}, "/admin/access")
    body = resp.get_data(as_text=True)
    assert "Denied" in body and "ip_not_allowed" in body and "192.0.2.0/24" in body
    for data, field in (({"username": "ghost", "app": "wiki"}, "username"), ({"username": "alice", "app": "x"}, "app"),
                        ({"username": "alice", "app": "wiki", "ip": "999.1.1.1"}, "ip")):
        resp = post(client, "/admin/access", data, "/admin/access")
        assert resp.status_code == 422 and f'id="{field}-error"' in resp.get_data(as_text=True), field


# ---------------------------------------------------------------- event log

def _event(reason: Reason, *, app: str | None = "wiki", user: str | None = "alice", ago_s: float = 0,
           ua: str | None = None, outcome: Outcome | None = None) -> SsoEvent:
    e = record_event(EventContext(app_slug=app, username=user, initiated_by="sp", binding="redirect",
                                  detail={"policy": {"check": "ip", "effect": "deny", "explanation": "outside",
                                                     "inputs": {"client_ip": "203.0.113.9"}}}),
                     reason, client_ip="203.0.113.9", user_agent=ua, outcome=outcome)
    if ago_s:
        e.at = utcnow() - timedelta(seconds=ago_s)
        db.session.execute(update(SsoEvent).where(SsoEvent.id == e.id).values(at=e.at))
    db.session.commit()  # record_event writes in the caller's unit of work
    return e


def test_event_log_filters_detail_and_overview(client: FlaskClient, world: None) -> None:
    _event(Reason.OK, user="bob")
    _event(Reason.IP_NOT_ALLOWED)
    _event(Reason.UNKNOWN_SP, app=None, user=None)
    _event(Reason.OK, ago_s=3 * 86400)
    login(client, "admin", ADMIN_PASSWORD)
    body = client.get("/admin/events").get_data(as_text=True)
    assert body.count('<details class="event"') == 4
    assert "Decided by</strong> <code>ip</code> (deny): outside" in body
    assert 'id="per-app"' in body and 'id="by-reason"' in body and "unknown_sp" in body
    body = client.get("/admin/events?outcome=denied&app=wiki").get_data(as_text=True)
    assert body.count('<details class="event"') == 1 and 'data-reason="ip_not_allowed"' in body
    day = (utcnow() - timedelta(days=3)).strftime("%Y-%m-%d")
    body = client.get(f"/admin/events?since={day}&until={day}").get_data(as_text=True)
    assert body.count('<details class="event"') == 1
    body = client.get("/admin/events?user=bob").get_data(as_text=True)
    assert body.count('<details class="event"') == 1
    # the protocol filter: SAML flows' events are "saml"; an OIDC token event is "oidc"
    record_event(EventContext(event_type="token", app_slug="wiki", username="carol", protocol="oidc"), Reason.OK,
                 client_ip="203.0.113.9", user_agent=None)
    db.session.commit()
    body = client.get("/admin/events?protocol=oidc").get_data(as_text=True)
    assert body.count('<details class="event"') == 1 and "carol" in body
    body = client.get("/admin/events?protocol=saml").get_data(as_text=True)
    assert body.count('<details class="event"') == 4 and "carol" not in body
    for bad, field in (("outcome=maybe", "outcome"), ("reason=nope", "reason"), ("since=yesterday", "since"),
                       ("protocol=ldap", "protocol"),
                       ("since=2026-02-02&until=2026-02-01", "until"), ("before=xyz", "page"),
                       ("before=" + "9" * 20 + "-1", "page"), ("after=1-" + "9" * 19, "page")):
        resp = client.get(f"/admin/events?{bad}")
        assert resp.status_code == 400 and f'id="{field}-error"' in resp.get_data(as_text=True), bad


def test_event_log_keyset_pages(client: FlaskClient, world: None) -> None:
    for i in range(120):
        _event(Reason.OK, user=f"u{i:03d}", ago_s=1000 - i)
    login(client, "admin", ADMIN_PASSWORD)
    names = lambda body: re.findall(r"<span>(u\d{3})</span>", body)  # noqa: E731
    first = client.get("/admin/events").get_data(as_text=True)
    assert names(first)[:2] == ["u119", "u118"] and len(names(first)) == 50
    older = re.search(r'href="([^"]+)" id="page-older"', first).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
    second = client.get(older).get_data(as_text=True)
    assert names(second)[0] == "u069" and len(names(second)) == 50
    third = client.get(re.search(r'href="([^"]+)" id="page-older"', second).group(1)  # type: ignore[union-attr]
                       .replace("&amp;", "&")).get_data(as_text=True)
    assert names(third) == [f"u{i:03d}" for i in range(19, -1, -1)] and 'id="page-older"' not in third
    newer = re.search(r'href="([^"]+)" id="page-newer"', third).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
    assert names(client.get(newer).get_data(as_text=True)) == names(second)


def test_event_export_csv_json_filtered_and_defused(client: FlaskClient, world: None) -> None:
    _event(Reason.OK, user="bob", ua="=HYPERLINK(\"http://evil\")")
    _event(Reason.IP_NOT_ALLOWED, ua="@SUM(1+1)")
    _event(Reason.OK, app="other", user="alice")
    login(client, "admin", ADMIN_PASSWORD)
    resp = client.get("/admin/events/export.csv?app=wiki")
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert resp.headers["Content-Disposition"].startswith('attachment; filename="events-')
    assert resp.headers["X-Export-Truncated"] == "false"
    rows = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))
    assert {r["app_slug"] for r in rows} == {"wiki"} and len(rows) == 2
    assert {r["user_agent"] for r in rows} == {"'=HYPERLINK(\"http://evil\")", "'@SUM(1+1)"}
    resp = client.get("/admin/events/export.json?outcome=denied")
    assert resp.mimetype == "application/json" and "attachment" in resp.headers["Content-Disposition"]
    data = json.loads(resp.get_data(as_text=True))
    assert [d["reason"] for d in data] == ["ip_not_allowed"] and data[0]["detail"]["policy"]["check"] == "ip"
    assert client.get("/admin/events/export.csv?since=garbage").status_code == 400


def test_event_export_is_capped(client: FlaskClient, world: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from idp.web.admin import events_views
    monkeypatch.setattr(events_views, "EXPORT_CAP", 2)
    for _ in range(3):
        _event(Reason.OK)
    login(client, "admin", ADMIN_PASSWORD)
    resp = client.get("/admin/events/export.csv")
    assert resp.headers["X-Export-Truncated"] == "true" and resp.headers["X-Export-Row-Cap"] == "2"
    assert len(list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))) == 2
    assert client.get("/admin/events/export.csv?user=alice&outcome=denied").headers["X-Export-Truncated"] == "false"


def test_event_export_chunks_make_one_document(client: FlaskClient, world: None,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from idp.services import admin_queries
    monkeypatch.setattr(admin_queries, "EXPORT_CHUNK", 2)
    login(client, "admin", ADMIN_PASSWORD)
    assert client.get("/admin/events/export.json").get_data(as_text=True) == "[]"
    empty_csv = client.get("/admin/events/export.csv").get_data(as_text=True)
    assert empty_csv.startswith("\"id\",\"at\",") and empty_csv.count("\n") == 1
    for i in range(5):
        _event(Reason.OK, user=f"u{i}", ago_s=100 - i)
    body = client.get("/admin/events/export.csv").get_data(as_text=True)
    assert body.count("\"id\",\"at\",") == 1
    assert [r["username"] for r in csv.DictReader(io.StringIO(body))] == ["u4", "u3", "u2", "u1", "u0"]
    data = json.loads(client.get("/admin/events/export.json").get_data(as_text=True))
    assert [d["username"] for d in data] == ["u4", "u3", "u2", "u1", "u0"]
    assert data[0]["detail"]["policy"]["check"] == "ip" and data[0]["at"].endswith("Z")


# ---------------------------------------------------------------- certificates

def test_certs_rotate_activate_retire_with_audit(client: FlaskClient, app: Flask, world: None) -> None:
    login(client, "admin", ADMIN_PASSWORD)
    store = app.extensions["idp.keystore"]
    first = store.current().active.kid
    page = client.get("/admin/certs").get_data(as_text=True)
    assert f'data-kid="{first}" data-state="active"' in page and store.current().active.fingerprint_sha256 in page
    resp = post(client, "/admin/certs/activate", {}, "/admin/certs/activate")
    assert resp.status_code == 409 and "no next key is staged" in resp.get_data(as_text=True)
    resp = post(client, "/admin/certs/rotate", {"key_type": "rsa512", "days": "0"}, "/admin/certs/rotate")
    body = resp.get_data(as_text=True)
    assert resp.status_code == 422 and 'id="key_type-error"' in body and 'id="days-error"' in body
    assert post(client, "/admin/certs/rotate", {"key_type": "ec-p256", "days": "30"},
                "/admin/certs/rotate").status_code == 303
    nxt = next(r for r in store.status() if r["state"] == "next")
    resp = post(client, "/admin/certs/rotate", {"key_type": "ec-p256", "days": "30"}, "/admin/certs/rotate")
    assert resp.status_code == 409 and "already staged" in resp.get_data(as_text=True)
    assert "will reject the new signatures" in client.get("/admin/certs/activate").get_data(as_text=True)
    assert post(client, "/admin/certs/activate", {}, "/admin/certs/activate").status_code == 303
    assert store.current().active.kid == nxt["kid"]
    assert post(client, "/admin/certs/retire", {}, "/admin/certs/retire").status_code == 303
    assert {r["kid"]: r["state"] for r in store.status()}[first] == "retired"
    audit = [(r.action, r.target, r.actor) for r in db.session.query(AdminAudit).filter_by(target_type="certs")
             .order_by(AdminAudit.id)]
    assert audit == [("certs.rotate", nxt["kid"], "web:admin"), ("certs.activate", nxt["kid"], "web:admin"),
                     ("certs.retire", first, "web:admin")]


# ---------------------------------------------------------------- audit trail

def test_audit_trail_filter_and_before_after(client: FlaskClient, world: None) -> None:
    login(client, "admin", ADMIN_PASSWORD)
    post(client, "/admin/users/bob", {"email": "bob@changed.example"}, "/admin/users/bob")
    body = client.get("/admin/audit?target=bob").get_data(as_text=True)
    assert "user.update" in body and "bob@example.com" in body and "bob@changed.example" in body
    assert "user.add" in body and "wiki" not in body.split('id="audit-table"')[1]
    assert 'id="audit-empty"' in client.get("/admin/audit?target=nothing-here").get_data(as_text=True)
    assert client.get("/admin/audit?page=x").status_code == 400


# ---------------------------------------------------------------- my account

def test_account_page_and_recent_sign_ins(client: FlaskClient, world: None) -> None:
    _event(Reason.OK, user="alice")
    _event(Reason.IP_NOT_ALLOWED, user="bob")
    org_svc.add_trusted_range("127.0.0.0/8")   # self-enrolment from the trusted ranges (the default mode)
    login(client, "alice", PASSWORD)
    body = client.get("/account").get_data(as_text=True)
    assert "My account" in body and 'id="signins-table"' in body and body.count('<tr data-reason="ok">') == 1
    assert 'id="enroll-mfa"' in body and "/mfa/enroll?next=/account" in body
    assert "outside" not in body   # policy details are for admins only


def test_account_password_change(client: FlaskClient, app: Flask, world: None) -> None:
    other = app.test_client()
    login(other, "alice", PASSWORD)
    login(client, "alice", PASSWORD)
    before = snapshot(app)
    cases = [({"current_password": "wrong"}, "current_password"),
             ({"new_password": "short", "new_password_confirm": "short"}, "new_password"),
             ({"new_password_confirm": "different one 1"}, "new_password_confirm"),
             ({"new_password": PASSWORD, "new_password_confirm": PASSWORD}, "new_password")]
    for data, field in cases:
        form = {"current_password": PASSWORD, "new_password": "brand new pass 1",
                "new_password_confirm": "brand new pass 1", **data}
        resp = post(client, "/account/password", form)
        assert resp.status_code == 422 and f'id="{field}-error"' in resp.get_data(as_text=True), field
    assert snapshot(app) == before
    old_cookie = client.get_cookie("idp_session").value  # type: ignore[union-attr]
    resp = post(client, "/account/password", {"current_password": PASSWORD, "new_password": "brand new pass 1",
                                              "new_password_confirm": "brand new pass 1"})
    assert resp.status_code == 303
    assert client.get_cookie("idp_session").value != old_cookie  # type: ignore[union-attr]
    assert client.get("/account").status_code == 200          # still signed in here
    assert other.get("/").status_code == 302                   # signed out elsewhere
    db.session.expire_all()
    assert app.extensions["idp.passwords"].verify(users_svc.get_user("alice").password_hash, "brand new pass 1")
    assert db.session.query(AdminAudit).filter_by(action="user.password_change", actor="web:alice").count() == 1


def test_account_mfa_reset_requires_current_code(client: FlaskClient, world: None) -> None:
    from idp.auth import totp
    alice = users_svc.get_user("alice")
    secret = totp.start_enrolment(alice)
    alice.totp_confirmed = True
    db.session.commit()
    login(client, "alice", PASSWORD)
    body = client.get("/account").get_data(as_text=True)
    assert 'id="mfa-reset-form"' in body
    resp = post(client, "/account/mfa/reset", {"code": "000000"})
    assert resp.status_code == 422 and 'id="code-error"' in resp.get_data(as_text=True)
    db.session.expire_all()
    assert totp.is_enrolled(users_svc.get_user("alice"))
    resp = post(client, "/account/mfa/reset", {"code": pyotp.TOTP(secret).now()})
    assert resp.status_code == 303
    db.session.expire_all()
    assert not totp.is_enrolled(users_svc.get_user("alice"))


def test_account_hides_enrolment_when_self_enrolment_is_off(client: FlaskClient, world: None) -> None:
    org_svc.set_mfa_self_enroll(False)
    login(client, "alice", PASSWORD)
    body = client.get("/account").get_data(as_text=True)
    assert 'id="enroll-mfa"' not in body and "Ask your administrator" in body


def test_audit_actor_does_not_leak_into_the_next_request_on_the_same_thread(app, admin):  # type: ignore[no-untyped-def]
    """An admin request names its actor; the next request on the same worker thread starts from the default.

    werkzeug's plain test client calls the WSGI app in this thread and context, as a worker thread
    does (the suite's usual client isolates each request's context, which would hide a leak)."""
    from werkzeug.test import Client

    from idp import audit

    browser = app.test_client()  # signs in (password and second factor) in isolated contexts ...
    login(browser, "admin", ADMIN_PASSWORD)
    name = app.config["SESSION_COOKIE_NAME"]
    cookie = browser.get_cookie(name)
    assert cookie is not None
    worker = Client(app)  # ... and the worker thread's client carries the signed-in cookie
    worker.set_cookie(name, cookie.value)
    assert worker.get("/admin/apps").status_code == 200
    assert audit.current_actor() == audit.DEFAULT_ACTOR
