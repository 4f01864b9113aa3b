"""The Back-Channel Logout token (OpenID Connect Back-Channel Logout 1.0 section 2.4): a signed JWT that tells an
RP one of its sessions ended.

Claims: iss, aud (the client id), iat, exp, jti, sub and sid (both: the RP may key its sessions on either),
events {BACKCHANNEL_LOGOUT_EVENT: {}} and never a nonce (section 2.4: a logout token with a nonce must be refused,
so it can never pass for an ID token). Header typ "logout+jwt" (section 2.4 and RFC 8725 3.11: explicit typing).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .jose import JoseKey, sign_jwt

BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_TYP = "logout+jwt"  # noqa: S105 - a JWT type, not a token
# Short: the token is POSTed at once and means nothing later (the spec suggests about two minutes).
LOGOUT_TOKEN_LIFETIME_S = 120


@dataclass(frozen=True, slots=True)
class LogoutTokenSpec:
    issuer: str
    client_id: str
    sub: str
    sid: str
    now: datetime
    lifetime_s: int = LOGOUT_TOKEN_LIFETIME_S


def logout_token_claims(spec: LogoutTokenSpec, jti: str | None = None) -> dict[str, Any]:
    iat = int(spec.now.timestamp())
    return {
        "iss": spec.issuer,
        "aud": spec.client_id,
        "iat": iat,
        "exp": iat + spec.lifetime_s,
        "jti": jti or secrets.token_urlsafe(18),
        "sub": spec.sub,
        "sid": spec.sid,
        "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
    }


def build_logout_token(spec: LogoutTokenSpec, key: JoseKey) -> tuple[str, str]:
    """The signed logout token and its jti (the jti may go to the event log; the token may not)."""
    claims = logout_token_claims(spec)
    return sign_jwt(claims, key, typ=LOGOUT_TOKEN_TYP), str(claims["jti"])
