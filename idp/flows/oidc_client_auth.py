"""Authenticating an OAuth client at the token, revocation and introspection endpoints.

The credentials must use the method the client registered (token_endpoint_auth_method): a client registered
for private_key_jwt cannot fall back to a secret, a confidential client cannot present its id alone. A
private_key_jwt assertion is verified with the client's registered JWKS or its JWKS URI (fetched through the
SSRF-guarded fetcher, cached, refetched once when an unknown kid appears; a failed fetch is remembered for
JWKS_FAILURE_TTL_S, per URI and process, so a URI that is down costs one fetch, not one per request), and its jti
is single use across instances (shared replay cache, until the assertion's exp).
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..oidc.client_auth import (
    LEEWAY_S,
    ClientCredentials,
    UnknownKey,
    verify_client_assertion,
)
from ..oidc.constants import TokenAuthMethod
from ..oidc.errors import InvalidClient
from ..services import ServiceError
from ..services.apps import AppConfig, OidcSettings, app_config_by_client_id, parse_jwks
from ..services.fetch import fetch_metadata
from ..services.oauth_client_secrets import check_client_secret
from ..state import shared

JWKS_TTL_S = 300            # a client's JWKS URI is read again after 5 minutes
JWKS_REFETCH_MIN_S = 10     # an unknown kid triggers a refetch at most this often per URI (no fetch amplifier)
JWKS_FAILURE_TTL_S = 30     # a JWKS URI that failed (down, refused, malformed) is not fetched again for 30 s
JWKS_MAX_BYTES = 64 * 1024
JWKS_FETCH_TIMEOUT_S = 5.0
ASSERTION_REPLAY_KEY = "oidc client assertion"

_jwks_cache: dict[str, tuple[float, dict[str, Any]]] = {}
_jwks_failures: dict[str, tuple[float, str]] = {}      # uri -> (when it last failed, why)
_jwks_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class AuthenticatedClient:
    app: AppConfig
    oidc: OidcSettings
    method: str

    @property
    def client_id(self) -> str:
        return self.oidc.client_id


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    """How a JWKS URI may be fetched (IDP_METADATA_FETCH_ALLOW_PRIVATE applies to it as to metadata URLs)."""

    allow_private: bool = False
    timeout_s: float = JWKS_FETCH_TIMEOUT_S


def _fetch_jwks(uri: str, policy: FetchPolicy) -> dict[str, Any]:
    failed = _jwks_failures.get(uri)
    if failed is not None and time.monotonic() - failed[0] < JWKS_FAILURE_TTL_S:
        # the URI failed moments ago: no outbound fetch (up to timeout_s of a worker) for every request that
        # merely names the client
        raise InvalidClient(f"the client's JWKS URI cannot be used: {failed[1]} (not retried for "
                            f"{JWKS_FAILURE_TTL_S} s)")
    try:
        raw = fetch_metadata(uri, allow_private=policy.allow_private, timeout=policy.timeout_s,
                             max_bytes=JWKS_MAX_BYTES)
        jwks = parse_jwks(raw)
    except ServiceError as exc:
        with _jwks_lock:
            if len(_jwks_failures) > 1000:
                _jwks_failures.clear()
            _jwks_failures[uri] = (time.monotonic(), str(exc)[:200])
        raise InvalidClient(f"the client's JWKS URI cannot be used: {exc}") from None
    with _jwks_lock:
        if len(_jwks_cache) > 1000:
            _jwks_cache.clear()
        _jwks_cache[uri] = (time.monotonic(), jwks)
        _jwks_failures.pop(uri, None)
    return jwks


def _cached_jwks(uri: str, policy: FetchPolicy) -> tuple[dict[str, Any], float]:
    hit = _jwks_cache.get(uri)
    if hit is not None and time.monotonic() - hit[0] < JWKS_TTL_S:
        return hit[1], hit[0]
    return _fetch_jwks(uri, policy), time.monotonic()


def forget_jwks() -> None:
    """Drop the cached JWKS documents (tests; a client whose keys changed is refetched on its own)."""
    with _jwks_lock:
        _jwks_cache.clear()
        _jwks_failures.clear()


def _verify_assertion(creds: ClientCredentials, oidc: OidcSettings, audiences: tuple[str, ...], now: float,
                      policy: FetchPolicy) -> dict[str, Any]:
    assert creds.assertion is not None
    if oidc.jwks:
        return verify_client_assertion(creds.assertion, oidc.jwks, client_id=oidc.client_id,
                                       audiences=audiences, now=now)
    if not oidc.jwks_uri:
        raise InvalidClient("the client has no registered keys")
    jwks, fetched_at = _cached_jwks(oidc.jwks_uri, policy)
    try:
        return verify_client_assertion(creds.assertion, jwks, client_id=oidc.client_id, audiences=audiences,
                                       now=now)
    except UnknownKey:
        if time.monotonic() - fetched_at < JWKS_REFETCH_MIN_S:
            raise
        jwks = _fetch_jwks(oidc.jwks_uri, policy)   # the client may have rotated its key: read once more
        return verify_client_assertion(creds.assertion, jwks, client_id=oidc.client_id, audiences=audiences,
                                       now=now)


def authenticate_client(creds: ClientCredentials, *, issuer: str, token_endpoint: str, now: datetime,
                        fetch: FetchPolicy | None = None) -> AuthenticatedClient:
    """The client these credentials prove, or InvalidClient (never saying which part was wrong beyond what
    the client itself could know: its own method, a bad assertion; a wrong secret is just "failed")."""
    app = app_config_by_client_id(creds.client_id)
    if app is None or app.oidc is None:
        raise InvalidClient("unknown client")
    oidc = app.oidc
    if not app.enabled:
        raise InvalidClient("the client's app is disabled")
    if creds.method != oidc.token_endpoint_auth_method:
        raise InvalidClient(f"the client is registered for {oidc.token_endpoint_auth_method}, "
                            f"not {creds.method}")
    if creds.method in (TokenAuthMethod.CLIENT_SECRET_BASIC, TokenAuthMethod.CLIENT_SECRET_POST):
        if creds.secret is None or not check_client_secret(app, creds.secret, now):
            raise InvalidClient("client authentication failed")
    elif creds.method == TokenAuthMethod.PRIVATE_KEY_JWT:
        ts = now.timestamp()
        claims = _verify_assertion(creds, oidc, (token_endpoint, issuer), ts, fetch or FetchPolicy())
        jti_key = hashlib.sha256(f"{oidc.client_id}\n{claims['jti']}".encode()).hexdigest()
        ttl = max(1, int(float(claims["exp"]) - ts) + LEEWAY_S)
        if not shared().remember_once(f"{ASSERTION_REPLAY_KEY}\n{jti_key}", ttl):
            raise InvalidClient("client_assertion replayed (its jti was used before)")
    elif creds.method == TokenAuthMethod.NONE:
        if not oidc.is_public:
            raise InvalidClient("a confidential client must authenticate")
    else:  # pragma: no cover - parse_client_credentials yields only the four methods
        raise InvalidClient("unsupported client authentication")
    return AuthenticatedClient(app=app, oidc=oidc, method=creds.method)
