"""Two first authorizations of one app by one user at once: both find no grant and both insert one; the second
insert meets the unique app+user constraint and must use the row the first one wrote (not fail the request)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, insert

from idp.config import Settings
from idp.extensions import db
from idp.models import OidcGrant, utcnow
from idp.services.oidc_consent import record_grant

from ..conftest import make_settings
from ..oidc_token_kit import make_client


@pytest.fixture
def settings(tmp_path: Path, key_template: Path) -> Settings:
    return make_settings(tmp_path, key_template, oidc_enabled=True)


@pytest.fixture
def competing_insert() -> Iterator[dict[str, Any]]:
    """Once armed, the first SELECT of oidc_grants is followed by another connection inserting (and committing)
    the grant it was looking for: the other request won the race between this one's read and its insert."""
    armed: dict[str, Any] = {}

    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if armed.get("row") and statement.lstrip().upper().startswith("SELECT") and "oidc_grants" in statement:
            row = armed.pop("row")
            with db.engine.begin() as other:
                other.execute(insert(OidcGrant).values(**row))

    event.listen(db.engine, "after_cursor_execute", after)
    try:
        yield armed
    finally:
        event.remove(db.engine, "after_cursor_execute", after)


def test_concurrent_first_grants_end_in_one_row(alice: Any, competing_insert: dict[str, Any]) -> None:
    row, _, _ = make_client("crm")
    db.session.commit()
    competing_insert["row"] = {"app_id": row.id, "user_id": alice.id, "scopes": ["openid", "email"],
                               "consent": "user", "created_at": utcnow()}
    grant = record_grant(row.id, alice.id, ["openid", "profile"], "user")
    db.session.commit()
    assert "row" not in competing_insert                      # the race did happen
    db.session.expire_all()
    rows = db.session.query(OidcGrant).all()
    assert len(rows) == 1 and rows[0].id == grant.id
    assert set(rows[0].scopes) == {"openid", "email", "profile"} and rows[0].revoked_at is None
