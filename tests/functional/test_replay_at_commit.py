"""The replay-cache row of an AuthnRequest is written by the SSO's own commit (one short write transaction after the
signatures, see DbState.remember_at_commit). Two requests with one ID can then both pass the early check: the
slower commit must find the row and refuse, writing nothing and sending no assertion.

The concurrent request is a real second writer: another database connection that records the same ID and commits
at the exact moment between this request's check and its commit (a listener placed first in the commit)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import event, func, insert, select

from idp.extensions import db
from idp.models import SeenRequest, SsoEvent, utcnow

from ..webclient import saml_form
from .conftest import PASSWORD, events
from .test_sso_errors import assert_refused


@pytest.fixture
def racing_writer(app) -> Iterator[list[tuple[str, str]]]:  # type: ignore[no-untyped-def]
    """Keys (issuer, request ID) that another connection records and commits once this request passed its
    check: just before the request's first write (its event row), when it holds no lock yet."""
    keys: list[tuple[str, str]] = []
    engine = db.engine

    def record_elsewhere(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        if not (statement.startswith("INSERT INTO sso_events") and db.session.info.get("idp.remember_at_commit")):
            return
        while keys:
            issuer, request_id = keys.pop()
            with engine.connect() as other:
                other.execute(insert(SeenRequest).values(issuer=issuer, request_id=request_id,
                                                         expires_at=utcnow() + timedelta(minutes=10)))
                other.commit()

    event.listen(engine, "before_cursor_execute", record_elsewhere)
    try:
        yield keys
    finally:
        event.remove(engine, "before_cursor_execute", record_elsewhere)


def _seen(issuer: str, request_id: str) -> int:
    return int(db.session.scalar(select(func.count()).select_from(SeenRequest).where(
        SeenRequest.issuer == issuer, SeenRequest.request_id == request_id)) or 0)


@pytest.mark.parametrize("binding", ["redirect", "post"])
def test_concurrent_request_with_the_same_id_is_refused_at_commit(make_sp, browser, alice, racing_writer, binding):
    sp = make_sp("onelogin", sign_requests=True)
    assert saml_form(browser.sso(sp.authn_request(binding), "alice", PASSWORD)) is not None   # signed in
    req = sp.authn_request(binding)
    racing_writer.append((sp.entity_id, req.request_id))
    ev = assert_refused(browser.send(req), 409, "replayed_request")
    assert ev.request_id == req.request_id and ev.sp_entity_id == sp.entity_id and ev.app_slug is not None
    assert "concurrent" in ev.detail["message"]
    db.session.rollback()
    assert _seen(sp.entity_id, req.request_id) == 1          # the racing writer's row only
    # nothing of the refused attempt was written: no success event for this request ID, no assertion issued
    assert [e.reason for e in events(request_id=req.request_id)] == ["replayed_request"]
    assert db.session.scalar(select(func.count()).select_from(SsoEvent).where(
        SsoEvent.request_id == req.request_id, SsoEvent.outcome == "success")) == 0
    # the session is intact: the next request with a fresh ID is answered
    assert saml_form(browser.send(sp.authn_request(binding))) is not None


def test_request_is_recorded_by_the_commit_that_answers_it(make_sp, browser, alice):
    sp = make_sp("pysaml2")
    req = sp.authn_request("redirect")
    assert saml_form(browser.sso(req, "alice", PASSWORD)) is not None
    db.session.rollback()
    assert _seen(sp.entity_id, req.request_id) == 1
    assert_refused(browser.send(req), 409, "replayed_request")


def test_rolled_back_request_records_nothing(app, make_sp):
    """A unit of work that rolls back (an outage at the commit, a 5xx) forgets its deferred keys."""
    from idp.state import shared

    make_sp("pysaml2")
    with app.test_request_context():
        assert shared().remember_at_commit("https://sp.example/x\n_rolled-back", 600)
        db.session.rollback()
        db.session.commit()
        assert _seen("https://sp.example/x", "_rolled-back") == 0
        assert shared().remember_at_commit("https://sp.example/x\n_kept", 600)
        db.session.commit()
        assert _seen("https://sp.example/x", "_kept") == 1
        assert not shared().remember_at_commit("https://sp.example/x\n_kept", 600)   # live: a replay now


def test_savepoints_inside_the_unit_of_work_keep_the_deferred_key(app, make_sp):
    """A SAVEPOINT rolled back or released after the check is not the transaction: the key is written by the
    transaction's own commit, never dropped with the savepoint."""
    from idp.state import shared

    make_sp("pysaml2")
    with app.test_request_context():
        assert shared().remember_at_commit("https://sp.example/x\n_sp-rolled-back", 600)
        with db.session.begin_nested() as nested:
            nested.rollback()
        assert shared().remember_at_commit("https://sp.example/x\n_sp-released", 600)
        with db.session.begin_nested():
            pass
        assert _seen("https://sp.example/x", "_sp-released") == 0      # not written by the savepoint's release
        db.session.commit()
        assert _seen("https://sp.example/x", "_sp-rolled-back") == 1
        assert _seen("https://sp.example/x", "_sp-released") == 1
