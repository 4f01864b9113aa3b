"""At refresh, an ID token only when the response grants openid; revoking a refresh token (RFC 7009) also ends the
access tokens issued from its family (at userinfo and introspection)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from idp.config import Settings

from ..conftest import make_settings
from ..oidc_token_kit import basic, check_jwt, exchange, make_client, seed_code
from .test_oidc_token import bearer, ok, refresh

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def settings(tmp_path: Path, key_template: Path) -> Settings:
    return make_settings(tmp_path, key_template, oidc_enabled=True)


def _family(client: FlaskClient, alice: Any, slug: str = "crm") -> tuple[str, str, dict[str, Any]]:
    row, cid, secret = make_client(slug)
    assert secret
    return cid, secret, _another(client, alice, row, secret)


def _another(client: FlaskClient, alice: Any, row: Any, secret: str) -> dict[str, Any]:
    code, _ = seed_code(row, alice, scopes=("openid", "profile", "email"))
    return ok(exchange(client, code, row.oidc.client_id, secret))


def test_refresh_narrowed_without_openid_has_no_id_token(client: FlaskClient, alice: Any) -> None:
    cid, secret, first = _family(client, alice)
    narrow = ok(refresh(client, cid, secret, first["refresh_token"], scope="email"))
    assert narrow["scope"] == "email" and "id_token" not in narrow
    # the family keeps openid: a later refresh asking for it (or for everything) gets an ID token again
    again = ok(refresh(client, cid, secret, narrow["refresh_token"], scope="openid email"))
    assert check_jwt(client, again["id_token"])[1]["aud"] == cid
    assert "id_token" in ok(refresh(client, cid, secret, again["refresh_token"]))


def _active(client: FlaskClient, cid: str, secret: str, tok: str) -> bool:
    return bool(ok(client.post("/oauth2/introspect", data={"token": tok}, headers=basic(cid, secret)))["active"])


def test_revoking_a_refresh_token_ends_the_access_tokens_of_its_family(client: FlaskClient, alice: Any) -> None:
    row, cid, secret = make_client("crm")
    assert secret
    first = _another(client, alice, row, secret)
    second = ok(refresh(client, cid, secret, first["refresh_token"]))
    # another family of the same user and client (a second later), and another client: untouched
    time.sleep(1.05)
    sibling = _another(client, alice, row, secret)
    cid2, secret2, other = _family(client, alice, "wiki")
    for tok in (first["access_token"], second["access_token"], sibling["access_token"]):
        assert _active(client, cid, secret, tok)
    assert client.post("/oauth2/revoke", data={"token": second["refresh_token"]},
                       headers=basic(cid, secret)).status_code == 200
    for tok in (first["access_token"], second["access_token"]):
        assert not _active(client, cid, secret, tok)
        assert client.get("/oauth2/userinfo", headers=bearer(tok)).status_code == 401
    assert _active(client, cid, secret, sibling["access_token"])
    assert client.get("/oauth2/userinfo", headers=bearer(other["access_token"])).status_code == 200
    assert _active(client, cid2, secret2, other["access_token"])
