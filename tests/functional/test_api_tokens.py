"""`idp tokens api create|list|revoke` and services.api_tokens.authenticate: the secret shown once and stored as its
SHA-256 only, scopes checked, expiry, revocation, last use written at most once a minute, audit rows."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from idp.extensions import db
from idp.models import AdminAudit, ApiToken, utcnow
from idp.services import api_tokens
from idp.services.api_tokens import ApiAuthError, authenticate

from .test_cli import fails, ok

SECRET_RE = re.compile(r"^idp_[A-Za-z0-9_-]{43}$")


def create(app: Flask, name: str, *scopes: str, expires: int | None = None) -> str:
    args = ["tokens", "api", "create", name]
    for s in scopes:
        args += ["--scope", s]
    if expires is not None:
        args += ["--expires", str(expires)]
    result = ok(app, *args)
    secret = result.stdout.strip()
    assert SECRET_RE.fullmatch(secret), result.stdout
    assert "shown only now" in result.stderr
    return secret


def listed(app: Flask) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in json.loads(ok(app, "tokens", "api", "list", "--format", "json").stdout)}


def test_create_shows_the_secret_once_and_stores_only_its_hash(app: Flask) -> None:
    secret = create(app, "hr-sync", "scim", "users:read,users:write", expires=30)
    row = db.session.scalar(select(ApiToken).where(ApiToken.name == "hr-sync"))
    assert row is not None
    assert row.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in json.dumps({c.name: str(getattr(row, c.name)) for c in ApiToken.__table__.c})
    assert row.prefix == secret[:12] and row.scopes == ["scim", "users:read", "users:write"]
    assert timedelta(days=29, hours=23) < row.expires_at - row.created_at <= timedelta(days=30)
    shown = listed(app)["hr-sync"]
    assert shown["prefix"] == secret[:12] and shown["status"] == "active" and shown["last_used_at"] is None
    assert secret not in ok(app, "tokens", "api", "list").stdout
    assert secret not in json.dumps(shown)
    audit_rows = db.session.scalars(select(AdminAudit).where(AdminAudit.target_type == "api_token")).all()
    assert [a.action for a in audit_rows] == ["api_token.create"]
    assert secret not in json.dumps(audit_rows[0].after)
    # two tokens never share a secret
    assert create(app, "other", "apps:read") != secret


@pytest.mark.parametrize(("args", "fragment"), [
    (["bad name", "--scope", "scim"], "not valid"),
    (["x", "--scope", "admin"], "unknown scope 'admin'"),
    (["x", "--scope", "scim", "--expires", "0"], "between 1 and 3650 days"),
    (["x", "--scope", ","], "at least one scope"),
])
def test_create_refuses_bad_input(app: Flask, args: list[str], fragment: str) -> None:
    fails(app, "tokens", "api", "create", *args, fragment=fragment)
    assert db.session.scalar(select(ApiToken.id)) is None


def test_create_refuses_a_name_taken_even_by_a_revoked_token(app: Flask) -> None:
    create(app, "ci", "apps:read")
    ok(app, "tokens", "api", "revoke", "ci")
    fails(app, "tokens", "api", "create", "ci", "--scope", "apps:read", fragment="already exists")
    fails(app, "tokens", "api", "revoke", "ci", fragment="already revoked")
    fails(app, "tokens", "api", "revoke", "nope", fragment="no API token named 'nope'")


def test_authenticate_scopes_expiry_revocation(app: Flask) -> None:
    secret = create(app, "reader", "apps:read", expires=1)
    principal = authenticate(f"Bearer {secret}", "192.0.2.1", "apps:read")
    assert (principal.name, principal.actor, principal.scopes) == ("reader", "api:reader", frozenset({"apps:read"}))
    assert authenticate(f"bearer   {secret}", None, "apps:read").name == "reader"   # scheme case-insensitive
    with pytest.raises(ApiAuthError) as refused:
        authenticate(f"Bearer {secret}", None, "apps:write")
    assert refused.value.status == 403 and refused.value.error == "insufficient_scope"
    assert 'scope="apps:write"' in refused.value.www_authenticate
    for header, error in ((None, None), ("", None), ("Basic abc", "invalid_request"),
                          (f"Bearer {secret}x", "invalid_token"), (f"Bearer {secret[:-1]}", "invalid_token"),
                          ("Bearer idp_" + "A" * 43, "invalid_token")):
        with pytest.raises(ApiAuthError) as refused:
            authenticate(header, None, "apps:read")
        assert (refused.value.status, refused.value.error) == (401, error), header
    assert 'error="invalid_token"' in ApiAuthError(401, "invalid_token", "x").www_authenticate
    # expired: a day and a second later
    with pytest.raises(ApiAuthError) as refused:
        authenticate(f"Bearer {secret}", None, "apps:read", now=utcnow() + timedelta(days=1, seconds=1))
    assert refused.value.status == 401 and "expired" in refused.value.description
    ok(app, "tokens", "api", "revoke", "reader")
    db.session.expire_all()
    with pytest.raises(ApiAuthError) as refused:
        authenticate(f"Bearer {secret}", None, "apps:read")
    assert refused.value.status == 401 and "revoked" in refused.value.description
    assert listed(app)["reader"]["status"] == "revoked"
    assert [a.actor.startswith("cli") for a in db.session.scalars(
        select(AdminAudit).where(AdminAudit.action == "api_token.revoke"))] == [True]


def test_last_use_is_written_at_most_once_a_minute(app: Flask) -> None:
    secret = create(app, "poller", "events:read")
    t0 = utcnow()
    authenticate(f"Bearer {secret}", "192.0.2.1", "events:read", now=t0)
    assert api_tokens.touched_recently()
    db.session.commit()
    authenticate(f"Bearer {secret}", "192.0.2.2", "events:read", now=t0 + timedelta(seconds=30))
    assert not api_tokens.touched_recently()
    db.session.commit()
    db.session.expire_all()
    shown = listed(app)["poller"]
    assert shown["last_used_ip"] == "192.0.2.1"
    authenticate(f"Bearer {secret}", "192.0.2.3", "events:read", now=t0 + timedelta(seconds=61))
    db.session.commit()
    shown = listed(app)["poller"]
    assert shown["last_used_ip"] == "192.0.2.3"
    assert "from 192.0.2.3" in ok(app, "tokens", "api", "list").stdout
