"""idp.oidc.discovery: the OpenID Provider Configuration (OIDC Discovery 1.0 section 3) and IDP_OIDC_ENABLED."""

from __future__ import annotations

import pytest

from idp.config import ConfigError, load_settings
from idp.oidc.discovery import DiscoverySpec, build_discovery

ISS = "https://idp.example"

# Discovery 1.0 section 3: REQUIRED members (token_endpoint too, as this OP is not implicit-only).
REQUIRED = {"issuer", "authorization_endpoint", "token_endpoint", "jwks_uri", "response_types_supported",
            "subject_types_supported", "id_token_signing_alg_values_supported"}


def doc(**over: object) -> dict[str, object]:
    base: dict[str, object] = {"issuer": ISS, "signing_algs": ["RS256"]}
    base.update(over)
    return build_discovery(DiscoverySpec(**base))  # type: ignore[arg-type]


def test_required_members_and_the_endpoints_named_in_the_issue() -> None:
    d = doc()
    assert REQUIRED <= set(d)
    assert d["issuer"] == ISS
    assert {k: v for k, v in d.items() if k.endswith("_endpoint") or k == "jwks_uri"} == {
        "authorization_endpoint": f"{ISS}/oauth2/authorize",
        "token_endpoint": f"{ISS}/oauth2/token",
        "userinfo_endpoint": f"{ISS}/oauth2/userinfo",
        "revocation_endpoint": f"{ISS}/oauth2/revoke",
        "introspection_endpoint": f"{ISS}/oauth2/introspect",
        "end_session_endpoint": f"{ISS}/oauth2/logout",
        "jwks_uri": f"{ISS}/oauth2/jwks",
    }


def test_issuer_with_a_path_keeps_it() -> None:
    d = doc(issuer="https://example.org/idp")
    assert d["issuer"] == "https://example.org/idp"
    assert d["token_endpoint"] == "https://example.org/idp/oauth2/token"


def test_advertises_exactly_the_protocol_offered() -> None:
    d = doc()
    assert d["response_types_supported"] == ["code"]
    assert d["grant_types_supported"] == ["authorization_code", "refresh_token", "client_credentials"]
    assert d["code_challenge_methods_supported"] == ["S256"], "no plain PKCE"
    assert d["subject_types_supported"] == ["public"]
    assert d["token_endpoint_auth_methods_supported"] == ["client_secret_basic", "client_secret_post",
                                                          "private_key_jwt", "none"]
    assert "none" not in d["introspection_endpoint_auth_methods_supported"]
    for key in ("token_endpoint_auth_signing_alg_values_supported",
                "revocation_endpoint_auth_signing_alg_values_supported",
                "introspection_endpoint_auth_signing_alg_values_supported"):
        algs = d[key]
        assert isinstance(algs, list) and "RS256" in algs and "ES256" in algs
        assert not [a for a in algs if a == "none" or a.startswith("HS")], "no none, no HMAC for client assertions"
    assert d["scopes_supported"] == ["openid", "profile", "email", "groups", "offline_access"]
    assert d["authorization_response_iss_parameter_supported"] is True
    assert d["backchannel_logout_supported"] is True and d["backchannel_logout_session_supported"] is True
    assert d["request_uri_parameter_supported"] is False and d["request_parameter_supported"] is False
    assert d["prompt_values_supported"] == ["none", "login", "consent"]


def test_claims_supported_cover_the_id_token_and_the_scopes() -> None:
    claims = doc()["claims_supported"]
    assert isinstance(claims, list) and len(claims) == len(set(claims))
    for claim in ("sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "sid", "name",
                  "given_name", "family_name", "preferred_username", "email", "groups"):
        assert claim in claims
    narrow = doc(scopes=["openid"])["claims_supported"]
    assert isinstance(narrow, list) and "email" not in narrow


def test_signing_algs_and_acr_values_come_from_the_caller() -> None:
    d = doc(signing_algs=["RS256", "ES256"])
    assert d["id_token_signing_alg_values_supported"] == ["RS256", "ES256"]
    assert "acr_values_supported" not in d
    assert doc(acr_values=["urn:a", "urn:b"])["acr_values_supported"] == ["urn:a", "urn:b"]


@pytest.mark.parametrize(("over", "match"), [
    ({"signing_algs": []}, "signing algorithm"),
    ({"issuer": ISS + "/"}, "slash"),
])
def test_refuses_a_document_that_would_be_wrong(over: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        doc(**over)


BASE_ENV = {"IDP_SECRET_KEY": "k", "IDP_INSTANCE_DIR": "/nonexistent-instance"}


@pytest.mark.parametrize(("value", "expected"), [(None, True), ("", True), ("false", False), ("0", False),
                                                 ("true", True), ("1", True), ("YES", True)])
def test_idp_oidc_enabled_setting(value: str | None, expected: bool) -> None:
    env = dict(BASE_ENV) if value is None else {**BASE_ENV, "IDP_OIDC_ENABLED": value}
    assert load_settings(env).oidc_enabled is expected


def test_idp_oidc_enabled_refuses_a_typo() -> None:
    with pytest.raises(ConfigError, match="IDP_OIDC_ENABLED"):
        load_settings({**BASE_ENV, "IDP_OIDC_ENABLED": "ture"})
