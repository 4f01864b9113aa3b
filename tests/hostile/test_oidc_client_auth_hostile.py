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
