"""API tokens: bearer secrets admins issue to REST API and SCIM clients (`idp tokens api create`), and the one check
every API and SCIM request goes through (`authenticate`).

A secret is "idp_" + 32 random bytes in base64url (the prefix lets secret scanners recognise a leaked one); it is
shown once and only its hex SHA-256 is stored. A plain hash is enough because the secret is 256 random bits (as for
OIDC client secrets: services.apps.oidc). A presented secret is found by the index on its hash, and the stored
hash is compared in constant time; last use (time and address) is written at most once a minute per token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from .. import audit
from ..extensions import db
from ..models import ApiToken, utcnow
from . import ServiceError

SECRET_PREFIX = "idp_"  # noqa: S105 - a fixed marker, not a secret
SECRET_BYTES = 32
SHOWN_PREFIX_LEN = 12            # "idp_" and 8 characters of the secret: enough to tell tokens apart in a list
LAST_USE_EVERY = timedelta(minutes=1)
MAX_DAYS = 3650
MAX_HEADER = 512
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")

# Every scope there is (exact strings): what each lets a token do.
SCOPES: dict[str, str] = {
    "scim": "SCIM 2.0 provisioning (/scim/v2): users and groups",
    "apps:read": "read connected apps (SAML and OIDC settings, access policy)",
    "apps:write": "register, change and delete connected apps",
    "users:read": "read users",
    "users:write": "create, change, disable and delete users (user fields included)",
    "admins:write": "with users:write: make users administrators, and change, disable, delete or reset the "
                    "password of administrators",
    "groups:read": "read groups and their members",
    "groups:write": "create and delete groups, add and remove members",
    "fields:read": "read the user field definitions",
    "fields:write": "add and remove user fields",
    "keys:read": "read the signing key status",
    "keys:write": "rotate, activate and retire signing keys",
    "events:read": "read the SSO event log",
    "audit:read": "read the admin audit trail",
}


@dataclass(frozen=True, slots=True)
class ApiPrincipal:
    """Who an API or SCIM request acts as: the token's name, its scopes and the audit actor ("api:NAME")."""

    name: str
    scopes: frozenset[str]
    actor: str

    def has(self, scope: str) -> bool:
        return scope in self.scopes


class ApiAuthError(Exception):
    """A request refused before anything runs: 401 (no token, or one that is unknown, expired or revoked) or 403
    (the token lacks the scope). `error` is the RFC 6750 error code for the WWW-Authenticate header."""

    def __init__(self, status: int, error: str | None, description: str, *, scope: str | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description
        self.scope = scope

    @property
    def www_authenticate(self) -> str:
        """The WWW-Authenticate header of the refusal (RFC 6750 §3)."""
        parts = ['Bearer realm="idp"']
        if self.error:
            parts.append(f'error="{self.error}"')
            parts.append(f'error_description="{self.description}"')
        if self.scope:
            parts.append(f'scope="{self.scope}"')
        return ", ".join(parts)


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", errors="replace")).hexdigest()


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def actor_of(name: str) -> str:
    """The audit actor of what a token does: "api:NAME" (audit.API_ACTOR_PREFIX)."""
    return audit.api_actor(name)


def validate_scopes(scopes: list[str] | tuple[str, ...]) -> list[str]:
    if not scopes:
        raise ServiceError(f"give at least one scope ({', '.join(SCOPES)})", field="scopes")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise ServiceError(f"unknown scope {unknown[0][:60]!r}: one of {', '.join(SCOPES)}", field="scopes")
    return list(dict.fromkeys(scopes))


def find_token(name: str) -> ApiToken | None:
    return db.session.scalar(select(ApiToken).where(ApiToken.name == name))


def create_token(name: str, scopes: list[str] | tuple[str, ...], *, expires_days: int | None = None,
                 created_by: str | None = None, now: datetime | None = None) -> tuple[ApiToken, str]:
    """A new token; returns the row and the secret (shown once: only its SHA-256 is stored). A revoked token's
    name stays taken (the audit trail names it)."""
    name = name.strip()
    if not NAME_RE.fullmatch(name):
        raise ServiceError(f"token name {name[:100]!r} is not valid: letters, digits and . _ - (at most 100, "
                           "starting with a letter or digit)", field="name")
    wanted = validate_scopes(scopes)
    if expires_days is not None and not 1 <= expires_days <= MAX_DAYS:
        raise ServiceError(f"expiry must be between 1 and {MAX_DAYS} days", field="expires")
    if find_token(name) is not None:
        raise ServiceError(f"an API token named {name!r} already exists", field="name")
    now = now or utcnow()
    secret = new_secret()
    row = ApiToken(name=name, token_hash=token_hash(secret), prefix=secret[:SHOWN_PREFIX_LEN], scopes=wanted,
                   created_at=now, created_by=(created_by or audit.current_actor())[:200],
                   expires_at=now + timedelta(days=expires_days) if expires_days else None)
    db.session.add(row)
    audit.record("api_token.create", "api_token", name,
                 after={"scopes": wanted, "prefix": row.prefix,
                        "expires_at": row.expires_at.isoformat() if row.expires_at else None})
    db.session.flush()
    return row, secret


def list_tokens() -> list[ApiToken]:
    return list(db.session.scalars(select(ApiToken).order_by(ApiToken.name)))


def revoke_token(name: str, *, now: datetime | None = None) -> ApiToken:
    row = find_token(name)
    if row is None:
        raise ServiceError(f"no API token named {name!r} (see `idp tokens api list`)", field="name")
    if row.revoked_at is not None:
        raise ServiceError(f"API token {name!r} is already revoked", field="name")
    row.revoked_at = now or utcnow()
    audit.record("api_token.revoke", "api_token", name, before={"scopes": list(row.scopes), "prefix": row.prefix})
    return row


def status_of(row: ApiToken, now: datetime | None = None) -> str:
    now = now or utcnow()
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and row.expires_at <= now:
        return "expired"
    return "active"


def token_dict(row: ApiToken, now: datetime | None = None) -> dict[str, Any]:
    """What lists show about a token: never the secret or its hash."""
    def when(d: datetime | None) -> str | None:
        return d.isoformat().replace("+00:00", "Z") if d is not None else None

    return {"name": row.name, "prefix": row.prefix, "scopes": list(row.scopes or ()), "status": status_of(row, now),
            "created_at": when(row.created_at), "created_by": row.created_by, "expires_at": when(row.expires_at),
            "last_used_at": when(row.last_used_at), "last_used_ip": row.last_used_ip,
            "revoked_at": when(row.revoked_at)}


def bearer_secret(authorization_header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (RFC 6750 §2.1; the scheme is case-insensitive)."""
    if not authorization_header or len(authorization_header) > MAX_HEADER:
        return None
    scheme, _, value = authorization_header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value or " " in value:
        return None
    return value


def authenticate(authorization_header: str | None, ip: str | None, required_scope: str, *,
                 now: datetime | None = None) -> ApiPrincipal:
    """The principal of a request's bearer token, which must hold `required_scope`; ApiAuthError otherwise
    (401 invalid_token: missing, unknown, expired or revoked; 403 insufficient_scope).

    Writes the token's last use (time, address) in the caller's unit of work when the last one is older than a
    minute (`touched_recently` says whether it wrote)."""
    if required_scope not in SCOPES:
        raise ValueError(f"unknown scope {required_scope!r}")
    secret = bearer_secret(authorization_header)
    if secret is None:
        # RFC 6750 §3.1: a request without credentials gets no error code
        raise ApiAuthError(401, None if not authorization_header else "invalid_request",
                           "a bearer token is required (Authorization: Bearer <token>)")
    digest = token_hash(secret)
    row = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        raise ApiAuthError(401, "invalid_token", "the token is not valid")
    now = now or utcnow()
    if row.revoked_at is not None:
        raise ApiAuthError(401, "invalid_token", "the token was revoked")
    if row.expires_at is not None and row.expires_at <= now:
        raise ApiAuthError(401, "invalid_token", "the token has expired")
    scopes = frozenset(row.scopes or ())
    if required_scope not in scopes:
        raise ApiAuthError(403, "insufficient_scope", f"the token lacks the scope {required_scope}",
                           scope=required_scope)
    if row.last_used_at is None or now - row.last_used_at >= LAST_USE_EVERY:
        db.session.execute(update(ApiToken).where(ApiToken.id == row.id)
                           .values(last_used_at=now, last_used_ip=(ip or "")[:64] or None))
        db.session.info["idp.api_token_touched"] = True
    return ApiPrincipal(name=row.name, scopes=scopes, actor=actor_of(row.name))


def touched_recently() -> bool:
    """Whether the last `authenticate` in this session wrote the token's last use (the caller may commit it at
    once, so a refused request that rolls back does not lose it)."""
    return bool(db.session.info.pop("idp.api_token_touched", False))
