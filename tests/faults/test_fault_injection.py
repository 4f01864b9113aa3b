"""Faults inside the process: the event row cannot be written (disk full), the key store breaks.

No assertion may leave the IdP without its event row; the answer is a 503 with a clear operator
log line, and the IdP recovers without a restart once the fault is gone.
"""

from __future__ import annotations

import logging
import sqlite3

import pytest
from sqlalchemy import event

from idp.extensions import db
from idp.models import SsoEvent

from ..functional.conftest import PASSWORD, alice, browser, make_sp, sp_keys  # noqa: F401
from ..webclient import saml_form


class DiskFull:
    """Make every INSERT into sso_events fail as SQLite does when the disk is full."""

    def __init__(self, engine) -> None:  # type: ignore[no-untyped-def]
        self.engine = engine
        self.active = True

    def __call__(self, conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if self.active and statement.lstrip().upper().startswith("INSERT INTO SSO_EVENTS"):
            raise sqlite3.OperationalError("database or disk is full")

    def __enter__(self) -> DiskFull:
        event.listen(self.engine, "before_cursor_execute", self)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self)


@pytest.mark.parametrize("kind", ["pysaml2", "onelogin"])
def test_event_write_failure_releases_no_assertion(app, make_sp, browser, alice, caplog, kind):  # noqa: F811
    if db.engine.dialect.name != "sqlite":
        pytest.skip("injects an SQLite error")
    sp = make_sp(kind)
    req = sp.authn_request("redirect")
    assert saml_form(browser.sso(req, "alice", PASSWORD)) is not None  # session exists now
    before = db.session.query(SsoEvent).count()
    caplog.set_level(logging.ERROR, logger="idp")
    with DiskFull(db.engine):
        resp = browser.send(sp.authn_request("redirect"))
    assert resp.status_code == 503 and resp.headers.get("Retry-After")
    assert saml_form(resp) is None and b"SAMLResponse" not in resp.data and b"Traceback" not in resp.data
    assert any("backend unavailable" in r.getMessage() for r in caplog.records), "operator log line"
    db.session.expire_all()
    assert db.session.query(SsoEvent).count() == before
    # the fault is gone: the next attempt works, without any restart
    req = sp.authn_request("redirect")
    form = saml_form(browser.send(req))
    assert form is not None and sp.process_response(form.saml_response, req.request_id).name_id == "alice"


def test_replay_cache_write_failure_is_503(app, make_sp, browser, alice):  # noqa: F811
    if app.extensions["idp.state"].name != "database" or db.engine.dialect.name != "sqlite":
        pytest.skip("injects an SQLite error into the database-backed replay cache")
    sp = make_sp("onelogin")

    def fail(conn, cursor, statement, *a):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("INSERT INTO SEEN_REQUESTS"):
            raise sqlite3.OperationalError("disk I/O error")

    event.listen(db.engine, "before_cursor_execute", fail)
    try:
        resp = browser.send(sp.authn_request("redirect"))
    finally:
        event.remove(db.engine, "before_cursor_execute", fail)
    assert resp.status_code == 503 and saml_form(resp) is None
