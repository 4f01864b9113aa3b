"""Shared fixtures: an isolated IdP per test (own DB, key store, instance dir) and test SPs."""

from __future__ import annotations

import contextvars
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.globals import _cv_app
from flask.testing import FlaskClient, FlaskCliRunner

from idp import create_app
from idp.certs.keystore import KeyStore
from idp.config import Settings, load_settings
from idp.extensions import db

from .webclient import AUTHENTICATORS

ROOT = Path(__file__).resolve().parents[1]
# Real-world SP metadata documents (golden inputs, with their sources in SOURCES.md); IDP_SP_METADATA_DIR overrides.
SP_METADATA_DIR = Path(os.environ.get("IDP_SP_METADATA_DIR") or ROOT / "tests" / "data" / "sp-metadata")
IDP_BASE = "http://localhost"

logging.getLogger("saml2").setLevel(logging.CRITICAL)


@pytest.fixture(scope="session")
def key_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One RSA-2048 key store generated per test session, copied into each test (key generation is slow)."""
    path = tmp_path_factory.mktemp("keytemplate")
    KeyStore(path / "certs").generate_first(f"{IDP_BASE}/saml/metadata", "rsa2048", 365)
    return path / "certs"


def make_settings(tmp_path: Path, key_template: Path, **overrides: object) -> Settings:
    certs = tmp_path / "certs"
    if not certs.exists():
        shutil.copytree(key_template, certs)
    env = {
        "IDP_BASE_URL": IDP_BASE,
        "IDP_INSTANCE_DIR": str(tmp_path / "instance"),
        "IDP_CERT_DIR": str(certs),
        "IDP_SECRET_KEY": "test-secret-key-" + tmp_path.name,
        "IDP_ARGON2_TIME_COST": "1",
        "IDP_ARGON2_MEMORY_KIB": "1024",
        "IDP_ARGON2_PARALLELISM": "1",
    }
    if os.environ.get("IDP_TEST_DATABASE_URL"):
        env["IDP_DATABASE_URL"] = os.environ["IDP_TEST_DATABASE_URL"]
    if os.environ.get("IDP_TEST_REDIS_URL"):
        env["IDP_REDIS_URL"] = os.environ["IDP_TEST_REDIS_URL"]
    return load_settings(env, **overrides)


@pytest.fixture
def settings(tmp_path: Path, key_template: Path) -> Settings:
    return make_settings(tmp_path, key_template)


class IsolatedClient(FlaskClient):
    """Runs every request in its own app context, as in production.

    The tests hold an app context open (for direct service and DB calls); without this, each
    request would reuse it, sharing `g` (CSRF tokens) and the SQLAlchemy session across requests.
    Services write without committing (the outer layer owns the unit of work): here the test is that
    outer layer, so what it set up is committed before each request, as a CLI command would have.
    """

    def open(self, *args: Any, **kwargs: Any) -> Any:
        db.session.commit()

        def run() -> Any:
            _cv_app.set(None)  # type: ignore[arg-type]
            return super(IsolatedClient, self).open(*args, **kwargs)

        return contextvars.copy_context().run(run)


class CommittingCliRunner(FlaskCliRunner):
    """Like IsolatedClient: the test's own set-up is committed before a command runs (a command rolls back
    its unit of work when it fails, which must not take the test's set-up with it)."""

    def invoke(self, *args: Any, **kwargs: Any) -> Any:
        db.session.commit()
        return super().invoke(*args, **kwargs)


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    flask_app = create_app(settings, TESTING=True)
    flask_app.test_client_class = IsolatedClient
    flask_app.test_cli_runner_class = CommittingCliRunner
    with flask_app.app_context():
        reset_backends(flask_app)
        AUTHENTICATORS.clear()
        yield flask_app
        db.session.remove()
        db.drop_all()
        db.engine.dispose()


def reset_backends(flask_app: Flask) -> None:
    """A clean database (and Redis, when the tests run against one) for every test.

    SQLite: every test has its own file. PostgreSQL: the schema is created once, tables are
    emptied with one TRUNCATE per test (dropping and creating ~15 tables per test is slow).
    """
    if db.engine.dialect.name == "postgresql":
        from sqlalchemy import inspect, text
        existing = set(inspect(db.engine).get_table_names())
        if not set(db.metadata.tables) <= existing:
            db.drop_all()
            db.create_all()
        else:
            names = ", ".join(f'"{t}"' for t in db.metadata.tables)
            with db.engine.begin() as conn:
                conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    else:
        db.drop_all()
        db.create_all()
    from idp.services import apps, org
    apps.invalidate_cache()
    org._cache.clear()
    state = flask_app.extensions["idp.state"]
    if getattr(state, "name", "") == "redis":
        state.client.flushdb()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
