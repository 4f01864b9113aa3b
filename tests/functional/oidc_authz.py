"""Helpers for driving the OIDC authorization endpoint through the test client with a real session."""

from __future__ import annotations

import base64
import hashlib
import re
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from werkzeug.test import TestResponse

from idp.extensions import db
from idp.models import SsoEvent
from idp.services import apps as apps_svc

from ..webclient import Browser
from .conftest import PASSWORD

CB = "https://rp.example.com/cb"
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def make_client(slug: str = "rp", *, public: bool = False, redirect_uris: tuple[str, ...] = (CB,),
                policy: dict[str, Any] | None = None, **oidc: Any) -> str:
    """Register an OIDC-only app; its client id. `policy`: AppSettings changes (permitted, require_mfa, ...)."""
    oidc.setdefault("scopes", ("openid", "profile", "email", "offline_access", "orders:read"))
    row, _ = apps_svc.register_oidc_app(name=slug.upper(), slug=slug,
                                        settings=apps_svc.initial_settings(public=public, redirect_uris=redirect_uris,
                                                                           **oidc))
    if policy:
        apps_svc.change_settings(row, **policy)
    db.session.commit()
    assert row.oidc is not None
    return row.oidc.client_id


def params(client_id: str, /, **over: Any) -> dict[str, str]:
    p: dict[str, Any] = {"response_type": "code", "client_id": client_id, "redirect_uri": CB,
                         "scope": "openid profile", "state": "st-1", "nonce": "n-1", "code_challenge": CHALLENGE,
                         "code_challenge_method": "S256"}
    p.update(over)
    return {k: v for k, v in p.items() if v is not None}


def authorize_url(client_id: str, /, **over: Any) -> str:
    return "/oauth2/authorize?" + urlencode(params(client_id, **over))


def at_rp(resp: TestResponse, redirect_uri: str = CB) -> dict[str, str]:
    """The parameters of a redirect to the client (asserting it goes exactly to `redirect_uri`)."""
    assert resp.status_code in (302, 303), f"{resp.status_code}: {resp.get_data(as_text=True)[:400]}"
    location = resp.headers["Location"]
    parts = urlsplit(location)
    assert location.split("?")[0] == redirect_uri.split("?")[0], location
    assert resp.headers.get("Cache-Control") == "no-store"
    return {k: v[0] for k, v in parse_qs(parts.query).items()}


def is_login_page(resp: TestResponse) -> bool:
    return resp.status_code == 200 and 'name="password"' in resp.get_data(as_text=True)


def is_consent_page(resp: TestResponse) -> bool:
    return resp.status_code == 200 and 'id="consent-form"' in resp.get_data(as_text=True)


def answer_consent(browser: Browser, resp: TestResponse, decision: str = "allow") -> TestResponse:
    body = resp.get_data(as_text=True)
    csrf = _CSRF.search(body)
    token = re.search(r'name="request" value="([^"]*)"', body)
    assert csrf and token, body[:400]
    return browser.follow(browser.client.post("/oauth2/authorize/consent", data={
        "csrf_token": csrf.group(1), "request": unescape(token.group(1)), "decision": decision}))


def sign_in(browser: Browser, url: str, username: str = "alice", *, consent: str | None = "allow") -> TestResponse:
    """GET the authorization URL, sign in if asked, answer the consent page if shown (unless consent None)."""
    resp = browser.get(url)
    if is_login_page(resp):
        resp = browser.login(resp, username, PASSWORD)
    if consent is not None and is_consent_page(resp):
        resp = answer_consent(browser, resp, consent)
    return resp


def last_event(**where: Any) -> SsoEvent:
    db.session.expire_all()
    q = db.session.query(SsoEvent)
    for k, v in where.items():
        q = q.filter(getattr(SsoEvent, k) == v)
    ev = q.order_by(SsoEvent.id.desc()).first()
    assert ev is not None
    return ev
