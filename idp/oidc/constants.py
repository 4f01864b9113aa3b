"""The OpenID Connect / OAuth 2.0 vocabulary this IdP speaks: endpoint paths, grants, scopes, claims, algorithms."""

from __future__ import annotations

from enum import StrEnum

# Endpoint paths below IDP_BASE_URL (the issuer), as named in the issue: the discovery document derives every
# URL from these and the issuer, never from a request's Host header.
DISCOVERY_PATH = "/.well-known/openid-configuration"
AUTHORIZE_PATH = "/oauth2/authorize"
TOKEN_PATH = "/oauth2/token"  # noqa: S105 - an endpoint path, not a token
USERINFO_PATH = "/oauth2/userinfo"
REVOKE_PATH = "/oauth2/revoke"
INTROSPECT_PATH = "/oauth2/introspect"
LOGOUT_PATH = "/oauth2/logout"
JWKS_PATH = "/oauth2/jwks"


class GrantType(StrEnum):
    """Grants offered (no implicit, no password grant: OAuth 2.0 Security BCP)."""

    AUTHORIZATION_CODE = "authorization_code"
    REFRESH_TOKEN = "refresh_token"  # noqa: S105 - a grant name
    CLIENT_CREDENTIALS = "client_credentials"


class TokenAuthMethod(StrEnum):
    """Client authentication at the token, revocation and introspection endpoints (OIDC Core 9)."""

    CLIENT_SECRET_BASIC = "client_secret_basic"  # noqa: S105 - a method name
    CLIENT_SECRET_POST = "client_secret_post"  # noqa: S105 - a method name
    PRIVATE_KEY_JWT = "private_key_jwt"
    NONE = "none"                                # public clients, with PKCE


class Scope(StrEnum):
    """The standard scopes; apps may add custom ones."""

    OPENID = "openid"
    PROFILE = "profile"
    EMAIL = "email"
    GROUPS = "groups"
    OFFLINE_ACCESS = "offline_access"


# The user claims each standard scope releases (OIDC Core 5.4; `groups` is this IdP's own).
SCOPE_CLAIMS: dict[str, tuple[str, ...]] = {
    Scope.OPENID: ("sub",),
    Scope.PROFILE: ("name", "given_name", "family_name", "preferred_username"),
    Scope.EMAIL: ("email",),
    Scope.GROUPS: ("groups",),
}

# Claims an ID token itself carries (OIDC Core 2, 3.1.3.6; `sid`: Back-Channel Logout 1.0 section 2.1).
ID_TOKEN_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "azp", "at_hash",
                   "c_hash", "sid")

RESPONSE_TYPES = ("code",)
RESPONSE_MODES = ("query",)
CODE_CHALLENGE_METHODS = ("S256",)          # "plain" is refused: it protects nothing against a leaked request
PROMPT_VALUES = ("none", "login", "consent")
SUBJECT_TYPES = ("public",)

# JWS algorithms a client may sign its private_key_jwt assertion with. Never "none" nor an HMAC algorithm (a
# client's public key used as an HMAC secret is the classic confusion attack).
CLIENT_ASSERTION_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")

# RFC 9068 section 2.1: the `typ` header of a JWT access token.
ACCESS_TOKEN_TYP = "at+jwt"  # noqa: S105 - a media type
