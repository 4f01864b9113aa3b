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
