"""An independent JWT/JWK checker for the OIDC tests, on `cryptography` alone (not joserfc, which the IdP uses).

Decodes compact JWS by hand, computes RFC 7638 thumbprints from the JWK members, rebuilds public keys from a
JWKS and verifies RS256 / ES256 / ES384 signatures, so a bug shared by the IdP and its JOSE library cannot
make a test pass.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

_CURVES: dict[str, tuple[ec.EllipticCurve, int]] = {"P-256": (ec.SECP256R1(), 32), "P-384": (ec.SECP384R1(), 48),
                                                     "P-521": (ec.SECP521R1(), 66)}
_HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}


class NotVerified(Exception):
    pass


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _uint(n: int, size: int | None = None) -> str:
    length = size if size is not None else max(1, (n.bit_length() + 7) // 8)
    return b64url(n.to_bytes(length, "big"))


def jwk_members(public_key: Any) -> dict[str, str]:
    """The required public members of a key (RFC 7518 section 6), encoded here from the key's numbers."""
    if isinstance(public_key, rsa.RSAPublicKey):
        nums = public_key.public_numbers()
        return {"kty": "RSA", "n": _uint(nums.n), "e": _uint(nums.e)}
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}[public_key.curve.name]
        size = _CURVES[crv][1]
        pn = public_key.public_numbers()
        return {"kty": "EC", "crv": crv, "x": _uint(pn.x, size), "y": _uint(pn.y, size)}
    raise TypeError(type(public_key))


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 section 3: SHA-256 over the required members, lexicographic order, no whitespace."""
    required = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y")}[jwk["kty"]]
    canonical = json.dumps({k: jwk[k] for k in required}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def public_key_from_jwk(jwk: dict[str, Any]) -> Any:
    if jwk["kty"] == "RSA":
        n = int.from_bytes(b64url_decode(jwk["n"]), "big")
        e = int.from_bytes(b64url_decode(jwk["e"]), "big")
        return rsa.RSAPublicNumbers(e, n).public_key()
    if jwk["kty"] == "EC":
        curve, _ = _CURVES[jwk["crv"]]
        x = int.from_bytes(b64url_decode(jwk["x"]), "big")
        y = int.from_bytes(b64url_decode(jwk["y"]), "big")
        return ec.EllipticCurvePublicNumbers(x, y, curve).public_key()
    raise NotVerified(f"unknown kty {jwk['kty']!r}")


def split(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """(header, claims, signing input, signature) of a compact JWS, unverified."""
    head, payload, sig = token.split(".")
    return (json.loads(b64url_decode(head)), json.loads(b64url_decode(payload)),
            f"{head}.{payload}".encode("ascii"), b64url_decode(sig))


def verify(token: str, jwks: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) when the token's signature verifies with the JWKS key its `kid` names; NotVerified else."""
    header, claims, signing_input, sig = split(token)
    jwk = next((k for k in jwks["keys"] if k.get("kid") == header.get("kid")), None)
    if jwk is None:
        raise NotVerified(f"no key {header.get('kid')!r} in the JWKS")
    alg = header.get("alg", "")
    if alg != jwk.get("alg"):
        raise NotVerified(f"alg {alg!r} is not the key's {jwk.get('alg')!r}")
    key = public_key_from_jwk(jwk)
    digest = _HASHES[alg[2:]]()
    try:
        if alg.startswith("RS") and isinstance(key, rsa.RSAPublicKey):
            key.verify(sig, signing_input, padding.PKCS1v15(), digest)
        elif alg.startswith("ES") and isinstance(key, ec.EllipticCurvePublicKey):
            half = len(sig) // 2
            if half != _CURVES[jwk["crv"]][1]:
                raise NotVerified("an ECDSA JWS signature is r || s of the curve's size (RFC 7518 section 3.4)")
            der = encode_dss_signature(int.from_bytes(sig[:half], "big"), int.from_bytes(sig[half:], "big"))
            key.verify(der, signing_input, ec.ECDSA(digest))
        else:
            raise NotVerified(f"unsupported alg {alg!r}")
    except InvalidSignature:
        raise NotVerified("bad signature") from None
    return header, claims


def half_hash(value: str, name: str = "sha256") -> str:
    """at_hash / c_hash computed here (OIDC Core 3.1.3.6)."""
    digest = hashlib.new(name, value.encode("ascii")).digest()
    return b64url(digest[: len(digest) // 2])
