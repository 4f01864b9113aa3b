"""OpenID Connect sign-in in a real browser: an independent RP (openid-client for Node, pyoidc) sends chromium to
/oauth2/authorize; the user signs in, sees the consent page, allows, and chromium lands on the RP's callback with
the code, which the RP exchanges and validates. The second sign-in is silent (consent remembered); a "Deny"
returns access_denied to the RP. The RP's own site is served by Playwright (no server): only the callback URL
chromium reaches matters."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import Error as PlaywrightError

from idp.extensions import db
from idp.services import apps as apps_svc

from ..oidc_rp import RPError
from ..oidc_rp.fixtures import make_oidc_rp, oidc_rp_kind  # noqa: F401 - fixtures: one run per RP
from .conftest import USER_PASSWORD, shot

CB = "https://rp.example.com/cb"


def _register(live_idp: Any) -> tuple[str, str | None]:
    with live_idp.app.app_context():
        row, secret = apps_svc.register_oidc_app(name="Orders", slug="orders", settings=apps_svc.initial_settings(
            redirect_uris=(CB,), scopes=("openid", "profile", "email")))
        assert row.oidc is not None
        cid = row.oidc.client_id
        db.session.commit()
        db.session.remove()
    return cid, secret


def _catch_callback(page: Any) -> list[str]:
    landed: list[str] = []

    def fulfil(route: Any) -> None:
        landed.append(route.request.url)
        route.fulfill(content_type="text/html", body="<html><body><h1 id='rp'>Orders</h1></body></html>")

    page.context.route("https://rp.example.com/**", fulfil)
    return landed


def test_sign_in_consent_and_silent_second_sign_in(live_idp: Any, page: Any, make_oidc_rp: Any) -> None:  # noqa: F811
    cid, secret = _register(live_idp)
    landed = _catch_callback(page)
    rp = make_oidc_rp(live_idp.url, cid, client_secret=secret, redirect_uri=CB)

    page.goto(rp.start(scope="openid profile email"))
    page.fill("#username", "alice")
    page.fill("#password", USER_PASSWORD)
    page.click("#submit")
    page.wait_for_selector("#consent-form")
    scopes = page.locator("#consent-scopes li").evaluate_all("els => els.map(e => e.dataset.scope)")
    assert scopes == ["openid", "profile", "email"]
    assert page.locator("#consent-app").inner_text() == "Orders"
    shot(page, "oidc-consent")
    page.click("#consent-allow")
    page.wait_for_selector("#rp")
    assert len(landed) == 1 and landed[0].startswith(CB + "?")
    result = rp.finish(landed[0])
    assert result.claims is not None and result.claims["email"] == "alice@example.com"
    assert rp.userinfo()["given_name"] == "Alice"

    # consent is remembered: the next sign-in goes straight back to the RP
    # (a redirect answering a navigation is not routed by Playwright: the request to the RP is caught instead)
    again = make_oidc_rp(live_idp.url, cid, client_secret=secret, redirect_uri=CB)
    with page.expect_request(lambda r: r.url.startswith(CB)) as to_rp:
        try:
            page.goto(again.start(scope="openid email"))
        except PlaywrightError:
            pass                                  # rp.example.com does not resolve: only the request matters
    # no consent page in between: the one request that left the IdP is the redirect to the RP
    assert again.finish(to_rp.value.url).claims is not None


def test_deny_returns_access_denied_to_the_rp(live_idp: Any, page: Any, make_oidc_rp: Any) -> None:  # noqa: F811
    cid, secret = _register(live_idp)
    landed = _catch_callback(page)
    rp = make_oidc_rp(live_idp.url, cid, client_secret=secret, redirect_uri=CB)
    page.goto(rp.start(scope="openid"))
    page.fill("#username", "bob")
    page.fill("#password", USER_PASSWORD)
    page.click("#submit")
    page.wait_for_selector("#consent-form")
    page.click("#consent-deny")
    page.wait_for_selector("#rp")
    query = parse_qs(urlsplit(landed[0]).query)
    assert query["error"] == ["access_denied"] and query["iss"] == [live_idp.url]
    try:
        rp.finish(landed[0])
    except RPError as exc:
        assert exc.error == "access_denied"
    else:
        raise AssertionError("the RP accepted a denied authorization")
