"""The authorization code record (RFC 6749 4.1.2): what the authorization endpoint decided, for the token endpoint.

The code itself is the unguessable token of the shared state (database or Redis) under which this record is
kept, single use and short-lived, so any instance can redeem a code another one issued. Redeeming it twice is
an attack (RFC 6749 4.1.2, OAuth 2.0 Security BCP 4.5): the tokens issued from it are revoked.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

CODE_KIND = "oidc_code"
CODE_TTL_S = 60                 # RFC 6749 4.1.2: "A maximum authorization code lifetime of 10 minutes is
                                # RECOMMENDED"; an RP redeems within a second or two, so one minute is ample
MAX_CODE_LEN = 64


@dataclass(frozen=True, slots=True)
class AuthorizationCode:
    """Times are epoch seconds (JSON-friendly in either shared-state backend)."""

    app_id: int
    client_id: str
    user_id: int
    username: str
    redirect_uri: str
    scopes: tuple[str, ...]
    grant_id: int                          # the user's OidcGrant for this app (consent or admin approval)
    session_id: str                        # the IdP session's id (internal: never sent to the client)
    sid: str                               # the ID token's `sid` (Back-Channel Logout 1.0 2.1): the OIDC
                                           # session participant's session_index, random per (session, app)
    auth_time: int                         # when the user authenticated (session authn_at)
    issued_at: int
    amr: tuple[str, ...] = ()
    acr: str | None = None
    nonce: str | None = None
    code_challenge: str | None = None      # PKCE (RFC 7636), S256 only
    code_challenge_method: str | None = None
    resources: tuple[str, ...] = ()        # RFC 8707 resource indicators asked for at authorization
    claims_locales: tuple[str, ...] = field(default=())

    def to_data(self) -> dict[str, Any]:
        d = asdict(self)
        d["kind"] = CODE_KIND
        return d

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> AuthorizationCode:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for name in ("scopes", "amr", "resources", "claims_locales"):
            if name in known:
                known[name] = tuple(known[name])
        return cls(**known)
