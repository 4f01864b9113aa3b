"""A whole authorization-code flow spread over two IdP processes sharing PostgreSQL and Redis, the way a load
balancer without sticky sessions spreads a browser's requests: the authorization request arrives at A, the
sign-in form is posted to B, the consent page is shown by A and answered on B, the code is redeemed at A and
refreshed at B; the consent is then remembered on both."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from idp import create_app
from idp.config import load_settings
from idp.extensions import db
from idp.models import OidcGrant
from idp.services import users as users_svc

from ..oidc_token_kit import CB, make_client, pkce_pair
from .conftest import Instance, free_port, idp_cli, idp_env, needs_services, reset_services

pytestmark = needs_services
BASE = "http://idp.example.test"
PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, key_template: Path) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("oidc-consent-cluster")
    env = idp_env(tmp, key_template)                    # OIDC is on by default
    reset_services(env)
    idp_cli(env, "db", "init")
    app = create_app(load_settings(env))
    with app.app_context():
        users_svc.add_user("carol", email="carol@example.com",
                           password_hash=app.extensions["idp.passwords"].hash(PASSWORD), first_name="Carol")
        row, cid, secret = make_client("wiki", require_pkce=True)
        db.session.commit()
        app_id = row.id
    a = Instance(env, free_port(), tmp / "a.log")
    try:
        b = Instance(env, free_port(), tmp / "b.log")
    except Exception:
        a.stop()
        raise
    try:
        yield {"a": a, "b": b, "app": app, "cid": cid, "secret": secret, "app_id": app_id}
    finally:
        a.stop()
        b.stop()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def _on(instance: Instance, location: str) -> str:
    """The public URL (IDP_BASE_URL) or a relative one, sent to a given instance instead."""
    parts = urlsplit(location)
    assert parts.netloc in ("", urlsplit(BASE).netloc), location
    return instance.url + parts.path + ("?" + parts.query if parts.query else "")


def _field(body: str, name: str) -> str | None:
    m = re.search(rf'name="{name}" value="([^"]*)"', body)
    return unescape(m.group(1)) if m else None


def _follow(browser: requests.Session, instance: Instance, resp: requests.Response) -> requests.Response:
    for _ in range(8):
        if resp.status_code not in (302, 303):
            return resp
        location = resp.headers["Location"]
        if location.startswith(CB):
            return resp
        resp = browser.get(_on(instance, location), allow_redirects=False, timeout=10)
    raise AssertionError("too many redirects")


def test_sign_in_consent_code_and_refresh_across_instances(cluster: dict[str, Any]) -> None:
    c, a, b = cluster, cluster["a"], cluster["b"]
    verifier, challenge = pkce_pair()
    query = urlencode({"response_type": "code", "client_id": c["cid"], "redirect_uri": CB,
                       "scope": "openid profile offline_access", "state": "s-1", "nonce": "n-1",
                       "code_challenge": challenge, "code_challenge_method": "S256"})
    browser = requests.Session()        # cookies are per host, not per port: both instances see them
    login = _follow(browser, a, browser.get(f"{a.url}/oauth2/authorize?{query}", allow_redirects=False, timeout=10))
    body = login.text
    assert 'name="password"' in body, body[:300]
    form = {"csrf_token": _CSRF.search(body).group(1),  # type: ignore[union-attr]
            "username": "carol", "password": PASSWORD, "next": _field(body, "next") or "/"}
    if _field(body, "request") is not None:
        form["request"] = _field(body, "request") or ""
    consent = _follow(browser, a, browser.post(f"{b.url}/login", data=form, allow_redirects=False, timeout=10))
    page = consent.text
    assert 'id="consent-form"' in page, page[:300]
    done = browser.post(f"{b.url}/oauth2/authorize/consent", allow_redirects=False, timeout=10, data={
        "csrf_token": _CSRF.search(page).group(1),  # type: ignore[union-attr]
        "request": _field(page, "request"), "decision": "allow"})
    done = _follow(browser, b, done)
    assert done.headers["Location"].startswith(CB + "?"), done.headers.get("Location")
    params = {k: v[0] for k, v in parse_qs(urlsplit(done.headers["Location"]).query).items()}
    assert params["state"] == "s-1" and params["iss"] == BASE

    auth = (c["cid"], c["secret"])
    tokens = requests.post(f"{a.url}/oauth2/token", auth=auth, timeout=10, data={
        "grant_type": "authorization_code", "code": params["code"], "redirect_uri": CB, "code_verifier": verifier})
    assert tokens.status_code == 200, tokens.text
    refreshed = requests.post(f"{b.url}/oauth2/token", auth=auth, timeout=10, data={
        "grant_type": "refresh_token", "refresh_token": tokens.json()["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    # the rotated token presented again at A: a reuse, the family is revoked
    reuse = requests.post(f"{a.url}/oauth2/token", auth=auth, timeout=10, data={
        "grant_type": "refresh_token", "refresh_token": tokens.json()["refresh_token"]})
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"

    # consent is remembered: the same request on B goes straight back to the client with a code
    again = _follow(browser, b, browser.get(f"{b.url}/oauth2/authorize?{query}", allow_redirects=False, timeout=10))
    assert again.headers["Location"].startswith(CB + "?code="), again.headers.get("Location")
    with c["app"].app_context():
        grant = db.session.query(OidcGrant).filter_by(app_id=c["app_id"]).one()
        assert grant.consent == "user" and set(grant.scopes) >= {"openid", "profile", "offline_access"}
        db.session.remove()
