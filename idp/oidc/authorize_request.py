"""The authorization request (RFC 6749 4.1.1, OIDC Core 3.1.2.1): raw parameters → an AuthorizationRequest.

Two stages, because where an error goes depends on how far the request got (RFC 6749 4.1.2.1):
`read_client_params` finds `client_id` and `redirect_uri`; until the flow has matched both against the
registered client, every error is shown on the IdP's own page. `parse_authorization_request` then validates the
rest against the client's settings; its errors (OAuthError) are sent to the now trusted redirect URI.

Nothing is defaulted that a client could have meant otherwise: `code_challenge` without a method is the RFC 7636
"plain" method and refused, an unknown `prompt` value is refused, `request` / `request_uri` are refused (OIDC
Core 6: not supported here). A parameter given twice is invalid (RFC 6749 3.1), except `resource` (RFC 8707 2).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from ..reasons import Reason
from .constants import CODE_CHALLENGE_METHODS, PROMPT_VALUES, RESPONSE_MODES, GrantType
from .errors import InvalidRequest, InvalidScope, OAuthError, UnauthorizedClient, UnsupportedResponseType

# Size limits: generous for any honest client, small enough that a request cannot bloat the parked request,
# the code record or the event log. The id_token_hint matches oidc.jose.MAX_JWT_BYTES in spirit (a compact
# JWS of an ID token is a few KiB).
MAX_PARAMS = 50
MAX_VALUE_LEN = 2048
MAX_LEN = {
    "client_id": 64, "redirect_uri": 2000, "state": 2048, "nonce": 512, "login_hint": 256,
    "id_token_hint": 8192, "code_challenge": 128, "acr_values": 1024, "scope": 2048, "max_age": 10,
    "resource": 2000, "claims_locales": 256, "ui_locales": 256,
}
MAX_RESOURCES = 10
MAX_SCOPES = 50
MAX_ACR_VALUES = 10
MULTI_VALUED = frozenset({"resource"})              # RFC 8707 2: may be given more than once
PKCE_CHALLENGE_RE = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")    # RFC 7636 4.2
_MAX_AGE_RE = re.compile(r"^[0-9]{1,10}$")


class RequestNotSupported(OAuthError):
    """OIDC Core 3.1.2.6: request objects are not supported here (discovery says so)."""

    error = "request_not_supported"
    reason = Reason.INVALID_REQUEST


class RequestUriNotSupported(OAuthError):
    error = "request_uri_not_supported"
    reason = Reason.INVALID_REQUEST


class InvalidTarget(OAuthError):
    """RFC 8707 2: a `resource` that is not an absolute URI without a fragment, or not registered for the client."""

    error = "invalid_target"
    reason = Reason.INVALID_REQUEST


class ClientRules(Protocol):
    """What the parser needs to know about the registered client (services.apps.OidcSettings has it)."""

    @property
    def client_id(self) -> str: ...
    @property
    def redirect_uris(self) -> tuple[str, ...]: ...
    @property
    def grant_types(self) -> tuple[str, ...]: ...
    @property
    def scopes(self) -> tuple[str, ...]: ...
    @property
    def require_pkce(self) -> bool: ...
    @property
    def is_public(self) -> bool: ...
    @property
    def resources(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class RawParams:
    """The parameters as received: the first value of each, and which were repeated or too long."""

    values: dict[str, str]
    resources: tuple[str, ...] = ()
    repeated: frozenset[str] = frozenset()
    oversized: frozenset[str] = frozenset()
    too_many: bool = False

    def get(self, name: str) -> str | None:
        """A usable value: None when absent, empty, repeated or oversized (the parser refuses those first)."""
        if name in self.repeated or name in self.oversized:
            return None
        return self.values.get(name) or None

    @property
    def state(self) -> str | None:
        """The `state` to echo in an error redirect: only an intact one (never a repeated or cut value)."""
        return self.get("state")


def collect_params(pairs: Iterable[tuple[str, str]]) -> RawParams:
    """Count and measure the parameters; never raises (the stages decide what a problem means)."""
    values: dict[str, str] = {}
    resources: list[str] = []
    repeated: set[str] = set()
    oversized: set[str] = set()
    count = 0
    for name, value in pairs:
        count += 1
        if count > MAX_PARAMS * 4:          # stop reading a flood; too_many already refuses it
            break
        if len(name) > 64:
            continue
        if len(value) > MAX_LEN.get(name, MAX_VALUE_LEN):
            oversized.add(name)
        if name in MULTI_VALUED:
            resources.append(value)
            continue
        if name in values:
            repeated.add(name)
        else:
            values[name] = value
    return RawParams(values=values, resources=tuple(resources), repeated=frozenset(repeated),
                     oversized=frozenset(oversized), too_many=count > MAX_PARAMS)


@dataclass(frozen=True, slots=True)
class ClientParams:
    client_id: str
    redirect_uri: str | None


def read_client_params(raw: RawParams) -> ClientParams:
    """`client_id` and `redirect_uri` as given; InvalidRequest (shown on the IdP page) when unusable."""
    for name in ("client_id", "redirect_uri"):
        if name in raw.repeated:
            raise InvalidRequest(f"{name} is given more than once")
        if name in raw.oversized:
            raise InvalidRequest(f"{name} is too long")
    client_id = raw.values.get("client_id")
    if not client_id:
        raise InvalidRequest("client_id is missing")
    # before the lookup: PostgreSQL refuses a NUL in a bound text parameter (an error, not "unknown client")
    _printable("client_id", client_id)
    return ClientParams(client_id=client_id, redirect_uri=raw.values.get("redirect_uri") or None)


def redirect_uri_registered(redirect_uri: str | None, registered: Iterable[str]) -> bool:
    """Exact string comparison with a registered URI (OAuth 2.0 Security BCP 4.1.3): no normalisation, no prefix,
    no wildcard; a missing redirect_uri never matches (OAuth 2.1 makes it required)."""
    return redirect_uri is not None and any(redirect_uri == r for r in registered)


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """A validated authorization request: everything later steps (consent, the code record) need."""

    client_id: str
    redirect_uri: str
    response_type: str
    scopes: tuple[str, ...]
    state: str | None = None
    nonce: str | None = None
    code_challenge: str | None = None
    code_challenge_method: str | None = None
    prompt: tuple[str, ...] = ()
    max_age: int | None = None
    acr_values: tuple[str, ...] = ()
    login_hint: str | None = None
    id_token_hint: str | None = None
    resources: tuple[str, ...] = ()
    claims_locales: tuple[str, ...] = field(default=())

    @property
    def is_openid(self) -> bool:
        """With `openid` the request is OpenID Connect (an ID token follows); without, plain OAuth 2.0."""
        return "openid" in self.scopes

    @property
    def prompt_none(self) -> bool:
        return "none" in self.prompt

    @property
    def prompt_login(self) -> bool:
        return "login" in self.prompt

    @property
    def prompt_consent(self) -> bool:
        return "consent" in self.prompt

    def to_dict(self) -> dict[str, Any]:
        return {name: list(v) if isinstance(v := getattr(self, name), tuple) else v
                for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AuthorizationRequest:
        known: dict[str, Any] = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for name in ("scopes", "prompt", "acr_values", "resources", "claims_locales"):
            known[name] = tuple(known.get(name) or ())
        return cls(**known)


def _words(value: str | None) -> tuple[str, ...]:
    """A space-delimited list (RFC 6749 3.3), duplicates dropped, order kept."""
    return tuple(dict.fromkeys(w for w in (value or "").split(" ") if w))


def _printable(name: str, value: str | None) -> None:
    if value is not None and any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidRequest(f"{name} holds control characters")


def parse_authorization_request(raw: RawParams, client: ClientRules, redirect_uri: str) -> AuthorizationRequest:
    """Validate everything after the client and redirect URI; OAuthError (for the redirect URI) otherwise.

    Order: repeated / oversized / too many parameters → response_type → the client's grants → request objects →
    scope → PKCE → response_mode → prompt → max_age → the rest.
    """
    if raw.too_many:
        raise InvalidRequest(f"more than {MAX_PARAMS} parameters")
    if raw.repeated:
        raise InvalidRequest(f"{sorted(raw.repeated)[0][:64]} is given more than once")
    if raw.oversized:
        raise InvalidRequest(f"{sorted(raw.oversized)[0][:64]} is too long")
    response_type = raw.get("response_type")
    if response_type is None:
        raise InvalidRequest("response_type is missing")
    if response_type != "code":
        raise UnsupportedResponseType("only response_type=code is supported (authorization code flow)")
    if GrantType.AUTHORIZATION_CODE not in client.grant_types:
        raise UnauthorizedClient("this client may not use the authorization code grant")
    if "request" in raw.values:
        raise RequestNotSupported("request objects are not supported")
    if "request_uri" in raw.values:
        raise RequestUriNotSupported("request_uri is not supported")

    scopes = _words(raw.get("scope"))
    if not scopes:
        raise InvalidScope("no scope was requested")
    if len(scopes) > MAX_SCOPES:
        raise InvalidScope("too many scopes")
    unknown = [s for s in scopes if s not in client.scopes]
    if unknown:
        if "openid" not in scopes:
            # plain OAuth 2.0: a scope the client may not have is an error (RFC 6749 4.1.2.1, invalid_scope)
            raise InvalidScope(f"scope {unknown[0][:100]!r} is not allowed for this client")
        if "openid" not in client.scopes:
            raise InvalidScope("this client may not use OpenID Connect (scope 'openid' is not allowed for it)")
        # OpenID Connect Core 3.1.2.1: "Scope values used that are not understood by an implementation SHOULD
        # be ignored" (RPs routinely ask for address / phone); the token response's `scope` says what was granted
        scopes = tuple(s for s in scopes if s in client.scopes)

    challenge, method = raw.get("code_challenge"), raw.get("code_challenge_method")
    if challenge is not None:
        method = method or "plain"              # RFC 7636 4.3: the default method is plain
        if method not in CODE_CHALLENGE_METHODS:
            raise InvalidRequest("code_challenge_method must be S256 (plain is not accepted)")
        if not PKCE_CHALLENGE_RE.fullmatch(challenge):
            raise InvalidRequest("code_challenge must be 43-128 characters of [A-Za-z0-9-._~]")
    elif method is not None:
        raise InvalidRequest("code_challenge_method without code_challenge")
    elif client.is_public or client.require_pkce:
        raise InvalidRequest("code_challenge is required (PKCE with S256)")

    response_mode = raw.get("response_mode")
    if response_mode is not None and response_mode not in RESPONSE_MODES:
        raise InvalidRequest("only response_mode=query is supported")

    prompt = _words(raw.get("prompt"))
    bad = [p for p in prompt if p not in PROMPT_VALUES]
    if bad:
        raise InvalidRequest(f"prompt value {bad[0][:40]!r} is not supported")
    if "none" in prompt and len(prompt) > 1:
        raise InvalidRequest("prompt=none cannot be combined with other prompt values")

    max_age: int | None = None
    if (text := raw.get("max_age")) is not None:
        if not _MAX_AGE_RE.fullmatch(text):
            raise InvalidRequest("max_age must be a non-negative integer (seconds)")
        max_age = int(text)

    acr_values = _words(raw.get("acr_values"))
    if len(acr_values) > MAX_ACR_VALUES:
        raise InvalidRequest("too many acr_values")

    resources = tuple(dict.fromkeys(raw.resources))
    if len(resources) > MAX_RESOURCES:
        raise InvalidTarget(f"at most {MAX_RESOURCES} resource values")
    for resource in resources:
        check_resource(resource)
    check_resources_registered(resources, client.resources)

    for name in ("state", "nonce", "login_hint", "id_token_hint"):
        _printable(name, raw.get(name))

    return AuthorizationRequest(
        client_id=client.client_id, redirect_uri=redirect_uri, response_type=response_type, scopes=scopes,
        state=raw.state, nonce=raw.get("nonce"), code_challenge=challenge,
        code_challenge_method=method if challenge is not None else None, prompt=prompt, max_age=max_age,
        acr_values=acr_values, login_hint=raw.get("login_hint"), id_token_hint=raw.get("id_token_hint"),
        resources=resources, claims_locales=_words(raw.get("claims_locales"))[:10],
    )


def check_resource(resource: str) -> None:
    """RFC 8707 2: an absolute URI, no fragment (a query is allowed but discouraged)."""
    if not resource or any(ord(c) <= 32 or ord(c) == 127 for c in resource):
        raise InvalidTarget("resource must be an absolute URI")
    try:
        parts = urlsplit(resource)
    except ValueError:
        raise InvalidTarget("resource must be an absolute URI") from None
    if not parts.scheme or not (parts.netloc or parts.path) or "#" in resource:
        raise InvalidTarget("resource must be an absolute URI without a fragment")


def check_resources_registered(resources: Iterable[str], registered: Iterable[str]) -> None:
    """Each `resource` must be one the client registered, compared exactly (RFC 8707 2: the authorization server
    decides which resources a client may get tokens for; an access token's `aud` is never the client's choice)."""
    allowed = set(registered)
    for resource in resources:
        if resource not in allowed:
            raise InvalidTarget(f"resource {resource[:200]!r} is not registered for this client")
