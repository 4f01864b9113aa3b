"""Requests parked across the login detour (and logout chains), referenced by an unguessable token.

The token travels explicitly (in the resume URL and the login/second-factor forms); the data lives
in the shared state (database or Redis), so any instance can continue the request. Each protocol
registers how its parked data reads as a protocol-neutral `AuthzRequest`, so the sign-in flow can
ask "does this request need a second factor?" without knowing SAML or OIDC.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..state import shared

if TYPE_CHECKING:
    from .authorize import AuthzRequest

TTL_S = 30 * 60
MAX_TOKEN_LEN = 64
_CONTROL = frozenset(map(chr, [*range(0x20), 0x7F]))


def has_control_characters(value: str) -> bool:
    """C0 controls (NUL included) or DEL: never in a token, client id or URI this IdP issues or registers."""
    return not _CONTROL.isdisjoint(value)

_AUTHZ_KINDS: dict[str, Callable[[dict[str, Any]], AuthzRequest]] = {}


def register_kind(kind: str, to_authz: Callable[[dict[str, Any]], AuthzRequest]) -> None:
    """A protocol's parked sign-in requests (kind "sso" for SAML; "oidc" next)."""
    _AUTHZ_KINDS[kind] = to_authz


def put(data: dict[str, Any]) -> str:
    return shared().put(data, TTL_S)


def get(token: str | None, kind: str, *, consume: bool) -> dict[str, Any] | None:
    """The parked data, or None: unknown, expired, of another kind, or not a token we could have issued (too long,
    or holding control characters, which PostgreSQL would refuse as a bound parameter: never looked up)."""
    if not token or len(token) > MAX_TOKEN_LEN or has_control_characters(token):
        return None
    return shared().get(token, kind, consume=consume)


def replace(token: str, data: dict[str, Any]) -> None:
    shared().replace(token, data, TTL_S)


def park(kind: str, data: dict[str, Any]) -> str:
    return put({"kind": kind, **data})


def authz_request(token: str | None) -> tuple[str, AuthzRequest] | None:
    """The protocol-neutral view of a parked sign-in request, whatever protocol parked it."""
    for kind, to_authz in _AUTHZ_KINDS.items():
        data = get(token, kind, consume=False)
        if data is not None:
            return kind, to_authz(data)
    return None
