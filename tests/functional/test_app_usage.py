"""App usage from the event log (issue 15 "Usage"): services.app_usage over events written by the real recorder
(idp.events.record_event, then dated), `idp apps usage` (text and JSON), the app page's Usage section (inline SVG
chart, denials linking to the event log, users linking to their page) and the console's Usage overview; and real
SAML and OIDC sign-ins counted once each."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from idp.errors import EventContext
from idp.events import record_event
from idp.extensions import db
from idp.models import SsoEvent, utcnow
from idp.reasons import Reason
from idp.services import ServiceError, app_usage
from idp.services import apps as apps_svc
from idp.services import users as users_svc

from ..conftest import SP_METADATA_DIR
from ..webclient import Browser, enrol_totp, saml_form
from .conftest import PASSWORD
from .test_admin_apps import sign_in, text
from .test_cli import fails, ok

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
WIKI_MD = SP_METADATA_DIR / "python3-saml-no-keydescriptor.xml"


def add_event(slug: str | None, username: str | None, reason: Reason = Reason.OK, *, at: datetime,
              protocol: str | None = None, event_type: str = "sso") -> int:
    """One event as the flows write it (record_event), then dated `at` (the recorder stamps the current time)."""
    ctx = EventContext(event_type=event_type, app_slug=slug, username=username, protocol=protocol)
    rec = record_event(ctx, reason, client_ip="192.0.2.1", user_agent="test")
    db.session.execute(update(SsoEvent).where(SsoEvent.id == rec.id).values(at=at))
    return rec.id


def saml_app(slug: str = "wiki", name: str = "Team wiki") -> str:
    return apps_svc.register_app(WIKI_MD.read_bytes(), slug=slug, name=name).slug


def oidc_app(slug: str) -> str:
    row, _ = apps_svc.register_oidc_app(name=slug.upper(), slug=slug, settings=apps_svc.initial_settings(
        public=False, redirect_uris=(f"https://{slug}.example.com/cb",)))
    return row.slug


def per_day(u: app_usage.AppUsage) -> dict[str, int]:
    return {d.day.isoformat(): d.sign_ins for d in u.per_day}


# ---------------------------------------------------------------- service


def test_days_are_utc_days_with_zeros_and_the_edges_of_the_period(app: Flask) -> None:
    saml_app()
    add_event("wiki", "alice", at=datetime(2026, 3, 3, 23, 59, 59, 999999, tzinfo=UTC))   # before day 1
    add_event("wiki", "alice", at=datetime(2026, 3, 4, 0, 0, tzinfo=UTC))                 # day 1, first instant
    add_event("wiki", "bob", at=datetime(2026, 3, 9, 23, 59, 59, 999999, tzinfo=UTC))     # last instant of 9th
    add_event("wiki", "bob", at=datetime(2026, 3, 10, 0, 0, tzinfo=UTC))                  # midnight: the 10th
    add_event("wiki", "alice", at=datetime(2026, 3, 10, 11, 59, tzinfo=UTC))
    add_event("wiki", "alice", at=datetime(2026, 3, 11, 0, 0, tzinfo=UTC))                # after the period
    # a time written in another zone is the same instant: 01:30+02:00 on the 10th is 23:30 UTC on the 9th
    add_event("wiki", "carol", at=datetime(2026, 3, 10, 1, 30, tzinfo=timezone(timedelta(hours=2))))
    u = app_usage.usage("wiki", 7, NOW)
    assert [d.day.isoformat() for d in u.per_day] == [f"2026-03-{d:02d}" for d in range(4, 11)]
    assert per_day(u) == {"2026-03-04": 1, "2026-03-05": 0, "2026-03-06": 0, "2026-03-07": 0, "2026-03-08": 0,
                          "2026-03-09": 2, "2026-03-10": 2}
    assert u.sign_ins == 5 and u.distinct_users == 3 and u.peak == 2
    assert (u.period.since, u.period.until) == (datetime(2026, 3, 4, tzinfo=UTC), datetime(2026, 3, 11, tzinfo=UTC))
    one = app_usage.usage("wiki", 1, NOW)
    assert per_day(one) == {"2026-03-10": 2}


def test_a_sign_in_is_an_sso_ok_of_either_protocol_and_nothing_else(app: Flask) -> None:
    saml_app()
    at = NOW - timedelta(hours=1)
    add_event("wiki", "alice", at=at)                                    # SAML assertion issued
    add_event("wiki", "bob", at=at, protocol="oidc")                     # OIDC code issued at /authorize
    add_event("wiki", "bob", at=at, protocol="oidc", event_type="token")          # its code exchange: not again
    add_event("wiki", "bob", Reason.CONSENT_GIVEN, at=at, protocol="oidc")        # success, but no sign-in
    add_event("wiki", "alice", Reason.LOGOUT, at=at, event_type="logout")
    add_event("wiki", "alice", Reason.MFA_ENROLLED, at=at, event_type="account")
    add_event("other", "alice", at=at)                                   # another app
    add_event(None, "alice", Reason.BAD_CREDENTIALS, at=at, event_type="signin")
    db.session.execute(update(SsoEvent).where(SsoEvent.username == "alice", SsoEvent.event_type == "sso",
                                              SsoEvent.app_slug == "wiki").values(protocol=None))  # pre-0009 row
    u = app_usage.usage("wiki", 30, NOW)
    assert u.sign_ins == 2 and u.by_protocol == {"saml": 1, "oidc": 1}
    assert {r.username: r.sign_ins for r in u.users} == {"alice": 1, "bob": 1}
    assert u.denials == () and u.errors == ()


def test_denials_and_errors_by_reason(app: Flask) -> None:
    saml_app()
    at = NOW - timedelta(days=2)
    for _ in range(3):
        add_event("wiki", "mallory", Reason.USER_NOT_PERMITTED, at=at)
    add_event("wiki", "bob", Reason.MFA_REQUIRED, at=at)
    add_event("wiki", "bob", Reason.CONSENT_DENIED, at=at, protocol="oidc")
    add_event("wiki", None, Reason.BAD_SIGNATURE, at=at)
    add_event("wiki", None, Reason.REPLAYED_REQUEST, at=at)
    add_event("wiki", None, Reason.BAD_SIGNATURE, at=at)
    add_event("wiki", "bob", Reason.USER_NOT_PERMITTED, at=NOW - timedelta(days=40))     # outside 30 days
    add_event("wiki", "bob", Reason.INVALID_GRANT, at=at, protocol="oidc", event_type="token")  # not a sign-in try
    u = app_usage.usage("wiki", 30, NOW)
    assert [(r.reason, r.count) for r in u.denials] == [("user_not_permitted", 3), ("consent_denied", 1),
                                                       ("mfa_required", 1)]
    assert [(r.reason, r.count) for r in u.errors] == [("bad_signature", 2), ("replayed_request", 1)]
    assert u.sign_ins == 0 and u.users == () and u.distinct_users == 0
    assert len(u.per_day) == 30 and all(d.sign_ins == 0 for d in u.per_day)
    assert [(r.reason, r.count) for r in app_usage.usage("wiki", 90, NOW).denials][0] == ("user_not_permitted", 4)


def test_last_use_per_user_most_recent_first_and_top(app: Flask) -> None:
    saml_app()
    add_event("wiki", "alice", at=NOW - timedelta(days=5))
    add_event("wiki", "alice", at=NOW - timedelta(days=1, hours=3))
    add_event("wiki", "bob", at=NOW - timedelta(hours=2), protocol="oidc")
    add_event("wiki", "carol", at=NOW - timedelta(days=20))
    add_event("wiki", "carol", at=NOW - timedelta(days=45))        # outside the period: neither count nor last use
    u = app_usage.usage("wiki", 30, NOW)
    assert [(r.username, r.sign_ins, r.last_use) for r in u.users] == [
        ("bob", 1, NOW - timedelta(hours=2)), ("alice", 2, NOW - timedelta(days=1, hours=3)),
        ("carol", 1, NOW - timedelta(days=20))]
    assert all(r.last_use.tzinfo is not None for r in u.users)
    top = app_usage.usage("wiki", 30, NOW, top=2)
    assert [r.username for r in top.users] == ["bob", "alice"] and top.distinct_users == 3


@pytest.mark.parametrize("days", [0, -1, 367, 10_000, True, 1.5, "30", None])
def test_days_out_of_range_is_a_clear_error(app: Flask, days: Any) -> None:
    saml_app()
    with pytest.raises(ServiceError, match="days must be a whole number from 1 to 366") as err:
        app_usage.usage("wiki", days, NOW)
    assert err.value.field == "days"


def test_the_day_expression_per_dialect() -> None:
    """UTC days in SQL: SQLite's date() of the stored UTC text; PostgreSQL's timestamptz taken AT TIME ZONE 'UTC'
    (tests/scaleout/test_app_usage_pg.py runs it under other session time zones)."""
    from sqlalchemy.dialects import mysql, postgresql, sqlite
    from sqlalchemy.exc import CompileError

    expr = app_usage.utc_day(SsoEvent.at)
    assert str(expr.compile(dialect=sqlite.dialect())) == "date(sso_events.at)"
    assert str(expr.compile(dialect=postgresql.dialect())) == \
        "to_char((sso_events.at) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
    with pytest.raises(CompileError, match="written for SQLite and PostgreSQL"):
        expr.compile(dialect=mysql.dialect())


@pytest.mark.parametrize(("typed", "days"), [(None, 30), ("", 30), (" 7 ", 7), ("1", 1), ("366", 366)])
def test_parse_days(typed: str | None, days: int) -> None:
    assert app_usage.parse_days(typed) == days


@pytest.mark.parametrize("typed", ["0", "367", "abc", "-5", "7d", "1e3", "٣", "9" * 40])
def test_parse_days_refuses(typed: str) -> None:
    with pytest.raises(ServiceError, match="days must be a whole number"):
        app_usage.parse_days(typed)


def test_unknown_app(app: Flask) -> None:
    with pytest.raises(ServiceError, match="no app with slug 'nope'"):
        app_usage.usage("nope", 30, NOW)


def test_overview_sorts_by_sign_ins_and_lists_dormant_and_never_used(app: Flask) -> None:
    saml_app("wiki")
    oidc_app("crm")
    oidc_app("hr")
    oidc_app("zzz")
    saml_app_row = apps_svc.get_app("wiki")
    apps_svc.change_settings(saml_app_row, enabled=False)
    for user in ("alice", "bob", "alice"):
        add_event("crm", user, at=NOW - timedelta(days=1), protocol="oidc")
    add_event("wiki", "alice", at=NOW - timedelta(days=3))
    add_event("hr", "bob", at=NOW - timedelta(days=100))             # used, but not in the period: dormant
    add_event("hr", "bob", Reason.USER_NOT_PERMITTED, at=NOW - timedelta(days=1))   # a denial is no use
    add_event("gone", "bob", at=NOW - timedelta(days=1))             # events of an app no longer registered
    o = app_usage.overview(30, NOW)
    rows = [(a.app_slug, a.sign_ins, a.distinct_users, a.dormant, a.never_used, a.enabled) for a in o.apps]
    assert rows == [("crm", 3, 2, False, False, True), ("wiki", 1, 1, False, False, False),
                    ("hr", 0, 0, True, False, True), ("zzz", 0, 0, True, True, True)]
    assert o.apps[2].last_use == NOW - timedelta(days=100) and o.apps[3].last_use is None
    d = o.to_dict()
    assert set(d) == {"days", "since", "until", "apps"} and d["days"] == 30
    assert d["apps"][2] == {"app": "hr", "name": "HR", "enabled": True, "sign_ins": 0, "distinct_users": 0,
                            "last_use": "2025-11-30T12:00:00Z", "dormant": True, "never_used": False}


# ---------------------------------------------------------------- real sign-ins, both protocols


def test_real_saml_and_oidc_sign_ins_count_once_each(app: Flask, client: FlaskClient, make_sp: Any,
                                                    alice: Any) -> None:
    """A SAML round trip with the pysaml2 SP, and an OIDC authorization with its code exchanged at the token
    endpoint: one sign-in each (the exchange is a `token` event, not a second sign-in)."""
    from ..oidc_token_kit import exchange, make_client, pkce_pair
    from .oidc_authz import at_rp, authorize_url
    from .oidc_authz import sign_in as oidc_sign_in

    browser = Browser(client)
    sp = make_sp("pysaml2", slug="saml-sp")
    req = sp.authn_request("redirect")
    form = saml_form(browser.sso(req, "alice", PASSWORD))
    assert form is not None
    assert sp.process_response(form.saml_response, req.request_id).name_id == "alice"

    _, client_id, secret = make_client("rp")
    db.session.commit()
    verifier, challenge = pkce_pair()
    code = at_rp(oidc_sign_in(browser, authorize_url(client_id, code_challenge=challenge)))["code"]
    assert exchange(client, code, client_id, secret, verifier).status_code == 200
    db.session.expire_all()
    assert db.session.query(SsoEvent).filter_by(app_slug="rp", event_type="token", reason="ok").count() == 1

    saml = app_usage.usage("saml-sp", 1)
    assert (saml.sign_ins, saml.by_protocol, [u.username for u in saml.users]) == (1, {"saml": 1, "oidc": 0},
                                                                                  ["alice"])
    rp = app_usage.usage("rp", 1)
    assert (rp.sign_ins, rp.by_protocol, rp.distinct_users) == (1, {"saml": 0, "oidc": 1}, 1)
    assert [d.sign_ins for d in rp.per_day] == [1]


# ---------------------------------------------------------------- CLI


def _today() -> datetime:
    """00:00 UTC today: an instant that is both today and not in the future, whenever the test runs."""
    return datetime.combine(utcnow().date(), datetime.min.time(), UTC)


@pytest.fixture
def seeded(app: Flask) -> datetime:
    """wiki (SAML): alice twice, bob once (OIDC), two denials and an error; crm used 60 days ago; hr never."""
    saml_app()
    oidc_app("crm")
    oidc_app("hr")
    today = _today()
    add_event("wiki", "alice", at=today)
    add_event("wiki", "alice", at=today - timedelta(days=2) + timedelta(hours=1))
    add_event("wiki", "bob", at=today - timedelta(hours=1), protocol="oidc")
    add_event("wiki", "mallory", Reason.USER_NOT_PERMITTED, at=today)
    add_event("wiki", "mallory", Reason.USER_NOT_PERMITTED, at=today)
    add_event("wiki", None, Reason.BAD_SIGNATURE, at=today)
    add_event("crm", "carol", at=today - timedelta(days=60), protocol="oidc")
    return today


def test_cli_usage_json_has_the_documented_keys(app: Flask, seeded: datetime) -> None:
    d = json.loads(ok(app, "apps", "usage", "wiki", "--days", "7", "--format", "json").stdout)
    assert set(d) == {"app", "name", "days", "since", "until", "sign_ins", "distinct_users", "by_protocol",
                      "per_day", "denials", "errors", "users"}
    assert (d["app"], d["name"], d["days"], d["sign_ins"], d["distinct_users"]) == ("wiki", "Team wiki", 7, 3, 2)
    assert d["by_protocol"] == {"saml": 2, "oidc": 1}
    assert d["since"] == (seeded - timedelta(days=6)).isoformat().replace("+00:00", "Z")
    assert d["until"] == (seeded + timedelta(days=1)).isoformat().replace("+00:00", "Z")
    days = [(seeded - timedelta(days=6 - i)).date().isoformat() for i in range(7)]
    assert [x["date"] for x in d["per_day"]] == days
    assert [x["sign_ins"] for x in d["per_day"]] == [0, 0, 0, 0, 1, 1, 1]
    assert d["denials"] == [{"reason": "user_not_permitted", "count": 2}]
    assert d["errors"] == [{"reason": "bad_signature", "count": 1}]
    assert d["users"] == [{"username": "alice", "last_use": seeded.isoformat().replace("+00:00", "Z"),
                           "sign_ins": 2},
                          {"username": "bob", "last_use": (seeded - timedelta(hours=1)).isoformat()
                           .replace("+00:00", "Z"), "sign_ins": 1}]
    default = json.loads(ok(app, "apps", "usage", "wiki", "--format", "json").stdout)
    assert default["days"] == 30 and len(default["per_day"]) == 30


def test_cli_usage_text_table_and_days(app: Flask, seeded: datetime) -> None:
    out = ok(app, "apps", "usage", "wiki", "--days", "3").stdout
    lines = out.splitlines()
    first = (seeded - timedelta(days=2)).date().isoformat()
    assert lines[0] == f"App: wiki (Team wiki), last 3 days ({first} to {seeded.date().isoformat()}, UTC days)"
    assert "Sign-ins: 3 (SAML 2, OIDC 1); users: 2" in out
    assert "Denials: user_not_permitted 2" in out and "Errors: bad_signature 1" in out
    assert re.search(r"^alice\s+2\s+" + re.escape(seeded.strftime("%Y-%m-%d %H:%MZ")) + "$", out, re.M)
    assert re.search(r"^bob\s+1\s+", out, re.M)
    day_rows = re.findall(r"^(\d{4}-\d\d-\d\d)\s+(\d+)(?:\s+(#+))?$", out, re.M)
    assert [(d, int(n)) for d, n, _ in day_rows] == [
        (first, 1), ((seeded - timedelta(days=1)).date().isoformat(), 1), (seeded.date().isoformat(), 1)]
    assert all(bar == "#" * 40 for _, _, bar in day_rows)


def test_cli_usage_overview(app: Flask, seeded: datetime) -> None:
    for args in (("apps", "usage"), ("apps", "usage", "--all")):
        out = ok(app, *args).stdout
        rows = [line.split()[0] for line in out.splitlines()[2:]]
        assert rows == ["wiki", "crm", "hr"], out
        assert re.search(r"^wiki\s+3\s+2\s+" + re.escape(seeded.strftime("%Y-%m-%d %H:%MZ")) + r"$", out, re.M)
        assert re.search(r"^crm\s+0\s+0\s+\S+ \S+\s+dormant$", out, re.M)
        assert re.search(r"^hr\s+0\s+0\s+never\s+dormant \(never used\)$", out, re.M)
    d = json.loads(ok(app, "apps", "usage", "--days", "90", "--format", "json").stdout)
    assert [(a["app"], a["sign_ins"], a["dormant"], a["never_used"]) for a in d["apps"]] == [
        ("wiki", 3, False, False), ("crm", 1, False, False), ("hr", 0, True, True)]
    assert set(d["apps"][0]) == {"app", "name", "enabled", "sign_ins", "distinct_users", "last_use", "dormant",
                                 "never_used"}


def test_cli_usage_errors(app: Flask, seeded: datetime) -> None:
    for days in ("0", "367", "abc", "-1"):
        fails(app, "apps", "usage", "wiki", "--days", days, fragment="days must be a whole number from 1 to 366")
    fails(app, "apps", "usage", "--days", "400", fragment="days must be a whole number from 1 to 366")
    fails(app, "apps", "usage", "nope", fragment="no app with slug 'nope'")
    fails(app, "apps", "usage", "wiki", "--all", fragment="give an app SLUG or --all, not both")
    fails(app, "apps", "usage", "wiki", "--format", "xml", fragment="Invalid value for '--format'", code=2)


# ---------------------------------------------------------------- console


@pytest.fixture
def admin(client: FlaskClient, app: Flask) -> str:
    pw = app.extensions["idp.passwords"]
    user = users_svc.add_user("root", email="root@example.com", password_hash=pw.hash(PASSWORD), is_admin=True)
    enrol_totp(user)
    db.session.commit()
    return sign_in(client, "root")


def _section(html: str) -> str:
    m = re.search(r'<section class="card" id="usage".*?</section>', html, re.S)
    assert m, "no Usage section on the page"
    return m.group(0)


def _bars(html: str) -> list[tuple[str, int, str]]:
    """(day, count, tooltip) of each bar of the usage chart."""
    svg = re.search(r'<svg class="usage-chart".*?</svg>', html, re.S)
    assert svg, "no chart"
    groups = re.findall(r'<g class="usage-day" data-day="([\d-]+)" data-count="(\d+)"><title>([^<]*)</title>'
                        r'<rect class="usage-hit"[^>]*/><rect class="usage-bar" [^>]*/></g>', svg.group(0))
    assert len(groups) == svg.group(0).count('class="usage-bar"')
    return [(d, int(n), t) for d, n, t in groups]


def test_app_page_usage_section_with_svg_chart(client: FlaskClient, admin: str, seeded: datetime) -> None:
    resp = client.get("/admin/apps/wiki")
    assert resp.status_code == 200
    html = text(resp)
    section = _section(html)
    bars = _bars(section)
    assert len(bars) == 30
    today = seeded.date().isoformat()
    assert bars[-1] == (today, 1, f"{today}: 1 sign-in")
    assert bars[-3][1] == 1 and bars[0][1] == 0 and bars[0][2].endswith(": 0 sign-ins")
    assert sum(n for _, n, _ in bars) == 3
    first = (seeded - timedelta(days=29)).date().isoformat()
    label = f"Sign-ins per day, {first} to {today} (UTC): 3 in 30 days, at most 1 a day"
    assert f'role="img" aria-label="{label}"' in section and f'<title id="usage-chart-title">{label}</title>' in section
    # a full-height bar for the busiest day, none for an empty one
    heights = [float(h) for h in re.findall(r'class="usage-bar" [^>]*height="([\d.]+)"', section)]
    assert heights[-1] == 100.0 and heights[0] == 0.0
    assert "<script" not in section and "style=" not in section
    assert re.search(r'id="usage-sign-ins">3 <span class="muted small">\(SAML 2 · OIDC 1\)', section)
    assert 'id="usage-distinct-users">2<' in section
    since = (seeded - timedelta(days=29)).date().isoformat()
    link = f"/admin/events?app=wiki&amp;outcome=denied&amp;reason=user_not_permitted&amp;since={since}"
    assert re.search(rf'<tr data-reason="user_not_permitted">\s*<td><a href="{re.escape(link)}"><code>'
                     r'user_not_permitted</code></a></td>\s*<td class="right">2</td>', section)
    assert 'href="/admin/events?app=wiki&amp;outcome=error&amp;reason=bad_signature' in section
    assert re.search(r'<tr data-user="alice">\s*<td><a href="/admin/users/alice">alice</a></td>\s*'
                     r'<td class="right">2</td>', section)
    assert section.index('data-user="alice"') < section.index('data-user="bob"')
    assert 'id="usage-days-30" aria-current="true"' in section
    # the denial link opens the event log filtered by app, outcome, reason and period
    events = text(client.get(link.replace("&amp;", "&")))
    assert events.count("user_not_permitted") >= 2 and "mallory" in events


@pytest.mark.parametrize("days", [7, 90, 1])
def test_app_page_period_from_the_query_string(client: FlaskClient, admin: str, seeded: datetime,
                                               days: int) -> None:
    section = _section(text(client.get(f"/admin/apps/wiki?days={days}")))
    assert len(_bars(section)) == days
    assert f"sign-ins over the last {days} day" in section
    if days in (7, 90):
        assert f'id="usage-days-{days}" aria-current="true"' in section


@pytest.mark.parametrize("days", ["abc", "0", "367", "-3", "30d"])
def test_app_page_bad_period_is_a_400_page(client: FlaskClient, admin: str, seeded: datetime, days: str) -> None:
    resp = client.get(f"/admin/apps/wiki?days={days}")
    assert resp.status_code == 400
    assert "Days must be a whole number from 1 to 366" in text(resp)
    assert client.get(f"/admin/usage?days={days}").status_code == 400


def test_app_page_usage_empty_and_top_users(client: FlaskClient, admin: str, app: Flask) -> None:
    saml_app()
    section = _section(text(client.get("/admin/apps/wiki")))
    assert len(_bars(section)) == 30 and all(n == 0 for _, n, _ in _bars(section))
    assert 'id="usage-no-users"' in section and 'id="usage-no-denials"' in section
    for i in range(30):
        add_event("wiki", f"user{i:02d}", at=_today())
    section = _section(text(client.get("/admin/apps/wiki")))
    assert section.count("<tr data-user=") == 25
    assert "The 25 most recent of 30 users" in section


def test_usage_overview_page(client: FlaskClient, admin: str, seeded: datetime) -> None:
    apps_page = text(client.get("/admin/apps"))
    assert re.search(r'<nav class="admin-nav"[^>]*>.*<a href="/admin/usage"\s*>Usage</a>', apps_page, re.S)
    resp = client.get("/admin/usage")
    assert resp.status_code == 200
    html = text(resp)
    assert '<a href="/admin/usage" aria-current="page">Usage</a>' in html
    assert re.findall(r'<tr id="usage-row-([a-z-]+)"', html) == ["wiki", "crm", "hr"]
    row = dict(re.findall(r'<tr id="usage-row-([a-z-]+)" data-slug="[^"]+"( class="dormant")?', html))
    assert row == {"wiki": "", "crm": ' class="dormant"', "hr": ' class="dormant"'}
    hr = re.search(r'<tr id="usage-row-hr".*?</tr>', html, re.S).group(0)  # type: ignore[union-attr]
    assert '<span class="muted">never</span>' in hr and 'badge warn dormant">dormant<' in hr
    crm = re.search(r'<tr id="usage-row-crm".*?</tr>', html, re.S).group(0)  # type: ignore[union-attr]
    assert (seeded - timedelta(days=60)).strftime("%Y-%m-%d") in crm and "dormant" in crm
    wiki = re.search(r'<tr id="usage-row-wiki".*?</tr>', html, re.S).group(0)  # type: ignore[union-attr]
    assert 'class="bar-n sign-ins">3<' in wiki and 'class="right users">2<' in wiki and "dormant" not in wiki
    assert 'href="/admin/apps/wiki?days=30#usage"' in wiki
    assert "1 app used, 2 dormant" in html
    html90 = text(client.get("/admin/usage?days=90"))
    assert re.findall(r'<tr id="usage-row-([a-z-]+)"', html90) == ["wiki", "crm", "hr"]
    assert "2 apps used, 1 dormant" in html90 and 'id="usage-days-90" aria-current="true"' in html90


def test_usage_pages_are_admin_only(client: FlaskClient, app: Flask, seeded: datetime, alice: Any) -> None:
    db.session.commit()
    sign_in(client, "alice")
    assert client.get("/admin/usage").status_code == 403
    assert client.get("/admin/apps/wiki?days=7").status_code == 403
