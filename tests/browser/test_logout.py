"""Logout CSRF in a real browser: chromium marks a navigation from another site with Sec-Fetch-Site."""

from __future__ import annotations

from typing import Any

from .conftest import USER_PASSWORD, login, shot

FOREIGN = "http://localhost:9/forum"  # another site than the IdP's 127.0.0.1 (served by Playwright, no server)


def test_logout_link_on_another_site_asks_first(live_idp: Any, page: Any) -> None:
    base = live_idp.url
    login(page, base, "alice", USER_PASSWORD)
    page.context.route(FOREIGN, lambda route: route.fulfill(
        content_type="text/html", body=f'<html><body><a id="evil" href="{base}/logout">cute cats</a></body></html>'))
    page.goto(FOREIGN)
    page.click("#evil")
    page.wait_for_selector("#logout-confirm")
    shot(page, "logout-confirm")
    page.click("#stay-signed-in")
    page.wait_for_load_state("networkidle")
    assert page.url.rstrip("/") == base, "still signed in: the launcher opens"
    # the user really wants out: confirm on the page the foreign link led to
    page.goto(FOREIGN)
    page.click("#evil")
    page.click("#confirm-logout")
    page.wait_for_selector("#signed-out")
    page.goto(f"{base}/")
    assert "/login" in page.url


def test_own_sign_out_link_is_immediate(live_idp: Any, page: Any) -> None:
    base = live_idp.url
    login(page, base, "alice", USER_PASSWORD)
    page.goto(f"{base}/")
    page.click("#logout-link")
    page.wait_for_selector("#signed-out")
