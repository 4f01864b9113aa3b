"""The OpenID Provider Configuration document (OpenID Connect Discovery 1.0 section 3) of this IdP."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .constants import (
    AUTHORIZE_PATH,
    CLIENT_ASSERTION_ALGS,
    CODE_CHALLENGE_METHODS,
    ID_TOKEN_CLAIMS,
    INTROSPECT_PATH,
    JWKS_PATH,
    LOGOUT_PATH,
    PROMPT_VALUES,
    RESPONSE_MODES,
    RESPONSE_TYPES,
    REVOKE_PATH,
    SCOPE_CLAIMS,
    SUBJECT_TYPES,
    TOKEN_PATH,
    USERINFO_PATH,
    GrantType,
    Scope,
    TokenAuthMethod,
)


@dataclass(frozen=True, slots=True)
class DiscoverySpec:
    """What the document says that is not fixed by this IdP's protocol choices."""

    issuer: str                                  # IDP_BASE_URL: every endpoint URL derives from it
    signing_algs: Sequence[str]                  # algorithms of the published keys (jose.signing_algs)
    scopes: Sequence[str] = tuple(Scope)         # standard scopes (custom per-app scopes are not advertised)
    acr_values: Sequence[str] = ()               # omitted when empty


def build_discovery(spec: DiscoverySpec) -> dict[str, Any]:
    """The discovery document as a dict (served as JSON). Advertises exactly the protocol this IdP implements:
    code flow only with PKCE S256, no request objects, the `iss` authorization response parameter (RFC 9207)."""
    if not spec.signing_algs:
        raise ValueError("the discovery document needs at least one signing algorithm")
    base = spec.issuer.rstrip("/")
    if base != spec.issuer:
        raise ValueError("the issuer must not end with a slash (OIDC Discovery 4.3: it is compared exactly)")
    auth_methods = [m.value for m in TokenAuthMethod]
    claims = list(dict.fromkeys([*ID_TOKEN_CLAIMS, *(c for s in spec.scopes for c in SCOPE_CLAIMS.get(s, ()))]))
    doc: dict[str, Any] = {
        "issuer": spec.issuer,
        "authorization_endpoint": base + AUTHORIZE_PATH,
        "token_endpoint": base + TOKEN_PATH,
        "userinfo_endpoint": base + USERINFO_PATH,
        "jwks_uri": base + JWKS_PATH,
        "revocation_endpoint": base + REVOKE_PATH,
        "introspection_endpoint": base + INTROSPECT_PATH,
        "end_session_endpoint": base + LOGOUT_PATH,
        "scopes_supported": list(spec.scopes),
        "response_types_supported": list(RESPONSE_TYPES),
        "response_modes_supported": list(RESPONSE_MODES),
        "grant_types_supported": [g.value for g in GrantType],
        "subject_types_supported": list(SUBJECT_TYPES),
        "id_token_signing_alg_values_supported": list(spec.signing_algs),
        "token_endpoint_auth_methods_supported": auth_methods,
        "token_endpoint_auth_signing_alg_values_supported": list(CLIENT_ASSERTION_ALGS),
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_signing_alg_values_supported": list(CLIENT_ASSERTION_ALGS),
        # introspection is for confidential clients (resource servers) only: no `none`
        "introspection_endpoint_auth_methods_supported": [m for m in auth_methods if m != TokenAuthMethod.NONE],
        "introspection_endpoint_auth_signing_alg_values_supported": list(CLIENT_ASSERTION_ALGS),
        "code_challenge_methods_supported": list(CODE_CHALLENGE_METHODS),
        "claims_supported": claims,
        "claim_types_supported": ["normal"],
        "prompt_values_supported": list(PROMPT_VALUES),
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,   # the default is true: say it
        "require_request_uri_registration": False,
        "authorization_response_iss_parameter_supported": True,
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "frontchannel_logout_supported": False,
    }
    if spec.acr_values:
        doc["acr_values_supported"] = list(spec.acr_values)
    return doc
