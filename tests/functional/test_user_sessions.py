"""A user's sessions on /account (sign out another device), on the admin's user page and in the CLI (end one or
every session). Sessions are named by a handle, never by the id their cookie carries."""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from idp.extensions import db
from idp.models import AdminAudit, IdpSession
from idp.services.user_sessions import device_label, handle_of

from .conftest import events
from .test_admin_apps import admin, root, sign_in, text  # noqa: F401 - fixtures and helpers

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
CHROME_WIN = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/131.0.0.0 Safari/537.36")


def device(app: Flask, user_agent: str, ip: str) -> tuple[FlaskClient, str]:
    c = app.test_client()
    c.environ_base.update({"HTTP_USER_AGENT": user_agent, "REMOTE_ADDR": ip})
    return c, sign_in(c, "alice")


def live(username: str = "alice") -> list[IdpSession]:
    db.session.expire_all()
    rows = db.session.query(IdpSession).filter(IdpSession.ended_at.is_(None))
    return [s for s in rows if s.user.username == username]


def test_device_labels() -> None:
    assert device_label(FIREFOX) == "Firefox on Linux"
    assert device_label(CHROME_WIN) == "Chrome on Windows"
    assert device_label(None) == "unknown device"


def test_account_lists_sessions_and_signs_out_another_device(app: Flask, alice: Any) -> None:
    laptop, token = device(app, FIREFOX, "198.51.100.7")
    desktop, _ = device(app, CHROME_WIN, "203.0.113.9")
    page = text(laptop.get("/account"))
    assert "Firefox on Linux" in page and "Chrome on Windows" in page and "203.0.113.9" in page
    sessions = live()
    assert len(sessions) == 2
    for s in sessions:                       # handles only: the cookie's secret never appears
        assert s.id not in page and f'id="session-{handle_of(s.id)}"' in page
    other = next(s for s in sessions if s.user_agent == CHROME_WIN)
    mine = re.search(r'id="session-([0-9a-f]{16})">\s*<td>Firefox on Linux <span class="badge">this browser', page)
    assert mine is not None

    resp = laptop.post(f"/account/sessions/{handle_of(other.id)}/end", data={"csrf_token": token})
    assert resp.status_code == 303
    assert [s.user_agent for s in live()] == [FIREFOX]
    assert desktop.get("/account").status_code in (302, 303)      # the desktop must sign in again
    assert laptop.get("/account").status_code == 200
    ev = events(event_type="logout")[-1]
    assert (ev.initiated_by, ev.username, ev.reason, ev.detail["session"]) == ("user", "alice", "logout",
                                                                               handle_of(other.id))
    # an ended or made-up handle changes nothing
    resp = laptop.post(f"/account/sessions/{handle_of(other.id)}/end", data={"csrf_token": token},
                       follow_redirects=True)
    assert "already ended" in text(resp) and len(live()) == 1
    # without the CSRF token: refused
    assert laptop.post(f"/account/sessions/{'0' * 16}/end").status_code == 400


def test_a_user_cannot_end_another_users_session(app: Flask, alice: Any, bob: Any) -> None:
    mine, token = device(app, FIREFOX, "198.51.100.7")
    c = app.test_client()
    sign_in(c, "bob")
    [bobs] = live("bob")
    resp = mine.post(f"/account/sessions/{handle_of(bobs.id)}/end", data={"csrf_token": token}, follow_redirects=True)
    assert "already ended" in text(resp) and len(live("bob")) == 1


def test_admin_ends_one_then_every_session(app: Flask, client: FlaskClient, admin: str, alice: Any) -> None:  # noqa: F811
    device(app, FIREFOX, "198.51.100.7")
    device(app, CHROME_WIN, "203.0.113.9")
    page = text(client.get("/admin/users/alice"))
    assert 'id="admin-sessions"' in page and "Chrome on Windows" in page
    first = live()[0]
    resp = client.post(f"/admin/users/alice/sessions/{handle_of(first.id)}/end", data={"csrf_token": admin})
    assert resp.status_code == 303 and len(live()) == 1
    resp = client.post("/admin/users/alice/sessions/end-all", data={"csrf_token": admin})
    assert resp.status_code == 303 and live() == []
    assert 'id="no-sessions"' in text(client.get("/admin/users/alice"))
    audits = db.session.query(AdminAudit).filter(AdminAudit.action == "user.sessions_end").all()
    assert [a.after["ended"] for a in audits] == [1, 1] and all(a.actor == "web:root" for a in audits)
    assert [e.initiated_by for e in events(event_type="logout")] == ["admin", "admin"]
    # the admin's own session is untouched
    assert client.get("/admin/users/alice").status_code == 200


def test_cli_lists_and_ends_sessions(app: Flask, alice: Any) -> None:
    device(app, FIREFOX, "198.51.100.7")
    device(app, CHROME_WIN, "203.0.113.9")
    runner = app.test_cli_runner()
    listed = json.loads(runner.invoke(args=["users", "sessions", "alice", "--format", "json"]).output)
    assert sorted(s["device"] for s in listed) == ["Chrome on Windows", "Firefox on Linux"]
    r = runner.invoke(args=["users", "end-sessions", "alice", "--session", "f" * 16])
    assert r.exit_code == 1 and "no live session" in r.output and len(live()) == 2
    r = runner.invoke(args=["users", "end-sessions", "alice", "--session", listed[0]["session"]])
    assert r.exit_code == 0 and "1 session(s) of alice ended" in r.output and len(live()) == 1
    r = runner.invoke(args=["users", "end-sessions", "alice"])
    assert r.exit_code == 0 and live() == []
    assert "alice has no live session" in runner.invoke(args=["users", "sessions", "alice"]).output


def test_sessions_past_their_idle_time_are_not_listed(app: Flask, alice: Any) -> None:
    from datetime import timedelta

    from idp.models import utcnow
    device(app, FIREFOX, "198.51.100.7")
    device(app, CHROME_WIN, "203.0.113.9")
    stale = next(s for s in live() if s.user_agent == CHROME_WIN)
    stale.last_seen = utcnow() - timedelta(seconds=app.extensions["idp.settings"].session_idle_s + 60)
    db.session.commit()
    runner = app.test_cli_runner()
    listed = json.loads(runner.invoke(args=["users", "sessions", "alice", "--format", "json"]).output)
    assert [s["device"] for s in listed] == ["Firefox on Linux"]   # the idle one no longer signs anyone in
    assert "1 session(s) of alice ended" in runner.invoke(args=["users", "end-sessions", "alice"]).output
