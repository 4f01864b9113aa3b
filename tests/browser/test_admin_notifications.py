"""The Notifications page in a real browser: add a webhook endpoint (the secret shown once), send a test that a
receiver on loopback verifies, read the delivery log, see an endpoint disabled for failing with its reason,
enable it again, remove one with confirmation."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from idp.extensions import db
from idp.models import WebhookEndpoint, utcnow

from ..webhook_receiver import Receiver
from .conftest import ADMIN_PASSWORD, login, shot

pytestmark = pytest.mark.browser


def test_webhook_endpoints_on_the_notifications_page(live_idp: Any, page: Any) -> None:
    app = live_idp.app
    app.extensions["idp.settings"] = dataclasses.replace(app.extensions["idp.settings"], webhook_allow_private=True)
    receiver = Receiver().start()
    try:
        login(page, live_idp.url, "admin", ADMIN_PASSWORD, next_path="/admin/notifications")
        assert page.locator("#webhooks-empty").is_visible()
        page.fill("#webhook-url", receiver.url)
        page.check("#event-sso-success")
        page.check("#event-user-created")
        page.check("#outcome-success")
        page.fill("#webhook-description", "SIEM bridge")
        page.click("#add-webhook")
        secret = page.locator("#webhook-secret").inner_text().strip()
        assert secret.startswith("whsec_")
        receiver.secrets.append(secret)
        shot(page, "admin-notifications")
        row = page.locator("#webhooks-table tbody tr").first
        assert "sso.success" in row.inner_text() and "enabled" in row.inner_text()

        page.click("#webhooks-table a")
        page.wait_for_url(re.compile(r"/admin/notifications/webhooks/\d+$"))
        page.click("#webhook-test")
        assert "Test delivered: HTTP 200" in page.locator(".flash.success").inner_text()
        assert "webhook.test" in page.locator("#webhook-deliveries").inner_text()
        assert [r.verified for r in receiver.received] == [True]
        shot(page, "admin-webhook-detail")

        # an endpoint the worker disabled for failing: the reason on the list and the detail page, then enabled
        with app.app_context():
            ep = db.session.query(WebhookEndpoint).one()
            ep.enabled, ep.disabled_at = False, utcnow()
            ep.disabled_reason, ep.failure_streak = "20 failed deliveries in a row since 2026-01-01 10:00 UTC", 20
            db.session.commit()
            db.session.remove()
        page.goto(f"{live_idp.url}/admin/notifications")
        assert "20 failed deliveries in a row" in page.locator("[data-disabled-reason]").inner_text()
        page.click("#webhooks-table a")
        assert "disabled" in page.locator("#webhook-status").inner_text()
        page.click("#webhook-enable")
        assert "enabled" in page.locator(".flash.success").inner_text()
        assert page.locator("#webhook-streak").inner_text().startswith("0")

        page.click("#webhook-remove")
        page.click("#confirm-remove")
        page.wait_for_url(re.compile(r"/admin/notifications$"))
        assert page.locator("#webhooks-empty").is_visible()
    finally:
        receiver.stop()
