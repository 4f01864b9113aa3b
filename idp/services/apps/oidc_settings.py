"""The OIDC/OAuth client settings of a connected app: vocabulary, durations, OidcSettings and its rules.

Pure (no storage): `validate_oidc_settings` refuses with a ServiceError naming the setting (`field`).
Redirect URIs follow the OAuth 2.0 Security BCP: registered exactly, absolute, https (plain http only for a
loopback host, for native and development clients), no fragment, no wildcard, no user info. Resource indicators
(RFC 8707) follow the same rules: they become access tokens' `aud`, so only registered ones may be asked for.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .. import ServiceError

if TYPE_CHECKING:
    from ...models import OidcClient

CONFIDENTIAL, PUBLIC = "confidential", "public"
CLIENT_TYPES = (CONFIDENTIAL, PUBLIC)
AUTH_NONE, PRIVATE_KEY_JWT = "none", "private_key_jwt"
TOKEN_AUTH_METHODS = ("client_secret_basic", "client_secret_post", PRIVATE_KEY_JWT, AUTH_NONE)
SECRET_AUTH_METHODS = ("client_secret_basic", "client_secret_post")
AUTHORIZATION_CODE, REFRESH_TOKEN, CLIENT_CREDENTIALS = "authorization_code", "refresh_token", "client_credentials"
GRANT_TYPES = (AUTHORIZATION_CODE, REFRESH_TOKEN, CLIENT_CREDENTIALS)
STANDARD_SCOPES = ("openid", "profile", "email", "groups", "offline_access")
DEFAULT_SCOPES = ("openid", "profile", "email")
UNTIL_REVOKED, EXPIRE_AFTER, EXPIRE_IF_UNUSED, NO_REFRESH = "until-revoked", "expire-after", "expire-if-unused", "none"
REFRESH_POLICIES = (UNTIL_REVOKED, EXPIRE_AFTER, EXPIRE_IF_UNUSED, NO_REFRESH)
IP_REFRESH_MODES = ("enforce", "relax")   # whether the app's IP ranges also bind refresh-token use

MINUTE, HOUR, DAY = 60, 3600, 86400
DEFAULT_ACCESS_TOKEN_LIFETIME = 10 * MINUTE
DEFAULT_ID_TOKEN_LIFETIME = 10 * MINUTE
DEFAULT_REFRESH_POLICY, DEFAULT_REFRESH_LIFETIME = EXPIRE_IF_UNUSED, 30 * DAY
TOKEN_LIFETIME_RANGE = (1 * MINUTE, 24 * HOUR)
REFRESH_LIFETIME_RANGE = (5 * MINUTE, 3650 * DAY)
SECRET_OVERLAP_RANGE = (1 * MINUTE, 30 * DAY)

MAX_URI_LEN = 2000
MAX_URIS = 50
MAX_SCOPES = 50
MAX_JWKS_BYTES = 64 * 1024
# scope-token (RFC 6749 §3.3) narrowed to what reads well in a consent page and a log line
SCOPE_RE = re.compile(r"^[A-Za-z0-9_.:/-]{1,100}$")
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_DURATION_RE = re.compile(r"^([1-9][0-9]{0,6})([smhd])$")
_UNITS = {"s": 1, "m": MINUTE, "h": HOUR, "d": DAY}
_PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_JWK_REQUIRED = {"RSA": ("n", "e"), "EC": ("crv", "x", "y"), "OKP": ("crv", "x")}


# ---------------------------------------------------------------- durations

def parse_duration(text: str, *, field: str, bounds: tuple[int, int] | None = None) -> int:
    """"30m", "12h", "90d" (or "45s") as seconds; refused outside `bounds` (inclusive)."""
    m = _DURATION_RE.fullmatch(text.strip().lower())
    if m is None:
        raise ServiceError(f"{text!r} is not a duration: a whole number and a unit, such as 30m, 12h or 90d",
                           field=field)
    seconds = int(m.group(1)) * _UNITS[m.group(2)]
    if bounds is not None and not bounds[0] <= seconds <= bounds[1]:
        raise ServiceError(f"{text} is out of range: between {format_duration(bounds[0])} and "
                           f"{format_duration(bounds[1])}", field=field)
    return seconds


def format_duration(seconds: int) -> str:
    """The largest unit that divides `seconds` exactly: 1800 → "30m", 86400 → "1d"."""
    for unit in ("d", "h", "m"):
        if seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


def parse_refresh_policy(text: str) -> tuple[str, int | None]:
    """`until-revoked | expire-after:DURATION | expire-if-unused:DURATION | none` as (policy, lifetime seconds)."""
    name, sep, duration = text.strip().partition(":")
    if name in (UNTIL_REVOKED, NO_REFRESH) and not sep:
        return name, None
    if name in (EXPIRE_AFTER, EXPIRE_IF_UNUSED):
        if not duration:
            raise ServiceError(f"{name} needs a duration, such as {name}:90d", field="refresh_policy")
        return name, parse_duration(duration, field="refresh_policy", bounds=REFRESH_LIFETIME_RANGE)
    raise ServiceError("refresh policy must be until-revoked, expire-after:DURATION, expire-if-unused:DURATION "
                       "or none", field="refresh_policy")


def format_refresh_policy(policy: str, lifetime: int | None) -> str:
    return f"{policy}:{format_duration(lifetime)}" if lifetime is not None else policy


# ---------------------------------------------------------------- URIs, scopes, keys

def validate_uri(uri: str, *, field: str, what: str = "redirect URI") -> str:
    """An absolute https URI (http only on a loopback host), with no fragment, wildcard or user info."""
    if not uri or len(uri) > MAX_URI_LEN:
        raise ServiceError(f"a {what} must be 1-{MAX_URI_LEN} characters", field=field)
    if any(ord(c) <= 32 or ord(c) == 127 for c in uri):
        raise ServiceError(f"{what} {uri[:200]!r} holds spaces or control characters", field=field)
    if "*" in uri:
        raise ServiceError(f"{what} {uri[:200]!r} holds a wildcard: URIs are matched exactly, register each one",
                           field=field)
    if "#" in uri:
        raise ServiceError(f"{what} {uri[:200]!r} has a fragment, which is not allowed", field=field)
    parts = urlsplit(uri)
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise ServiceError(f"{what} {uri[:200]!r} has an invalid port", field=field) from None
    scheme, host = parts.scheme.lower(), (parts.hostname or "")
    if scheme not in ("https", "http") or not host:
        raise ServiceError(f"{what} {uri[:200]!r} must be an absolute https:// URI", field=field)
    if "@" in parts.netloc:
        raise ServiceError(f"{what} {uri[:200]!r} must not carry user info", field=field)
    if scheme == "http" and host not in _LOOPBACK_HOSTS:
        raise ServiceError(f"{what} {uri[:200]!r} must use https (plain http only for localhost, 127.0.0.1 "
                           "or [::1])", field=field)
    return uri


def validate_uris(uris: list[str] | tuple[str, ...], *, field: str, what: str = "redirect URI") -> tuple[str, ...]:
    if len(uris) > MAX_URIS:
        raise ServiceError(f"at most {MAX_URIS} of them", field=field)
    return tuple(dict.fromkeys(validate_uri(u, field=field, what=what) for u in uris))


def validate_scopes(scopes: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    if len(scopes) > MAX_SCOPES:
        raise ServiceError(f"at most {MAX_SCOPES} scopes", field="scopes")
    for s in scopes:
        if not SCOPE_RE.fullmatch(s):
            raise ServiceError(f"scope {s[:100]!r} must be 1-100 letters, digits or _ . : / -", field="scopes")
    return tuple(dict.fromkeys(scopes))


def parse_jwks(data: bytes | str | dict[str, Any]) -> dict[str, Any]:
    """A JSON Web Key Set of public keys (RSA, EC, OKP), as given by the client; private or symmetric keys are
    refused (the client's private key must never reach the IdP)."""
    if not isinstance(data, dict):
        if len(data) > MAX_JWKS_BYTES:
            raise ServiceError("the JWKS is larger than 64 KiB", field="jwks")
        try:
            data = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise ServiceError("the JWKS is not JSON", field="jwks") from None
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list) or not keys or len(keys) > 20:
        raise ServiceError('the JWKS must be an object with "keys": a list of 1-20 keys', field="jwks")
    for key in keys:
        if not isinstance(key, dict) or key.get("kty") not in _JWK_REQUIRED:
            raise ServiceError("each key needs kty RSA, EC or OKP (symmetric keys are refused)", field="jwks")
        if _PRIVATE_JWK_MEMBERS & key.keys():
            raise ServiceError("the JWKS holds a private key: give only the public keys", field="jwks")
        missing = [m for m in _JWK_REQUIRED[key["kty"]] if not isinstance(key.get(m), str) or not key.get(m)]
        if missing:
            raise ServiceError(f"a {key['kty']} key lacks {', '.join(missing)}", field="jwks")
    return {"keys": keys}


# ---------------------------------------------------------------- the settings

@dataclass(frozen=True, slots=True)
class OidcSettings:
    """An app's OIDC/OAuth client settings as read on every request (and as changed by change_oidc)."""

    client_id: str
    client_type: str = CONFIDENTIAL
    token_endpoint_auth_method: str = SECRET_AUTH_METHODS[0]
    require_pkce: bool = True
    redirect_uris: tuple[str, ...] = ()
    post_logout_redirect_uris: tuple[str, ...] = ()
    grant_types: tuple[str, ...] = (AUTHORIZATION_CODE,)
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    resources: tuple[str, ...] = ()            # RFC 8707 resource indicators it may ask for (matched exactly)
    jwks_uri: str | None = None
    jwks: dict[str, Any] | None = field(default=None, hash=False, compare=True)
    backchannel_logout_uri: str | None = None
    initiate_login_uri: str | None = None
    access_token_lifetime: int = DEFAULT_ACCESS_TOKEN_LIFETIME     # seconds
    id_token_lifetime: int = DEFAULT_ID_TOKEN_LIFETIME             # seconds
    refresh_policy: str = DEFAULT_REFRESH_POLICY
    refresh_lifetime: int | None = DEFAULT_REFRESH_LIFETIME        # seconds; expire-after / expire-if-unused only
    ip_policy_refresh: str = "enforce"

    @property
    def is_public(self) -> bool:
        return self.client_type == PUBLIC

    @property
    def uses_secret(self) -> bool:
        return self.token_endpoint_auth_method in SECRET_AUTH_METHODS

    @property
    def refresh_policy_text(self) -> str:
        return format_refresh_policy(self.refresh_policy, self.refresh_lifetime)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for name in _TUPLE_FIELDS:
            d[name] = list(d[name])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OidcSettings:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for name in _TUPLE_FIELDS:
            if name in known:
                known[name] = tuple(known[name] or ())
        return cls(**known)

    def summary(self) -> dict[str, Any]:
        """What an audit row and `idp apps show` say about it: everything but the JWKS itself (its key ids)."""
        d = self.to_dict()
        d["jwks"] = [k.get("kid") or k.get("kty") for k in self.jwks["keys"]] if self.jwks else None
        d["access_token_lifetime"] = format_duration(self.access_token_lifetime)
        d["id_token_lifetime"] = format_duration(self.id_token_lifetime)
        d["refresh_policy"] = self.refresh_policy_text
        del d["refresh_lifetime"]
        return d


_TUPLE_FIELDS = ("redirect_uris", "post_logout_redirect_uris", "grant_types", "scopes", "resources")


def validate_oidc_settings(s: OidcSettings) -> None:
    """The rules across settings; each value's own form was checked when it was parsed."""
    def refuse(field_name: str, message: str) -> ServiceError:
        return ServiceError(message, field=field_name)

    if s.client_type not in CLIENT_TYPES:
        raise refuse("client_type", f"client type must be one of {', '.join(CLIENT_TYPES)}")
    if s.token_endpoint_auth_method not in TOKEN_AUTH_METHODS:
        raise refuse("token_endpoint_auth_method", f"token auth must be one of {', '.join(TOKEN_AUTH_METHODS)}")
    unknown = [g for g in s.grant_types if g not in GRANT_TYPES]
    if unknown or not s.grant_types:
        raise refuse("grant_types", f"grants must be some of {', '.join(GRANT_TYPES)}")
    if s.refresh_policy not in REFRESH_POLICIES:
        raise refuse("refresh_policy", f"refresh policy must be one of {', '.join(REFRESH_POLICIES)}")
    if s.ip_policy_refresh not in IP_REFRESH_MODES:
        raise refuse("ip_policy_refresh", f"ip policy for refresh must be one of {', '.join(IP_REFRESH_MODES)}")
    if s.is_public:
        if s.token_endpoint_auth_method != AUTH_NONE:
            raise refuse("token_endpoint_auth_method", "a public client cannot keep a secret or a key: its token "
                                                       "auth is none (with PKCE)")
        if not s.require_pkce:
            raise refuse("require_pkce", "a public client must use PKCE")
        if CLIENT_CREDENTIALS in s.grant_types:
            raise refuse("grant_types", "a public client cannot use the client_credentials grant")
    elif s.token_endpoint_auth_method == AUTH_NONE:
        raise refuse("token_endpoint_auth_method", "token auth none is for public clients only")
    if s.token_endpoint_auth_method == PRIVATE_KEY_JWT and not (s.jwks or s.jwks_uri):
        raise refuse("jwks_uri", "private_key_jwt needs the client's public keys: a JWKS URI or a JWKS")
    if REFRESH_TOKEN in s.grant_types and AUTHORIZATION_CODE not in s.grant_types:
        raise refuse("grant_types", "refresh_token comes with authorization_code (client credentials get no "
                                    "refresh tokens)")
    if REFRESH_TOKEN in s.grant_types and s.refresh_policy == NO_REFRESH:
        raise refuse("refresh_policy", "refresh policy none issues no refresh tokens: drop the refresh_token "
                                       "grant too")
    if AUTHORIZATION_CODE in s.grant_types and not s.redirect_uris:
        raise refuse("redirect_uris", "the authorization_code grant needs at least one redirect URI")
    if (s.refresh_policy in (EXPIRE_AFTER, EXPIRE_IF_UNUSED)) != (s.refresh_lifetime is not None):
        raise refuse("refresh_policy", "expire-after and expire-if-unused take a duration; the others none")
    for name, value in (("access_token_lifetime", s.access_token_lifetime),
                        ("id_token_lifetime", s.id_token_lifetime)):
        if not TOKEN_LIFETIME_RANGE[0] <= value <= TOKEN_LIFETIME_RANGE[1]:
            raise refuse(name, "token lifetimes must be between 1m and 24h")
    validate_uris(s.redirect_uris, field="redirect_uris")
    validate_uris(s.post_logout_redirect_uris, field="post_logout_redirect_uris", what="post-logout redirect URI")
    validate_uris(s.resources, field="resources", what="resource indicator")
    for name, uri, what in (("jwks_uri", s.jwks_uri, "JWKS URI"),
                            ("backchannel_logout_uri", s.backchannel_logout_uri, "back-channel logout URI"),
                            ("initiate_login_uri", s.initiate_login_uri, "initiate-login URI")):
        if uri is not None:
            validate_uri(uri, field=name, what=what)
    validate_scopes(s.scopes)
    if s.jwks is not None:
        parse_jwks(s.jwks)


def settings_of(client: OidcClient) -> OidcSettings:
    return OidcSettings(
        client_id=client.client_id, client_type=client.client_type,
        token_endpoint_auth_method=client.token_endpoint_auth_method, require_pkce=client.require_pkce,
        redirect_uris=tuple(client.redirect_uris or ()),
        post_logout_redirect_uris=tuple(client.post_logout_redirect_uris or ()),
        grant_types=tuple(client.grant_types or ()), scopes=tuple(client.scopes or ()),
        resources=tuple(client.resources or ()), jwks_uri=client.jwks_uri,
        jwks=client.jwks, backchannel_logout_uri=client.backchannel_logout_uri,
        initiate_login_uri=client.initiate_login_uri, access_token_lifetime=client.access_token_lifetime,
        id_token_lifetime=client.id_token_lifetime, refresh_policy=client.refresh_policy,
        refresh_lifetime=client.refresh_lifetime, ip_policy_refresh=client.ip_policy_refresh,
    )
