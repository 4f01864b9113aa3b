"""ID token (OIDC Core 2, 3.1.3.6, 3.3.2.11) and JWT access token (RFC 9068) claims, and their signing.

Pure functions: plain data in (dataclasses), a claims dict or a compact JWT out. Deciding *what* goes in (which
user, which scopes, lifetimes per app, the attribute mapping) belongs to the callers; this module only shapes
and signs it, and refuses a claim set that would be wrong rather than dropping a part of it.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .constants import ACCESS_TOKEN_TYP
from .jose import JoseKey, sign_jwt

# The hash behind each JWS algorithm (OIDC Core 3.1.3.6: at_hash uses "the hash algorithm used in the alg
# Header Parameter of the ID Token's JOSE Header").
_ALG_HASH = {"RS256": "sha256", "PS256": "sha256", "ES256": "sha256",
             "RS384": "sha384", "PS384": "sha384", "ES384": "sha384",
             "RS512": "sha512", "PS512": "sha512", "ES512": "sha512"}

# Claims the builders own: extra (mapped user) claims may not replace them.
ID_TOKEN_RESERVED = frozenset({"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "azp",
                               "at_hash", "c_hash", "sid", "nbf", "jti"})
ACCESS_TOKEN_RESERVED = frozenset({"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "scope",
                                   "auth_time", "acr", "amr"})


def token_hash(value: str, alg: str) -> str:
    """at_hash / c_hash: base64url of the left-most half of the hash of the ASCII value (OIDC Core 3.1.3.6)."""
    name = _ALG_HASH.get(alg)
    if name is None:
        raise ValueError(f"no hash is defined for the JWS algorithm {alg!r}")
    digest = hashlib.new(name, value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode("ascii")


def _epoch(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("times must be timezone-aware (UTC)")
    return int(moment.timestamp())


def _extra(extra: Mapping[str, Any], reserved: frozenset[str]) -> dict[str, Any]:
    clash = sorted(set(extra) & reserved)
    if clash:
        raise ValueError(f"mapped claims may not replace the token's own: {', '.join(clash)}")
    return dict(extra)


@dataclass(frozen=True, slots=True)
class IdTokenSpec:
    """Everything an ID token says. `audiences` beyond the client add `azp` (OIDC Core 2)."""

    issuer: str
    subject: str
    client_id: str
    issued_at: datetime
    lifetime: timedelta
    auth_time: datetime               # when the user authenticated (the IdP session's authn_at)
    nonce: str | None = None          # echoed when the authorization request had one (3.1.2.1)
    acr: str | None = None
    amr: tuple[str, ...] = ()         # RFC 8176 values
    access_token: str | None = None   # the access token issued with it: at_hash
    code: str | None = None           # the code it was issued with (hybrid flow, 3.3.2.11): c_hash
    sid: str | None = None            # session id, for Back-Channel Logout (section 2.1)
    audiences: tuple[str, ...] = ()   # further audiences next to client_id
    extra: Mapping[str, Any] = field(default_factory=dict)   # the app's mapped user claims (profile, email, ...)


def build_id_token_claims(spec: IdTokenSpec, alg: str) -> dict[str, Any]:
    """The claims of an ID token to be signed with `alg` (which fixes the at_hash / c_hash hash)."""
    if spec.lifetime <= timedelta(0):
        raise ValueError("an ID token needs a positive lifetime")
    if not spec.subject or not spec.client_id or not spec.issuer:
        raise ValueError("an ID token needs iss, sub and a client")
    auds = [spec.client_id, *(a for a in spec.audiences if a != spec.client_id)]
    claims: dict[str, Any] = _extra(spec.extra, ID_TOKEN_RESERVED)
    claims.update(
        iss=spec.issuer,
        sub=spec.subject,
        aud=auds[0] if len(auds) == 1 else auds,
        iat=_epoch(spec.issued_at),
        exp=_epoch(spec.issued_at + spec.lifetime),
        auth_time=_epoch(spec.auth_time),
    )
    if len(auds) > 1:
        claims["azp"] = spec.client_id
    if spec.nonce is not None:
        claims["nonce"] = spec.nonce
    if spec.acr:
        claims["acr"] = spec.acr
    if spec.amr:
        claims["amr"] = list(spec.amr)
    if spec.sid:
        claims["sid"] = spec.sid
    if spec.access_token is not None:
        claims["at_hash"] = token_hash(spec.access_token, alg)
    if spec.code is not None:
        claims["c_hash"] = token_hash(spec.code, alg)
    return claims


def issue_id_token(spec: IdTokenSpec, key: JoseKey) -> str:
    """A signed ID token (compact JWS, `typ: JWT`)."""
    return sign_jwt(build_id_token_claims(spec, key.alg), key)


def new_jti() -> str:
    """A unique token identifier: 128 random bits."""
    return secrets.token_urlsafe(16)


@dataclass(frozen=True, slots=True)
class AccessTokenSpec:
    """An RFC 9068 access token. `subject` None: a client credentials token, whose `sub` is the client (2.2)."""

    issuer: str
    client_id: str
    audiences: tuple[str, ...]        # the app's resource audience, or the RFC 8707 resource indicator(s)
    scopes: tuple[str, ...]
    issued_at: datetime
    lifetime: timedelta
    subject: str | None = None
    auth_time: datetime | None = None
    acr: str | None = None
    amr: tuple[str, ...] = ()
    jti: str = field(default_factory=new_jti)
    extra: Mapping[str, Any] = field(default_factory=dict)   # e.g. groups, when the app maps them


def build_access_token_claims(spec: AccessTokenSpec) -> dict[str, Any]:
    """The claims of a JWT access token (RFC 9068 section 2.2): iss, exp, aud, sub, client_id, iat, jti, scope,
    and auth_time / acr / amr when a user authenticated."""
    if spec.lifetime <= timedelta(0):
        raise ValueError("an access token needs a positive lifetime")
    if not spec.audiences or not all(spec.audiences):
        raise ValueError("an access token needs an audience (RFC 9068 section 2.2)")
    if any(not s or " " in s for s in spec.scopes):
        raise ValueError("a scope is a non-empty token without spaces (RFC 6749 section 3.3)")
    if not spec.jti:
        raise ValueError("an access token needs a jti")
    auds = list(dict.fromkeys(spec.audiences))
    claims: dict[str, Any] = _extra(spec.extra, ACCESS_TOKEN_RESERVED)
    claims.update(
        iss=spec.issuer,
        sub=spec.subject if spec.subject is not None else spec.client_id,
        aud=auds[0] if len(auds) == 1 else auds,
        client_id=spec.client_id,
        iat=_epoch(spec.issued_at),
        exp=_epoch(spec.issued_at + spec.lifetime),
        jti=spec.jti,
    )
    if spec.scopes:
        claims["scope"] = " ".join(dict.fromkeys(spec.scopes))
    if spec.auth_time is not None:
        claims["auth_time"] = _epoch(spec.auth_time)
    if spec.acr:
        claims["acr"] = spec.acr
    if spec.amr:
        claims["amr"] = list(spec.amr)
    return claims


def issue_access_token(spec: AccessTokenSpec, key: JoseKey) -> str:
    """A signed JWT access token, header `typ: at+jwt` (RFC 9068 section 2.1)."""
    return sign_jwt(build_access_token_claims(spec), key, typ=ACCESS_TOKEN_TYP)
