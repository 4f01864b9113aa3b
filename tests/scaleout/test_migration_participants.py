"""0010_oidc_authz: one session participant per (session, app, protocol), up and down, on SQLite and PostgreSQL."""

from __future__ import annotations

import flask_migrate
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from idp.extensions import MIGRATIONS_DIR, db

from .test_migrations import BACKENDS, app_for

_ROW = ("INSERT INTO session_participants (session_id, app_id, name_id, name_id_format, session_index, created_at, "
        "protocol) VALUES ('s1', 1, :nid, 'f', :idx, CURRENT_TIMESTAMP, :proto)")


@pytest.mark.parametrize("backend", BACKENDS)
def test_saml_and_oidc_rows_side_by_side_and_back(backend, tmp_path, key_template):  # type: ignore[no-untyped-def]
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
            conn.execute(sa.text("INSERT INTO idp_sessions (id, user_id, created_at, authn_at, last_seen) VALUES "
                                 "('s1', 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
            conn.execute(sa.text(_ROW), {"nid": "alice", "idx": "_saml", "proto": "saml"})
            conn.execute(sa.text(_ROW), {"nid": "sub", "idx": "sid", "proto": "oidc"})
        with pytest.raises(IntegrityError), db.engine.begin() as conn:
            conn.execute(sa.text(_ROW), {"nid": "sub2", "idx": "sid2", "proto": "oidc"})
        flask_migrate.downgrade(directory=MIGRATIONS_DIR, revision="0009_oidc_grants")
        with db.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT protocol FROM session_participants")).scalars().all() == ["saml"]
        flask_migrate.upgrade(directory=MIGRATIONS_DIR)
        db.session.remove()
        db.engine.dispose()
