"""SCIM test helpers: API tokens inserted as rows (as `idp tokens api create` would store them) and request
shorthands for the Flask test client."""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import timedelta
from typing import Any

from flask.testing import FlaskClient

from idp.extensions import db
from idp.models import ApiToken, utcnow

SCIM = "application/scim+json"
USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ENTERPRISE_URN = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
IDP_URN = "urn:ietf:params:scim:schemas:extension:idp:2.0:User"


def make_token(name: str = "hr-sync", scopes: tuple[str, ...] = ("scim",), *, expires_in: timedelta | None = None,
               revoked: bool = False) -> str:
    """Insert an API token row; returns the bearer secret (only its SHA-256 is stored)."""
    secret = "idp_" + secrets.token_urlsafe(32)
    now = utcnow()
    db.session.add(ApiToken(name=name, token_hash=hashlib.sha256(secret.encode()).hexdigest(), prefix=secret[:10],
                            scopes=list(scopes), created_by="test", created_at=now,
                            expires_at=now + expires_in if expires_in is not None else None,
                            revoked_at=now if revoked else None))
    db.session.commit()
    return secret


class Scim:
    """`client` with a bearer token, speaking application/scim+json."""

    def __init__(self, client: FlaskClient, token: str) -> None:
        self.client = client
        self.token = token

    def request(self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None,
                raw: bytes | None = None, content_type: str = SCIM) -> Any:
        h = {"Authorization": f"Bearer {self.token}", **(headers or {})}
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        return self.client.open(f"/scim/v2{path}", method=method, data=data, headers=h,
                                content_type=content_type if data is not None else None)

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any, **kw: Any) -> Any:
        return self.request("POST", path, body, **kw)

    def put(self, path: str, body: Any, **kw: Any) -> Any:
        return self.request("PUT", path, body, **kw)

    def patch(self, path: str, *operations: dict[str, Any], **kw: Any) -> Any:
        return self.request("PATCH", path, {"schemas": [PATCH_URN], "Operations": list(operations)}, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.request("DELETE", path, **kw)

    def create_user(self, username: str, email: str | None = None, **extra: Any) -> dict[str, Any]:
        body = {"schemas": [USER_URN], "userName": username,
                "emails": [{"value": email or f"{username}@example.com", "type": "work", "primary": True}], **extra}
        resp = self.post("/Users", body)
        assert resp.status_code == 201, resp.get_data(as_text=True)
        return dict(resp.get_json())
