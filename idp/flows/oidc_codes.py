"""Authorization codes in the shared state: issued by the authorization endpoint, redeemed at the token endpoint.

The token endpoint owns redemption (single use, replay revokes what the code issued); this module only keeps
the record where any instance can find it.
"""

from __future__ import annotations

from ..oidc.codes import CODE_KIND, CODE_TTL_S, MAX_CODE_LEN, AuthorizationCode
from ..state import shared


def issue_code(code: AuthorizationCode) -> str:
    """Store the record and return the code: an unguessable shared-state token, valid CODE_TTL_S seconds."""
    return shared().put(code.to_data(), CODE_TTL_S)


def peek_code(code: str) -> AuthorizationCode | None:
    """The record of a code that has not expired nor been consumed (None otherwise)."""
    if not code or len(code) > MAX_CODE_LEN:
        return None
    data = shared().get(code, CODE_KIND, consume=False)
    return AuthorizationCode.from_data(data) if data is not None else None
