"""Control characters (NUL and the rest of C0, DEL) in values the OIDC endpoints look up in the database: a
`client_id` at /oauth2/authorize and /oauth2/logout, a parked-request token in /oauth2/authorize/continue/<token>
and in the consent form. PostgreSQL (psycopg 3) refuses a NUL in a bound text parameter with a DataError, which
surfaced as a 503 "backend unavailable" page and no event. They are refused before any lookup: an IdP error page
(400) with an event for a client_id, "unknown or expired" for a token. These tests run on SQLite, which would
accept the NUL: they check that no SQL statement is ever given one."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from flask import Flask
from sqlalchemy import event

from idp.config import Settings
from idp.extensions import db

from ..conftest import make_settings
from ..functional.oidc_authz import at_rp, authorize_url, is_login_page, last_event, make_client, params
from ..webclient import Browser

CONTROL = ["\x00", "abc\x00def", "a\x01b", "a\x1fb", "a\tb", "a\nb", "a\x7fb"]
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


@pytest.fixture
def settings(tmp_path: Path, key_template: Path) -> Settings:
    return make_settings(tmp_path, key_template, oidc_enabled=True)


@pytest.fixture
def sql_params(app: Flask) -> Iterator[list[str]]:
    """Every string bound to an SQL statement that holds a control character (PostgreSQL would refuse a NUL)."""
    seen: list[str] = []

    def strings(value: Any) -> Iterator[str]:
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for v in value.values():
                yield from strings(v)
        elif isinstance(value, list | tuple):
            for v in value:
                yield from strings(v)

    def check(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        seen.extend(s for s in strings(parameters) if _CONTROL_RE.search(s))

    event.listen(db.engine, "before_cursor_execute", check)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", check)


@pytest.mark.parametrize("bad", CONTROL)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_authorize_client_id_with_control_characters(app: Flask, browser: Browser, alice: Any,
                                                     sql_params: list[str], bad: str, method: str) -> None:
    client_id = make_client()
    p = params(client_id, client_id=bad)
    resp = browser.client.get("/oauth2/authorize?" + urlencode(p)) if method == "GET" else \
        browser.client.post("/oauth2/authorize", data=p)
    body = resp.get_data(as_text=True)
    assert resp.status_code == 400 and "Location" not in resp.headers, body[:500]
    ev = last_event()
    assert (ev.protocol, ev.reason, ev.event_type) == ("oidc", "invalid_request", "sso")
    assert f">{ev.id}</code>" in body
    assert "control characters" in ev.detail["error_description"] and ev.sp_entity_id is None
    assert sql_params == []


@pytest.mark.parametrize("bad", CONTROL)
def test_logout_client_id_with_control_characters(app: Flask, browser: Browser, sql_params: list[str],
                                                  bad: str) -> None:
    resp = browser.client.get("/oauth2/logout?" + urlencode({"client_id": bad}))
    body = resp.get_data(as_text=True)
    assert resp.status_code == 400 and "Location" not in resp.headers, body[:500]
    ev = last_event()
    assert (ev.protocol, ev.reason, ev.event_type) == ("oidc", "invalid_request", "logout")
    assert sql_params == []


@pytest.mark.parametrize("bad", CONTROL)
def test_parked_request_token_with_control_characters(app: Flask, browser: Browser, alice: Any,
                                                      sql_params: list[str], bad: str) -> None:
    client_id = make_client()
    resp = browser.client.get(authorize_url(client_id))
    assert is_login_page(browser.follow(resp) if resp.status_code in (302, 303) else resp)
    sql_params.clear()
    for token in (bad, "x" * 20 + bad):
        resp = browser.client.get("/oauth2/authorize/continue/" + quote(token, safe=""))
        assert resp.status_code == 400 and "unknown or has expired" in resp.get_data(as_text=True)
    assert sql_params == []


@pytest.mark.parametrize("bad", CONTROL)
def test_consent_form_request_with_control_characters(app: Flask, browser: Browser, alice: Any,
                                                      sql_params: list[str], bad: str) -> None:
    client_id = make_client()
    resp = browser.get(authorize_url(client_id))
    resp = browser.login(resp, "alice", "correct horse battery")
    body = resp.get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', body)
    assert csrf and 'id="consent-form"' in body
    sql_params.clear()
    resp = browser.client.post("/oauth2/authorize/consent", data={"csrf_token": csrf.group(1), "request": bad,
                                                                   "decision": "allow"})
    assert resp.status_code == 400 and "unknown or has expired" in resp.get_data(as_text=True)
    assert "code" not in resp.headers.get("Location", "")
    assert sql_params == []


def test_a_good_request_still_works(app: Flask, browser: Browser, alice: Any, sql_params: list[str]) -> None:
    client_id = make_client()
    resp = browser.get(authorize_url(client_id))
    resp = browser.login(resp, "alice", "correct horse battery")
    assert 'id="consent-form"' in resp.get_data(as_text=True) or "code" in at_rp(resp)
    assert sql_params == []
