"""The app page's Automatic metadata refresh section in a real browser: set a metadata URL in approve mode, refresh
now, see the held change with its diff, approve it; the ACS table then shows the new endpoint."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from idp.services import apps as apps_svc

from ..functional.test_metadata_refresh import MetadataServer, plain, sp_doc
from .conftest import ADMIN_PASSWORD, ARTIFACTS, login, shot
from .test_admin_apps import _db

pytestmark = pytest.mark.browser


def test_metadata_refresh_held_and_approved(live_idp: Any, page: Any) -> None:
    app = live_idp.app
    # the metadata server runs on loopback: allowed as IDP_METADATA_FETCH_ALLOW_PRIVATE=true would
    app.extensions["idp.settings"] = dataclasses.replace(app.extensions["idp.settings"],
                                                         metadata_fetch_allow_private=True)
    _db(live_idp, lambda: apps_svc.register_app(plain(sp_doc("https://sp.example.org/acs")), slug="wiki"))
    server = MetadataServer()
    try:
        server.docs["/md.xml"] = plain(sp_doc("https://sp.example.org/acs", "https://sp.example.org/acs-new"))
        login(page, live_idp.url, "admin", ADMIN_PASSWORD, next_path="/admin/apps/wiki")
        page.fill("#md_url", server.url("/md.xml"))
        page.select_option("#md_refresh", "approve")
        page.fill("#md_max_interval", "6h")
        page.click("#save-metadata-source")
        page.wait_for_url(re.compile(r"/admin/apps/wiki"))
        assert "saved" in page.locator(".flash.success").inner_text()
        assert "approve · at most every 6h" in page.locator("#metadata-refresh-status").inner_text()
        page.click("#refresh-now")
        held = page.locator("#held-change")
        assert "https://sp.example.org/acs-new" in held.inner_text()
        assert "https://sp.example.org/acs-new" not in page.locator("#acs-table").inner_text()
        shot(page, "admin-app-metadata-refresh-held")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.locator("#metadata-refresh").screenshot(path=str(ARTIFACTS / "admin-app-metadata-refresh-section.png"))
        page.click("#approve-held")
        assert "applied" in page.locator(".flash").first.inner_text()
        assert "https://sp.example.org/acs-new" in page.locator("#acs-table").inner_text()
        assert page.locator("#held-change").count() == 0
    finally:
        server.close()
