"""GET /.well-known/openid-configuration and GET /oauth2/jwks: behind IDP_OIDC_ENABLED, rotated by `idp certs`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from lxml import etree

from idp.config import Settings
from idp.oidc.jose import TokenInvalid, sign_jwt, signing_key, verify_jwt

from .. import jwt_check
from ..conftest import IDP_BASE, make_settings

DS = "{http://www.w3.org/2000/09/xmldsig#}"


@pytest.fixture
def settings(request: pytest.FixtureRequest, tmp_path: Path, key_template: Path) -> Settings:
    """IDP_OIDC_ENABLED on, unless a test asks for it off (indirect parametrisation)."""
    return make_settings(tmp_path, key_template, oidc_enabled=getattr(request, "param", True))


def cli(app: Flask, *args: str) -> str:
    r = app.test_cli_runner().invoke(args=list(args))
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output
    return r.output


def jwks_of(client: FlaskClient) -> dict:
    resp = client.get("/oauth2/jwks")
    assert resp.status_code == 200
    return resp.get_json()


def token_now(app: Flask, **extra: object) -> str:
    now = int(datetime.now(UTC).timestamp())
    claims = {"iss": IDP_BASE, "sub": "alice", "aud": "rp-1", "iat": now, "exp": now + 300, **extra}
    return sign_jwt(claims, signing_key(app.extensions["idp.keystore"].current()))


@pytest.mark.parametrize("settings", [False], indirect=True)
def test_off_by_default_nothing_is_advertised(client: FlaskClient) -> None:
    """Until the protocol endpoints exist, no discovery document advertises them."""
    for path in ("/.well-known/openid-configuration", "/oauth2/jwks"):
        resp = client.get(path)
        assert resp.status_code == 404
        assert "Access-Control-Allow-Origin" not in resp.headers
    assert client.get("/saml/metadata").status_code == 200


def test_discovery_document(client: FlaskClient) -> None:
    resp = client.get("/.well-known/openid-configuration")
    assert resp.status_code == 200
    assert resp.mimetype == "application/json"
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert resp.headers["Cache-Control"] == "public, max-age=3600"
    d = resp.get_json()
    assert d["issuer"] == IDP_BASE                      # IDP_BASE_URL, never the request's Host
    assert d["jwks_uri"] == f"{IDP_BASE}/oauth2/jwks"
    assert d["authorization_endpoint"] == f"{IDP_BASE}/oauth2/authorize"
    assert d["end_session_endpoint"] == f"{IDP_BASE}/oauth2/logout"
    assert d["id_token_signing_alg_values_supported"] == ["RS256"]
    assert d["response_types_supported"] == ["code"]
    assert d["code_challenge_methods_supported"] == ["S256"]
    assert d["authorization_response_iss_parameter_supported"] is True
    assert not {"implicit", "password"} & set(d["grant_types_supported"])


def test_discovery_ignores_a_forged_host(client: FlaskClient) -> None:
    d = client.get("/.well-known/openid-configuration", headers={"Host": "evil.example",
                                                                 "X-Forwarded-Host": "evil.example"}).get_json()
    assert "evil" not in str(d)


def test_jwks_publishes_the_saml_signing_key(client: FlaskClient) -> None:
    """One key store for both protocols: the JWKS key is the certificate in the SAML metadata."""
    resp = client.get("/oauth2/jwks")
    assert resp.status_code == 200
    assert resp.mimetype == "application/json"
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert resp.headers["Cache-Control"] == "public, max-age=300"
    keys = resp.get_json()["keys"]
    assert len(keys) == 1
    jwk = keys[0]
    assert jwk["use"] == "sig" and jwk["alg"] == "RS256" and jwk["kid"] == jwt_check.thumbprint(jwk)
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwk)
    md = etree.fromstring(client.get("/saml/metadata").data)
    assert jwk["x5c"] == [c.text for c in md.iter(f"{DS}X509Certificate")]


def test_a_token_signed_by_the_idp_verifies_with_the_served_jwks(app: Flask, client: FlaskClient) -> None:
    header, claims = jwt_check.verify(token_now(app, nonce="n1"), jwks_of(client))
    assert header["kid"] == jwks_of(client)["keys"][0]["kid"] and claims["nonce"] == "n1"


def test_rotation_with_the_certs_commands_publishes_the_next_key_before_it_signs(app: Flask,
                                                                                 client: FlaskClient) -> None:
    """`make rotate-certs / activate-certs / retire-certs` (idp certs rotate / activate / retire) rotate the OIDC
    keys with no downtime: an RP that cached the JWKS once the key was staged verifies every token after."""
    before = jwks_of(client)
    old_kid = before["keys"][0]["kid"]
    old_token = token_now(app)

    cli(app, "certs", "rotate", "--key-type", "ec-p256")
    staged = jwks_of(client)                                     # what an RP caches now
    assert [k["kid"] for k in staged["keys"]][0] == old_kid
    assert [k["alg"] for k in staged["keys"]] == ["RS256", "ES256"]
    disco = client.get("/.well-known/openid-configuration").get_json()
    assert disco["id_token_signing_alg_values_supported"] == ["RS256", "ES256"]
    assert jwt_check.verify(token_now(app), staged)[0]["kid"] == old_kid, "the staged key does not sign yet"

    cli(app, "certs", "activate")
    new_token = token_now(app)
    header, _ = jwt_check.verify(new_token, staged)              # no refetch needed
    assert header["alg"] == "ES256" and header["kid"] == staged["keys"][1]["kid"]
    active = jwks_of(client)
    assert [k["kid"] for k in active["keys"]] == [staged["keys"][1]["kid"], old_kid]
    jwt_check.verify(old_token, active)                         # tokens signed before still verify
    assert client.get("/.well-known/openid-configuration").get_json()[
        "id_token_signing_alg_values_supported"] == ["ES256", "RS256"]

    cli(app, "certs", "retire")
    after = jwks_of(client)
    assert [k["kid"] for k in after["keys"]] == [staged["keys"][1]["kid"]]
    with pytest.raises(jwt_check.NotVerified):
        jwt_check.verify(old_token, after)
    with pytest.raises(TokenInvalid):
        verify_jwt(old_token, app.extensions["idp.keystore"].current(), issuer=IDP_BASE, audience="rp-1",
                   now=datetime.now(UTC))
    jwt_check.verify(new_token, after)


def test_a_broken_key_store_answers_503_without_detail(app: Flask, client: FlaskClient,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    store = app.extensions["idp.keystore"]
    store.state_path.write_text("{not json")
    for path in ("/oauth2/jwks", "/.well-known/openid-configuration"):
        resp = client.get(path)
        assert resp.status_code == 503
        assert resp.get_json() == {"error": "temporarily_unavailable",
                                   "error_description": "the signing keys are unavailable"}
        assert resp.headers["Cache-Control"] == "no-store" and resp.headers["Retry-After"]
        assert "keystore.json" not in resp.get_data(as_text=True)
    assert "keystore.json is corrupt" in caplog.text


def test_documents_are_get_only(client: FlaskClient) -> None:
    for path in ("/oauth2/jwks", "/.well-known/openid-configuration"):
        assert client.post(path).status_code in (400, 405)   # never a state change, never a 500
