"""The OIDC client settings rules (services.apps.oidc_settings): durations, redirect URIs, JWKS, cross-setting rules."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from idp.services import ServiceError
from idp.services.apps.oidc_settings import (
    OidcSettings,
    format_duration,
    parse_duration,
    parse_jwks,
    parse_refresh_policy,
    validate_oidc_settings,
    validate_scopes,
    validate_uri,
)

RSA_KEY = {"kty": "RSA", "kid": "k1", "n": "sXch", "e": "AQAB"}


@pytest.mark.parametrize(("text", "seconds"), [("30m", 1800), ("12h", 43200), ("90d", 7776000), ("45s", 45),
                                               (" 2H ", 7200)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text, field="f") == seconds


@pytest.mark.parametrize("text", ["", "30", "m", "0m", "-5m", "1.5h", "10w", "1h30m", "99999999d", "1e3s"])
def test_bad_durations_name_their_field(text: str) -> None:
    with pytest.raises(ServiceError) as exc:
        parse_duration(text, field="access_token_lifetime")
    assert exc.value.field == "access_token_lifetime"


def test_duration_bounds_and_format() -> None:
    with pytest.raises(ServiceError, match="between 1m and 1d"):
        parse_duration("25h", field="f", bounds=(60, 86400))
    assert [format_duration(s) for s in (1800, 86400, 7200, 45)] == ["30m", "1d", "2h", "45s"]


@pytest.mark.parametrize(("text", "expected"), [
    ("until-revoked", ("until-revoked", None)), ("none", ("none", None)),
    ("expire-after:90d", ("expire-after", 90 * 86400)), ("expire-if-unused:12h", ("expire-if-unused", 43200)),
])
def test_refresh_policies(text: str, expected: tuple[str, int | None]) -> None:
    assert parse_refresh_policy(text) == expected


@pytest.mark.parametrize("text", ["expire-after", "expire-after:", "until-revoked:1d", "forever", "none:1d",
                                  "expire-if-unused:1m", "expire-after:abc"])
def test_bad_refresh_policies(text: str) -> None:
    with pytest.raises(ServiceError) as exc:
        parse_refresh_policy(text)
    assert exc.value.field == "refresh_policy"


@pytest.mark.parametrize("uri", [
    "https://app.example.com/cb", "https://app.example.com:8443/oidc/cb?x=1", "http://localhost/cb",
    "http://localhost:3000/cb", "http://127.0.0.1:8080/cb", "http://[::1]:9000/cb",
])
def test_redirect_uris_accepted(uri: str) -> None:
    assert validate_uri(uri, field="redirect_uris") == uri


@pytest.mark.parametrize(("uri", "why"), [
    ("http://app.example.com/cb", "https"), ("https://app.example.com/cb#frag", "fragment"),
    ("https://app.example.com/cb#", "fragment"), ("https://*.example.com/cb", "wildcard"),
    ("https://app.example.com/*", "wildcard"), ("/cb", "absolute"), ("app.example.com/cb", "absolute"),
    ("javascript:alert(1)", "absolute"), ("com.example.app:/cb", "absolute"), ("https:///cb", "absolute"),
    ("https://user:pw@app.example.com/cb", "user info"), ("https://app.example.com:99999/cb", "port"),
    ("https://app.example.com/c b", "spaces"), ("https://app.example.com/cb\n", "control"),
    ("http://localhost.evil.example/cb", "https"), ("http://127.0.0.2/cb", "https"), ("", "characters"),
    ("https://a.example/" + "x" * 2000, "characters"),
])
def test_redirect_uris_refused(uri: str, why: str) -> None:
    with pytest.raises(ServiceError, match=why) as exc:
        validate_uri(uri, field="redirect_uris")
    assert exc.value.field == "redirect_uris"


def test_scopes() -> None:
    assert validate_scopes(["openid", "api:read", "openid"]) == ("openid", "api:read")
    for bad in (["open id"], [""], ["a" * 101], ["<x>"], [f"s{i}" for i in range(51)]):
        with pytest.raises(ServiceError):
            validate_scopes(bad)


def test_jwks_public_keys_only() -> None:
    assert parse_jwks(b'{"keys": [{"kty": "RSA", "n": "sXch", "e": "AQAB"}]}')["keys"][0]["kty"] == "RSA"
    assert parse_jwks({"keys": [{"kty": "EC", "crv": "P-256", "x": "a", "y": "b"}]})
    for bad, why in ((b"not json", "not JSON"), (b"[]", "keys"), (b'{"keys": []}', "keys"),
                     ({"keys": [{**RSA_KEY, "d": "secret"}]}, "private key"),
                     ({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}, "symmetric"),
                     ({"keys": [{"kty": "RSA", "n": "x"}]}, "lacks e"), (b"x" * 70000, "64 KiB")):
        with pytest.raises(ServiceError, match=why) as exc:
            parse_jwks(bad)  # type: ignore[arg-type]
        assert exc.value.field == "jwks"


BASE = OidcSettings(client_id="c", redirect_uris=("https://app.example.com/cb",))


@pytest.mark.parametrize(("changes", "field"), [
    ({"client_type": "public"}, "token_endpoint_auth_method"),          # public keeps client_secret_basic
    ({"client_type": "public", "token_endpoint_auth_method": "none", "require_pkce": False}, "require_pkce"),
    ({"client_type": "public", "token_endpoint_auth_method": "none",
      "grant_types": ("client_credentials",)}, "grant_types"),
    ({"token_endpoint_auth_method": "none"}, "token_endpoint_auth_method"),  # confidential without auth
    ({"token_endpoint_auth_method": "private_key_jwt"}, "jwks_uri"),
    ({"token_endpoint_auth_method": "tls_client_auth"}, "token_endpoint_auth_method"),
    ({"grant_types": ("refresh_token",)}, "grant_types"),
    ({"grant_types": ("implicit",)}, "grant_types"),
    ({"grant_types": ("password",)}, "grant_types"),
    ({"grant_types": ()}, "grant_types"),
    ({"grant_types": ("authorization_code", "refresh_token"), "refresh_policy": "none",
      "refresh_lifetime": None}, "refresh_policy"),
    ({"redirect_uris": ()}, "redirect_uris"),
    ({"refresh_policy": "until-revoked"}, "refresh_policy"),            # a lifetime left over
    ({"access_token_lifetime": 0}, "access_token_lifetime"),
    ({"id_token_lifetime": 2 * 86400}, "id_token_lifetime"),
    ({"ip_policy_refresh": "sometimes"}, "ip_policy_refresh"),
    ({"post_logout_redirect_uris": ("http://evil.example/",)}, "post_logout_redirect_uris"),
    ({"backchannel_logout_uri": "https://app.example.com/bc#x"}, "backchannel_logout_uri"),
    ({"initiate_login_uri": "ftp://app.example.com/"}, "initiate_login_uri"),
    ({"scopes": ("open id",)}, "scopes"),
])
def test_cross_setting_rules(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ServiceError) as exc:
        validate_oidc_settings(replace(BASE, **changes))
    assert exc.value.field == field, str(exc.value)


@pytest.mark.parametrize("changes", [
    {},
    {"client_type": "public", "token_endpoint_auth_method": "none"},
    {"grant_types": ("client_credentials",), "redirect_uris": ()},
    {"token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "https://app.example.com/jwks"},
    {"token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [RSA_KEY]}},
    {"grant_types": ("authorization_code", "refresh_token"), "refresh_policy": "until-revoked",
     "refresh_lifetime": None, "ip_policy_refresh": "relax"},
    {"refresh_policy": "none", "refresh_lifetime": None},
])
def test_valid_settings(changes: dict[str, Any]) -> None:
    validate_oidc_settings(replace(BASE, **changes))


def test_round_trip_and_summary() -> None:
    s = replace(BASE, jwks={"keys": [RSA_KEY]}, scopes=("openid", "api:read"))
    assert OidcSettings.from_dict(s.to_dict()) == s
    summary = s.summary()
    assert summary["jwks"] == ["k1"] and summary["refresh_policy"] == "expire-if-unused:30d"
    assert summary["access_token_lifetime"] == "10m"
