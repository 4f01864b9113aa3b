"""Console: the Notifications page — add a webhook endpoint (the secret shown once, on the POST's response), its
refusals next to the fields, the test button (a signed delivery the receiver verifies), disable / enable, the
delivery log, remove with confirmation; the admin gate and CSRF."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from idp.config import Settings
from idp.extensions import db
from idp.models import AdminAudit, User, WebhookEndpoint

from ..conftest import make_settings
from ..webhook_receiver import Receiver
from .conftest import PASSWORD
from .test_admin_console import ADMIN_PASSWORD, admin, login, post  # noqa: F401 - admin is a fixture

PAGE = "/admin/notifications"


@pytest.fixture
def settings(tmp_path: Path, key_template: Path) -> Settings:
    return make_settings(tmp_path, key_template, webhook_allow_private=True, webhook_timeout_s=1.0)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def test_add_test_disable_enable_and_remove(client: FlaskClient, admin: User, receiver: Receiver) -> None:  # noqa: F811
    login(client, "admin", ADMIN_PASSWORD)
    assert ">Notifications</a>" in client.get("/admin/users").get_data(as_text=True)
    page = client.get(PAGE).get_data(as_text=True)
    assert 'id="webhooks-empty"' in page
    # the email channel: linked from the same page, saying it is not set up yet
    assert 'id="email-settings-link"' in page and "not set up" in page
    resp = post(client, "/admin/notifications/webhooks/new",
                {"url": receiver.url, "events": ["sso.success", "user.created"], "outcomes": ["success"],
                 "reasons": "", "description": "SIEM"}, PAGE)
    assert resp.status_code == 201 and resp.headers["Cache-Control"] == "no-store"
    secret = re.search(r'<pre id="webhook-secret">([^<]+)</pre>', resp.get_data(as_text=True)).group(1)  # type: ignore[union-attr]
    assert secret.startswith("whsec_")
    receiver.secrets.append(secret)
    row = db.session.scalars(select(WebhookEndpoint)).one()
    assert row.event_types == ["sso.success", "user.created"] and row.outcomes == ["success"]
    listing = client.get(PAGE).get_data(as_text=True)
    assert f'data-webhook="{row.id}"' in listing and secret not in listing and receiver.url in listing
    detail = f"/admin/notifications/webhooks/{row.id}"
    # the test button: a signed delivery now, its answer flashed and logged
    done = post(client, f"{detail}/test", {}, detail)
    assert done.status_code == 303
    page = client.get(detail).get_data(as_text=True)
    assert "Test delivered: HTTP 200" in page and "webhook.test" in page
    assert [r.verified for r in receiver.received] == [True]
    post(client, f"{detail}/disable", {}, detail)
    assert db.session.get(WebhookEndpoint, row.id, populate_existing=True).enabled is False  # type: ignore[union-attr]
    assert 'id="webhook-enable"' in client.get(detail).get_data(as_text=True)
    post(client, f"{detail}/enable", {}, detail)
    assert db.session.get(WebhookEndpoint, row.id, populate_existing=True).enabled is True  # type: ignore[union-attr]
    assert "confirm-remove" in client.get(f"{detail}/remove").get_data(as_text=True)
    assert post(client, f"{detail}/remove", {}, f"{detail}/remove").status_code == 303
    assert db.session.scalars(select(WebhookEndpoint)).all() == []
    actions = [a.action for a in db.session.scalars(select(AdminAudit).where(AdminAudit.action.like("webhook.%"))
                                                   .order_by(AdminAudit.id))]
    assert actions == ["webhook.add", "webhook.test", "webhook.disable", "webhook.enable", "webhook.remove"]
    assert all(a.actor == "web:admin" for a in db.session.scalars(select(AdminAudit).where(
        AdminAudit.action.like("webhook.%"))))
    assert client.get("/admin/notifications/webhooks/999").status_code == 404


def test_refusals_are_shown_next_to_the_field_and_nothing_is_stored(client: FlaskClient, admin: User,  # noqa: F811
                                                                    receiver: Receiver) -> None:
    login(client, "admin", ADMIN_PASSWORD)
    for body, field, text in [
            ({"url": receiver.url, "events": []}, "events", "at least one event type"),
            ({"url": "ftp://x.example", "events": ["sso.success"]}, "url", "https://"),
            ({"url": receiver.url, "events": ["sso.success"], "app": "nope"}, "app", "no app with slug"),
            ({"url": receiver.url, "events": ["sso.nope"]}, "events", "unknown event type"),
            ({"url": receiver.url, "events": ["sso.success"], "reasons": "bogus"}, "reasons", "unknown reason")]:
        resp = post(client, "/admin/notifications/webhooks/new", body, PAGE)
        html = resp.get_data(as_text=True)
        assert resp.status_code == 422 and text in html, (body, html[-2000:])
        assert f'id="{field}-error"' in html, body
        assert 'id="webhook-secret"' not in html
    assert db.session.scalars(select(WebhookEndpoint)).first() is None


def test_admin_gate_and_csrf(client: FlaskClient, admin: User, alice: User, receiver: Receiver) -> None:  # noqa: F811
    assert client.get(PAGE).status_code == 302                # anonymous: to the login page
    login(client, "alice", PASSWORD)
    assert client.get(PAGE).status_code == 403
    other = client.application.test_client()
    login(other, "admin", ADMIN_PASSWORD)
    assert other.post("/admin/notifications/webhooks/new",
                      data={"url": receiver.url, "events": ["sso.success"]}).status_code == 400
    assert db.session.scalars(select(WebhookEndpoint)).first() is None
