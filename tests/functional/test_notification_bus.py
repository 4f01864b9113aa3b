"""The notification bus: events and audited changes become notices of catalogued types, built only when a
subscriber wants them, delivered in the change's own session (so they commit or roll back with it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from idp import audit
from idp.errors import EventContext
from idp.events import record_event
from idp.extensions import db
from idp.notifications import bus, catalog
from idp.reasons import Reason
from idp.services import users as users_svc


class Recorder:
    name = "test-recorder"

    def __init__(self, types: set[str]) -> None:
        self.types = types
        self.got: list[tuple[bus.Notice, bus.AnySession]] = []
        self.asked: list[str] = []

    def wants(self, type_: str, app_slug: str | None) -> bool:
        self.asked.append(type_)
        return type_ in self.types

    def deliver(self, notice: bus.Notice, session: bus.AnySession) -> None:
        self.got.append((notice, session))


@pytest.fixture
def recorder(app: Flask) -> Iterator[Recorder]:
    saved = list(bus.SUBSCRIBERS)
    rec = Recorder({"sso.denied", "user.created", "app.changed", "signin.failed"})
    bus.subscribe(rec)
    yield rec
    bus.SUBSCRIBERS[:] = saved


def test_every_mapped_type_is_catalogued() -> None:
    for event_type, reason, outcome in [("sso", "ok", "success"), ("sso", "ip_not_allowed", "denied"),
                                        ("logout", "logout", "success"), ("signin", "bad_credentials", "denied"),
                                        ("account", "mfa_enrolled", "success"), ("token", "token_revoked", "success"),
                                        ("provision", "provisioning_failed", "error"),
                                        ("api", "invalid_token", "denied")]:
        t = catalog.for_event(event_type, reason, outcome)
        assert t is not None and catalog.is_known(t), (event_type, reason, t)
    for action in ["user.add", "user.delete", "app.add", "app.settings", "certs.rotate", "group.add_member",
                   "org.setting", "user.password_change", "api_token.create"]:
        t = catalog.for_audit(action)
        assert t is not None and catalog.is_known(t), (action, t)
    assert catalog.for_audit("mfa.enrolled") is None   # published from its event row instead


def test_event_notice_carries_the_event_log_fields(app: Flask, recorder: Recorder) -> None:
    ctx = EventContext(event_type="sso", app_slug="crm", username="alice", detail={"policy": {"check": "ip"}})
    event = record_event(ctx, Reason.IP_NOT_ALLOWED, client_ip="203.0.113.9", user_agent="UA")
    [(notice, session)] = recorder.got
    assert session is db.session
    assert notice.type == "sso.denied" and notice.subject == "alice" and notice.app_slug == "crm"
    assert notice.data["id"] == event.id and notice.data["reason"] == "ip_not_allowed"
    assert notice.data["client_ip"] == "203.0.113.9" and notice.data["detail"] == {"policy": {"check": "ip"}}
    # a success nobody subscribed to: asked, never built
    record_event(EventContext(event_type="sso", app_slug="crm", username="alice"), Reason.OK,
                 client_ip=None, user_agent=None)
    assert recorder.asked[-1] == "sso.success" and len(recorder.got) == 1


def test_audited_change_is_a_notice_in_the_same_session(app: Flask, recorder: Recorder) -> None:
    with audit.acting_as("admin1"):
        users_svc.add_user("bob", email="bob@example.com", password_hash=None)
    notices = [n for n, _ in recorder.got]
    assert [n.type for n in notices] == ["user.created"]
    assert notices[0].data["actor"] == "admin1" and notices[0].subject == "bob" and notices[0].source == "audit"
    own = Session(db.engine)
    audit.record("app.settings", "app", "crm", after={"x": 1}, session=own)
    assert recorder.got[-1][1] is own and recorder.got[-1][0].app_slug == "crm"
    own.rollback()
    own.close()


def test_system_notice_must_be_catalogued(app: Flask, recorder: Recorder) -> None:
    from idp.models import utcnow
    with pytest.raises(ValueError):
        bus.publish_notice(bus.Notice(type="no.such", time=utcnow(), subject=None, app_slug=None, outcome=None,
                                      reason=None, data={}), db.session)


@pytest.mark.parametrize("path", ["cli", "console"])
def test_deactivation_and_reactivation_are_one_notice_each(app: Flask, recorder: Recorder, path: str) -> None:
    """A pure disable is user.deactivated only (no user.updated besides), enabling again is user.reactivated
    (before the fix: user.deactivated + user.updated, then user.updated only), by the CLI's set_user and by the
    console / REST API's accounts.set_disabled alike."""
    from idp.services import accounts
    recorder.types |= {"user.deactivated", "user.reactivated", "user.updated"}
    with audit.acting_as("admin1"):
        user = users_svc.add_user("bob", email="bob@example.com", password_hash=None)
        del recorder.got[:]
        for disabled in (True, False):
            if path == "cli":
                users_svc.set_user(user, disabled=disabled)
            else:
                accounts.set_disabled(user, disabled)
    notices = [n for n, _ in recorder.got]
    assert [n.type for n in notices] == ["user.deactivated", "user.reactivated"]
    assert notices[0].data["after"]["disabled"] is True and "sessions_ended" in notices[0].data["after"]
    assert notices[1].data["before"] == {"disabled": True} and notices[1].data["after"] == {"disabled": False}
    assert all(n.subject == "bob" for n in notices)
    assert catalog.is_known("user.reactivated") and "re-activated" not in catalog.TYPES["user.deactivated"]
