"""Two redemptions of one authorization code racing each other (OAuth 2.0 Security BCP 4.5): whichever request
loses, what the winner issued ends up revoked.

The interleavings are made deterministic: the loser's request runs through the flow function in the test's own
database session (which, like a real request that started before the winner committed, already holds the code's
record), the winner through the test client; or one side's shared-state step is taken before the other runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from idp.config import Settings
from idp.extensions import db
from idp.flows.authorize import Client
from idp.flows.oidc_token import (
    CODE_REPLAY_KEY,
    TokenContext,
    code_replayed_key,
    token_request,
)
from idp.models import OidcRefreshToken, PendingRequest, SsoEvent
from idp.oidc.codes import CODE_KIND
from idp.oidc.errors import InvalidGrant
from idp.state import shared

from ..conftest import IDP_BASE, make_settings
from ..oidc_token_kit import CB, basic, exchange, make_client, seed_code, token

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def settings(tmp_path: Path, key_template: Path) -> Settings:
    return make_settings(tmp_path, key_template, oidc_enabled=True)


def _last_token_event() -> SsoEvent:
    db.session.expire_all()
    return db.session.query(SsoEvent).filter(SsoEvent.event_type == "token").order_by(SsoEvent.id.desc()).first()


def _dead(client: FlaskClient, cid: str, secret: str, body: dict[str, Any]) -> None:
    assert client.get("/oauth2/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}
                      ).status_code == 401
    resp = token(client, {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}, (cid, secret))
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_grant"
    db.session.expire_all()
    assert {r.revoke_reason for r in db.session.query(OidcRefreshToken)} == {"code_reused"}


def test_a_loser_that_read_the_code_before_the_winner_committed_revokes(app: Flask, client: FlaskClient,
                                                                          alice: Any) -> None:
    if shared().name != "database":
        pytest.skip("the database backend's session cache; Redis has none")
    row, cid, secret = make_client("crm")
    code, _ = seed_code(row, alice)
    ctx = TokenContext(issuer=IDP_BASE, keys_loader=app.extensions["idp.keystore"].current,
                       client=Client(ip="127.0.0.1", user_agent="race"))
    params = {"grant_type": "authorization_code", "code": code, "redirect_uri": CB}
    authorization = basic(cid, secret)["Authorization"]
    # the losing request has the code's record in its session (the identity map holds it weakly: something in
    # the request keeps it, here the test) ...
    held = db.session.get(PendingRequest, code)
    assert held is not None and held.data["kind"] == CODE_KIND
    # ... when the winning request (its own app context, so its own session) redeems it and commits
    with app.app_context():
        body = token_request(params, authorization, ctx)
        db.session.commit()
    assert body["refresh_token"]
    with pytest.raises(InvalidGrant) as lost:
        token_request(params, authorization, ctx)
    db.session.commit()                                  # the request's unit of work commits after an OAuth error
    del held
    assert lost.value.reason == "code_reused"
    ev = _last_token_event()
    assert ev.reason == "code_reused" and ev.detail["revoked_refresh_tokens"] == 1
    _dead(client, cid, secret, body)


def test_a_winner_that_stores_its_tokens_after_the_loser_looked_revokes_them(client: FlaskClient,
                                                                             alice: Any) -> None:
    row, cid, secret = make_client("crm")
    code, _ = seed_code(row, alice)
    # the loser found the code spent and nothing recorded yet (the winner was still issuing): it left its mark
    assert shared().remember_once(code_replayed_key(code), 600)
    db.session.commit()
    resp = exchange(client, code, cid, secret)
    assert resp.status_code == 400, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["error"] == "invalid_grant" and not {"access_token", "refresh_token", "id_token"} & set(body)
    ev = _last_token_event()
    assert ev.reason == "code_reused" and ev.detail["revoked_refresh_tokens"] == 1
    assert ev.detail["revoked_access_token"] is True
    db.session.expire_all()
    assert {r.revoke_reason for r in db.session.query(OidcRefreshToken)} == {"code_reused"}


def test_a_loser_that_finds_nothing_recorded_yet_leaves_its_mark(client: FlaskClient, alice: Any) -> None:
    row, cid, secret = make_client("crm")
    code, _ = seed_code(row, alice)
    # the winner has claimed the code in the replay cache but not stored what it issued yet
    from idp.flows.oidc_token import _hash
    assert shared().remember_once(f"{CODE_REPLAY_KEY}\n{_hash(code)}", 600)
    db.session.commit()
    resp = exchange(client, code, cid, secret)
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_grant"
    assert _last_token_event().reason == "code_reused"
    assert shared().was_remembered(code_replayed_key(code))
    assert db.session.query(OidcRefreshToken).count() == 0
