"""The `idp` command: users and groups, connected-app settings, the event log, and one end-to-end console-script run.

In-process tests use Flask's CLI runner inside the `app` fixture's app context (same database session). Every error
path must exit non-zero with a one-line message and no traceback.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from flask import Flask
from sqlalchemy import update as sa_update

from idp.errors import EventContext
from idp.events import record_event
from idp.extensions import db
from idp.models import SsoEvent, User
from idp.reasons import Reason
from idp.services import users as users_svc

from ..conftest import ROOT, SP_METADATA_DIR

PASSWORD = "correct horse battery"
EVENT_FIELDS = [
    "id", "at", "event_type", "app_slug", "sp_entity_id", "username", "outcome", "reason", "initiated_by",
    "binding", "request_id", "response_id", "assertion_id", "client_ip", "user_agent", "protocol",
]


# ---------------------------------------------------------------- helpers

def cli(app: Flask, *args: str, input: str | None = None) -> Result:  # noqa: A002 - mirrors CliRunner.invoke
    result = app.test_cli_runner().invoke(args=list(args), input=input)
    # CliRunner swallows unexpected exceptions (no traceback in the output), so check the exception type as well.
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result


def ok(app: Flask, *args: str, input: str | None = None) -> Result:  # noqa: A002
    result = cli(app, *args, input=input)
    assert result.exit_code == 0, result.output
    return result


def fails(app: Flask, *args: str, fragment: str, code: int = 1, input: str | None = None) -> Result:  # noqa: A002
    result = cli(app, *args, input=input)
    assert result.exit_code == code, result.output
    assert fragment in result.stderr, result.stderr
    return result


def users_json(app: Flask) -> list[dict[str, Any]]:
    return json.loads(ok(app, "users", "list", "--format", "json").stdout)


def show(app: Flask, slug: str) -> dict[str, Any]:
    return json.loads(ok(app, "apps", "show", slug, "--format", "json").stdout)


# ---------------------------------------------------------------- db and certs (in process)

def test_db_init_generates_admin_password_once(app: Flask) -> None:
    r = ok(app, "db", "init")
    lines = r.stdout.splitlines()
    assert lines[0] == "database ready"
    prefix = "created admin user 'admin' with password: "
    [shown] = [line[len(prefix):] for line in lines if line.startswith(prefix)]
    assert len(shown) >= 12
    admin = db.session.query(User).filter_by(username="admin").one()
    assert admin.is_admin and app.extensions["idp.passwords"].verify(admin.password_hash, shown)
    again = ok(app, "db", "init")
    assert again.stdout == "database ready\n"
    assert db.session.query(User).count() == 1


def test_db_init_refuses_short_admin_password(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = app.extensions["idp.settings"]
    monkeypatch.setitem(app.extensions, "idp.settings", dataclasses.replace(settings, admin_password="x"))
    r = cli(app, "db", "init")
    assert r.exit_code != 0 and "at least 8 characters" in r.stderr
    assert db.session.query(User).count() == 0


def test_certs_generate_refuses_when_keys_exist(app: Flask) -> None:
    cert_dir = app.extensions["idp.settings"].cert_dir

    def key_material() -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in cert_dir.iterdir() if p.suffix in (".key", ".crt", ".json")}

    before = key_material()
    assert any(name.endswith(".key") for name in before)
    r = fails(app, "certs", "generate", "--key-type", "rsa2048", fragment="already holds keys")
    assert r.stdout == ""
    assert ok(app, "certs", "generate", "--if-empty").stdout == "signing keys already present; nothing generated\n"
    assert key_material() == before
    keys = json.loads(ok(app, "certs", "status", "--format", "json").stdout)["keys"]
    assert [k["state"] for k in keys] == ["active"]
    fails(app, "certs", "generate", "--days", "0", fragment="--days", code=2)


# ---------------------------------------------------------------- users and groups

def add_alice(app: Flask, *extra: str, password: str = PASSWORD) -> Result:
    return cli(app, "users", "add", "alice", "--email", "a@x.com", "--password-stdin", "--first-name", "A",
               *extra, input=password + "\n")


def test_users_add_with_group(app: Flask) -> None:
    assert ok(app, "groups", "add", "eng").stdout == "group eng added\n"
    r = add_alice(app, "--group", "eng")
    assert r.exit_code == 0 and r.stdout == "user alice added\n"
    assert users_json(app) == [{"username": "alice", "email": "a@x.com", "first_name": "A", "last_name": "",
                                "groups": ["eng"], "admin": False, "disabled": False}]
    user = db.session.query(User).filter_by(username="alice").one()
    pw = app.extensions["idp.passwords"]
    assert user.password_hash and PASSWORD not in user.password_hash
    assert pw.verify(user.password_hash, PASSWORD)
    assert not pw.verify(user.password_hash, PASSWORD + "\n")
    assert "eng\t1 members" in ok(app, "groups", "list").stdout


def test_password_keeps_inner_and_outer_spaces_but_not_the_newline(app: Flask) -> None:
    assert add_alice(app, password="  spaced out  ").exit_code == 0
    user = db.session.query(User).filter_by(username="alice").one()
    assert app.extensions["idp.passwords"].verify(user.password_hash, "  spaced out  ")


def test_users_add_unknown_group(app: Flask) -> None:
    r = add_alice(app, "--group", "eng")
    assert r.exit_code == 1
    assert "no group 'eng'" in r.stderr and "groups add eng" in r.stderr
    assert "Traceback" not in r.output
    assert users_json(app) == []


def test_users_add_duplicate(app: Flask) -> None:
    assert add_alice(app).exit_code == 0
    before = users_json(app)
    fails(app, "users", "add", "alice", "--email", "other@x.com", fragment="already exists")
    assert users_json(app) == before


def test_users_add_bad_email(app: Flask) -> None:
    for email in ["not-an-email", "a@b", "a b@x.com", "<a@x.com>", "a@@x.com", "", '"a"@x.com',
                  "a@x.com" + "x" * 400]:
        fails(app, "users", "add", "alice", "--email", email, fragment="is not a valid address")
    assert users_json(app) == []


def test_users_add_email_with_trailing_newline_refused(app: Flask) -> None:
    fails(app, "users", "add", "alice", "--email", "a@x.com\n", fragment="is not a valid address")
    assert users_json(app) == []


def test_users_add_email_with_control_character_refused(app: Flask) -> None:
    fails(app, "users", "add", "alice", "--email", "a\x1b[2Jb@x.com", fragment="is not a valid address")
    assert users_json(app) == []


def test_users_add_bad_username(app: Flask) -> None:
    for username in ["bad user", ".lead", "_x", "", "a" * 151, "al/ice"]:
        fails(app, "users", "add", username, "--email", "a@x.com", fragment="is not valid")
    assert users_json(app) == []


def test_users_add_username_with_trailing_newline_refused(app: Flask) -> None:
    fails(app, "users", "add", "alice\n", "--email", "a@x.com", fragment="is not valid")
    assert users_json(app) == []


def test_users_add_short_password(app: Flask) -> None:
    for password in ["", "short", "1234567"]:
        r = add_alice(app, password=password)
        assert r.exit_code == 1 and "at least 8 characters" in r.stderr, (password, r.output)
        assert password == "" or password not in r.output
    assert users_json(app) == []


def test_users_add_bad_name(app: Flask) -> None:
    fails(app, "users", "add", "alice", "--email", "a@x.com", "--first-name", "A\x1b[31m", fragment="first name")
    assert users_json(app) == []


def test_users_set(app: Flask) -> None:
    ok(app, "groups", "add", "eng")
    ok(app, "groups", "add", "ops")
    assert add_alice(app, "--group", "eng").exit_code == 0
    assert ok(app, "users", "set", "alice", "--remove-group", "eng", "--disabled").stdout == "user alice updated\n"
    [alice] = users_json(app)
    assert alice["groups"] == [] and alice["disabled"] is True
    ok(app, "users", "set", "alice", "--group", "ops", "--group", "eng", "--enabled")
    [alice] = users_json(app)
    assert alice["groups"] == ["eng", "ops"] and alice["disabled"] is False
    # removing a group the user is not in, or adding one twice, is harmless
    ok(app, "users", "set", "alice", "--group", "eng", "--remove-group", "ops")
    ok(app, "users", "set", "alice", "--remove-group", "ops")
    assert users_json(app)[0]["groups"] == ["eng"]


def test_users_set_password(app: Flask) -> None:
    assert add_alice(app).exit_code == 0
    pw = app.extensions["idp.passwords"]
    ok(app, "users", "set", "alice", "--password-stdin", input="a brand new password\n")
    db.session.expire_all()
    user = db.session.query(User).filter_by(username="alice").one()
    assert pw.verify(user.password_hash, "a brand new password")
    old_hash = user.password_hash
    fails(app, "users", "set", "alice", "--password-stdin", input="short\n", fragment="at least 8 characters")
    db.session.expire_all()
    assert db.session.query(User).filter_by(username="alice").one().password_hash == old_hash


def test_users_set_errors(app: Flask) -> None:
    fails(app, "users", "set", "bob", "--disabled", fragment="no user 'bob'")
    assert add_alice(app).exit_code == 0
    before = users_json(app)
    fails(app, "users", "set", "alice", "--disabled", "--group", "nope", fragment="no group 'nope'")
    fails(app, "users", "set", "alice", "--disabled", "--remove-group", "nope", fragment="no group 'nope'")
    db.session.expire_all()
    assert users_json(app) == before


def test_groups_add_errors_and_duplicates(app: Flask) -> None:
    for name in ["", "bad/name", "x" * 151]:
        fails(app, "groups", "add", name, fragment="is not valid")
    assert ok(app, "groups", "list").stdout == ""
    ok(app, "groups", "add", "eng")
    fails(app, "groups", "add", "eng", fragment="already exists")
    fails(app, "groups", "add", " eng ", fragment="already exists")


def test_groups_remove(app: Flask) -> None:
    ok(app, "groups", "add", "eng")
    ok(app, "users", "add", "dana", "--email", "dana@example.com", "--password-stdin", "--group", "eng",
       input="a long enough password\n")
    assert "1 memberships ended" in ok(app, "groups", "remove", "eng").stdout
    assert ok(app, "groups", "list").stdout == ""
    assert users_svc.get_user("dana").group_names == []
    fails(app, "groups", "remove", "eng", fragment="no group 'eng'")


def test_groups_remove_refused_while_a_policy_names_it(app: Flask) -> None:
    ok(app, "groups", "add", "eng")
    xml = SP_METADATA_DIR / "python3-saml-no-keydescriptor.xml"
    ok(app, "apps", "add", "--metadata", str(xml), "--slug", "stuff")
    ok(app, "apps", "set", "stuff", "--permitted", "admin-approved", "--deny-group", "eng")
    fails(app, "groups", "remove", "eng", fragment="named in the access policy of stuff (denied)")
    assert "eng" in ok(app, "groups", "list").stdout


# ---------------------------------------------------------------- apps set / show / remove

@pytest.fixture
def slug(app: Flask) -> str:
    """python3-saml-no-keydescriptor.xml: NameIDFormat unspecified, no requested attributes."""
    r = ok(app, "apps", "add", "--metadata", str(SP_METADATA_DIR / "python3-saml-no-keydescriptor.xml"),
           "--slug", "stuff")
    assert r.stdout == "stuff\n"
    return "stuff"


def settings_of(app: Flask, slug: str) -> dict[str, Any]:
    return show(app, slug)["settings"]


def test_apps_show_defaults(app: Flask, slug: str) -> None:
    d = show(app, slug)
    assert d["entity_id"] == "http://stuff.com/endpoints/metadata.php"
    assert d["enabled"] is True
    s = d["settings"]
    # metadata that requests no attribute: the basic profile under its urn:oid names
    basic = {"urn:oid:0.9.2342.19200300.100.1.3": "email", "urn:oid:2.5.4.42": "first_name",
             "urn:oid:2.5.4.4": "last_name", "urn:oid:2.16.840.1.113730.3.1.241": "display_name"}
    assert (s["nameid_format"], s["nameid_field"], s["attributes"], s["sign"]) == ("unspecified", "username", basic,
                                                                                     "both")
    assert s["friendly_names"]["urn:oid:2.5.4.42"] == "givenName" and set(s["attribute_formats"].values()) == {"uri"}
    text = ok(app, "apps", "show", slug).stdout
    assert "entity_id: http://stuff.com/endpoints/metadata.php" in text
    assert "HTTP-POST http://stuff.com/endpoints/endpoints/acs.php" in text
    table = ok(app, "apps", "list").stdout
    assert "stuff" in table and "enabled" in table


APPS_SET_CASES: list[tuple[list[str], dict[str, Any]]] = [
    (["--nameid-format", "persistent"], {"nameid_format": "persistent", "nameid_field": "username"}),
    (["--nameid-format", "transient"], {"nameid_format": "transient"}),
    (["--nameid-format", "email"], {"nameid_format": "email", "nameid_field": "email"}),
    (["--nameid-format", "email", "--nameid-field", "username"], {"nameid_format": "email",
                                                                   "nameid_field": "username"}),
    (["--nameid-format", "unspecified", "--nameid-field", "id"], {"nameid_format": "unspecified",
                                                                   "nameid_field": "id"}),
    (["--sign", "response"], {"sign": "response"}),
    (["--sign", "assertion"], {"sign": "assertion"}),
    (["--sign", "both"], {"sign": "both"}),
    (["--require-signed-requests"], {"require_signed_requests": True}),
    (["--allow-sha1"], {"allow_sha1": True}),
    (["--attribute", "mail=email", "--attribute", "urn:oid:2.5.4.42=first_name", "--attribute", "memberOf=groups"],
     # replacing the map keeps the FriendlyName and NameFormat only of names still released
     {"attributes": {"mail": "email", "urn:oid:2.5.4.42": "first_name", "memberOf": "groups"},
      "attribute_formats": {"urn:oid:2.5.4.42": "uri"}, "friendly_names": {"urn:oid:2.5.4.42": "givenName"}}),
    (["--attribute", "a=b=display_name"], {"attributes": {"a=b": "display_name"}, "attribute_formats": {},
                                           "friendly_names": {}}),
    (["--no-require-signed-requests", "--no-allow-sha1"], {"require_signed_requests": False, "allow_sha1": False}),
]


def test_apps_set_options(app: Flask, slug: str) -> None:
    """Each option, one after another: it changes exactly its own setting(s)."""
    for args, expected in APPS_SET_CASES:
        before = settings_of(app, slug)
        assert ok(app, "apps", "set", slug, *args).stdout == f"app {slug} updated\n"
        assert settings_of(app, slug) == {**before, **expected}, args


def test_apps_set_attributes_replace_and_clear(app: Flask, slug: str) -> None:
    ok(app, "apps", "set", slug, "--attribute", "mail=email", "--attribute", "uid=username")
    ok(app, "apps", "set", slug, "--attribute", "cn=display_name")
    assert settings_of(app, slug)["attributes"] == {"cn": "display_name"}
    ok(app, "apps", "set", slug, "--clear-attributes")
    assert settings_of(app, slug)["attributes"] == {}


def test_apps_set_enabled_disabled(app: Flask, slug: str) -> None:
    ok(app, "apps", "set", slug, "--disabled")
    assert show(app, slug)["enabled"] is False
    assert "disabled" in ok(app, "apps", "list").stdout
    ok(app, "apps", "set", slug, "--enabled")
    assert show(app, slug)["enabled"] is True


def test_apps_set_name(app: Flask, slug: str) -> None:
    ok(app, "apps", "set", slug, "--name", "  Stuff & <Co>  ")
    assert show(app, slug)["name"] == "Stuff & <Co>"
    fails(app, "apps", "set", slug, "--name", "   ", fragment="1-200 characters")
    fails(app, "apps", "set", slug, "--name", "x" * 201, fragment="1-200 characters")
    assert show(app, slug)["name"] == "Stuff & <Co>"


def test_apps_set_bad_attribute_changes_nothing(app: Flask, slug: str) -> None:
    ok(app, "apps", "set", slug, "--attribute", "mail=email")
    before = show(app, slug)
    for attribute, fragment in [
        ("mail=password_hash", "unknown user field 'password_hash'"),
        ("mail=", "NAME=field:FIELD or NAME=formula:EXPR"),
        ("noequals", "NAME=field:FIELD"),
        ("=email", "NAME=field:FIELD"),
        ("mail=formula:user.email +", "line 1, column"),
        ("bad\x01name=email", "is not valid"),
    ]:
        # the bad value comes with good ones: none of them may be applied
        fails(app, "apps", "set", slug, "--attribute", "uid=username", "--attribute", attribute,
              "--nameid-format", "persistent", "--sign", "response", "--disabled", "--name", "Renamed",
              fragment=fragment)
        db.session.expire_all()
        assert show(app, slug) == before, attribute


def test_apps_set_bad_choice_is_usage_error(app: Flask, slug: str) -> None:
    before = show(app, slug)
    for args in (["--nameid-format", "kerberos"], ["--nameid-field", "password"], ["--sign", "none"]):
        r = cli(app, "apps", "set", slug, *args)
        assert r.exit_code == 2 and "Invalid value" in r.stderr, args
    assert show(app, slug) == before


def test_apps_remove(app: Flask, slug: str) -> None:
    assert ok(app, "apps", "remove", slug).stdout == f"app {slug} removed\n"
    assert json.loads(ok(app, "apps", "list", "--format", "json").stdout) == []
    assert ok(app, "apps", "list").stdout == "no apps registered\n"
    fails(app, "apps", "show", slug, fragment=f"no app with slug '{slug}'")
    # the entityID is free again
    ok(app, "apps", "add", "--metadata", str(SP_METADATA_DIR / "python3-saml-no-keydescriptor.xml"))


def test_apps_unknown_slug(app: Flask, slug: str) -> None:
    for args in (["apps", "show", "nope"], ["apps", "show", "nope", "--format", "json"], ["apps", "remove", "nope"],
                 ["apps", "set", "nope", "--disabled"], ["apps", "set", "nope", "--attribute", "mail=email"]):
        r = fails(app, *args, fragment="no app with slug 'nope'")
        assert r.stdout == "", args
    assert show(app, slug)["enabled"] is True


# ---------------------------------------------------------------- events

def make_event(at: datetime, reason: Reason, *, app_slug: str | None = None, username: str | None = None,
               user_agent: str | None = "pytest", request_id: str | None = None, **ctx: Any) -> SsoEvent:
    event = record_event(EventContext(app_slug=app_slug, sp_entity_id=f"https://{app_slug}.example.org/sp"
                                      if app_slug else None, username=username, request_id=request_id, **ctx),
                         reason, client_ip="203.0.113.9", user_agent=user_agent)
    event.at = at
    db.session.execute(sa_update(SsoEvent).where(SsoEvent.id == event.id).values(at=at))
    db.session.commit()
    return event


def t(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 1, 1, hour, minute, tzinfo=UTC)


@pytest.fixture
def events(app: Flask) -> dict[str, SsoEvent]:
    return {
        # recorded first but happened last: ordering is by time, not by id
        "e0": make_event(t(12), Reason.LOGOUT, app_slug="wiki", username="@bob", event_type="logout"),
        "e1": make_event(t(8), Reason.OK, app_slug="wiki", username="alice", initiated_by="sp", binding="redirect",
                         response_id="_r1", assertion_id="_a1"),
        "e2": make_event(t(9), Reason.USER_NOT_PERMITTED, app_slug="crm", username="alice", initiated_by="idp"),
        "e3": make_event(t(10), Reason.BAD_SIGNATURE, app_slug="wiki", username=None, binding="post",
                         request_id="+SUM(A1:A9)"),
        "e4": make_event(t(11), Reason.OK, app_slug="crm", username="bob", user_agent="=HYPERLINK(\"http://x\")"),
    }


def event_ids(app: Flask, *args: str) -> list[int]:
    return [e["id"] for e in json.loads(ok(app, "events", "--format", "json", *args).stdout)]


def ids(events: dict[str, SsoEvent], *names: str) -> list[int]:
    return [events[n].id for n in names]


def test_events_newest_first(app: Flask, events: dict[str, SsoEvent]) -> None:
    assert event_ids(app) == ids(events, "e0", "e4", "e3", "e2", "e1")
    assert event_ids(app, "--limit", "2") == ids(events, "e0", "e4")


EVENT_FILTER_CASES: list[tuple[list[str], list[str]]] = [
    (["--app", "wiki"], ["e0", "e3", "e1"]),
    (["--app", "crm"], ["e4", "e2"]),
    (["--app", "nope"], []),
    (["--user", "alice"], ["e2", "e1"]),
    (["--user", "@bob"], ["e0"]),
    (["--outcome", "success"], ["e0", "e4", "e1"]),
    (["--outcome", "denied"], ["e2"]),
    (["--outcome", "error"], ["e3"]),
    (["--reason", "bad_signature"], ["e3"]),
    (["--since", "2026-01-01T10:00:00Z"], ["e0", "e4", "e3"]),
    (["--since", "2026-01-01T10:00:01Z"], ["e0", "e4"]),
    (["--since", "2026-01-01T12:30:00+02:00"], ["e0", "e4"]),  # 10:30 UTC
    (["--since", "2026-01-01T11:00:00"], ["e0", "e4"]),  # no zone: UTC
    (["--since", "2026-01-02T00:00:00Z"], []),
    (["--app", "wiki", "--outcome", "success", "--since", "2026-01-01T09:00:00Z"], ["e0"]),
    (["--app", "crm", "--user", "alice"], ["e2"]),
]


def test_events_filters(app: Flask, events: dict[str, SsoEvent]) -> None:
    for args, expected in EVENT_FILTER_CASES:
        assert event_ids(app, *args) == ids(events, *expected), args


def test_events_json_fields(app: Flask, events: dict[str, SsoEvent]) -> None:
    rows = json.loads(ok(app, "events", "--format", "json").stdout)
    assert isinstance(rows, list) and len(rows) == 5
    for row in rows:
        assert set(EVENT_FIELDS) <= set(row), set(EVENT_FIELDS) - set(row)
    e1 = next(r for r in rows if r["id"] == events["e1"].id)
    assert {k: e1[k] for k in EVENT_FIELDS} == {
        "id": events["e1"].id, "at": "2026-01-01T08:00:00Z", "event_type": "sso", "app_slug": "wiki",
        "sp_entity_id": "https://wiki.example.org/sp", "username": "alice", "outcome": "success", "reason": "ok",
        "initiated_by": "sp", "binding": "redirect", "request_id": None, "response_id": "_r1",
        "assertion_id": "_a1", "client_ip": "203.0.113.9", "user_agent": "pytest", "protocol": e1["protocol"],
    }
    # JSON is data, not a spreadsheet: values are not rewritten
    e4 = next(r for r in rows if r["id"] == events["e4"].id)
    assert e4["user_agent"] == '=HYPERLINK("http://x")'


def test_events_csv(app: Flask, events: dict[str, SsoEvent]) -> None:
    out = ok(app, "events", "--format", "csv").stdout
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == EVENT_FIELDS
    body = [dict(zip(EVENT_FIELDS, r, strict=True)) for r in rows[1:]]
    assert [int(r["id"]) for r in body] == ids(events, "e0", "e4", "e3", "e2", "e1")
    by_id = {int(r["id"]): r for r in body}
    assert by_id[events["e4"].id]["user_agent"] == "'=HYPERLINK(\"http://x\")"
    assert by_id[events["e3"].id]["request_id"] == "'+SUM(A1:A9)"
    assert by_id[events["e0"].id]["username"] == "'@bob"
    e1 = by_id[events["e1"].id]
    assert (e1["at"], e1["username"], e1["outcome"], e1["request_id"]) == ("2026-01-01T08:00:00Z", "alice",
                                                                           "success", "")
    # filters apply to CSV as well
    rows = list(csv.reader(io.StringIO(ok(app, "events", "--format", "csv", "--outcome", "denied").stdout)))
    assert len(rows) == 2 and rows[1][EVENT_FIELDS.index("id")] == str(events["e2"].id)


def test_events_csv_empty_has_header(app: Flask) -> None:
    rows = list(csv.reader(io.StringIO(ok(app, "events", "--format", "csv").stdout)))
    assert rows == [EVENT_FIELDS]
    assert json.loads(ok(app, "events", "--format", "json").stdout) == []


def test_events_table(app: Flask, events: dict[str, SsoEvent]) -> None:
    out = ok(app, "events").stdout.splitlines()
    assert out[0].split() == ["AT", "APP", "USER", "OUTCOME", "REASON", "BY", "IP"]
    assert len(out) == 6
    assert out[1].startswith("2026-01-01 12:00:00Z") and "logout" in out[1]


def test_events_usage_errors(app: Flask, events: dict[str, SsoEvent]) -> None:
    for args in (["--since", "yesterday"], ["--since", "2026-13-01"], ["--since", "2026-01-01T25:00:00Z"],
                 ["--since", "2026-01-01T09:00:00+25:00"], ["--outcome", "maybe"], ["--limit", "0"],
                 ["--format", "xml"]):
        r = cli(app, "events", *args)
        assert r.exit_code == 2, (args, r.output)
        assert r.stdout == ""
        assert args[0] in r.stderr and "Usage:" in r.stderr


# ---------------------------------------------------------------- the console script, end to end

def test_console_script_end_to_end(tmp_path: Path) -> None:
    # the console script of the environment running the tests (.venv/bin/idp here)
    idp = Path(sys.executable).parent / "idp"
    if not idp.exists():
        idp = ROOT / ".venv" / "bin" / "idp"
    cert_dir = tmp_path / "certs"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "IDP_INSTANCE_DIR": str(tmp_path / "instance"),
        "IDP_CERT_DIR": str(cert_dir),
        "IDP_BASE_URL": "https://idp.example.test",
        "IDP_ARGON2_TIME_COST": "1",
        "IDP_ARGON2_MEMORY_KIB": "1024",
        "IDP_ARGON2_PARALLELISM": "1",
        "IDP_ADMIN_PASSWORD": "an admin password",
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(idp), *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
                              check=False)
        assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
        return proc

    first = run("db", "init")
    assert first.returncode == 0, first.stderr
    assert "created admin user 'admin'" in first.stdout
    assert "an admin password" not in first.stdout + first.stderr
    second = run("db", "init")
    assert second.returncode == 0, second.stderr
    assert "database ready" in second.stdout and "created" not in second.stdout

    gen = run("certs", "generate", "--key-type", "rsa2048")
    assert gen.returncode == 0, gen.stderr
    keys = list(cert_dir.glob("*.key"))
    assert len(keys) == 1
    assert stat.S_IMODE(cert_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(keys[0].stat().st_mode) == 0o600
    assert len(list(cert_dir.glob("*.crt"))) == 1
    key_bytes = keys[0].read_bytes()
    again = run("certs", "generate", "--key-type", "rsa2048")
    assert again.returncode != 0
    assert "already holds keys" in again.stderr
    assert list(cert_dir.glob("*.key")) == keys and keys[0].read_bytes() == key_bytes

    added = run("apps", "add", "--metadata", str(SP_METADATA_DIR / "gitlab-omniauth-saml-ruby-saml.xml"))
    assert added.returncode == 0, added.stderr
    slug = added.stdout.strip()
    assert added.stdout == slug + "\n" and slug
    apps = json.loads(run("apps", "list", "--format", "json").stdout)
    assert [(a["slug"], a["entity_id"]) for a in apps] == [(slug, "https://dev.aa.kndr.org/users/auth/saml/metadata")]
    assert apps[0]["launch_url"] == f"https://idp.example.test/apps/{slug}/sso"


def test_audit_trail_records_cli_changes(app):
    from idp import audit
    runner = app.test_cli_runner()
    with audit.acting_as("cli:tester"):
        assert runner.invoke(args=["groups", "add", "ops"]).exit_code == 0
        assert runner.invoke(args=["users", "add", "dora", "--email", "d@example.com", "--password-stdin",
                                   "--group", "ops"], input="long enough pw\n").exit_code == 0
        assert runner.invoke(args=["users", "set", "dora", "--disabled"]).exit_code == 0
        assert runner.invoke(args=["org", "ip-ranges", "add", "10.0.0.0/8"]).exit_code == 0
    r = runner.invoke(args=["audit", "--format", "json"])
    import json
    rows = json.loads(r.output)
    actions = [row["action"] for row in rows]
    # disabling is one user.deactivate row: the flag and what ended with the account (sessions, grants, tokens)
    assert actions[:4] == ["org.setting", "user.deactivate", "user.add", "group.add"]
    assert all(row["actor"] == "cli:tester" for row in rows[:4])
    deactivate = rows[1]
    assert deactivate["before"] == {"disabled": False} and deactivate["after"]["disabled"] is True
    assert "sessions_ended" in deactivate["after"]
    assert "password" not in json.dumps(rows[2]).lower() or "[redacted]" in json.dumps(rows[2])
    r = runner.invoke(args=["audit", "--target", "dora"])
    assert "user.add" in r.output and "org.setting" not in r.output
