"""Attribute release in a real browser: write a formula attribute (first with a mistake, shown next to its row with
its position), save it, read what is released and why, and open the preview."""

from __future__ import annotations

from typing import Any

import pytest

from idp.extensions import db
from idp.models import ConnectedApp, SsoEvent
from idp.services import apps as apps_svc

from ..conftest import SP_METADATA_DIR
from .conftest import ADMIN_PASSWORD, login, shot

pytestmark = pytest.mark.browser

SANS = SP_METADATA_DIR / "sans-simplesamlphp-sp.xml"


def _db(live_idp: Any, fn: Any) -> Any:
    with live_idp.app.app_context():
        try:
            result = fn()
            db.session.commit()  # services leave the commit to the outer layer: here, the test
            return result
        finally:
            db.session.remove()


def _settings(live_idp: Any) -> dict[str, Any]:
    return _db(live_idp, lambda: dict(db.session.query(ConnectedApp).filter_by(slug="sans").one().settings))


def test_edit_a_formula_attribute_and_preview(live_idp: Any, page: Any) -> None:
    _db(live_idp, lambda: apps_svc.register_app(SANS.read_bytes(), slug="sans", name="SANS"))
    login(page, live_idp.url, "admin", ADMIN_PASSWORD, next_path="/admin/apps/sans")
    assert page.url.endswith("/admin/apps/sans")

    # what is released and why: the metadata's requested attributes
    released = page.locator("#released-table")
    assert "requested in the SP's metadata" in released.locator("tr[data-attribute=mail]").inner_text()

    # a formula attribute in the blank row, with a mistake first
    new = page.locator("#saml-form tr.attr-row.new").first
    new.locator("input[name=attr_name]").fill("upn")
    new.locator("select[name=attr_field]").select_option("formula")
    new.locator("textarea[name=attr_formula]").fill('user.username + "@" + user.domain')
    new.locator("input[name=attr_friendly]").fill("userPrincipalName")
    page.check("#on_missing-deny")
    before = _settings(live_idp)
    page.click("#save-saml")
    error = page.locator("#saml-form .attr-error .field-error")
    assert "line 1, column" in error.inner_text() and "domain" in error.inner_text()
    shot(page, "admin-app-attribute-formula-error")
    assert _settings(live_idp) == before   # nothing stored

    # the row kept what was typed: correct it and save
    row = page.locator("#saml-form tr.attr-row.invalid")
    assert row.locator("input[name=attr_friendly]").input_value() == "userPrincipalName"
    row.locator("textarea[name=attr_formula]").fill('user.username + "@corp.example"')
    page.click("#save-saml")
    assert "SAML settings saved" in page.locator(".flash").inner_text()
    settings = _settings(live_idp)
    assert settings["attributes"]["upn"] == 'formula:user.username + "@corp.example"'
    assert settings["friendly_names"]["upn"] == "userPrincipalName" and settings["on_missing"] == "deny"
    upn = page.locator("#released-table tr[data-attribute=upn]").inner_text()
    assert "set by an admin" in upn and "formula:" in upn
    shot(page, "admin-app-attribute-release")

    # the preview for alice: the formula's value, the assertion, and no event written
    events = _db(live_idp, lambda: db.session.query(SsoEvent).count())
    page.fill("#preview-user", "alice")
    page.click("#preview-run")
    assert "/admin/apps/sans/preview?user=alice" in page.url
    value = page.locator("#preview-attributes-table tr[data-attribute=upn] .value")
    assert value.inner_text() == "alice@corp.example"
    assert "alice@corp.example" in page.locator("#preview-xml").inner_text()
    assert page.locator("#preview-xml").inner_text().startswith("<saml:Assertion")
    assert "Nothing was issued" in page.locator("#preview-nothing-issued").inner_text()
    shot(page, "admin-app-preview")
    assert _db(live_idp, lambda: db.session.query(SsoEvent).count()) == events

    # an unknown user: a clear message on the same page
    page.fill("#preview-user", "nobody")
    page.click("#preview-run")
    assert "No user 'nobody'" in page.locator("#preview-user-error").inner_text()
