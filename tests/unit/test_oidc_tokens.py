"""idp.oidc.tokens: ID token (OIDC Core 2, 3.1.3.6) and RFC 9068 access-token claims, checked independently."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from idp.certs.keystore import KeyStore
from idp.oidc.jose import build_jwks, signing_key, verify_jwt
from idp.oidc.tokens import (
    AccessTokenSpec,
    IdTokenSpec,
    build_access_token_claims,
    build_id_token_claims,
    issue_access_token,
    issue_id_token,
    token_hash,
)

from .. import jwt_check

ISS = "https://idp.example"
NOW = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
AUTH = NOW - timedelta(minutes=7)


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    for family, key_type in (("rsa", "rsa2048"), ("ec", "ec-p256")):
        path = tmp_path_factory.mktemp(family) / "certs"
        KeyStore(path).generate_first(ISS, key_type, 30)
        out[family] = path
    return out


@pytest.fixture(params=["rsa", "ec"])
def store(request: pytest.FixtureRequest, templates: dict[str, Path], tmp_path: Path) -> KeyStore:
    dst = tmp_path / "certs"
    shutil.copytree(templates[request.param], dst)
    return KeyStore(dst)


def id_spec(**over: object) -> IdTokenSpec:
    base: dict[str, object] = dict(issuer=ISS, subject="u-42", client_id="client-1", issued_at=NOW,
                                   lifetime=timedelta(minutes=5), auth_time=AUTH)
    base.update(over)
    return IdTokenSpec(**base)  # type: ignore[arg-type]


def at_spec(**over: object) -> AccessTokenSpec:
    base: dict[str, object] = dict(issuer=ISS, client_id="client-1", audiences=("https://api.example",),
                                   scopes=("openid", "profile"), issued_at=NOW, lifetime=timedelta(minutes=10))
    base.update(over)
    return AccessTokenSpec(**base)  # type: ignore[arg-type]


# ---------------------------------------------------------------- at_hash / c_hash


def test_token_hash_matches_the_oidc_core_examples() -> None:
    """OIDC Core Appendix A.3 / A.4: the example access token and code with their at_hash / c_hash."""
    assert token_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y", "RS256") == "77QmUPtjPfzWtF2AnpK9RQ"
    assert token_hash("Qcb0Orv1zh30vL1MPRsbm-diHiMwcLyZvn1arpZv-Jxf_11jnpEX3Tgfvk", "RS256") == \
        "LDktKdoQak3Pk0cnXxCltA"


@pytest.mark.parametrize(("alg", "hash_name"), [("RS256", "sha256"), ("ES256", "sha256"), ("ES384", "sha384"),
                                                ("ES512", "sha512"), ("PS384", "sha384")])
def test_token_hash_follows_the_algorithm(alg: str, hash_name: str) -> None:
    assert token_hash("some-access-token", alg) == jwt_check.half_hash("some-access-token", hash_name)


@pytest.mark.parametrize("alg", ["none", "HS256", "EdDSA", ""])
def test_token_hash_refuses_an_algorithm_without_a_defined_hash(alg: str) -> None:
    with pytest.raises(ValueError, match="no hash"):
        token_hash("x", alg)


# ---------------------------------------------------------------- ID token claims


def test_id_token_claims_minimal() -> None:
    c = build_id_token_claims(id_spec(), "RS256")
    assert c == {"iss": ISS, "sub": "u-42", "aud": "client-1", "iat": int(NOW.timestamp()),
                 "exp": int(NOW.timestamp()) + 300, "auth_time": int(AUTH.timestamp())}


def test_id_token_claims_full() -> None:
    c = build_id_token_claims(id_spec(nonce="n-0S6_WzA2Mj", acr="urn:idp:mfa", amr=("pwd", "otp", "mfa"),
                                      access_token="at-1", code="code-1", sid="sid-9",
                                      extra={"email": "a@example.com", "groups": ["staff"]}), "ES256")
    assert c["nonce"] == "n-0S6_WzA2Mj" and c["acr"] == "urn:idp:mfa" and c["amr"] == ["pwd", "otp", "mfa"]
    assert c["at_hash"] == jwt_check.half_hash("at-1") and c["c_hash"] == jwt_check.half_hash("code-1")
    assert c["sid"] == "sid-9" and c["email"] == "a@example.com" and c["groups"] == ["staff"]
    assert "azp" not in c, "one audience: azp is not needed"


def test_an_empty_nonce_is_echoed_but_none_is_absent() -> None:
    assert "nonce" not in build_id_token_claims(id_spec(), "RS256")
    assert build_id_token_claims(id_spec(nonce=""), "RS256")["nonce"] == ""


def test_several_audiences_add_azp() -> None:
    c = build_id_token_claims(id_spec(audiences=("https://api.example", "client-1")), "RS256")
    assert c["aud"] == ["client-1", "https://api.example"] and c["azp"] == "client-1"


def test_id_token_uses_utc_epoch_seconds_whatever_the_zone() -> None:
    cet = timezone(timedelta(hours=1))
    c = build_id_token_claims(id_spec(issued_at=NOW.astimezone(cet), auth_time=AUTH.astimezone(cet)), "RS256")
    assert c["iat"] == int(NOW.timestamp()) and c["auth_time"] == int(AUTH.timestamp())


@pytest.mark.parametrize(("over", "match"), [
    ({"extra": {"sub": "admin"}}, "may not replace"),
    ({"extra": {"iss": "https://evil"}}, "may not replace"),
    ({"extra": {"nonce": "x", "aud": "y"}}, "aud, nonce"),
    ({"lifetime": timedelta(0)}, "positive lifetime"),
    ({"subject": ""}, "needs iss, sub"),
    ({"issued_at": NOW.replace(tzinfo=None)}, "timezone-aware"),
    ({"auth_time": AUTH.replace(tzinfo=None)}, "timezone-aware"),
])
def test_id_token_refuses_a_wrong_claim_set(over: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_id_token_claims(id_spec(**over), "RS256")


def test_issued_id_token_verifies_independently(store: KeyStore) -> None:
    keys = store.current()
    now = datetime.now(UTC)
    token = issue_id_token(id_spec(issued_at=now, auth_time=now, nonce="abc", access_token="AT.x-y_z"),
                           signing_key(keys))
    header, c = jwt_check.verify(token, build_jwks(keys))
    assert header["alg"] == signing_key(keys).alg and header["kid"] == signing_key(keys).kid
    assert header["typ"] == "JWT"
    assert c["at_hash"] == jwt_check.half_hash("AT.x-y_z")      # RS256 and ES256 both hash with SHA-256
    assert c["nonce"] == "abc" and c["aud"] == "client-1"
    assert verify_jwt(token, keys, issuer=ISS, audience="client-1", now=now) == c


# ---------------------------------------------------------------- RFC 9068 access tokens


def test_access_token_claims_for_a_user() -> None:
    c = build_access_token_claims(at_spec(subject="u-42", auth_time=AUTH, acr="urn:idp:mfa", amr=("hwk", "mfa"),
                                          jti="jti-1"))
    assert c == {"iss": ISS, "sub": "u-42", "aud": "https://api.example", "client_id": "client-1",
                 "iat": int(NOW.timestamp()), "exp": int(NOW.timestamp()) + 600, "jti": "jti-1",
                 "scope": "openid profile", "auth_time": int(AUTH.timestamp()), "acr": "urn:idp:mfa",
                 "amr": ["hwk", "mfa"]}


def test_client_credentials_token_names_the_client_as_subject() -> None:
    """RFC 9068 section 2.2: no resource owner, so `sub` identifies the client; no authentication claims."""
    c = build_access_token_claims(at_spec(scopes=("reports.read",)))
    assert c["sub"] == "client-1" and c["client_id"] == "client-1" and c["scope"] == "reports.read"
    assert not {"auth_time", "acr", "amr"} & set(c)


def test_access_token_jti_is_unique_and_resource_indicators_become_audiences() -> None:
    a, b = build_access_token_claims(at_spec()), build_access_token_claims(at_spec())
    assert a["jti"] != b["jti"] and len(a["jti"]) >= 22
    c = build_access_token_claims(at_spec(audiences=("https://a.example", "https://b.example", "https://a.example"),
                                          scopes=("x", "y", "x")))
    assert c["aud"] == ["https://a.example", "https://b.example"] and c["scope"] == "x y"


def test_access_token_without_scopes_has_no_scope_claim() -> None:
    assert "scope" not in build_access_token_claims(at_spec(scopes=()))


@pytest.mark.parametrize(("over", "match"), [
    ({"audiences": ()}, "audience"),
    ({"audiences": ("",)}, "audience"),
    ({"scopes": ("openid profile",)}, "scope"),
    ({"scopes": ("",)}, "scope"),
    ({"lifetime": timedelta(seconds=-1)}, "positive lifetime"),
    ({"jti": ""}, "jti"),
    ({"extra": {"client_id": "other"}}, "may not replace"),
    ({"extra": {"scope": "admin"}}, "may not replace"),
])
def test_access_token_refuses_a_wrong_claim_set(over: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_access_token_claims(at_spec(**over))


def test_issued_access_token_has_typ_at_jwt_and_verifies_independently(store: KeyStore) -> None:
    keys = store.current()
    now = datetime.now(UTC)
    token = issue_access_token(at_spec(subject="u-42", issued_at=now, extra={"groups": ["staff"]}),
                               signing_key(keys))
    header, c = jwt_check.verify(token, build_jwks(keys))
    assert header["typ"] == "at+jwt", "RFC 9068 section 2.1"
    assert header["kid"] == signing_key(keys).kid
    for claim in ("iss", "exp", "aud", "sub", "client_id", "iat", "jti"):   # RFC 9068 section 2.2, required
        assert claim in c
    assert c["groups"] == ["staff"]
    assert verify_jwt(token, keys, issuer=ISS, audience="https://api.example", now=now, typ="at+jwt") == c
    # an access token is not an ID token: a verifier expecting one by typ refuses it
    with pytest.raises(ValueError):
        verify_jwt(token, keys, issuer=ISS, audience="https://api.example", now=now, typ="JWT")
