"""Session-bound refresh tokens across a re-authentication in the same browser (prompt=login, max_age, step-up),
through the real authorization endpoint and token endpoint, and introspection of a token whose session ended."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from idp.config import Settings
from idp.extensions import db
from idp.models import IdpSession, OidcRefreshToken, utcnow

from ..conftest import make_settings
from ..oidc_token_kit import basic, check_jwt, exchange, make_client
from ..webclient import Browser
from .oidc_authz import VERIFIER, answer_consent, at_rp, authorize_url, is_consent_page, is_login_page, sign_in
from .test_oidc_token import ok, refresh

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def settings(tmp_path: Path, key_template: Path) -> Settings:
    return make_settings(tmp_path, key_template, oidc_enabled=True)


def _code(browser: Browser, client_id: str, **over: str) -> str:
    return at_rp(sign_in(browser, authorize_url(client_id, **over)))["code"]


def test_reauthentication_for_another_rp_keeps_the_first_rps_refresh_token(browser: Browser, alice: Any) -> None:
    client: FlaskClient = browser.client
    _, cid1, secret1 = make_client("crm")
    _, cid2, secret2 = make_client("wiki")
    first = ok(exchange(client, _code(browser, cid1), cid1, secret1, VERIFIER))
    _, idt = check_jwt(client, first["id_token"])
    sid = idt["sid"]
    # RP2 asks for a fresh sign-in in the same browser: a new IdP session replaces the first one
    resp = browser.get(authorize_url(cid2, prompt="login"))
    assert is_login_page(resp)
    resp = browser.login(resp, "alice", "correct horse battery")
    code2 = at_rp(answer_consent(browser, resp) if is_consent_page(resp) else resp)["code"]
    ok(exchange(client, code2, cid2, secret2, VERIFIER))
    db.session.expire_all()
    live = db.session.query(IdpSession).filter_by(ended_at=None).one()
    assert {r.session_id for r in db.session.query(OidcRefreshToken)} == {live.id}
    # RP1's session-bound refresh token still works and its new ID token keeps RP1's sid
    again = ok(refresh(client, cid1, secret1, first["refresh_token"]))
    assert check_jwt(client, again["id_token"])[1]["sid"] == sid
    assert ok(client.post("/oauth2/introspect", data={"token": again["refresh_token"]},
                          headers=basic(cid1, secret1)))["active"] is True
    # logging out of the new session still ends it
    db.session.get(IdpSession, live.id).ended_at = utcnow()
    db.session.commit()
    assert ok(client.post("/oauth2/introspect", data={"token": again["refresh_token"]},
                          headers=basic(cid1, secret1))) == {"active": False}


def test_a_session_bound_refresh_token_of_an_ended_session_is_inactive_at_introspection(
        browser: Browser, alice: Any) -> None:
    client: FlaskClient = browser.client
    _, cid, secret = make_client("crm")
    online = ok(exchange(client, _code(browser, cid, scope="openid email"), cid, secret, VERIFIER))
    offline = ok(exchange(client, _code(browser, cid, scope="openid email offline_access"), cid, secret, VERIFIER))
    for s in db.session.query(IdpSession):
        s.ended_at = utcnow()
    db.session.commit()
    assert ok(client.post("/oauth2/introspect", data={"token": online["refresh_token"]},
                          headers=basic(cid, secret))) == {"active": False}
    assert ok(client.post("/oauth2/introspect", data={"token": offline["refresh_token"]},
                          headers=basic(cid, secret)))["active"] is True
