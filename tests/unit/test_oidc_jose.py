"""idp.oidc.jose: algorithm and RFC 7638 kid per key, the JWKS through a rotation, signing and verifying JWTs.

Every signature and thumbprint is checked with tests/jwt_check.py (cryptography alone), never with joserfc.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from idp.certs.generate import generate_key_pair
from idp.certs.keystore import KeyStore, KeyStoreError
from idp.oidc import jose
from idp.oidc.jose import TokenInvalid, build_jwks, sign_jwt, signing_algs, signing_key, verify_jwt

from .. import jwt_check
from ..jwt_check import b64url, thumbprint

CN = "https://idp.example/saml/metadata"
ISS = "https://idp.example"
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One key store per family (RSA-2048, EC P-256), copied into each test."""
    out = {}
    for family, key_type in (("rsa", "rsa2048"), ("ec", "ec-p256")):
        path = tmp_path_factory.mktemp(family) / "certs"
        KeyStore(path).generate_first(CN, key_type, 30)
        out[family] = path
    return out


@pytest.fixture(params=["rsa", "ec"])
def store(request: pytest.FixtureRequest, templates: dict[str, Path], tmp_path: Path) -> KeyStore:
    dst = tmp_path / "certs"
    shutil.copytree(templates[request.param], dst)
    return KeyStore(dst)


def claims(**over: object) -> dict[str, object]:
    now = int(datetime.now(UTC).timestamp())
    return {"iss": ISS, "sub": "u1", "aud": "client-1", "iat": now, "exp": now + 300, **over}


def expected_alg(store: KeyStore) -> str:
    return "RS256" if "RSA" in type(store.current().active.private_key).__name__ else "ES256"


def import_foreign(store: KeyStore, curve: ec.EllipticCurve) -> str:
    """Stage an imported EC key on `curve` (what `idp certs import` would register)."""
    key = ec.generate_private_key(curve)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "imported")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=1))
            .not_valid_after(now + timedelta(days=30)).sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    kid, _ = store.import_pair(key_pem, cert.public_bytes(serialization.Encoding.PEM))
    return kid


# ---------------------------------------------------------------- algorithm and kid


def test_algorithm_per_key_family(store: KeyStore) -> None:
    key = signing_key(store.current())
    assert key.alg == expected_alg(store)
    assert jose.algorithm_for(store.current().active) == key.alg


def test_kid_is_the_rfc7638_thumbprint_of_the_public_key(store: KeyStore) -> None:
    active = store.current().active
    members = jwt_check.jwk_members(active.private_key.public_key())
    assert signing_key(store.current()).kid == thumbprint(members)


def test_thumbprint_helper_matches_rfc7638_example() -> None:
    """RFC 7638 section 3.1's example key and thumbprint: the independent helper itself is right."""
    n = ("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjB"
         "ZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8"
         "KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_"
         "xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")
    assert thumbprint({"kty": "RSA", "n": n, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"}) == \
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_kid_is_stable_across_reloads_and_distinct_per_key(store: KeyStore, tmp_path: Path) -> None:
    first = signing_key(store.current()).kid
    jose._cache.clear()
    assert signing_key(KeyStore(store.cert_dir).current()).kid == first   # a new process, the same kid
    store.rotate(CN, "ec-p256", 30)
    kids = [k["kid"] for k in build_jwks(store.current())["keys"]]
    assert len(set(kids)) == 2 and kids[0] == first


@pytest.mark.parametrize(("curve", "alg"), [(ec.SECP384R1(), "ES384"), (ec.SECP521R1(), "ES512")])
def test_other_nist_curves_get_their_algorithm(store: KeyStore, curve: ec.EllipticCurve, alg: str) -> None:
    import_foreign(store, curve)
    staged = build_jwks(store.current())["keys"][1]
    assert staged["alg"] == alg and staged["kid"] == thumbprint(staged)


def test_a_curve_jose_does_not_name_is_not_published_and_cannot_sign(store: KeyStore) -> None:
    import_foreign(store, ec.SECP256K1())            # staged: JWKS keeps only the usable active key
    keys = store.current()
    assert [k["alg"] for k in build_jwks(keys)["keys"]] == [expected_alg(store)]
    store.activate()                                   # now it would have to sign: refused, never another key
    with pytest.raises(KeyStoreError, match="no JWS algorithm"):
        signing_key(store.current())
    with pytest.raises(KeyStoreError):
        build_jwks(store.current())


# ---------------------------------------------------------------- JWKS


def test_jwks_publishes_public_parts_only_with_use_alg_kid(store: KeyStore) -> None:
    keys = store.current()
    doc = build_jwks(keys)
    assert len(doc["keys"]) == 1
    jwk = doc["keys"][0]
    assert not PRIVATE_MEMBERS & set(jwk), "no private key member may leave the IdP"
    assert jwk["use"] == "sig" and jwk["alg"] == expected_alg(store)
    assert jwk["kid"] == thumbprint(jwk)
    # the members are the key store's public key, and the x5c is its certificate (the one SAML metadata publishes)
    assert {k: jwk[k] for k in jwt_check.jwk_members(keys.active.private_key.public_key())} == \
        jwt_check.jwk_members(keys.active.private_key.public_key())
    assert jwk["x5c"] == [keys.active.cert_b64]
    der = x509.load_pem_x509_certificate(keys.active.cert_pem.encode()).public_bytes(serialization.Encoding.DER)
    assert jwk["x5t#S256"] == b64url(hashlib.sha256(der).digest())
    json.dumps(doc)   # serialisable as is


@pytest.mark.parametrize("next_type", ["rsa2048", "ec-p256"])
def test_jwks_through_a_rotation(store: KeyStore, next_type: str) -> None:
    """stage → activate → retire, with the store functions `make rotate-certs / activate-certs / retire-certs`
    run: the next key is published as soon as it is staged, the old key until it is retired."""
    old = signing_key(store.current())
    old_alg = old.alg
    new_alg = "RS256" if next_type.startswith("rsa") else "ES256"
    token_old = sign_jwt(claims(), old)

    store.rotate(CN, next_type, 30)
    staged_jwks = build_jwks(store.current())               # what an RP caches now
    assert [k["kid"] for k in staged_jwks["keys"]][0] == old.kid, "the active key first"
    assert len(staged_jwks["keys"]) == 2
    new_kid = staged_jwks["keys"][1]["kid"]
    assert signing_key(store.current()).kid == old.kid, "a staged key does not sign"
    assert signing_algs(store.current()) == list(dict.fromkeys([old_alg, new_alg]))

    store.activate()
    keys = store.current()
    new = signing_key(keys)
    assert new.kid == new_kid and new.alg == new_alg
    active_jwks = build_jwks(keys)
    assert [k["kid"] for k in active_jwks["keys"]] == [new_kid, old.kid], "the retiring key stays published"
    token_new = sign_jwt(claims(), new)
    # an RP that cached the JWKS when the key was staged verifies the new key's tokens without refetching,
    # and tokens the old key signed still verify against the current JWKS
    assert jwt_check.verify(token_new, staged_jwks)[1]["sub"] == "u1"
    assert jwt_check.verify(token_old, active_jwks)[1]["sub"] == "u1"
    assert verify_jwt(token_old, keys, issuer=ISS, audience="client-1", now=datetime.now(UTC))["sub"] == "u1"

    store.retire()
    keys = store.current()
    assert [k["kid"] for k in build_jwks(keys)["keys"]] == [new_kid]
    assert signing_algs(keys) == [new_alg]
    with pytest.raises(TokenInvalid) as info:
        verify_jwt(token_old, keys, issuer=ISS, audience="client-1", now=datetime.now(UTC))
    assert info.value.reason == "unknown_key"
    with pytest.raises(jwt_check.NotVerified):
        jwt_check.verify(token_old, build_jwks(keys))


# ---------------------------------------------------------------- signing, checked independently


def test_signed_jwt_verifies_with_an_independent_verifier(store: KeyStore) -> None:
    keys = store.current()
    token = sign_jwt(claims(nonce="n-1"), signing_key(keys), typ="JWT")
    header, body = jwt_check.verify(token, build_jwks(keys))
    assert header == {"typ": "JWT", "alg": expected_alg(store), "kid": signing_key(keys).kid}
    assert body["nonce"] == "n-1" and body["iss"] == ISS


def test_independent_verifier_refuses_a_tampered_token(store: KeyStore) -> None:
    keys = store.current()
    head, _, sig = sign_jwt(claims(), signing_key(keys)).split(".")
    forged = ".".join([head, b64url(json.dumps(claims(sub="admin")).encode()), sig])
    with pytest.raises(jwt_check.NotVerified):
        jwt_check.verify(forged, build_jwks(keys))


# ---------------------------------------------------------------- verify_jwt: what it accepts and refuses


def test_verify_accepts_our_token(store: KeyStore) -> None:
    keys = store.current()
    token = sign_jwt(claims(aud=["client-1", "api"]), signing_key(keys))
    assert verify_jwt(token, keys, issuer=ISS, audience="api", now=datetime.now(UTC))["sub"] == "u1"
    assert verify_jwt(token, keys, issuer=ISS, audience=None, now=datetime.now(UTC))["aud"] == ["client-1", "api"]


def _forge(header: dict[str, object], body: dict[str, object], sig: bytes = b"") -> str:
    return ".".join([b64url(json.dumps(header).encode()), b64url(json.dumps(body).encode()), b64url(sig)])


def test_verify_refuses_alg_none(store: KeyStore) -> None:
    keys = store.current()
    token = _forge({"alg": "none", "kid": signing_key(keys).kid}, claims())
    with pytest.raises(TokenInvalid) as info:
        verify_jwt(token, keys, issuer=ISS, audience="client-1", now=datetime.now(UTC))
    assert info.value.reason == "bad_signature"


def test_verify_refuses_hs256_keyed_with_our_public_key(store: KeyStore) -> None:
    """The classic confusion: an HMAC over the token with the published public key as the secret."""
    keys = store.current()
    kid = signing_key(keys).kid
    pem = keys.active.private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    head = b64url(json.dumps({"alg": "HS256", "kid": kid, "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims()).encode())
    mac = hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    with pytest.raises(TokenInvalid) as info:
        verify_jwt(f"{head}.{body}.{b64url(mac)}", keys, issuer=ISS, audience="client-1", now=datetime.now(UTC))
    assert info.value.reason == "bad_signature"


def test_verify_refuses_a_foreign_key_using_our_kid(store: KeyStore) -> None:
    keys = store.current()
    ours = signing_key(keys)
    gen = generate_key_pair("attacker", "ec-p256" if ours.alg == "ES256" else "rsa2048", 1)
    foreign = jose.JoseKey(key_id="x", state="active", alg=ours.alg, kid=ours.kid,
                           private=type(ours.private).import_key(gen.key_pem),
                           public=type(ours.public).import_key(gen.key_pem), cert_b64="")
    with pytest.raises(TokenInvalid) as info:
        verify_jwt(sign_jwt(claims(), foreign), keys, issuer=ISS, audience="client-1", now=datetime.now(UTC))
    assert info.value.reason == "bad_signature"


def test_verify_refuses_an_algorithm_swap(store: KeyStore) -> None:
    keys = store.current()
    token = sign_jwt(claims(), signing_key(keys))
    _, body, sig = token.split(".")
    other = "ES256" if signing_key(keys).alg == "RS256" else "RS256"
    head = b64url(json.dumps({"typ": "JWT", "alg": other, "kid": signing_key(keys).kid}).encode())
    with pytest.raises(TokenInvalid) as info:
        verify_jwt(f"{head}.{body}.{sig}", keys, issuer=ISS, audience="client-1", now=datetime.now(UTC))
    assert info.value.reason == "bad_signature"


@pytest.mark.parametrize(("over", "kwargs", "reason"), [
    ({"iss": "https://evil.example"}, {}, "wrong_issuer"),
    ({"iss": ISS + "/"}, {}, "wrong_issuer"),
    ({"aud": "client-2"}, {}, "wrong_audience"),
    ({"aud": ["client-2", "client-3"]}, {}, "wrong_audience"),
    ({"aud": []}, {}, "malformed"),
    ({"aud": 7}, {}, "malformed"),
    ({"exp": int(datetime.now(UTC).timestamp()) - 120}, {}, "expired"),
    ({"exp": "tomorrow"}, {}, "malformed"),
    ({"exp": None}, {}, "malformed"),
    ({"iat": int(datetime.now(UTC).timestamp()) + 3600}, {}, "issued_in_future"),
    ({"iat": True}, {}, "malformed"),
    ({}, {"typ": "at+jwt"}, "wrong_type"),
])
def test_verify_refuses_wrong_claims(store: KeyStore, over: dict[str, object], kwargs: dict[str, str],
                                     reason: str) -> None:
    keys = store.current()
    token = sign_jwt(claims(**over), signing_key(keys))
    with pytest.raises(TokenInvalid) as info:
        verify_jwt(token, keys, issuer=ISS, audience="client-1", now=datetime.now(UTC), **kwargs)
    assert info.value.reason == reason


def test_an_expired_token_passes_only_when_exp_is_not_checked(store: KeyStore) -> None:
    """An id_token_hint at RP-initiated logout may have expired; its signature, iss and aud still count."""
    keys = store.current()
    token = sign_jwt(claims(exp=int(datetime.now(UTC).timestamp()) - 3600), signing_key(keys))
    assert verify_jwt(token, keys, issuer=ISS, audience="client-1", now=datetime.now(UTC), check_exp=False)
    with pytest.raises(TokenInvalid):
        verify_jwt(token, keys, issuer="https://other", audience="client-1", now=datetime.now(UTC), check_exp=False)


def test_leeway_covers_small_clock_skew(store: KeyStore) -> None:
    keys = store.current()
    token = sign_jwt(claims(exp=int(datetime.now(UTC).timestamp()) - 10), signing_key(keys))
    assert verify_jwt(token, keys, issuer=ISS, audience="client-1", now=datetime.now(UTC))
    with pytest.raises(TokenInvalid):
        verify_jwt(token, keys, issuer=ISS, audience="client-1", now=datetime.now(UTC), leeway_s=0)


@pytest.mark.parametrize("token", [
    "", "abc", "a.b", "a.b.c.d", "!!!.###.$$$", "e30.e30.", "eyJhbGciOiJSUzI1NiJ9.e30.AAAA",
    "x" * 20000 + ".a.b", "\u00e9.\u00e9.\u00e9",
])
def test_verify_refuses_garbage_with_a_reason(store: KeyStore, token: str) -> None:
    with pytest.raises(TokenInvalid) as info:
        verify_jwt(token, store.current(), issuer=ISS, audience="client-1", now=datetime.now(UTC))
    assert info.value.reason in {"malformed", "unknown_key", "bad_signature"}


def test_verify_refuses_a_payload_that_is_not_an_object(store: KeyStore) -> None:
    keys = store.current()
    key = signing_key(keys)
    from joserfc import jws
    token = jws.serialize_compact({"alg": key.alg, "kid": key.kid}, b"[1, 2]", key.private, algorithms=[key.alg])
    with pytest.raises(TokenInvalid) as info:
        verify_jwt(token, keys, issuer=ISS, audience="client-1", now=datetime.now(UTC))
    assert info.value.reason == "malformed"
