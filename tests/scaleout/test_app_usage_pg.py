"""App usage aggregation on PostgreSQL: sign-ins are bucketed by UTC day in SQL whatever the session's TimeZone
(a timestamptz's ::date follows it), with the same results as on SQLite (tests/functional/test_app_usage.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from flask import Flask
from sqlalchemy import cast, select, text, update
from sqlalchemy.types import Date

from idp.errors import EventContext
from idp.events import record_event
from idp.extensions import db
from idp.models import SsoEvent
from idp.reasons import Reason
from idp.services import app_usage
from idp.services import apps as apps_svc

from ..conftest import SP_METADATA_DIR
from .conftest import PG_URL

pytestmark = pytest.mark.skipif(not PG_URL.startswith("postgresql"),
                                reason="needs IDP_TEST_DATABASE_URL (make test starts PostgreSQL)")

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def add_event(slug: str, username: str | None, reason: Reason = Reason.OK, *, at: datetime,
              protocol: str | None = None, event_type: str = "sso") -> None:
    rec = record_event(EventContext(event_type=event_type, app_slug=slug, username=username, protocol=protocol),
                       reason, client_ip=None, user_agent=None)
    db.session.execute(update(SsoEvent).where(SsoEvent.id == rec.id).values(at=at))


@pytest.fixture
def events(app: Flask) -> None:
    assert db.engine.dialect.name == "postgresql"
    apps_svc.register_app((SP_METADATA_DIR / "python3-saml-no-keydescriptor.xml").read_bytes(), slug="wiki")
    apps_svc.register_oidc_app(name="CRM", slug="crm", settings=apps_svc.initial_settings(
        public=False, redirect_uris=("https://crm.example.com/cb",)))
    apps_svc.register_oidc_app(name="HR", slug="hr", settings=apps_svc.initial_settings(
        public=False, redirect_uris=("https://hr.example.com/cb",)))
    add_event("wiki", "alice", at=datetime(2026, 3, 4, 0, 0, tzinfo=UTC))                  # first instant, day 1
    add_event("wiki", "alice", at=datetime(2026, 3, 3, 23, 59, 59, tzinfo=UTC))            # before 7 days
    add_event("wiki", "bob", at=datetime(2026, 3, 9, 23, 30, tzinfo=UTC), protocol="oidc")  # the 10th east of UTC
    add_event("wiki", "bob", at=datetime(2026, 3, 10, 0, 30, tzinfo=UTC))                  # the 9th west of UTC
    add_event("wiki", "bob", at=datetime(2026, 3, 10, 11, 0, tzinfo=UTC), protocol="oidc", event_type="token")
    add_event("wiki", "mallory", Reason.USER_NOT_PERMITTED, at=datetime(2026, 3, 8, 12, tzinfo=UTC))
    add_event("wiki", None, Reason.BAD_SIGNATURE, at=datetime(2026, 3, 8, 12, tzinfo=UTC))
    add_event("crm", "carol", at=datetime(2026, 1, 1, 9, 0, tzinfo=UTC), protocol="oidc")
    db.session.commit()


@pytest.mark.parametrize("zone", ["UTC", "Pacific/Kiritimati", "America/Los_Angeles"])
def test_days_are_utc_days_in_any_session_time_zone(events: None, zone: str) -> None:
    db.session.execute(text(f"SET TIME ZONE '{zone}'"))   # this session's connection, for the queries below
    u = app_usage.usage("wiki", 7, NOW)
    assert {d.day.isoformat(): d.sign_ins for d in u.per_day} == {
        "2026-03-04": 1, "2026-03-05": 0, "2026-03-06": 0, "2026-03-07": 0, "2026-03-08": 0, "2026-03-09": 1,
        "2026-03-10": 1}
    assert (u.sign_ins, u.by_protocol, u.distinct_users) == (3, {"saml": 2, "oidc": 1}, 2)
    assert [(r.reason, r.count) for r in u.denials] == [("user_not_permitted", 1)]
    assert [(r.reason, r.count) for r in u.errors] == [("bad_signature", 1)]
    assert [(r.username, r.sign_ins, r.last_use) for r in u.users] == [
        ("bob", 2, datetime(2026, 3, 10, 0, 30, tzinfo=UTC)), ("alice", 1, datetime(2026, 3, 4, tzinfo=UTC))]
    if zone != "UTC":   # the naive bucketing this guards against really would put events on other days here
        naive = {str(d) for d in db.session.scalars(select(cast(SsoEvent.at, Date)).where(
            SsoEvent.app_slug == "wiki", SsoEvent.event_type == "sso", SsoEvent.reason == "ok"))}
        assert naive != {"2026-03-03", "2026-03-04", "2026-03-09", "2026-03-10"}
    db.session.rollback()


def test_overview_on_postgresql(events: None) -> None:
    db.session.execute(text("SET TIME ZONE 'Asia/Tokyo'"))
    o = app_usage.overview(30, NOW)      # 30 days: alice's sign-in of 3 March counts as well
    assert [(a.app_slug, a.sign_ins, a.distinct_users, a.dormant, a.never_used) for a in o.apps] == [
        ("wiki", 4, 2, False, False), ("crm", 0, 0, True, False), ("hr", 0, 0, True, True)]
    assert o.apps[0].last_use == datetime(2026, 3, 10, 0, 30, tzinfo=UTC)
    assert o.apps[1].last_use == datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
    assert app_usage.overview(90, NOW).apps[1].sign_ins == 1
    db.session.rollback()

