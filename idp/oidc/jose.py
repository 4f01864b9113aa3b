"""JOSE with the IdP key store: each key's JWS algorithm and RFC 7638 `kid`, the JWKS, signing and verifying JWTs.

The key store (idp.certs.keystore) is the one source of keys for SAML and OIDC alike: the active key signs, the
staged (next) and retiring keys are published, so `idp certs rotate / activate / retire` rotate both protocols.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey

from ..certs.keystore import KeySet, KeyState, KeyStoreError, LoadedKey

# The JWS algorithm of an EC key is fixed by its curve (RFC 7518 section 3.4); an RSA key signs RS256
# (OIDC Core 15.1: RS256 is what every RP must accept).
_EC_ALGS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
RSA_ALG = "RS256"

MAX_JWT_BYTES = 16 * 1024   # our own tokens are ~1 KiB; anything larger is not one of ours
DEFAULT_LEEWAY_S = 60       # clock skew allowed on exp / iat, as for SAML (IDP_REQUEST_MAX_AGE aside)


class UnsupportedKey(KeyStoreError):
    """A key store key that has no JWS algorithm (an EC key on a curve JOSE does not name)."""


class TokenInvalid(ValueError):
    """A JWT failed verification; `reason` is a machine code (malformed, unknown_key, bad_signature,
    wrong_type, wrong_issuer, wrong_audience, expired, issued_in_future)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class JoseKey:
    """One key store key in JOSE terms."""

    key_id: str                          # the key store's own name (file names, `idp certs status`)
    state: str                           # a KeyState
    alg: str                             # RS256, ES256, ES384, ES512
    kid: str                             # RFC 7638 thumbprint (SHA-256, base64url) of the public key
    private: RSAKey | ECKey
    public: RSAKey | ECKey
    cert_b64: str                        # DER base64 (x5c)

    def jwk(self) -> dict[str, Any]:
        """The public JWK as published: `use`, `alg`, `kid`, the certificate chain (x5c) and its thumbprint."""
        der = base64.b64decode(self.cert_b64)
        return {
            **self.public.as_dict(private=False),
            "use": "sig",
            "alg": self.alg,
            "kid": self.kid,
            "x5c": [self.cert_b64],
            "x5t#S256": _b64url(hashlib.sha256(der).digest()),
        }


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def algorithm_for(key: LoadedKey) -> str:
    """The JWS algorithm a key store key signs with; UnsupportedKey for an EC curve JOSE does not name."""
    private = key.private_key
    if isinstance(private, rsa.RSAPrivateKey):
        return RSA_ALG
    if isinstance(private, ec.EllipticCurvePrivateKey) and private.curve.name in _EC_ALGS:
        return _EC_ALGS[private.curve.name]
    curve = getattr(getattr(private, "curve", None), "name", "?")
    raise UnsupportedKey(f"signing key {key.kid}: EC curve {curve} has no JWS algorithm; use P-256 (ec-p256) or RSA")


_cache: dict[tuple[str, str, str], JoseKey] = {}
_cache_lock = threading.Lock()
_CACHE_MAX = 16   # a store publishes at most three keys; old entries go when rotation has moved on


def jose_key(key: LoadedKey) -> JoseKey:
    """The JOSE view of a key store key, cached per key (its thumbprint costs a bignum export)."""
    ident = (key.kid, key.fingerprint_sha256, key.state)
    found = _cache.get(ident)
    if found is not None:
        return found
    alg = algorithm_for(key)
    private: RSAKey | ECKey
    public: RSAKey | ECKey
    if isinstance(key.private_key, rsa.RSAPrivateKey):
        private, public = RSAKey.import_key(key.private_key), RSAKey.import_key(key.private_key.public_key())
    else:
        private, public = ECKey.import_key(key.private_key), ECKey.import_key(key.private_key.public_key())
    made = JoseKey(key_id=key.kid, state=key.state, alg=alg, kid=public.thumbprint(), private=private,
                   public=public, cert_b64=key.cert_b64)
    with _cache_lock:
        if len(_cache) >= _CACHE_MAX:
            _cache.clear()
        _cache[ident] = made
    return made


def signing_key(keys: KeySet) -> JoseKey:
    """The key that signs ID tokens, access tokens and logout tokens: the key store's active key."""
    return jose_key(keys.active)


def published_keys(keys: KeySet) -> list[JoseKey]:
    """Every key an RP may meet: active first, then the staged (next) key, then the retiring one.

    A staged key is published before it signs (an RP caching the JWKS already knows it at activation); a
    retiring key stays until `idp certs retire` (tokens it signed stay verifiable). A published key with no
    JWS algorithm is left out; the active key cannot be (signing_key() refuses it).
    """
    order = {KeyState.ACTIVE: 0, KeyState.NEXT: 1, KeyState.RETIRING: 2}
    out = []
    for key in sorted(keys.published, key=lambda k: order.get(KeyState(k.state), 3)):
        try:
            out.append(jose_key(key))
        except UnsupportedKey:
            if key.state == KeyState.ACTIVE:
                raise
    return out


def build_jwks(keys: KeySet) -> dict[str, Any]:
    """The JWK Set document (RFC 7517 section 5) of /oauth2/jwks: public keys only."""
    return {"keys": [k.jwk() for k in published_keys(keys)]}


def signing_algs(keys: KeySet) -> list[str]:
    """The algorithms of the published keys, the active key's first (a staged key's appears as soon as staged)."""
    algs: list[str] = []
    for k in published_keys(keys):
        if k.alg not in algs:
            algs.append(k.alg)
    return algs


_HASHES: dict[str, type[hashes.SHA256 | hashes.SHA384 | hashes.SHA512]] = {
    "256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
_EC_SIZES = {"ES256": 32, "ES384": 48, "ES512": 66}
_headers: dict[tuple[str, str, str], bytes] = {}


def _encoded_header(key: JoseKey, typ: str) -> bytes:
    ident = (key.kid, key.alg, typ)
    found = _headers.get(ident)
    if found is None:
        found = _b64url(json.dumps({"typ": typ, "alg": key.alg, "kid": key.kid},
                                   separators=(",", ":")).encode()).encode("ascii")
        if len(_headers) > 64:
            _headers.clear()
        _headers[ident] = found
    return found


def sign_jwt(claims: Mapping[str, Any], key: JoseKey, typ: str = "JWT") -> str:
    """A compact JWS of `claims`, header {typ, alg, kid}.

    Signed with `cryptography` directly (RS* PKCS#1 v1.5, ES* with the raw r || s signature of RFC 7518 3.4):
    the same bytes joserfc produces, without its per-call registry and key checks, which cost a quarter of an
    RSA signature on the token endpoint's hot path. Verification stays with joserfc (verify_jwt)."""
    payload = json.dumps(dict(claims), separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    signing_input = _encoded_header(key, typ) + b"." + _b64url(payload).encode("ascii")
    digest = _HASHES[key.alg[2:]]()
    private = key.private.private_key
    if key.alg.startswith("RS") and isinstance(private, rsa.RSAPrivateKey):
        sig = private.sign(signing_input, padding.PKCS1v15(), digest)
    elif key.alg.startswith("ES") and isinstance(private, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(private.sign(signing_input, ec.ECDSA(digest)))
        size = _EC_SIZES[key.alg]
        sig = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    else:  # pragma: no cover - jose_key() only makes RS256 and ES* keys
        raise UnsupportedKey(f"cannot sign {key.alg} with key {key.kid}")
    return (signing_input + b"." + _b64url(sig).encode("ascii")).decode("ascii")


def _numeric(claims: Mapping[str, Any], name: str) -> int | float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or value in (
            float("inf"), float("-inf")):
        raise TokenInvalid("malformed", f"the token's {name} is missing or not a NumericDate")
    return value


def verify_jwt(token: str, keys: KeySet, *, issuer: str, audience: str | None, now: datetime,
               typ: str | None = None, check_exp: bool = True, leeway_s: int = DEFAULT_LEEWAY_S) -> dict[str, Any]:
    """The claims of a JWT signed by one of our published keys; TokenInvalid otherwise.

    Checks, in order: size and shape; `kid` names a published key and `alg` is exactly that key's algorithm
    (so `none`, HS256 with a public key as the secret, or an algorithm swap are refused before any crypto); the
    signature; `typ` when given; `iss`; `aud` (contains `audience`, unless None: the caller then matches the
    client from `aud` itself, as for an id_token_hint); `iat` not in the future; `exp` unless check_exp is off
    (RP-initiated logout accepts an expired id_token_hint, OIDC RP-Initiated Logout 1.0 section 4).
    """
    if not isinstance(token, str) or len(token) > MAX_JWT_BYTES or token.count(".") != 2:
        raise TokenInvalid("malformed", "not a compact JWS")
    try:
        obj = jws.extract_compact(token.encode("ascii"))
    except (JoseError, ValueError, UnicodeError) as exc:
        raise TokenInvalid("malformed", f"not a compact JWS: {exc.__class__.__name__}") from None
    header = obj.headers()
    kid, alg = header.get("kid"), header.get("alg")
    key = next((k for k in published_keys(keys) if k.kid == kid), None) if isinstance(kid, str) else None
    if key is None:
        raise TokenInvalid("unknown_key", "the token is not signed by a key this IdP publishes")
    if alg != key.alg:
        raise TokenInvalid("bad_signature", f"the token's alg {alg!r} is not the algorithm of key {kid}")
    try:
        valid = jws.validate_compact(obj, key.public, algorithms=[key.alg])
    except (JoseError, ValueError) as exc:
        raise TokenInvalid("bad_signature", f"signature check failed: {exc.__class__.__name__}") from None
    if not valid:
        raise TokenInvalid("bad_signature", "the signature does not verify")
    if typ is not None and header.get("typ") != typ:
        raise TokenInvalid("wrong_type", f"the token's typ is not {typ!r}")
    try:
        claims = json.loads(obj.payload)
    except (TypeError, ValueError):
        raise TokenInvalid("malformed", "the payload is not JSON") from None
    if not isinstance(claims, dict):
        raise TokenInvalid("malformed", "the payload is not a JSON object")
    if claims.get("iss") != issuer:
        raise TokenInvalid("wrong_issuer", "the token was not issued by this IdP")
    aud = claims.get("aud")
    auds = [aud] if isinstance(aud, str) else aud
    if not isinstance(auds, list) or not auds or not all(isinstance(a, str) for a in auds):
        raise TokenInvalid("malformed", "the token's aud is missing or malformed")
    if audience is not None and audience not in auds:
        raise TokenInvalid("wrong_audience", "the token is not meant for this audience")
    ts = now.timestamp()
    if _numeric(claims, "iat") > ts + leeway_s:
        raise TokenInvalid("issued_in_future", "the token was issued in the future")
    exp = _numeric(claims, "exp")
    if check_exp and exp <= ts - leeway_s:
        raise TokenInvalid("expired", "the token has expired")
    return claims
