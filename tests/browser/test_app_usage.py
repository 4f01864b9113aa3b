"""App usage in a real browser with JavaScript switched off: the Usage overview from the admin navigation, the app
page's inline SVG chart (one bar per day, drawn and coloured by the site's stylesheet, a tooltip title per bar),
the period links, and no Content-Security-Policy violation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from idp.errors import EventContext
from idp.events import record_event
from idp.extensions import db
from idp.models import SsoEvent, utcnow
from idp.reasons import Reason
from idp.services import apps as apps_svc

from ..conftest import SP_METADATA_DIR
from .conftest import ADMIN_PASSWORD, login, shot

pytestmark = pytest.mark.browser


def _seed(live_idp: Any) -> datetime:
    today = datetime.combine(utcnow().date(), datetime.min.time(), UTC)
    with live_idp.app.app_context():
        apps_svc.register_app((SP_METADATA_DIR / "python3-saml-no-keydescriptor.xml").read_bytes(), slug="wiki",
                              name="Team wiki")
        apps_svc.register_oidc_app(name="CRM", slug="crm", settings=apps_svc.initial_settings(
            public=False, redirect_uris=("https://crm.example.com/cb",)))
        for days_ago, user, reason in ((0, "alice", Reason.OK), (0, "bob", Reason.OK), (3, "alice", Reason.OK),
                                       (1, "bob", Reason.USER_NOT_PERMITTED)):
            rec = record_event(EventContext(app_slug="wiki", username=user), reason, client_ip=None, user_agent=None)
            db.session.execute(update(SsoEvent).where(SsoEvent.id == rec.id)
                               .values(at=today - timedelta(days=days_ago)))
        db.session.commit()
        db.session.remove()
    return today


def test_usage_pages_without_javascript(live_idp: Any, pw_browser: Any) -> None:
    base = live_idp.url
    today = _seed(live_idp)
    context = pw_browser.new_context(viewport={"width": 1366, "height": 900}, java_script_enabled=False)
    page = context.new_page()
    page.set_default_timeout(10_000)
    messages: list[str] = []
    page.on("console", lambda m: messages.append(m.text))
    try:
        login(page, base, "admin", ADMIN_PASSWORD, "/admin/apps")
        page.click("nav.admin-nav >> text=Usage")
        assert page.url.endswith("/admin/usage")
        assert [r.get_attribute("data-slug") for r in page.locator("#usage-apps tbody tr").all()] == ["wiki", "crm"]
        assert page.locator("#usage-row-crm .dormant").inner_text() == "dormant"
        assert page.locator("#usage-row-crm .last-use").inner_text() == "never"
        shot(page, "admin-usage-overview")

        page.click("#usage-row-wiki a")
        assert "/admin/apps/wiki?days=30" in page.url
        chart = page.locator("#usage-chart")
        box = chart.bounding_box()
        assert box is not None and box["width"] > 500 and box["height"] > 80
        bars = page.locator("#usage-chart .usage-bar")
        assert bars.count() == 30
        assert page.locator("#usage-chart .usage-day").last.locator("title").text_content() == \
            f"{today.date().isoformat()}: 2 sign-ins"
        tallest = bars.last.bounding_box()
        assert tallest is not None and tallest["height"] > 50
        fill = bars.last.evaluate("el => getComputedStyle(el).fill")
        assert fill == "rgb(36, 86, 197)"            # --accent from the stylesheet
        assert page.locator("#usage-denials tr[data-reason=user_not_permitted] a").get_attribute("href") \
            .startswith("/admin/events?app=wiki&outcome=denied&reason=user_not_permitted&since=")
        shot(page, "admin-app-usage")

        page.click("#usage-days-7")
        assert page.locator("#usage-chart .usage-bar").count() == 7
        assert page.locator("#usage-days-7").get_attribute("aria-current") == "true"
    finally:
        context.close()
    assert not [m for m in messages if "Content Security Policy" in m], messages
