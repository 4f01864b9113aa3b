"""The token endpoint across two IdP processes sharing PostgreSQL and Redis: a code redeemed on A is spent on B
(and the replay revokes what A issued), a refresh token rotated on A is a reuse on B, a client assertion's jti
used on A is refused on B, an access token revoked on B is inactive on A."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from idp import create_app
from idp.config import load_settings
from idp.extensions import db
from idp.services import users as users_svc

from ..oidc_token_kit import CB, assertion, assertion_form, basic, make_client, public_jwk, rsa_key, seed_code
from .conftest import Instance, free_port, idp_cli, idp_env, needs_services, reset_services

pytestmark = needs_services
BASE = "http://idp.example.test"


@pytest.fixture(scope="module")
def oidc_cluster(tmp_path_factory: pytest.TempPathFactory, key_template: Path) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("oidc-cluster")
    env = idp_env(tmp, key_template, IDP_OIDC_ENABLED="true")
    reset_services(env)
    idp_cli(env, "db", "init")
    app = create_app(load_settings(env))
    key = rsa_key()
    with app.app_context():
        user = users_svc.add_user("alice", email="alice@example.com", password_hash=None, first_name="Alice")
        row, cid, secret = make_client("crm")
        _, jwt_cid, _ = make_client("reports", grants=("client_credentials",), scopes=("reports",),
                                    token_endpoint_auth_method="private_key_jwt",
                                    jwks={"keys": [public_jwk(key, "k1")]})
        db.session.commit()
        ids = {"app_id": row.id, "user_id": user.id}
    a = Instance(env, free_port(), tmp / "a.log")
    try:
        b = Instance(env, free_port(), tmp / "b.log")
    except Exception:
        a.stop()
        raise
    try:
        yield {"a": a, "b": b, "app": app, "cid": cid, "secret": secret, "jwt_cid": jwt_cid, "key": key, **ids}
    finally:
        a.stop()
        b.stop()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def _code(c: dict[str, Any]) -> str:
    from idp.models import ConnectedApp, User
    with c["app"].app_context():
        code, _ = seed_code(db.session.get(ConnectedApp, c["app_id"]), db.session.get(User, c["user_id"]))
        db.session.remove()
    return code


def _token(base: str, c: dict[str, Any], data: dict[str, str]) -> requests.Response:
    return requests.post(f"{base}/oauth2/token", data=data, headers=basic(c["cid"], c["secret"]), timeout=10)


def test_code_replayed_on_the_other_instance(oidc_cluster: dict[str, Any]) -> None:
    c = oidc_cluster
    code = _code(c)
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": CB}
    first = _token(c["a"].url, c, form)
    assert first.status_code == 200, first.text
    again = _token(c["b"].url, c, form)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    rt = _token(c["a"].url, c, {"grant_type": "refresh_token", "refresh_token": first.json()["refresh_token"]})
    assert rt.status_code == 400                                   # the family was revoked by B
    ui = requests.get(f"{c['a'].url}/oauth2/userinfo", timeout=10,
                      headers={"Authorization": f"Bearer {first.json()['access_token']}"})
    assert ui.status_code == 401                                   # and the access token, via Redis


def test_refresh_rotated_on_a_is_a_reuse_on_b(oidc_cluster: dict[str, Any]) -> None:
    c = oidc_cluster
    first = _token(c["a"].url, c, {"grant_type": "authorization_code", "code": _code(c), "redirect_uri": CB}).json()
    second = _token(c["a"].url, c, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    reuse = _token(c["b"].url, c, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    gone = _token(c["a"].url, c, {"grant_type": "refresh_token", "refresh_token": second.json()["refresh_token"]})
    assert gone.status_code == 400


def test_assertion_jti_and_access_token_revocation_span_instances(oidc_cluster: dict[str, Any]) -> None:
    c = oidc_cluster
    tok = assertion(c["key"], c["jwt_cid"], aud=f"{BASE}/oauth2/token")
    form = {"grant_type": "client_credentials", **assertion_form(tok)}
    assert requests.post(f"{c['a'].url}/oauth2/token", data=form, timeout=10).status_code == 200
    replay = requests.post(f"{c['b'].url}/oauth2/token", data=form, timeout=10)
    assert replay.status_code == 401 and replay.json()["error"] == "invalid_client"
    body = _token(c["a"].url, c, {"grant_type": "authorization_code", "code": _code(c), "redirect_uri": CB}).json()
    at = body["access_token"]
    assert requests.post(f"{c['b'].url}/oauth2/revoke", data={"token": at}, timeout=10,
                         headers=basic(c["cid"], c["secret"])).status_code == 200
    info = requests.post(f"{c['a'].url}/oauth2/introspect", data={"token": at}, timeout=10,
                         headers=basic(c["cid"], c["secret"]))
    assert info.json() == {"active": False}
