"""Who is calling /scim/v2: a bearer token an admin issued with the scope `scim`.

A stand-in until the shared API-token service lands (services.api_tokens.authenticate): ONE function,
`authenticate`, with the same shape, so the swap is a one-line change."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from scim2_models import ForbiddenException, UnauthorizedException
from sqlalchemy import select

from ...extensions import db
from ...models import ApiToken, utcnow

SCIM_SCOPE = "scim"


@dataclass(frozen=True, slots=True)
class ApiPrincipal:
    name: str
    scopes: tuple[str, ...]
    actor: str          # what the audit trail names: "api:<token name>"


def authenticate(authorization_header: str | None, ip: str | None, required_scope: str) -> ApiPrincipal:
    """The principal of a live token (known hash, not revoked, not expired) that has `required_scope`; its
    last use is recorded. UnauthorizedException (401) for a missing or unknown token, ForbiddenException (403)
    for one without the scope. The secret is never logged nor stored."""
    scheme, _, secret = (authorization_header or "").partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret or len(secret) > 512:
        raise UnauthorizedException(detail="a bearer token is required")
    digest = hashlib.sha256(secret.encode()).hexdigest()
    token = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
    now = utcnow()
    if token is None or token.revoked_at is not None or (token.expires_at is not None and token.expires_at <= now):
        raise UnauthorizedException(detail="the token is unknown, revoked or expired")
    if required_scope not in (token.scopes or []):
        raise ForbiddenException(detail=f"the token lacks the scope {required_scope!r}")
    token.last_used_at, token.last_used_ip = now, ip
    return ApiPrincipal(name=token.name, scopes=tuple(token.scopes or ()), actor=f"api:{token.name}")
