"""0011_oidc_resources: existing OIDC clients and refresh tokens get an empty resource list, up and down, on SQLite
and PostgreSQL."""

from __future__ import annotations

import json

import flask_migrate
import pytest
import sqlalchemy as sa

from idp.extensions import MIGRATIONS_DIR, db

from .test_migrations import BACKENDS, app_for


@pytest.mark.parametrize("backend", BACKENDS)
def test_existing_clients_and_families_get_no_resources(backend, tmp_path, key_template):  # type: ignore[no-untyped-def]
    app = app_for(backend, tmp_path, key_template)
    with app.app_context():
        flask_migrate.upgrade(directory=MIGRATIONS_DIR, revision="0010_oidc_authz")
        with db.engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO users (id, username, email, first_name, last_name, is_admin, disabled, "
                                 "totp_confirmed, created_at) VALUES (1, 'alice', 'a@example.com', 'A', 'L', false, "
                                 "false, false, CURRENT_TIMESTAMP)"))
            conn.execute(sa.text("INSERT INTO connected_apps (id, slug, name, enabled, settings, source, version, "
                                 "created_at, updated_at) VALUES (1, 'crm', 'CRM', true, '{}', 'cli', 1, "
                                 "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
            conn.execute(sa.text("INSERT INTO oidc_clients (id, app_id, client_id, client_type, "
                                 "token_endpoint_auth_method, require_pkce, redirect_uris, post_logout_redirect_uris, "
                                 "grant_types, scopes, access_token_lifetime, id_token_lifetime, refresh_policy, "
                                 "ip_policy_refresh, created_at) VALUES (1, 1, 'cid', 'confidential', "
                                 "'client_secret_basic', true, '[]', '[]', '[\"authorization_code\"]', '[\"openid\"]', "
                                 "600, 600, 'until-revoked', 'enforce', CURRENT_TIMESTAMP)"))
            conn.execute(sa.text("INSERT INTO oidc_grants (id, app_id, user_id, scopes, consent, created_at) VALUES "
                                 "(1, 1, 1, '[\"openid\"]', 'user', CURRENT_TIMESTAMP)"))
            conn.execute(sa.text("INSERT INTO oidc_refresh_tokens (token_hash, family_id, grant_id, app_id, user_id, "
                                 "scopes, auth_time, family_started_at, created_at) VALUES ('h', 'f', 1, 1, 1, "
                                 "'[\"openid\"]', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
        flask_migrate.upgrade(directory=MIGRATIONS_DIR, revision="0011_oidc_resources")
        with db.engine.connect() as conn:
            for table in ("oidc_clients", "oidc_refresh_tokens"):
                [value] = conn.execute(sa.text(f"SELECT resources FROM {table}")).scalars().all()
                assert (json.loads(value) if isinstance(value, str) else value) == []
        flask_migrate.downgrade(directory=MIGRATIONS_DIR, revision="0010_oidc_authz")
        with db.engine.connect() as conn:
            assert "resources" not in {c["name"] for c in sa.inspect(conn).get_columns("oidc_clients")}
            assert conn.execute(sa.text("SELECT client_id FROM oidc_clients")).scalars().all() == ["cid"]
        flask_migrate.upgrade(directory=MIGRATIONS_DIR)
        db.session.remove()
        db.engine.dispose()
