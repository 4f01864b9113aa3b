"""Console: the API tokens page — create (the secret shown once, on the POST's response, never again), list
(never the secret or its hash), revoke with confirmation; CSRF and the admin gate. The secret it shows works at
the API; once revoked it does not."""

from __future__ import annotations

import re

from flask.testing import FlaskClient
from sqlalchemy import select

from idp.extensions import db
from idp.models import AdminAudit, ApiToken, User
from idp.services import api_tokens as tokens_svc

from .conftest import PASSWORD
from .test_admin_console import ADMIN_PASSWORD, admin, login, post  # noqa: F401 - admin is a fixture


def test_create_shows_the_secret_once_and_it_works(client: FlaskClient, admin: User) -> None:  # noqa: F811
    login(client, "admin", ADMIN_PASSWORD)
    assert ">API tokens</a>" in client.get("/admin/users").get_data(as_text=True)
    resp = post(client, "/admin/api-tokens/new", {"name": "hr-sync", "scopes": ["users:read", "users:write"],
                                                    "expires": "30"}, "/admin/api-tokens")
    assert resp.status_code == 201 and resp.headers["Cache-Control"] == "no-store"
    secret = re.search(r'<pre id="token-secret">([^<]+)</pre>', resp.get_data(as_text=True)).group(1)  # type: ignore[union-attr]
    row = db.session.scalars(select(ApiToken).where(ApiToken.name == "hr-sync")).one()
    assert row.token_hash == tokens_svc.token_hash(secret) and secret not in row.token_hash
    assert row.scopes == ["users:read", "users:write"] and row.expires_at is not None
    listing = client.get("/admin/api-tokens").get_data(as_text=True)
    assert 'data-token="hr-sync"' in listing and secret not in listing and row.token_hash not in listing
    audit = db.session.scalars(select(AdminAudit).where(AdminAudit.action == "api_token.create")).one()
    assert audit.actor == "web:admin" and secret not in str(audit.after)
    api = client.application.test_client()
    assert api.get("/api/v1/users", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    # revoke: a confirmation page, then 401 at the API
    assert "confirm-revoke" in client.get("/admin/api-tokens/hr-sync/revoke").get_data(as_text=True)
    done = post(client, "/admin/api-tokens/hr-sync/revoke", {}, "/admin/api-tokens/hr-sync/revoke")
    assert done.status_code == 303
    assert api.get("/api/v1/users", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    assert 'id="revoke-token-hr-sync"' not in client.get("/admin/api-tokens").get_data(as_text=True)


def test_refusals_are_shown_next_to_the_field_and_nothing_is_stored(client: FlaskClient, admin: User) -> None:  # noqa: F811
    login(client, "admin", ADMIN_PASSWORD)
    for body, text in [({"name": "x", "scopes": []}, "at least one scope"),
                       ({"name": "bad name!", "scopes": ["scim"]}, "not valid"),
                       ({"name": "x", "scopes": ["root"]}, "root"),
                       ({"name": "x", "scopes": ["scim"], "expires": "soon"}, "number of days"),
                       ({"name": "x", "scopes": ["scim"], "expires": "100000"}, "between 1 and")]:
        resp = post(client, "/admin/api-tokens/new", body, "/admin/api-tokens")
        assert resp.status_code == 422 and text in resp.get_data(as_text=True), body
        assert 'id="token-secret"' not in resp.get_data(as_text=True)
    assert db.session.scalars(select(ApiToken)).first() is None


def test_admin_gate_and_csrf(client: FlaskClient, admin: User, alice: User) -> None:  # noqa: F811
    assert client.get("/admin/api-tokens").status_code == 302                # anonymous: to the login page
    login(client, "alice", PASSWORD)
    assert client.get("/admin/api-tokens").status_code == 403
    other = client.application.test_client()
    login(other, "admin", ADMIN_PASSWORD)
    assert other.post("/admin/api-tokens/new", data={"name": "x", "scopes": ["scim"]}).status_code == 400
    assert db.session.scalars(select(ApiToken)).first() is None
