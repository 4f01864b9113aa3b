"""Alembic migrations: first revision → head on a database holding data, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import flask_migrate
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from idp import create_app
from idp.extensions import MIGRATIONS_DIR, db

from ..conftest import make_settings
from .conftest import PG_URL, reset_services


def _head() -> str:
    """The one head revision of the migrations folder (two heads would be a merge mistake)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS_DIR)
    heads = ScriptDirectory.from_config(cfg).get_heads()
    assert len(heads) == 1, heads
    return heads[0]


HEAD = _head()

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not PG_URL.startswith("postgresql"), reason="needs IDP_TEST_DATABASE_URL (make test starts PostgreSQL)"))]


def app_for(backend: str, tmp_path: Path, key_template: Path):  # type: ignore[no-untyped-def]
    overrides = {"database_url": PG_URL if backend == "postgresql" else f"sqlite:///{tmp_path / 'm.sqlite3'}"}
    settings = make_settings(tmp_path, key_template, **overrides)
    app = create_app(settings)
    if backend == "postgresql":
        reset_services({})
    return app


@pytest.mark.parametrize("backend", BACKENDS)
def test_upgrade_from_first_revision_keeps_data(backend, tmp_path, key_template):  # type: ignore[no-untyped-def]
    app = app_for(backend, tmp_path, key_template)
    with app.app_context():
        flask_migrate.upgrade(directory=MIGRATIONS_DIR, revision="0001_initial")
        with db.engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO users (id, username, email, first_name, last_name, password_hash, "
                                 "is_admin, disabled, totp_confirmed, created_at) VALUES (1, 'alice', "
                                 "'a@example.com', 'Alice', 'L', NULL, false, false, false, CURRENT_TIMESTAMP)"))
            # no explicit id: on PostgreSQL that would leave the id sequence behind the row
            conn.execute(sa.text("INSERT INTO connected_apps (slug, name, entity_id, enabled, metadata_xml, sp, "
                                 "settings, source, version, created_at, updated_at) VALUES ('crm', 'CRM', "
                                 "'https://crm.example.com', true, '<x/>', :sp, '{}', 'cli', 1, CURRENT_TIMESTAMP, "
                                 "CURRENT_TIMESTAMP)"), {"sp": json.dumps({"entity_id": "https://crm.example.com"})})
            conn.execute(sa.text("INSERT INTO sso_events (at, event_type, app_slug, username, outcome, reason) "
                                 "VALUES (CURRENT_TIMESTAMP, 'sso', 'crm', 'alice', 'success', 'ok')"))
            conn.execute(sa.text("INSERT INTO pending_requests (id, data, created_at) VALUES ('t', '{}', "
                                 "CURRENT_TIMESTAMP)"))
        flask_migrate.upgrade(directory=MIGRATIONS_DIR)
        with db.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT username FROM users")).scalar() == "alice"
            assert conn.execute(sa.text("SELECT totp_last_step FROM users")).scalar() is None
            assert conn.execute(sa.text("SELECT slug FROM connected_apps")).scalar() == "crm"
            assert conn.execute(sa.text("SELECT count(*) FROM sso_events")).scalar() == 1
            assert conn.execute(sa.text("SELECT count(*) FROM admin_audit")).scalar() == 0
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == HEAD
            # the migrated schema is exactly what the models declare
            diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), db.metadata)
        assert diffs == [], diffs
        db.session.remove()
        db.engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_db_init_on_empty_database_creates_head(backend, tmp_path, key_template):  # type: ignore[no-untyped-def]
    app = app_for(backend, tmp_path, key_template)
    runner = app.test_cli_runner()
    with app.app_context():
        r = runner.invoke(args=["db", "init"])
        assert r.exit_code == 0, r.output
        with db.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == HEAD
        r = runner.invoke(args=["db", "upgrade"])
        assert r.exit_code == 0, r.output
        db.session.remove()
        db.engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_oidc_clients_revision_keeps_saml_apps_and_their_sessions(backend, tmp_path, key_template, request):  # type: ignore[no-untyped-def]
    """0008 makes the SAML part of connected_apps optional: on SQLite that copies the table, which must not take
    the rows referring to it (ON DELETE CASCADE) along; OIDC-only apps (no entityID) may then be stored side by
    side, while an entityID stays unique; the downgrade removes OIDC-only apps and restores NOT NULL."""
    app = app_for(backend, tmp_path, key_template)

    def close() -> None:   # also when the test fails: no PostgreSQL connection left open for later tests
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
    request.addfinalizer(close)
    with app.app_context():
        flask_migrate.upgrade(directory=MIGRATIONS_DIR, revision="0007_enrolment")
        with db.engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO users (id, username, email, first_name, last_name, password_hash, "
                                 "is_admin, disabled, totp_confirmed, totp_failures, created_at) VALUES (1, 'alice', "
                                 "'a@example.com', 'Alice', 'L', NULL, false, false, false, 0, CURRENT_TIMESTAMP)"))
            # no explicit id: on PostgreSQL that would leave the id sequence behind the row
            conn.execute(sa.text("INSERT INTO connected_apps (slug, name, entity_id, enabled, metadata_xml, sp, "
                                 "settings, source, version, created_at, updated_at) VALUES ('crm', 'CRM', "
                                 "'https://crm.example.com', true, '<x/>', '{}', '{}', 'cli', 1, CURRENT_TIMESTAMP, "
                                 "CURRENT_TIMESTAMP)"))
            conn.execute(sa.text("INSERT INTO idp_sessions (id, user_id, created_at, authn_at, last_seen) VALUES "
                                 "('s1', 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
            conn.execute(sa.text("INSERT INTO session_participants (session_id, app_id, name_id, name_id_format, "
                                 "session_index, created_at) SELECT 's1', id, 'alice', 'u', 'i1', CURRENT_TIMESTAMP "
                                 "FROM connected_apps WHERE slug = 'crm'"))
        flask_migrate.upgrade(directory=MIGRATIONS_DIR)
        insert_oidc_only = ("INSERT INTO connected_apps (slug, name, enabled, settings, source, version, created_at, "
                            "updated_at) VALUES (:slug, :slug, true, '{}', 'cli', 1, CURRENT_TIMESTAMP, "
                            "CURRENT_TIMESTAMP)")
        with db.engine.begin() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM session_participants")).scalar() == 1
            conn.execute(sa.text(insert_oidc_only), {"slug": "oidc-a"})
            conn.execute(sa.text(insert_oidc_only), {"slug": "oidc-b"})
            if backend == "sqlite":
                assert conn.execute(sa.text("PRAGMA foreign_keys")).scalar() == 1
        with pytest.raises(sa.exc.IntegrityError), db.engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO connected_apps (slug, name, entity_id, enabled, metadata_xml, sp, "
                                 "settings, source, version, created_at, updated_at) VALUES ('crm2', 'CRM', "
                                 "'https://crm.example.com', true, '<x/>', '{}', '{}', 'cli', 1, CURRENT_TIMESTAMP, "
                                 "CURRENT_TIMESTAMP)"))
        flask_migrate.downgrade(directory=MIGRATIONS_DIR, revision="0007_enrolment")
        with db.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT slug FROM connected_apps")).scalars().all() == ["crm"]
            assert conn.execute(sa.text("SELECT count(*) FROM session_participants")).scalar() == 1
        flask_migrate.upgrade(directory=MIGRATIONS_DIR)
        with db.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM session_participants")).scalar() == 1
            diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), db.metadata)
        assert diffs == [], diffs
        db.session.remove()
        db.engine.dispose()
