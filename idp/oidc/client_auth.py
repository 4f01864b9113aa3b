"""Client authentication at the token, revocation and introspection endpoints (RFC 6749 2.3, OIDC Core 9):
which credentials a request carries, and the checks of a private_key_jwt assertion (RFC 7523 3, RFC 7521 4.2).

Pure: the request's Authorization header and form in, a ClientCredentials out; an assertion, the client's
public keys and the clock in, the verified claims out. Looking the client up, comparing secrets, fetching a
JWKS URI and the jti replay cache belong to flows.oidc_client_auth.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, JWKRegistry, RSAKey

from .constants import CLIENT_ASSERTION_ALGS, TokenAuthMethod
from .errors import InvalidClient, InvalidRequest

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_CLIENT_ID = 64          # our client ids are 32 characters; anything longer is not one
MAX_SECRET = 512
MAX_ASSERTION = 8 * 1024
MAX_ASSERTION_LIFETIME_S = 300   # exp at most 5 minutes ahead: an assertion is made for one request
LEEWAY_S = 60
MAX_JTI = 256
MAX_NUMERIC_DATE = 2 ** 53      # seconds: far beyond any real date, exact as a float; also excludes +-Infinity

_EC_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _no_control(value: str, what: str) -> str:
    """Refuse C0 control characters and DEL in a client id before it is looked up or logged: no client id has
    them, and PostgreSQL refuses NUL in a text parameter (a DataError would become the 503 page)."""
    if _CONTROL.search(value):
        raise InvalidClient(f"{what} contains control characters")
    return value


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    """What a request presented. `basic`: HTTP Basic was used."""

    method: str                        # a TokenAuthMethod
    client_id: str
    secret: str | None = None
    assertion: str | None = None
    basic: bool = False


def parse_basic(header: str) -> tuple[str, str]:
    """(client_id, secret) of an HTTP Basic Authorization header, each form-urldecoded (RFC 6749 2.3.1)."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        raise InvalidRequest("the Authorization header is not HTTP Basic")
    try:
        raw = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise InvalidClient("the Basic credentials are not base64 of UTF-8 text") from None
    user, sep, password = raw.partition(":")
    if not sep:
        raise InvalidClient("the Basic credentials have no ':'")
    client_id, secret = unquote_plus(user), unquote_plus(password)
    if not client_id or len(client_id) > MAX_CLIENT_ID or not secret or len(secret) > MAX_SECRET:
        raise InvalidClient("the Basic credentials are empty or too long")
    return _no_control(client_id, "the Basic client id"), secret


def parse_client_credentials(authorization: str | None, form: Mapping[str, str]) -> ClientCredentials:
    """The one set of credentials a request carries; two at once (Basic and a form secret, a secret and an
    assertion) or none at all are refused (RFC 6749 2.3: "MUST NOT use more than one authentication method")."""
    form_id = form.get("client_id")
    secret = form.get("client_secret")
    assertion = form.get("client_assertion")
    assertion_type = form.get("client_assertion_type")
    if form_id is not None and (not form_id or len(form_id) > MAX_CLIENT_ID):
        raise InvalidRequest("client_id is empty or too long")
    if form_id is not None:
        _no_control(form_id, "client_id")
    if authorization is not None:
        client_id, basic_secret = parse_basic(authorization)
        if secret is not None or assertion is not None or assertion_type is not None:
            raise InvalidRequest("more than one client authentication method in one request")
        if form_id is not None and form_id != client_id:
            raise InvalidRequest("client_id differs from the HTTP Basic user")
        return ClientCredentials(TokenAuthMethod.CLIENT_SECRET_BASIC, client_id, secret=basic_secret, basic=True)
    if assertion is not None or assertion_type is not None:
        if secret is not None:
            raise InvalidRequest("more than one client authentication method in one request")
        if assertion_type != JWT_BEARER:
            raise InvalidClient(f"client_assertion_type must be {JWT_BEARER}")
        if not assertion or len(assertion) > MAX_ASSERTION:
            raise InvalidClient("client_assertion is empty or too long")
        sub = assertion_subject(assertion)
        if form_id is not None and form_id != sub:
            raise InvalidClient("client_id differs from the assertion's subject")
        return ClientCredentials(TokenAuthMethod.PRIVATE_KEY_JWT, sub, assertion=assertion)
    if secret is not None:
        if form_id is None:
            raise InvalidRequest("client_secret without client_id")
        if not secret or len(secret) > MAX_SECRET:
            raise InvalidClient("client_secret is empty or too long")
        return ClientCredentials(TokenAuthMethod.CLIENT_SECRET_POST, form_id, secret=secret)
    if form_id is not None:
        return ClientCredentials(TokenAuthMethod.NONE, form_id)
    raise InvalidClient("client authentication is required")


def _b64json(segment: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):   # deep nesting: not a JWT of ours
        return None


def assertion_subject(assertion: str) -> str:
    """The unverified `sub` of an assertion: which client's keys to verify it with (nothing else is trusted
    before the signature is checked)."""
    parts = assertion.split(".")
    if len(parts) != 3:
        raise InvalidClient("client_assertion is not a compact JWS")
    claims = _b64json(parts[1])
    sub = claims.get("sub") if isinstance(claims, dict) else None
    if not isinstance(sub, str) or not sub or len(sub) > MAX_CLIENT_ID:
        raise InvalidClient("client_assertion has no usable sub")
    iss = claims.get("iss")   # compared with the client id only after the signature, but refused as early
    if isinstance(iss, str):
        _no_control(iss, "client_assertion iss")
    return _no_control(sub, "client_assertion sub")


class UnknownKey(InvalidClient):
    """No key of the client's JWKS has the assertion's kid (the caller may refetch a JWKS URI once)."""


def _key_for(header: Mapping[str, Any], jwks: Mapping[str, Any]) -> RSAKey | ECKey:
    alg = header.get("alg")
    if alg not in CLIENT_ASSERTION_ALGS:
        # none, HS256 (a public key used as an HMAC secret) or anything unknown: refused before any crypto
        raise InvalidClient(f"client_assertion alg {str(alg)[:20]!r} is not accepted")
    kty = "EC" if alg.startswith("ES") else "RSA"
    kid = header.get("kid")
    keys = [k for k in (jwks.get("keys") or []) if isinstance(k, dict) and k.get("kty") == kty
            and k.get("use", "sig") == "sig" and (kty != "EC" or k.get("crv") == _EC_CURVES[alg])
            and k.get("alg") in (None, alg)]
    if kid is not None:
        keys = [k for k in keys if k.get("kid") == kid]
        if not keys:
            raise UnknownKey("no key of the client has the assertion's kid")
    elif len(keys) != 1:
        raise UnknownKey("the assertion has no kid and the client's keys do not name one")
    try:
        key = JWKRegistry.import_key(dict(keys[0]))
    except (JoseError, ValueError, TypeError):
        raise InvalidClient("the client's registered key cannot be read") from None
    if not isinstance(key, RSAKey | ECKey) or key.is_private:
        raise InvalidClient("the client's registered key is not a public RSA or EC key")
    return key


def _number(claims: Mapping[str, Any], name: str, required: bool) -> float | None:
    value = claims.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise InvalidClient(f"client_assertion {name} is missing or not a NumericDate")
    if not -MAX_NUMERIC_DATE <= value <= MAX_NUMERIC_DATE:   # a 400-digit integer has no float (OverflowError)
        raise InvalidClient(f"client_assertion {name} is out of range")
    return float(value)


def assertion_header(assertion: str) -> dict[str, Any]:
    parts = assertion.split(".")
    header = _b64json(parts[0]) if len(parts) == 3 else None
    if not isinstance(header, dict):
        raise InvalidClient("client_assertion has no readable header")
    return header


def verify_client_assertion(assertion: str, jwks: Mapping[str, Any], *, client_id: str,
                            audiences: tuple[str, ...], now: float) -> dict[str, Any]:
    """The claims of a valid private_key_jwt assertion (RFC 7523 3); InvalidClient (or UnknownKey) otherwise.

    iss = sub = client_id; aud names this IdP (its token endpoint URL or its issuer: one of `audiences`);
    exp required, not past and at most MAX_ASSERTION_LIFETIME_S ahead; iat and nbf, when present, not in the
    future; jti required (its single use is the caller's, in the shared replay cache)."""
    header = assertion_header(assertion)
    if header.get("crit") is not None:
        raise InvalidClient("client_assertion has critical header parameters")
    key = _key_for(header, jwks)
    try:
        obj = jws.deserialize_compact(assertion, key, algorithms=[str(header["alg"])])
    except (JoseError, ValueError, TypeError):
        raise InvalidClient("client_assertion signature does not verify") from None
    try:
        claims = json.loads(obj.payload)
    except (ValueError, RecursionError):
        raise InvalidClient("client_assertion payload is not JSON") from None
    if not isinstance(claims, dict):
        raise InvalidClient("client_assertion payload is not a JSON object")
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        raise InvalidClient("client_assertion iss and sub must both be the client id")
    aud = claims.get("aud")
    auds = [aud] if isinstance(aud, str) else aud
    if not isinstance(auds, list) or not any(isinstance(a, str) and a in audiences for a in auds):
        raise InvalidClient("client_assertion aud does not name this IdP's token endpoint or issuer")
    exp = _number(claims, "exp", True)
    assert exp is not None
    if exp <= now - LEEWAY_S:
        raise InvalidClient("client_assertion has expired")
    if exp > now + MAX_ASSERTION_LIFETIME_S + LEEWAY_S:
        raise InvalidClient(f"client_assertion exp is more than {MAX_ASSERTION_LIFETIME_S} s ahead")
    iat = _number(claims, "iat", False)
    if iat is not None and (iat > now + LEEWAY_S or exp - iat > MAX_ASSERTION_LIFETIME_S + LEEWAY_S):
        raise InvalidClient("client_assertion iat is in the future or too long before exp")
    nbf = _number(claims, "nbf", False)
    if nbf is not None and nbf > now + LEEWAY_S:
        raise InvalidClient("client_assertion is not valid yet (nbf)")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI:
        raise InvalidClient("client_assertion needs a jti (1-256 characters)")
    return claims
