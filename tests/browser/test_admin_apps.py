"""App Manager in a real browser: register apps three ways, edit the policy, refresh metadata, delete; form errors."""

from __future__ import annotations

import re
from typing import Any

import pytest

from idp.extensions import db
from idp.models import AdminAudit, ConnectedApp
from idp.services import apps as apps_svc

from ..conftest import SP_METADATA_DIR
from .conftest import ADMIN_PASSWORD, login, shot

pytestmark = pytest.mark.browser

NEXTCLOUD = SP_METADATA_DIR / "nextcloud-user-saml-signed-sha256.xml"
NO_KEYS = SP_METADATA_DIR / "python3-saml-no-keydescriptor.xml"
NEXTCLOUD_ACS = "http://localhost:8080/apps/user_saml/saml/acs"


def _db(live_idp: Any, fn: Any) -> Any:
    with live_idp.app.app_context():
        try:
            result = fn()
            db.session.commit()  # services leave the commit to the outer layer: here, the test
            return result
        finally:
            db.session.remove()


def _apps(live_idp: Any) -> dict[str, dict[str, Any]]:
    return _db(live_idp, lambda: {a.slug: {"settings": dict(a.settings), "entity_id": a.entity_id,
                                           "enabled": a.enabled, "metadata": a.metadata_xml}
                                  for a in db.session.query(ConnectedApp)})


def _admin(page: Any, live_idp: Any) -> None:
    login(page, live_idp.url, "admin", ADMIN_PASSWORD, next_path="/admin/apps")
    assert page.url.endswith("/admin/apps")


def test_upload_edit_policy_refresh_and_delete(live_idp: Any, page: Any) -> None:
    _admin(page, live_idp)
    assert page.locator("#apps-empty").is_visible()
    shot(page, "admin-apps-empty")

    # register from an uploaded file of the shared corpus
    page.click("#new-app")
    page.set_input_files("#metadata_file", str(NEXTCLOUD))
    page.fill("#name", "Nextcloud")
    page.fill("#slug", "nextcloud")
    page.click("#register")
    page.wait_for_url(re.compile(r"/admin/apps/nextcloud$"))
    assert "registered" in page.locator(".flash.success").inner_text()
    # the corpus document's validUntil is past: accepted, with a warning
    assert "validUntil" in page.locator(".flash.warning").inner_text()
    assert page.locator("#app-entity-id").inner_text() == "http://localhost:8080/apps/user_saml/saml/metadata"
    assert NEXTCLOUD_ACS in page.locator("#acs-table").inner_text()
    assert page.locator("#idp-launch-url").inner_text() == f"{live_idp.url}/apps/nextcloud/sso"
    assert page.locator("#idp-app-metadata-url").inner_text() == \
        f"{live_idp.url}/saml/metadata?app=nextcloud&download=1"

    # access policy: admin-approved for engineering, an IP range, second factor required
    page.check("#permitted-admin-approved")
    page.locator("#allow_groups").get_by_label("engineering").check()
    page.select_option("#ip_policy", "enforce")
    page.fill("#ip_ranges", "10.0.0.0/8\n2001:db8::/32")
    page.check("#require_mfa")
    page.fill("#session_timeout", "60")
    page.click("#save-policy")
    assert "Access policy saved" in page.locator(".flash").inner_text()
    assert "engineering" in page.locator("#summary-who").inner_text()
    shot(page, "admin-app-detail")
    settings = _apps(live_idp)["nextcloud"]["settings"]
    assert settings["permitted"] == "admin-approved" and settings["allow_groups"] == ["engineering"]
    assert settings["ip_ranges"] == ["10.0.0.0/8", "2001:db8::/32"] and settings["ip_policy"] == "enforce"
    assert settings["require_mfa"] is True and settings["session_timeout"] == 60

    # SAML settings: add an attribute row, map it, save
    page.click("#add-attr-row")
    assert page.locator("#saml-notice").is_visible()
    rows = page.locator("#saml-form tr.attr-row.new input[name=attr_name]")
    rows.first.fill("urn:oid:1.2.840.113549.1.9.1")
    page.locator("#saml-form tr.attr-row.new select[name=attr_field]").first.select_option("email")
    page.select_option("#nameid_format", "email")
    page.select_option("#nameid_field", "email")
    page.click("#save-saml")
    assert "SAML settings saved" in page.locator(".flash").inner_text()
    settings = _apps(live_idp)["nextcloud"]["settings"]
    assert settings["attributes"]["urn:oid:1.2.840.113549.1.9.1"] == "email"
    assert settings["nameid_format"] == "email"

    # the list shows the policy
    page.goto(f"{live_idp.url}/admin/apps")
    row = page.locator("#app-row-nextcloud")
    assert "Admin-approved" in row.locator(".policy-who").inner_text()
    assert "engineering" in row.locator(".policy-who").inner_text()
    assert "enforce" in row.locator(".policy-ip").inner_text()
    assert "required" in row.locator(".policy-mfa").inner_text()
    assert row.locator(".status").inner_text().strip() == "enabled"
    shot(page, "admin-apps-list")

    # refresh: a new ACS URL, diff first, applied only on approval
    page.goto(f"{live_idp.url}/admin/apps/nextcloud/refresh")
    changed = NEXTCLOUD.read_text().replace(NEXTCLOUD_ACS, "https://cloud.example.com/saml/acs")
    page.fill("#metadata_xml", changed)
    page.click("#upload-refresh")
    diff = page.locator("#refresh-diff")
    assert "https://cloud.example.com/saml/acs" in diff.locator(".diff-added").inner_text()
    assert NEXTCLOUD_ACS in diff.locator(".diff-removed").inner_text()
    shot(page, "admin-app-refresh-diff")
    assert NEXTCLOUD_ACS in _apps(live_idp)["nextcloud"]["metadata"]  # not applied yet
    page.click("#apply-refresh")
    assert "Metadata updated" in page.locator(".flash.success").inner_text()
    assert "https://cloud.example.com/saml/acs" in page.locator("#acs-table").inner_text()

    # the same document again: no changes
    page.goto(f"{live_idp.url}/admin/apps/nextcloud/refresh")
    page.fill("#metadata_xml", changed)
    page.click("#upload-refresh")
    assert page.locator("#no-changes").is_visible()

    # disable, then delete with confirmation
    page.goto(f"{live_idp.url}/admin/apps/nextcloud")
    page.click("#disable-app")
    assert "disabled" in page.locator("#app-title").inner_text()
    page.click("#delete-link")
    assert page.locator("#delete-confirm").is_visible()
    shot(page, "admin-app-delete")
    assert "nextcloud" in _apps(live_idp)  # GET deleted nothing
    page.click("#confirm-delete")
    page.wait_for_url(re.compile(r"/admin/apps$"))
    assert "deleted" in page.locator(".flash").inner_text()
    assert _apps(live_idp) == {}
    actors = _db(live_idp, lambda: {r.actor for r in db.session.query(AdminAudit).filter(
        AdminAudit.target == "nextcloud")})
    assert actors == {"web:admin"}


def test_paste_and_by_hand(live_idp: Any, page: Any) -> None:
    _admin(page, live_idp)
    page.goto(f"{live_idp.url}/admin/apps/new")
    page.fill("#metadata_xml", NO_KEYS.read_text())
    page.click("#register")
    page.wait_for_url(re.compile(r"/admin/apps/[a-z0-9-]+$"))
    assert page.locator("#app-entity-id").inner_text() == "http://stuff.com/endpoints/metadata.php"
    assert page.locator("#signing-certs").inner_text().startswith("0")

    page.goto(f"{live_idp.url}/admin/apps/new")
    page.fill("#entity_id", "https://hand.example.com/sp")
    page.fill("#acs_url", "https://hand.example.com/saml/acs")
    page.fill("#slo_url", "https://hand.example.com/saml/slo")
    page.fill("#name", "Entered by hand")
    shot(page, "admin-app-new")
    page.click("#register")
    page.wait_for_url(re.compile(r"/admin/apps/entered-by-hand$"))
    assert "https://hand.example.com/saml/acs" in page.locator("#acs-table").inner_text()
    assert "HTTP-POST" in page.locator("#acs-table").inner_text()
    assert "https://hand.example.com/saml/slo" in page.locator("#sp-facts").inner_text()

    page.goto(f"{live_idp.url}/admin/apps?q=hand")
    assert page.locator("#apps-table tbody tr").count() == 1
    page.goto(f"{live_idp.url}/admin/apps?q=nothing-like-this")
    assert page.locator("#apps-empty").is_visible()


def test_errors_next_to_fields_and_nothing_saved(live_idp: Any, page: Any) -> None:
    _admin(page, live_idp)
    page.goto(f"{live_idp.url}/admin/apps/new")
    page.fill("#metadata_xml", "<md:EntityDescriptor xmlns:md='urn:oasis:names:tc:SAML:2.0:metadata'>")
    page.click("#register")
    err = page.locator("#metadata_xml-error")
    assert "well-formed" in err.inner_text()
    assert page.get_attribute("#metadata_xml", "aria-describedby") == "metadata_xml-error"
    shot(page, "admin-app-new-errors")

    page.fill("#metadata_xml", "")
    page.fill("#metadata_url", "http://127.0.0.1:9/x")
    page.click("#register")
    assert "non-public address" in page.locator("#metadata_url-error").inner_text()

    page.fill("#metadata_xml", NO_KEYS.read_text())
    page.click("#register")
    assert "only one source" in page.locator("#form-error").inner_text()

    page.fill("#metadata_url", "")
    page.fill("#metadata_xml", "")
    page.fill("#entity_id", "https://hand.example.com/sp")
    page.fill("#acs_url", "ftp://hand.example.com/acs")
    page.fill("#sp_certificate", "-----BEGIN CERTIFICATE-----\nnot a cert\n-----END CERTIFICATE-----")
    page.click("#register")
    assert "certificate" in page.locator("#sp_certificate-error").inner_text()
    assert _apps(live_idp) == {}

    # one good app, then refused policy edits
    _db(live_idp, lambda: apps_svc.register_app(NO_KEYS.read_bytes(), slug="stuff"))
    before = _apps(live_idp)
    page.goto(f"{live_idp.url}/admin/apps/stuff")
    page.check("#permitted-admin-approved")
    page.fill("#ip_ranges", "10.0.0.0/8\n10.1.2.300/24")
    page.fill("#assigned_users", "alice, nosuchuser")
    # a group that does not exist (deleted meanwhile, or a forged form)
    page.locator("#allow_groups-1").evaluate("el => { el.value = 'ghosts'; el.checked = true; }")
    page.click("#save-policy")
    assert "line 2" in page.locator("#ip_ranges-error").inner_text()
    assert "ghosts" in page.locator("#allow_groups-error").inner_text()
    assert "nosuchuser" in page.locator("#assigned_users-error").inner_text()
    assert page.get_attribute("#ip_ranges", "aria-invalid") == "true"
    assert page.input_value("#ip_ranges") == "10.0.0.0/8\n10.1.2.300/24"  # what was typed is kept
    shot(page, "admin-app-policy-errors")
    assert _apps(live_idp) == before


def test_connected_settings_and_issuer_in_the_saml_form(live_idp: Any, page: Any) -> None:
    _admin(page, live_idp)
    _db(live_idp, lambda: apps_svc.register_app(NO_KEYS.read_bytes(), slug="stuff"))
    page.goto(f"{live_idp.url}/admin/apps/stuff")
    page.check("#allowed_nameid_formats-transient")
    page.check("#idp_initiated-off")
    page.fill("#start_url", "https://stuff.example.com/home")
    page.fill("#relay_state_allow", "https://stuff.example.com/app/\ndashboard")
    page.fill("#issuer", "ftp://nope")
    page.click("#save-saml")
    assert "absolute URI" in page.locator("#issuer-error").inner_text()
    assert page.get_attribute("#issuer", "aria-invalid") == "true"
    assert _apps(live_idp)["stuff"]["settings"]["issuer"] is None   # nothing saved
    page.fill("#issuer", "urn:example:idp:stuff")
    page.click("#save-saml")
    assert "SAML settings saved" in page.locator(".flash").inner_text()
    settings = _apps(live_idp)["stuff"]["settings"]
    assert settings["issuer"] == "urn:example:idp:stuff" and settings["idp_initiated"] is False
    assert settings["start_url"] == "https://stuff.example.com/home"
    assert settings["relay_state_allow"] == ["https://stuff.example.com/app/", "dashboard"]
    assert settings["allowed_nameid_formats"] == ["urn:oasis:names:tc:SAML:2.0:nameid-format:transient"]
    assert page.locator("#idp-entity-id").inner_text() == "urn:example:idp:stuff"
    assert page.locator("#idp-metadata-url").inner_text() == f"{live_idp.url}/saml/metadata/stuff"
    shot(page, "admin-app-connected-settings")
