"""The admin console needs more than a password (issue 13, hole 4).

An admin with a second factor who signed in with only the password (a stolen password) gets no admin page and
no admin action: pages send them to step-up (`/mfa?next=...`) and back, actions are refused (403, an event, nothing
written). An admin without a factor is sent to enrol. The second factor of a console session has a maximum age.
Org admin IP ranges close the console to other addresses, even for a multi-factor admin.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from idp.extensions import db
from idp.models import IdpSession, SsoEvent, User, utcnow
from idp.services import org as org_svc
from idp.services import users as users_svc

from ..webclient import AUTHENTICATORS, enrol_totp, login_admin, pass_second_factor
from .conftest import ADMIN_PASSWORD, csrf_token, login
from .test_web_attacks import _form_bag, admin_post_rules, client_at, register_sp, snapshot

ADMIN_PAGES = ["/admin/", "/admin/apps", "/admin/apps/new", "/admin/apps/wiki", "/admin/users", "/admin/users/alice",
               "/admin/groups", "/admin/events", "/admin/events/export.json", "/admin/access", "/admin/certs",
               "/admin/certs/rotate", "/admin/org", "/admin/audit"]


@pytest.fixture
def world(app: Flask, admin: User, alice: User, bob: User) -> None:
    """The admin (with TOTP: the hostile `admin` fixture enrols it), alice, bob and a connected app."""
    register_sp("https://wiki.example.com", slug="wiki")
    assert admin.mfa_enrolled


def admin_events(reason: str | None = None) -> list[SsoEvent]:
    db.session.expire_all()
    q = db.session.query(SsoEvent).filter(SsoEvent.event_type == "admin")
    if reason is not None:
        q = q.filter(SsoEvent.reason == reason)
    return q.order_by(SsoEvent.id).all()


def step_up_target(resp: Any) -> tuple[str, str]:
    """The (path, next) of a redirect to a second-factor page."""
    assert resp.status_code in (302, 303), (resp.status_code, resp.get_data(as_text=True)[:300])
    parts = urlsplit(resp.headers["Location"])
    return parts.path, parse_qs(parts.query).get("next", [""])[0]


def live_session() -> IdpSession:
    db.session.expire_all()
    return db.session.query(IdpSession).filter(IdpSession.ended_at.is_(None)).one()


# ---------------------------------------------------------------- a stolen password is not enough


def test_password_only_admin_gets_no_admin_page(client: FlaskClient, world: None) -> None:
    assert login(client, "admin", ADMIN_PASSWORD).status_code == 303  # the password alone
    for path in ADMIN_PAGES:
        resp = client.get(path)
        body = resp.get_data(as_text=True)
        assert resp.status_code == 303, f"{path}: an admin page with the password only ({resp.status_code})"
        assert step_up_target(resp) == ("/mfa", path)
        assert "alice@example.com" not in body and "Connected apps" not in body
    assert admin_events() == [], "being asked for the second factor is not a denial"


def test_password_only_admin_cannot_rotate_keys(app: Flask, client: FlaskClient, world: None) -> None:
    assert login(client, "admin", ADMIN_PASSWORD).status_code == 303
    token = csrf_token(client, "/account")
    before = snapshot(app)
    resp = client.post("/admin/certs/rotate", data={"csrf_token": token, "key_type": "rsa2048", "days": "30"})
    assert resp.status_code == 403, resp.get_data(as_text=True)[:300]
    assert snapshot(app) == before, "nothing written"
    (ev,) = admin_events("admin_mfa_required")
    assert (ev.username, ev.outcome, ev.client_ip) == ("admin", "denied", "127.0.0.1")
    assert ev.detail["path"] == "/admin/certs/rotate" and ev.detail["method"] == "POST"
    assert f">{ev.id}</code>" in resp.get_data(as_text=True)


def test_password_only_admin_cannot_change_users(app: Flask, client: FlaskClient, world: None) -> None:
    assert login(client, "admin", ADMIN_PASSWORD).status_code == 303
    token = csrf_token(client, "/account")
    before = snapshot(app)
    for path, data in [("/admin/users/bob/status", {"disabled": "1"}),
                       ("/admin/users/bob", {"email": "mallory@example.com", "first_name": "B", "is_admin": "1"}),
                       ("/admin/users/bob/password", {"password": "mallory passphrase 1",
                                                      "password_confirm": "mallory passphrase 1"}),
                       ("/admin/users/admin/mfa-reset", {})]:
        resp = client.post(path, data={"csrf_token": token, **data})
        assert resp.status_code == 403, (path, resp.status_code)
    assert snapshot(app) == before
    assert len(admin_events("admin_mfa_required")) == 4


def test_every_admin_post_route_refuses_a_password_only_admin(app: Flask, client: FlaskClient, world: None) -> None:
    assert login(client, "admin", ADMIN_PASSWORD).status_code == 303
    token = csrf_token(client, "/account")
    before = snapshot(app)
    rules = admin_post_rules(app)
    assert len(rules) > 20
    for endpoint, path in rules:
        resp = client.post(path, data={**_form_bag(), "csrf_token": token})
        assert resp.status_code == 403, f"{endpoint} {path}: {resp.status_code}"
    assert snapshot(app) == before
    assert len(admin_events("admin_mfa_required")) == len(rules)


# ---------------------------------------------------------------- step-up, then back to the page


def test_step_up_lands_back_on_the_admin_page(client: FlaskClient, world: None) -> None:
    assert login(client, "admin", ADMIN_PASSWORD).status_code == 303
    before = live_session().id
    path, nxt = step_up_target(client.get("/admin/users/alice?tab=groups"))
    assert (path, nxt) == ("/mfa", "/admin/users/alice?tab=groups")
    resp = pass_second_factor(client, "admin", nxt)
    assert resp.headers["Location"].endswith("/admin/users/alice?tab=groups")
    page = client.get("/admin/users/alice")
    assert page.status_code == 200 and "alice@example.com" in page.get_data(as_text=True)
    after = live_session()
    assert after.id != before and after.mfa_at is not None, "a new session id, multi-factor"


def test_after_step_up_admin_actions_work(app: Flask, client: FlaskClient, world: None) -> None:
    login_admin(client, "admin", ADMIN_PASSWORD)
    token = csrf_token(client, "/admin/users/bob")
    resp = client.post("/admin/users/bob/status", data={"csrf_token": token, "disabled": "1"})
    assert resp.status_code == 303
    db.session.expire_all()
    assert db.session.query(User).filter_by(username="bob").one().disabled


def test_wrong_code_gives_no_admin_page(client: FlaskClient, world: None) -> None:
    assert login(client, "admin", ADMIN_PASSWORD).status_code == 303
    token = csrf_token(client, "/mfa?next=/admin/users")
    resp = client.post("/mfa", data={"csrf_token": token, "code": "000000", "next": "/admin/users"})
    assert resp.status_code == 401
    assert client.get("/admin/users").status_code == 303
    assert live_session().mfa_at is None


def test_admin_without_a_factor_is_sent_to_enrol(app: Flask, client: FlaskClient, world: None) -> None:
    pw = app.extensions["idp.passwords"]
    users_svc.add_user("root", email="root@example.com", password_hash=pw.hash(ADMIN_PASSWORD), is_admin=True)
    assert login(client, "root", ADMIN_PASSWORD).status_code == 303
    assert step_up_target(client.get("/admin/users")) == ("/mfa/enroll", "/admin/users")
    token = csrf_token(client, "/account")
    resp = client.post("/admin/groups/new", data={"csrf_token": token, "name": "sales"})
    assert resp.status_code == 403
    assert admin_events("admin_mfa_required")


def test_non_admin_gets_403_even_with_a_second_factor(app: Flask, client: FlaskClient, world: None,
                                                      alice: User) -> None:
    enrol_totp(alice)
    login_admin(client, "alice", "correct horse battery")  # password + TOTP: still not an admin
    for path in ("/admin/users", "/admin/certs"):
        assert client.get(path).status_code == 403
    token = csrf_token(client, "/account")
    assert client.post("/admin/groups/new", data={"csrf_token": token, "name": "x"}).status_code == 403
    assert {e.reason for e in admin_events()} == {"admin_required"}


def test_anonymous_is_still_sent_to_login(client: FlaskClient, world: None) -> None:
    resp = client.get("/admin/users")
    assert resp.status_code in (302, 303) and urlsplit(resp.headers["Location"]).path == "/login"


# ---------------------------------------------------------------- maximum age of the console's second factor


def age_mfa(seconds: int) -> None:
    db.session.execute(update(IdpSession).where(IdpSession.ended_at.is_(None))
                       .values(mfa_at=utcnow() - timedelta(seconds=seconds)))
    db.session.commit()


def test_an_old_second_factor_asks_again(app: Flask, client: FlaskClient, world: None) -> None:
    login_admin(client, "admin", ADMIN_PASSWORD)
    max_age = app.extensions["idp.settings"].admin_mfa_max_age_s
    age_mfa(max_age - 60)
    assert client.get("/admin/users").status_code == 200
    age_mfa(max_age + 1)
    assert step_up_target(client.get("/admin/users")) == ("/mfa", "/admin/users")
    token = csrf_token(client, "/account")
    before = snapshot(app)
    assert client.post("/admin/groups/new", data={"csrf_token": token, "name": "sales"}).status_code == 403
    assert snapshot(app) == before
    (ev,) = admin_events("admin_mfa_required")
    assert "older" in ev.detail["message"]
    pass_second_factor(client, "admin", "/admin/users")
    assert client.get("/admin/users").status_code == 200


def test_max_age_setting(tmp_path: Any, key_template: Any) -> None:
    from ..conftest import make_settings
    s = make_settings(tmp_path, key_template)
    assert s.admin_mfa_max_age_s == 2 * 3600
    from idp.config import load_settings
    assert load_settings({"IDP_ADMIN_MFA_MAX_AGE": "900", "IDP_SECRET_KEY": "x"}).admin_mfa_max_age_s == 900


# ---------------------------------------------------------------- admin IP ranges


def test_outside_the_admin_ranges_even_a_multi_factor_admin_gets_403(app: Flask, world: None) -> None:
    outside = client_at(app, "203.0.113.9")
    login_admin(outside, "admin", ADMIN_PASSWORD)
    org_svc.set_admin_ip_ranges(["10.0.0.0/8", "2001:db8::/32"])
    db.session.commit()
    before = snapshot(app)
    for path in ("/admin/users", "/admin/certs", "/admin/org"):
        resp = outside.get(path)
        assert resp.status_code == 403, path
        assert "alice@example.com" not in resp.get_data(as_text=True)
    token = csrf_token(outside, "/account")
    assert outside.post("/admin/groups/new", data={"csrf_token": token, "name": "x"}).status_code == 403
    assert snapshot(app) == before
    evs = admin_events("admin_ip_denied")
    assert len(evs) == 4 and {e.client_ip for e in evs} == {"203.0.113.9"}
    assert evs[-1].detail["ranges"] == ["10.0.0.0/8", "2001:db8::/32"]
    # inside the range the same admin works as before
    inside = client_at(app, "10.1.2.3")
    login_admin(inside, "admin", ADMIN_PASSWORD)
    assert inside.get("/admin/users").status_code == 200


def test_outside_the_ranges_a_password_only_admin_is_not_offered_step_up(app: Flask, world: None) -> None:
    org_svc.set_admin_ip_ranges(["10.0.0.0/8"])
    outside = client_at(app, "203.0.113.9")
    assert login(outside, "admin", ADMIN_PASSWORD).status_code == 303
    assert outside.get("/admin/users").status_code == 403
    assert admin_events("admin_ip_denied")


def test_cli_sets_and_clears_admin_ranges(app: Flask, world: None) -> None:
    cli = app.test_cli_runner()
    r = cli.invoke(args=["org", "set", "--admin-ip-range", "10.0.0.0/8", "--admin-ip-range", "2001:db8::/32"])
    assert r.exit_code == 0, r.output
    assert "10.0.0.0/8" in r.output
    db.session.expire_all()
    org_svc._cache.clear()
    assert org_svc.admin_ip_ranges() == ("10.0.0.0/8", "2001:db8::/32")
    r = cli.invoke(args=["org", "set", "--admin-ip-range", "10.0.0.1/8"])  # host bits set: refused
    assert r.exit_code != 0 and "10.0.0.1/8" in r.output
    r = cli.invoke(args=["org", "set", "--admin-ip-range", "1.2.3.4", "--clear-admin-ip-ranges"])
    assert r.exit_code != 0
    org_svc._cache.clear()
    assert org_svc.admin_ip_ranges() == ("10.0.0.0/8", "2001:db8::/32"), "a refused command changes nothing"
    r = cli.invoke(args=["org", "set", "--clear-admin-ip-ranges"])
    assert r.exit_code == 0, r.output
    org_svc._cache.clear()
    assert org_svc.admin_ip_ranges() == ()
    assert [a.target for a in _audit("org.setting")][-1] == "admin_ip_ranges"


def _audit(action: str) -> list[Any]:
    from idp.models import AdminAudit
    db.session.expire_all()
    return db.session.query(AdminAudit).filter(AdminAudit.action == action).order_by(AdminAudit.id).all()


def test_console_refuses_ranges_that_lock_the_admin_out(app: Flask, world: None) -> None:
    c = client_at(app, "192.0.2.10")
    login_admin(c, "admin", ADMIN_PASSWORD, "/admin/org")
    token = csrf_token(c, "/admin/org")
    resp = c.post("/admin/org/admin-ranges", data={"csrf_token": token, "cidr": "10.0.0.0/8"})
    body = resp.get_data(as_text=True)
    assert resp.status_code == 422 and "192.0.2.10" in body and "lock" in body
    org_svc._cache.clear()
    assert org_svc.admin_ip_ranges() == ()
    # a range holding the admin's address first, then others
    for cidr in ("192.0.2.0/24", "10.0.0.0/8"):
        resp = c.post("/admin/org/admin-ranges", data={"csrf_token": token, "cidr": cidr})
        assert resp.status_code == 303, resp.get_data(as_text=True)[:500]
    assert c.get("/admin/org").status_code == 200
    # removing the range the admin is in while another stays: refused; removing the other: fine
    resp = c.post("/admin/org/admin-ranges/remove", data={"csrf_token": token, "cidr": "192.0.2.0/24"})
    assert resp.status_code == 422 and "192.0.2.10" in resp.get_data(as_text=True)
    resp = c.post("/admin/org/admin-ranges/remove", data={"csrf_token": token, "cidr": "10.0.0.0/8"})
    assert resp.status_code == 303
    # removing the last range (no restriction) is allowed
    resp = c.post("/admin/org/admin-ranges/remove", data={"csrf_token": token, "cidr": "192.0.2.0/24"})
    assert resp.status_code == 303
    org_svc._cache.clear()
    assert org_svc.admin_ip_ranges() == ()


def test_org_page_lists_admin_ranges(app: Flask, client: FlaskClient, world: None) -> None:
    org_svc.set_admin_ip_ranges(["127.0.0.0/8"])
    login_admin(client, "admin", ADMIN_PASSWORD)
    body = client.get("/admin/org").get_data(as_text=True)
    assert 'id="admin-ranges-table"' in body and "127.0.0.0/8" in body
    assert re.search(r'action="/admin/org/admin-ranges"', body)


def test_admin_events_are_in_the_cli_event_log(app: Flask, client: FlaskClient, world: None) -> None:
    assert login(client, "admin", ADMIN_PASSWORD).status_code == 303
    token = csrf_token(client, "/account")
    client.post("/admin/certs/retire", data={"csrf_token": token})
    out = app.test_cli_runner().invoke(args=["events", "--reason", "admin_mfa_required", "--format", "json"])
    assert out.exit_code == 0, out.output
    (row,) = json.loads(out.output)
    assert row["username"] == "admin" and row["event_type"] == "admin"
    assert AUTHENTICATORS["admin"].last_step is None, "no code was used"


def test_console_refuses_admin_ranges_when_the_address_is_unknown(app: Flask, world: None) -> None:
    """Behind a misconfigured proxy the IdP cannot tell the admin's address: any range would lock them out."""
    c = client_at(app, "not-an-address")
    login_admin(c, "admin", ADMIN_PASSWORD, "/admin/org")
    token = csrf_token(c, "/admin/org")
    resp = c.post("/admin/org/admin-ranges", data={"csrf_token": token, "cidr": "0.0.0.0/0"})
    assert resp.status_code == 422 and "IDP_TRUSTED_PROXIES" in resp.get_data(as_text=True)
    org_svc._cache.clear()
    assert org_svc.admin_ip_ranges() == ()
