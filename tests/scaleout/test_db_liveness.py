"""Pooled PostgreSQL connections are pinged only after sitting idle (idp/db_liveness.py), not at every checkout.

A backend killed while its connection sat in the pool: after the idle threshold, the checkout's ping finds it dead
and the pool hands out a fresh connection (the caller never sees the failure); before it, the first statement
fails and SQLAlchemy invalidates the pool, so the next checkout is fresh."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from idp import db_liveness

from .conftest import PG_URL, needs_services

pytestmark = needs_services


@pytest.fixture
def engine() -> Iterator[sa.Engine]:
    db_liveness.install()
    eng = sa.create_engine(PG_URL, pool_pre_ping=False, pool_size=1, max_overflow=0)
    try:
        yield eng
    finally:
        eng.dispose()


def _backend_pid(eng: sa.Engine) -> int:
    with eng.connect() as conn:
        return int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())


def _kill(pid: int) -> None:
    other = sa.create_engine(PG_URL, poolclass=sa.pool.NullPool)
    with other.begin() as conn:
        assert conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one()
    other.dispose()


def test_idle_dead_connection_is_replaced_before_use(engine, monkeypatch):
    pid = _backend_pid(engine)
    _kill(pid)
    monkeypatch.setattr(db_liveness, "IDLE_PING_S", 0.0)      # every pooled connection counts as idle
    assert _backend_pid(engine) != pid                         # pinged, found dead, replaced: no error


def test_recently_used_connection_is_not_pinged(engine, monkeypatch):
    pid = _backend_pid(engine)
    monkeypatch.setattr(db_liveness, "IDLE_PING_S", 3600.0)
    assert _backend_pid(engine) == pid                         # the same live connection, no extra round trip
    _kill(pid)
    with pytest.raises(OperationalError):                      # used without a ping: the one failure
        _backend_pid(engine)
    assert _backend_pid(engine) != pid                         # the pool was invalidated: fresh from here on


def test_app_engine_uses_idle_pings_not_pre_ping(tmp_path):
    from idp import _engine_options
    from idp.config import load_settings

    settings = load_settings({"IDP_DATABASE_URL": PG_URL, "IDP_INSTANCE_DIR": str(tmp_path)})
    options = _engine_options(settings)
    assert options["pool_pre_ping"] is False
    assert sa.event.contains(sa.pool.Pool, "checkout", db_liveness._checkout)
