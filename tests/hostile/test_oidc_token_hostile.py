"""Hostile input at the token, userinfo, revocation and introspection endpoints: clear OAuth errors as JSON,
an event with a reason code, never a token, never a 500."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from idp.config import Settings
from idp.extensions import db
from idp.models import OidcRefreshToken, SsoEvent
from idp.oidc.jose import sign_jwt, signing_key

from ..conftest import IDP_BASE, make_settings
from ..oidc_token_kit import (
    CB,
    TOKEN_URL,
    assertion,
    assertion_form,
    b64url,
    basic,
    exchange,
    make_client,
    pkce_pair,
    public_jwk,
    rsa_key,
    seed_code,
    sign_jws,
    token,
)


@pytest.fixture
def settings(tmp_path: Path, key_template: Path) -> Settings:
    return make_settings(tmp_path, key_template, oidc_enabled=True)


def refused(resp: Any, status: int, error: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/json" and resp.headers["Cache-Control"] == "no-store"
    body = resp.get_json()
    assert body["error"] == error, body
    assert not {"access_token", "refresh_token", "id_token"} & set(body)
    return dict(body)


def last_event() -> SsoEvent:
    return db.session.query(SsoEvent).filter(SsoEvent.event_type == "token").order_by(SsoEvent.id.desc()).first()


# ------------------------------------------------------------------ codes


def test_code_replay_revokes_what_the_first_use_issued(client: FlaskClient, alice: Any) -> None:
    row, cid, secret = make_client("crm")
    code, _ = seed_code(row, alice)
    first = exchange(client, code, cid, secret).get_json()
    assert client.get("/oauth2/userinfo", headers={"Authorization": f"Bearer {first['access_token']}"}
                      ).status_code == 200
    refused(exchange(client, code, cid, secret), 400, "invalid_grant")
    ev = last_event()
    assert ev.reason == "code_reused" and ev.outcome == "denied" and ev.detail["revoked_refresh_tokens"] == 1
    db.session.expire_all()
    assert db.session.query(OidcRefreshToken).one().revoke_reason == "code_reused"
    refused(token(client, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}, (cid, secret)),
            400, "invalid_grant")
    assert client.get("/oauth2/userinfo", headers={"Authorization": f"Bearer {first['access_token']}"}
                      ).status_code == 401
    assert code not in str(ev.detail)


def test_pkce_downgrade_and_bad_verifiers(client: FlaskClient, alice: Any) -> None:
    row, cid, secret = make_client("crm")
    code, _ = seed_code(row, alice)                       # issued without a code_challenge
    verifier, _ = pkce_pair()
    refused(exchange(client, code, cid, secret, verifier), 400, "invalid_grant")
    assert "downgrade" in last_event().detail["error_description"]
    verifier, challenge = pkce_pair()
    for bad in ("short", "é" * 50, verifier + "x", "A" * 129):
        code, _ = seed_code(row, alice, challenge=challenge)
        refused(exchange(client, code, cid, secret, bad), 400, "invalid_grant")


def test_redirect_uri_variants_are_refused(client: FlaskClient, alice: Any) -> None:
    row, cid, secret = make_client("crm")
    for uri in (CB + "/", CB.upper(), CB + "?x=1", CB + "#f", "https://rp.example.com.evil.example/cb", ""):
        code, _ = seed_code(row, alice)
        refused(exchange(client, code, cid, secret, redirect_uri=uri), 400, "invalid_grant")
        assert last_event().reason == "redirect_uri_mismatch"


def test_guessed_or_malformed_codes(client: FlaskClient) -> None:
    _, cid, secret = make_client("crm")
    for code in ("x", "A" * 64, "A" * 65, "../../etc/passwd", "' OR 1=1 --", "\u202e"):
        refused(exchange(client, code, cid, secret), 400, "invalid_grant")


# ------------------------------------------------------------------ private_key_jwt


@pytest.fixture
def pkjwt(client: FlaskClient) -> tuple[Any, str]:
    key = rsa_key()
    _, cid, _ = make_client("api-client", grants=("client_credentials",), scopes=("reports",),
                            token_endpoint_auth_method="private_key_jwt", jwks={"keys": [public_jwk(key, "k1")]})
    return key, cid


def cc(client: FlaskClient, tok: str, **extra: str) -> Any:
    return client.post("/oauth2/token", data={"grant_type": "client_credentials", **assertion_form(tok), **extra})


def test_a_valid_assertion_works_once(client: FlaskClient, pkjwt: tuple[Any, str]) -> None:
    key, cid = pkjwt
    tok = assertion(key, cid)
    assert cc(client, tok).status_code == 200
    refused(cc(client, tok), 401, "invalid_client")                 # jti replayed
    assert "replayed" in last_event().detail["error_description"]


def test_alg_none_and_hs256_with_the_public_key(client: FlaskClient, pkjwt: tuple[Any, str]) -> None:
    key, cid = pkjwt
    now = int(time.time())
    claims = {"iss": cid, "sub": cid, "aud": TOKEN_URL, "iat": now, "exp": now + 60, "jti": "j-none"}
    refused(cc(client, sign_jws({"alg": "none", "kid": "k1"}, claims)), 401, "invalid_client")
    refused(cc(client, sign_jws({"alg": "none"}, claims)), 401, "invalid_client")
    # HS256 keyed with the client's public key (as PEM and as the JWK JSON): the classic confusion attack
    from cryptography.hazmat.primitives import serialization
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    for secret in (pem, b64url(pem).encode(), str(public_jwk(key, "k1")).encode()):
        refused(cc(client, sign_jws({"alg": "HS256", "kid": "k1"}, {**claims, "jti": "j-hs"}, hmac_secret=secret)),
                401, "invalid_client")
    assert "alg" in last_event().detail["error_description"]


def test_assertion_claims(client: FlaskClient, pkjwt: tuple[Any, str]) -> None:
    key, cid = pkjwt
    other = rsa_key()
    now = int(time.time())
    cases = {
        "wrong aud (another IdP's token endpoint)": assertion(key, cid, aud="https://other-idp.example/token"),
        "aud our userinfo": assertion(key, cid, aud=f"{IDP_BASE}/oauth2/userinfo"),
        "expired": assertion(key, cid, exp=now - 3600, iat=now - 3700),
        "too far ahead": assertion(key, cid, lifetime=3600),
        "no exp": assertion(key, cid, exp=None),
        "no jti": assertion(key, cid, jti=None),
        "empty jti": assertion(key, cid, jti=""),
        "iat in the future": assertion(key, cid, iat=now + 3600),
        "nbf in the future": assertion(key, cid, nbf=now + 3600),
        "iss is not the client": assertion(key, cid, iss="someone-else"),
        "signed by another key": assertion(other, cid),
        "unknown kid": assertion(key, cid, kid="k9"),
        "exp as a string": assertion(key, cid, exp=str(now + 60)),
    }
    for label, tok in cases.items():
        resp = cc(client, tok)
        assert resp.status_code == 401, label
        refused(resp, 401, "invalid_client")
    # sub names a client that does not exist / a client_id parameter that differs from sub
    refused(cc(client, assertion(key, "no-such-client")), 401, "invalid_client")
    refused(cc(client, assertion(key, cid), client_id="another"), 401, "invalid_client")
    # a malformed or wrong-type assertion, a header nested too deep to parse
    refused(cc(client, "not.a.jwt"), 401, "invalid_client")
    deep = b64url(b'{"alg":"RS256","x":' + b"[" * 3000 + b"]" * 3000 + b"}")
    refused(cc(client, f"{deep}.{b64url(b'{}')}.c2ln"), 401, "invalid_client")
    refused(client.post("/oauth2/token", data={"grant_type": "client_credentials", "client_assertion": "a.b.c",
                                               "client_assertion_type": "urn:other"}), 401, "invalid_client")


def test_our_own_tokens_are_not_client_assertions(client: FlaskClient, pkjwt: tuple[Any, str]) -> None:
    """aud/iss mix-up: a JWT the IdP signed (iss = the IdP) is not a client's assertion."""
    _, cid = pkjwt
    now = int(datetime.now(UTC).timestamp())
    ours = sign_jwt({"iss": cid, "sub": cid, "aud": TOKEN_URL, "iat": now, "exp": now + 60, "jti": "x"},
                    signing_key(client.application.extensions["idp.keystore"].current()))
    refused(cc(client, ours), 401, "invalid_client")


def test_two_credentials_or_mixed_methods(client: FlaskClient, alice: Any) -> None:
    row, cid, secret = make_client("crm")
    key = rsa_key()
    data = {"grant_type": "client_credentials", "client_secret": secret}
    refused(client.post("/oauth2/token", data=data, headers=basic(cid, secret)), 400, "invalid_request")
    refused(client.post("/oauth2/token", data={**assertion_form(assertion(key, cid)), "client_secret": "x",
                                               "client_id": cid, "grant_type": "client_credentials"}),
            400, "invalid_request")
    refused(client.post("/oauth2/token", data={"grant_type": "client_credentials", "client_id": "other"},
                        headers=basic(cid, secret)), 400, "invalid_request")
    # a confidential client presenting its id alone
    refused(client.post("/oauth2/token", data={"grant_type": "client_credentials", "client_id": cid}), 401,
            "invalid_client")
    # no credentials at all
    refused(client.post("/oauth2/token", data={"grant_type": "client_credentials"}), 401, "invalid_client")


def test_a_public_client_cannot_get_client_credentials(client: FlaskClient) -> None:
    _, cid, _ = make_client("spa", public=True)
    refused(client.post("/oauth2/token", data={"grant_type": "client_credentials", "client_id": cid}), 400,
            "unauthorized_client")


# ------------------------------------------------------------------ malformed requests


@pytest.mark.parametrize("headers", [
    {"Authorization": "Basic !!!notbase64"},
    {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
    {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode()},
    {"Authorization": "Basic " + base64.b64encode(b":").decode()},
    {"Authorization": "Basic " + base64.b64encode(("a" * 100 + ":b").encode()).decode()},
])
def test_malformed_basic(client: FlaskClient, headers: dict[str, str]) -> None:
    resp = client.post("/oauth2/token", data={"grant_type": "client_credentials"}, headers=headers)
    refused(resp, 401, "invalid_client")
    assert resp.headers["WWW-Authenticate"].startswith("Basic")


def test_malformed_requests(client: FlaskClient) -> None:
    _, cid, secret = make_client("crm")
    auth = basic(cid, secret)
    # repeated parameters
    refused(client.post("/oauth2/token", data="grant_type=client_credentials&grant_type=authorization_code",
                        content_type="application/x-www-form-urlencoded", headers=auth), 400, "invalid_request")
    # not a form
    refused(client.post("/oauth2/token", json={"grant_type": "client_credentials"}, headers=auth), 400,
            "invalid_request")
    refused(client.post("/oauth2/token", data=b"\x00\xff", content_type="text/plain", headers=auth), 400,
            "invalid_request")
    # parameters in the query string
    refused(client.post("/oauth2/token?grant_type=client_credentials", data={"x": "1"}, headers=auth), 400,
            "invalid_request")
    # oversized body, oversized value, too many parameters, a NUL byte
    refused(client.post("/oauth2/token", data={"grant_type": "client_credentials", "x": "a" * 200_000},
                        headers=auth), 400, "invalid_request")
    refused(client.post("/oauth2/token", data={"grant_type": "authorization_code", "code": "a" * 20_000},
                        headers=auth), 400, "invalid_request")
    refused(client.post("/oauth2/token", data={f"p{i}": "1" for i in range(50)}, headers=auth), 400,
            "invalid_request")
    refused(client.post("/oauth2/token", data={"grant_type": "client_credentials\x00"}, headers=auth), 400,
            "invalid_request")
    # a malformed scope
    _, cc_id, cc_secret = make_client("reports", grants=("client_credentials",), scopes=("reports",))
    for scope in ("", " ", "a  b", 'a"b', "x" * 200, " ".join(f"s{i}" for i in range(60))):
        refused(token(client, {"grant_type": "client_credentials", "scope": scope}, (cc_id, cc_secret)),
                400, "invalid_scope")
    # a huge unknown grant type: refused, and the event keeps only a bounded part of it
    refused(token(client, {"grant_type": "g" * 10_000}, (cid, secret)), 400, "unsupported_grant_type")
    assert len(str(last_event().detail)) < 1000
    # GET is not the token endpoint
    assert client.get("/oauth2/token").status_code == 405
    ev = db.session.query(SsoEvent).filter(SsoEvent.event_type == "token", SsoEvent.reason == "invalid_request"
                                           ).count()
    assert ev >= 8


def test_oversized_body_beyond_the_server_limit(client: FlaskClient) -> None:
    """Past IDP_MAX_REQUEST_BYTES werkzeug refuses the body itself: still JSON, not the HTML 413 page."""
    resp = client.post("/oauth2/token", data={"x": "a" * 3_000_000})
    refused(resp, 400, "invalid_request")


# ------------------------------------------------------------------ bearer tokens


def test_forged_and_foreign_access_tokens_at_userinfo(client: FlaskClient, alice: Any) -> None:
    row, cid, secret = make_client("crm")
    code, _ = seed_code(row, alice)
    good = exchange(client, code, cid, secret).get_json()["access_token"]
    head, payload, sig = good.split(".")
    keyset = client.application.extensions["idp.keystore"].current()
    now = int(time.time())
    swapped = b64url(b'{"sub":"admin"}')
    forged = {
        "alg none": sign_jws({"alg": "none", "typ": "at+jwt"}, {"iss": IDP_BASE, "sub": "x", "aud": cid}),
        "payload swapped": f"{head}.{swapped}.{sig}",
        "an ID token, not an access token": exchange(client, seed_code(row, alice)[0], cid, secret).get_json()[
            "id_token"],
        "another issuer": sign_jwt({"iss": "https://evil.example", "sub": "x", "aud": cid, "iat": now,
                                    "exp": now + 60, "jti": "j", "client_id": cid}, signing_key(keyset),
                                   typ="at+jwt"),
        "expired": sign_jwt({"iss": IDP_BASE, "sub": "x", "aud": cid, "iat": now - 7200, "exp": now - 3600,
                             "jti": "j", "client_id": cid}, signing_key(keyset), typ="at+jwt"),
        "garbage": "x" * 5000,
        "huge": "a." + "b" * 20_000 + ".c",
    }
    for label, tok in forged.items():
        resp = client.get("/oauth2/userinfo", headers={"Authorization": f"Bearer {tok}"})
        assert resp.status_code == 401, label
        assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"], label
    # two ways at once, a non-Bearer scheme
    resp = client.post("/oauth2/userinfo", data={"access_token": good}, headers={"Authorization": f"Bearer {good}"})
    assert resp.status_code == 400
    assert client.get("/oauth2/userinfo", headers={"Authorization": "Basic abc"}).status_code == 401


def test_introspection_and_revocation_need_a_client(client: FlaskClient) -> None:
    for path in ("/oauth2/introspect", "/oauth2/revoke"):
        refused(client.post(path, data={"token": "x"}), 401, "invalid_client")
        _, cid, secret = make_client(f"c{len(path)}")
        refused(client.post(path, data={}, headers=basic(cid, secret)), 400, "invalid_request")
