"""Hostile client authentication at the token endpoint that used to crash or cost: absurd NumericDates in a client
assertion, a client's JWKS URI that is down, control characters in a client id. Always a JSON invalid_client (or
invalid_request) and an event, never a 500 or a 503."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from idp import create_app
from idp.config import Settings
from idp.extensions import db
from idp.flows.oidc_client_auth import forget_jwks
from idp.models import SsoEvent

from ..conftest import IsolatedClient, make_settings, reset_backends
from ..oidc_token_kit import TOKEN_URL, assertion, assertion_form, make_client, public_jwk, rsa_key, sign_jws


@pytest.fixture
def settings(tmp_path: Path, key_template: Path) -> Settings:
    return make_settings(tmp_path, key_template, oidc_enabled=True)


@pytest.fixture(autouse=True)
def _fresh_jwks_cache() -> Iterator[None]:
    forget_jwks()
    yield
    forget_jwks()


def refused(resp: Any, status: int, error: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/json"
    body = resp.get_json()
    assert body["error"] == error, body
    assert not {"access_token", "refresh_token", "id_token"} & set(body)
    return dict(body)


def last_event() -> SsoEvent:
    db.session.expire_all()
    return db.session.query(SsoEvent).filter(SsoEvent.event_type == "token").order_by(SsoEvent.id.desc()).first()


def cc(client: FlaskClient, tok: str, **extra: str) -> Any:
    return client.post("/oauth2/token", data={"grant_type": "client_credentials", **assertion_form(tok), **extra})


@pytest.fixture
def pkjwt(client: FlaskClient) -> tuple[Any, str]:
    key = rsa_key()
    _, cid, _ = make_client("api-client", grants=("client_credentials",), scopes=("reports",),
                            token_endpoint_auth_method="private_key_jwt", jwks={"keys": [public_jwk(key, "k1")]})
    return key, cid


# ------------------------------------------------------------------ NumericDates beyond a float


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
def test_a_huge_integer_date_is_invalid_client(client: FlaskClient, pkjwt: tuple[Any, str], claim: str) -> None:
    key, cid = pkjwt
    huge = int("9" * 400)
    for value in (huge, -huge, float("inf"), float("-inf")):
        refused(cc(client, assertion(key, cid, **{claim: value})), 401, "invalid_client")
        assert last_event().reason == "invalid_client"


# ------------------------------------------------------------------ a JWKS URI that is down


class _FailingJwksServer:
    """A loopback server that answers 500 (or the JWKS once `jwks` is set) and counts requests."""

    def __init__(self) -> None:
        import threading

        from werkzeug.serving import make_server
        self.jwks: dict[str, Any] | None = None
        self.hits = 0
        outer = self

        def wsgi(environ: Any, start_response: Any) -> list[bytes]:
            import json
            outer.hits += 1
            if outer.jwks is None:
                start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
                return [b"down"]
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps(outer.jwks).encode()]

        self.server = make_server("127.0.0.1", 0, wsgi)
        self.url = f"http://127.0.0.1:{self.server.server_port}/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(5)


@pytest.fixture
def private_fetch_app(tmp_path: Path, key_template: Path) -> Iterator[Flask]:
    app = create_app(make_settings(tmp_path, key_template, oidc_enabled=True, metadata_fetch_allow_private=True),
                     TESTING=True)
    app.test_client_class = IsolatedClient
    with app.app_context():
        reset_backends(app)
        yield app
        db.session.remove()
        db.engine.dispose()


def test_a_failed_jwks_fetch_is_remembered_briefly(private_fetch_app: Flask) -> None:
    import idp.flows.oidc_client_auth as ca
    srv = _FailingJwksServer()
    try:
        c = private_fetch_app.test_client()
        key = rsa_key()
        _, cid, _ = make_client("crm", grants=("client_credentials",), scopes=("api",),
                                token_endpoint_auth_method="private_key_jwt", jwks_uri=srv.url)
        db.session.commit()
        for _ in range(3):    # anyone naming the client: one outbound fetch, not one per request
            refused(cc(c, assertion(key, cid)), 401, "invalid_client")
            assert "JWKS" in last_event().detail["error_description"]
        assert srv.hits == 1
        # the client's keys come back: read again once the failure is older than JWKS_FAILURE_TTL_S
        srv.jwks = {"keys": [public_jwk(key, "k1")]}
        refused(cc(c, assertion(key, cid)), 401, "invalid_client")
        assert srv.hits == 1
        for uri, (t, why) in list(ca._jwks_failures.items()):
            ca._jwks_failures[uri] = (t - ca.JWKS_FAILURE_TTL_S - 1, why)
        assert cc(c, assertion(key, cid)).status_code == 200
        assert srv.hits == 2
    finally:
        srv.close()


# ------------------------------------------------------------------ control characters in a client id


def _basic(user: str, password: str = "secret") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


BAD_IDS = ("%00", "crm%00", "%01abc", "abc%0A", "abc%0D%0Aevil", "%1F", "%7F")


@pytest.mark.parametrize("endpoint", ["/oauth2/token", "/oauth2/revoke", "/oauth2/introspect"])
def test_control_characters_in_the_basic_client_id(client: FlaskClient, endpoint: str) -> None:
    _, cid, secret = make_client("crm")
    assert secret
    for bad in BAD_IDS:
        resp = client.post(endpoint, data={"grant_type": "client_credentials", "token": "x"},
                           headers=_basic(bad + cid, secret))
        refused(resp, 401, "invalid_client")
        ev = last_event()
        assert ev.reason == "invalid_client" and "control" in ev.detail["error_description"]
        assert ev.sp_entity_id is None


def test_control_characters_in_the_form_client_id(client: FlaskClient) -> None:
    make_client("spa", public=True)
    for bad in ("\x01", "spa\x1f", "spa\n", "\x7f"):
        resp = client.post("/oauth2/token", data={"grant_type": "client_credentials", "client_id": bad})
        refused(resp, 401, "invalid_client")
        assert last_event().reason == "invalid_client" and "control" in last_event().detail["error_description"]
        resp = client.post("/oauth2/token", data={"grant_type": "client_credentials", "client_id": bad,
                                                  "client_secret": "s"})
        refused(resp, 401, "invalid_client")


def test_control_characters_in_an_assertions_sub_or_iss(client: FlaskClient, pkjwt: tuple[Any, str]) -> None:
    key, cid = pkjwt
    now = int(time.time())
    for bad in ("\u0000", cid + "\u0000", "\u0001" + cid, cid + "\n", "\u007f"):
        for claims in ({"sub": bad, "iss": cid}, {"sub": bad, "iss": bad}, {"sub": cid, "iss": bad}):
            tok = sign_jws({"alg": "RS256", "kid": "k1"}, {"aud": TOKEN_URL, "iat": now, "exp": now + 60,
                                                          "jti": f"j{time.monotonic_ns()}", **claims}, key)
            refused(cc(client, tok), 401, "invalid_client")
            ev = last_event()
            assert ev.reason == "invalid_client" and "control" in ev.detail["error_description"], claims


@pytest.mark.parametrize("path", ["/oauth2/authorize?response_type=code&scope=openid&client_id={}"
                                  "&redirect_uri=https%3A%2F%2Frp.example.com%2Fcb",
                                  "/oauth2/logout?client_id={}"])
def test_control_characters_in_a_client_id_at_the_front_channel(client: FlaskClient, path: str) -> None:
    """The lookup itself refuses them (services.apps.app_config_by_client_id): an IdP page, not the 503 page
    a PostgreSQL DataError would give."""
    _, cid, _ = make_client("crm")
    for bad in ("%00", "%01", "%7F"):
        resp = client.get(path.format(cid + bad))
        assert 400 <= resp.status_code < 500 and "Location" not in resp.headers, resp.status_code
