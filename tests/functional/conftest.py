"""Fixtures for whole-flow tests: users, groups and independent test SPs registered as connected apps."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from idp.extensions import db
from idp.models import SsoEvent
from idp.services import apps as apps_svc
from idp.services import users as users_svc

from ..sp_harness import OneLoginSP, Pysaml2SP, TestSP, make_keypair
from ..webclient import Browser

PASSWORD = "correct horse battery"
SP_KINDS = {"pysaml2": Pysaml2SP, "onelogin": OneLoginSP}


@pytest.fixture
def alice(app: Flask) -> Any:
    pw = app.extensions["idp.passwords"]
    users_svc.add_group("engineering")
    return users_svc.add_user("alice", email="alice@example.com", password_hash=pw.hash(PASSWORD),
                              first_name="Alice", last_name="Liddell", groups=["engineering"])


@pytest.fixture
def bob(app: Flask) -> Any:
    pw = app.extensions["idp.passwords"]
    return users_svc.add_user("bob", email="bob@example.com", password_hash=pw.hash(PASSWORD),
                              first_name="Bob", last_name="Builder")


@pytest.fixture
def browser(client: FlaskClient) -> Browser:
    return Browser(client)


@pytest.fixture(scope="session")
def sp_keys(tmp_path_factory: pytest.TempPathFactory) -> Any:
    d = tmp_path_factory.mktemp("spkeys")
    return {name: make_keypair(d, name) for name in ("sp1", "sp2", "sp3", "other")}


@pytest.fixture
def make_sp(client: FlaskClient, tmp_path: Path, sp_keys: Any) -> Callable[..., TestSP]:
    """Create a test SP of a kind, register it as a connected app, and return it (its slug in `.slug`)."""
    idp_md = client.get("/saml/metadata").get_data(as_text=True)
    counter = {"n": 0}

    def factory(kind: str = "pysaml2", *, slug: str | None = None, register: bool = True,
                settings: dict[str, Any] | None = None, **kw: Any) -> TestSP:
        counter["n"] += 1
        n = counter["n"]
        base = kw.pop("base_url", f"https://sp{n}.example.com")
        workdir = tmp_path / f"sp{n}"
        workdir.mkdir()
        kw.setdefault("keypair", sp_keys[f"sp{min(n, 3)}"])
        sp = SP_KINDS[kind](workdir, idp_md, base_url=base, **kw)
        if register:
            row = apps_svc.register_app(sp.metadata_xml().encode(), slug=slug or f"{kind}-{n}")
            if settings:
                apps_svc.change_settings(row, **settings)
            sp.slug = row.slug  # type: ignore[attr-defined]
        return sp

    return factory


def events(**where: Any) -> list[SsoEvent]:
    q = db.session.query(SsoEvent)
    for k, v in where.items():
        q = q.filter(getattr(SsoEvent, k) == v)
    return q.order_by(SsoEvent.id).all()


def last_event() -> SsoEvent:
    ev = db.session.query(SsoEvent).order_by(SsoEvent.id.desc()).first()
    assert ev is not None, "no event was recorded"
    return ev
