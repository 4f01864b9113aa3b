"""User claims by scope (OIDC Core 5.4), rendered from the app's attribute mapping: the one mapping model SAML
uses, rendered as JSON claims. Shared by the ID token and the UserInfo endpoint.

The standard claims of each granted scope come from fixed user fields (`email` from email, `given_name` from
first_name, ...). An app's attribute map ({name: user field}, the SAML attribute statement's source) may point a
standard claim at another field (for example `preferred_username` → email), and its other entries whose names
are plain claim names (no `:` or `/`, so not SAML URIs) are released as claims with the `profile` scope, so an
app registered for both protocols sees the same values under the same names. Pure: plain data in, a dict out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from .constants import SCOPE_CLAIMS, Scope
from .tokens import ID_TOKEN_RESERVED

# The user field each standard claim is read from unless the app's mapping says otherwise.
DEFAULT_SOURCES: dict[str, str] = {
    "name": "display_name",
    "given_name": "first_name",
    "family_name": "last_name",
    "preferred_username": "username",
    "email": "email",
    "groups": "groups",
}
MULTI_VALUED = frozenset({"groups"})
MAX_VALUES = 256
_CLAIM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,99}$")
# never released from a mapping: the token's own claims, and what the IdP asserts itself
_NOT_MAPPABLE = ID_TOKEN_RESERVED | {"client_id", "scope", "email_verified", "updated_at", "typ"}


def _value(raw: object, multi: bool) -> Any:
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):          # an admin-defined bool field: a JSON boolean, not "True"
        return [raw] if multi else raw
    if isinstance(raw, list | tuple | set | frozenset):
        # a list-valued source (groups, a list field, a list formula) is a JSON array, one item or many, as SAML
        # releases several AttributeValues; at most MAX_VALUES items, like the SAML release
        values = [v if isinstance(v, bool) else str(v) for v in raw if v not in (None, "")][:MAX_VALUES]
        return (sorted(values) if isinstance(raw, set | frozenset) else values) or None
    if isinstance(raw, int):
        return [raw] if multi else raw
    return [str(raw)] if multi else str(raw)


def render_claims(fields: Mapping[str, object], mapping: Mapping[str, str], scopes: Iterable[str]) -> dict[str, Any]:
    """The user claims released for `scopes`: `fields` are services.users.user_fields(user), `mapping` the app's
    attribute map (AppSettings.attributes). Empty values are left out (OIDC Core 5.3.2: absent, not null)."""
    granted = set(scopes)
    out: dict[str, Any] = {}
    for scope in (Scope.PROFILE, Scope.EMAIL, Scope.GROUPS):
        if scope not in granted:
            continue
        for claim in SCOPE_CLAIMS[scope]:
            source = mapping.get(claim) or DEFAULT_SOURCES[claim]
            value = _value(fields.get(source), claim in MULTI_VALUED)
            if value is not None:
                out[claim] = value
    if Scope.PROFILE in granted:
        standard = set(DEFAULT_SOURCES)
        for name, source in mapping.items():
            if name in standard or name in _NOT_MAPPABLE or not _CLAIM_NAME.fullmatch(name):
                continue
            if source not in fields:          # a session-only source (amr): not a user claim
                continue
            value = _value(fields.get(source), source in MULTI_VALUED)
            if value is not None:
                out[name] = value
    return out
