"""Whole OpenID Connect round trips with two independent relying parties (openid-client for Node and pyoidc),
neither built on the server's library: discovery, code + PKCE + nonce, ID token validation against the JWKS,
userinfo, refresh rotation (and reuse detection), RP-initiated logout and back-channel logout, against a live
server on loopback. The browser part (sign-in, consent) is driven through the same app's test client."""

from __future__ import annotations

import dataclasses
import re
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from idp.extensions import db
from idp.models import OidcRefreshToken, SsoEvent
from idp.services import apps as apps_svc
from idp.services import users as users_svc

from .. import jwt_check
from ..oidc_rp import RPError
from ..oidc_rp.fixtures import make_oidc_rp, oidc_rp_kind  # noqa: F401 - fixtures: one run per RP
from ..oidc_seed import receiver
from .test_oidc_token import live_oidc  # noqa: F401 - fixture: a live IdP on loopback

CB = "https://rp.example.com/cb"
BYE = "https://rp.example.com/bye"
PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _field(body: str, name: str) -> str | None:
    m = re.search(rf'name="{name}" value="([^"]*)"', body)
    return unescape(m.group(1)) if m else None


class LiveBrowser:
    """The user's browser: the test client of the live server's own app, so cookies work; stops at the first
    redirect that leaves the IdP (to the RP) and returns its URL."""

    def __init__(self, client: FlaskClient, base: str) -> None:
        self.client = client
        self.base = base

    def _local(self, url: str) -> str:
        parts = urlsplit(url)
        return parts.path + ("?" + parts.query if parts.query else "")

    def run(self, url: str, *, username: str = "alice", consent: bool = True) -> str:
        resp = self.client.get(self._local(url))
        for _ in range(12):
            if resp.status_code in (302, 303):
                location = resp.headers["Location"]
                if location.startswith(("http://", "https://")) and not location.startswith(self.base):
                    return location
                resp = self.client.get(self._local(location))
                continue
            body = resp.get_data(as_text=True)
            if 'name="password"' in body:
                resp = self._login(body, username)
            elif consent and 'id="consent-form"' in body:
                resp = self.client.post("/oauth2/authorize/consent", data={
                    "csrf_token": _CSRF.search(body).group(1),  # type: ignore[union-attr]
                    "request": _field(body, "request"), "decision": "allow"})
            else:
                return "page:" + body
        raise AssertionError("too many steps")

    def _login(self, body: str, username: str) -> TestResponse:
        data = {"csrf_token": _CSRF.search(body).group(1),  # type: ignore[union-attr]
                "username": username, "password": PASSWORD, "next": _field(body, "next") or "/"}
        for name in ("request", "force"):
            value = _field(body, name)
            if value is not None:
                data[name] = value
        return self.client.post("/login", data=data)


def _setup(app: Flask, *, backchannel: str | None = None, token_auth: str = "client_secret_basic",
           public: bool = False) -> tuple[str, str | None]:
    with app.app_context():
        if users_svc.find_user("alice") is None:
            users_svc.add_user("alice", email="alice@example.com",
                               password_hash=app.extensions["idp.passwords"].hash(PASSWORD),
                               first_name="Alice", last_name="Liddell")
        row, secret = apps_svc.register_oidc_app(name="Orders", slug="orders", settings=apps_svc.initial_settings(
            public=public, redirect_uris=(CB,), post_logout_redirect_uris=(BYE,),
            grant_types=("authorization_code", "refresh_token"),
            scopes=("openid", "profile", "email", "offline_access"), backchannel_logout_uri=backchannel,
            **({} if public else {"token_endpoint_auth_method": token_auth})))
        assert row.oidc is not None
        # a formula claim (issue 15): the RPs read it from the ID token and UserInfo like any other claim
        apps_svc.change_settings(row, attributes={"employee_id": 'formula:"E-" + user.username.upper()'})
        cid = row.oidc.client_id
        db.session.commit()
        db.session.remove()
    return cid, secret


def _events(app: Flask, **where: Any) -> list[SsoEvent]:
    with app.app_context():
        q = db.session.query(SsoEvent)
        for k, v in where.items():
            q = q.filter(getattr(SsoEvent, k) == v)
        rows = q.order_by(SsoEvent.id).all()
        db.session.remove()
        return rows


@pytest.mark.parametrize("token_auth", ["client_secret_basic", "client_secret_post", "none"])
def test_code_flow_pkce_userinfo_refresh_with_independent_rps(live_oidc: tuple[Flask, str],  # noqa: F811
                                                              make_oidc_rp: Any, token_auth: str) -> None:  # noqa: F811
    app, base = live_oidc
    cid, secret = _setup(app, token_auth=token_auth, public=token_auth == "none")
    rp = make_oidc_rp(base, cid, client_secret=secret, redirect_uri=CB, token_auth=token_auth)
    browser = LiveBrowser(app.test_client(), base)

    callback = browser.run(rp.start(scope="openid profile email offline_access"))
    assert callback.startswith(CB + "?"), callback[:300]
    query = parse_qs(urlsplit(callback).query)
    assert query["iss"] == [base]                                   # RFC 9207
    result = rp.finish(callback)                                    # code exchange, ID token validated by the RP
    claims = result.claims
    assert claims is not None and claims["iss"] == base and claims["aud"] in (cid, [cid])
    assert claims["nonce"] and claims["auth_time"] <= claims["iat"] and "sid" in claims
    assert claims["email"] == "alice@example.com" and claims["employee_id"] == "E-ALICE"
    jwks = requests.get(base + "/oauth2/jwks", timeout=5).json()
    header, at = jwt_check.verify(result.tokens["access_token"], jwks)
    assert header["typ"] == "at+jwt" and at["client_id"] == cid and at["sub"] == claims["sub"]

    info = rp.userinfo()
    assert info["sub"] == claims["sub"] and info["email"] == "alice@example.com" and info["employee_id"] == "E-ALICE"
    assert info.get("given_name") == "Alice"

    # refresh rotation: a new refresh token each time; the new access token works at userinfo
    first_refresh = result.tokens["refresh_token"]
    refreshed = rp.refresh()
    assert refreshed.tokens["refresh_token"] != first_refresh
    assert rp.userinfo()["sub"] == claims["sub"]

    # the rotated-away refresh token presented again: refused, and the whole family is revoked
    form = {"grant_type": "refresh_token", "refresh_token": first_refresh, "client_id": cid}
    auth = None
    if token_auth == "client_secret_basic":
        auth, form = (cid, secret), {k: v for k, v in form.items() if k != "client_id"}
    elif token_auth == "client_secret_post":
        form["client_secret"] = secret or ""
    reuse = requests.post(base + "/oauth2/token", data=form, auth=auth, timeout=5)
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    with pytest.raises(RPError) as refused:
        rp.refresh()                          # the successor died with its family
    assert refused.value.error == "invalid_grant"
    with app.app_context():
        live = db.session.query(OidcRefreshToken).filter(OidcRefreshToken.revoked_at.is_(None)).count()
        db.session.remove()
    assert live == 0
    reasons = [e.reason for e in _events(app, protocol="oidc")]
    assert "refresh_token_reused" in reasons and reasons.count("ok") >= 3


def test_rp_initiated_and_back_channel_logout_with_independent_rps(live_oidc: tuple[Flask, str],  # noqa: F811
                                                                  make_oidc_rp: Any) -> None:  # noqa: F811
    app, base = live_oidc
    with receiver() as rec:
        # the receiver is on loopback, which the SSRF guard refuses unless told otherwise (the IdP reads its
        # settings per request, so switching it on the live app's settings object takes effect at once)
        settings = app.extensions["idp.settings"]
        app.extensions["idp.settings"] = dataclasses.replace(settings, oidc_backchannel_allow_private=True)
        cid, secret = _setup(app, backchannel=rec.url)
        rp = make_oidc_rp(base, cid, client_secret=secret, redirect_uri=CB)
        browser = LiveBrowser(app.test_client(), base)
        result = rp.finish(browser.run(rp.start(scope="openid profile")))
        assert result.claims is not None
        sid, sub = result.claims["sid"], result.claims["sub"]

        after = browser.run(rp.logout_url(post_logout_redirect_uri=BYE, state="bye-1"))
        assert after == BYE + "?state=bye-1"
    assert len(rec.posts) == 1
    with app.test_client() as c:
        header, logout = jwt_check.verify(rec.posts[0]["form"]["logout_token"], c.get("/oauth2/jwks").get_json())
    assert header["typ"] == "logout+jwt"
    assert (logout["iss"], logout["sub"], logout["sid"]) == (base, sub, sid)
    assert logout["aud"] in (cid, [cid]) and "nonce" not in logout
    assert "http://schemas.openid.net/event/backchannel-logout" in logout["events"]
    # the session is over: the next authorization shows the sign-in page again
    next_auth = urlsplit(rp.start(scope="openid"))
    page = browser.client.get(next_auth.path + "?" + next_auth.query, follow_redirects=True)
    assert 'name="password"' in page.get_data(as_text=True)
    with pytest.raises(RPError):
        rp.refresh()                              # the session-bound refresh token ended with the session
