"""The admin console and the account page in a real browser (chromium via Playwright)."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Any

import pyotp
import pytest

from idp.errors import EventContext
from idp.events import record_event
from idp.extensions import db
from idp.models import User
from idp.reasons import Reason
from idp.services import apps as apps_svc
from idp.services import org as org_svc

from ..conftest import SP_METADATA_DIR
from .conftest import ADMIN_PASSWORD, USER_PASSWORD, login, shot

pytestmark = pytest.mark.browser


def _seed(live_idp: Any) -> None:
    """One connected app and a few events, written straight through the services."""
    with live_idp.app.app_context():
        xml = (SP_METADATA_DIR / "python3-saml-no-keydescriptor.xml").read_bytes()
        apps_svc.register_app(xml, slug="wiki", name="Team wiki")
        policy = {"policy": {"check": "permitted_users", "effect": "deny", "reason": "user_not_permitted",
                             "explanation": "bob is in none of the allowed groups (engineering)",
                             "inputs": {"groups": [], "allowed": ["engineering"]}}}
        for reason, user, detail in ((Reason.OK, "alice", {}), (Reason.USER_NOT_PERMITTED, "bob", policy),
                                     (Reason.OK, "alice", {}), (Reason.BAD_SIGNATURE, None, {"message": "no sig"})):
            record_event(EventContext(app_slug="wiki", username=user, initiated_by="sp", binding="redirect",
                                      detail=dict(detail)), reason, client_ip="192.0.2.10", user_agent="Firefox")
        db.session.commit()  # record_event writes in the caller's unit of work
        db.session.remove()


def test_admin_console(live_idp: Any, page: Any) -> None:
    base = live_idp.url
    _seed(live_idp)
    login(page, base, "admin", ADMIN_PASSWORD, "/admin/users")
    assert page.url.endswith("/admin/users")

    # users: create carol in engineering
    page.click("#new-user")
    page.fill("#username", "carol")
    page.fill("#email", "carol@example.com")
    page.fill("#first_name", "Carol")
    page.fill("#last_name", "<b>Danvers</b>")
    page.fill("#password", "carol password 1")
    page.fill("#password_confirm", "carol password 2")
    page.check("input[name=groups][value=engineering]")
    page.click("#create-user")
    assert page.locator("#password_confirm-error").inner_text() == "The two passwords do not match."
    assert page.get_attribute("#password_confirm", "aria-describedby") == "password_confirm-error"
    shot(page, "admin-user-new-errors")
    page.fill("#password", "carol password 1")
    page.fill("#password_confirm", "carol password 1")
    page.click("#create-user")
    assert page.url.endswith("/admin/users/carol")
    assert "User carol created." in page.inner_text(".flash")
    shot(page, "admin-user-edit")

    # disable bob
    page.goto(f"{base}/admin/users/bob")
    page.click("#disable-user")
    assert "bob is now disabled" in page.inner_text(".flash")
    page.goto(f"{base}/admin/users")
    assert page.locator("tr[data-username=bob] .badge.bad").inner_text() == "disabled"
    assert "<b>Danvers</b>" in page.locator("tr[data-username=carol]").inner_text()   # shown as text
    shot(page, "admin-users")

    # groups: create sales, add carol
    page.click("nav.admin-nav >> text=Groups")
    page.fill("#group-name", "sales")
    page.click("#create-group")
    assert page.url.endswith("/admin/groups/sales")
    page.fill("#member-username", "carol")
    page.click("#add-member")
    assert page.locator("#members-table tr[data-username=carol]").count() == 1
    page.goto(f"{base}/admin/groups")
    assert page.locator("tr[data-group=sales] td.right").inner_text() == "1"
    assert page.locator("tr[data-group=engineering] td.right").inner_text() == "2"
    shot(page, "admin-groups")

    # org: a bad CIDR, then a good one
    page.click("nav.admin-nav >> text=Org settings")
    page.fill("#cidr", "10.0.0.1/8")
    page.click("#add-range")
    assert "not a valid" in page.inner_text("#cidr-error")
    shot(page, "admin-org-error")
    page.fill("#cidr", "10.0.0.0/8")
    page.click("#add-range")
    assert page.locator("#ranges-table tr[data-cidr='10.0.0.0/8']").count() == 1
    shot(page, "admin-org")

    # access check: alice from outside the trusted range (relax policy → allowed), bad IP → error
    page.click("nav.admin-nav >> text=Access check")
    page.fill("#username", "alice")
    page.select_option("#app", "wiki")
    page.fill("#ip", "not-an-ip")
    page.click("#run-check")
    assert "not an IPv4 or IPv6 address" in page.inner_text("#ip-error")
    page.fill("#ip", "203.0.113.5")
    page.click("#run-check")
    assert page.inner_text("#decision") == "Allowed"
    shot(page, "admin-access")

    # event log: overview, filter, details, exports
    page.click("nav.admin-nav >> text=Event log")
    assert page.locator("#per-app li").count() == 1 and "user_not_permitted" in page.inner_text("#by-reason")
    assert page.locator("details.event").count() == 4
    page.select_option("#outcome", "denied")
    page.click("#apply-filter")
    assert page.locator("details.event").count() == 1
    page.click("details.event summary")
    assert "bob is in none of the allowed groups" in page.inner_text("details.event .event-detail")
    shot(page, "admin-events")
    with page.expect_download() as dl:
        page.click("#export-csv")
    rows = list(csv.DictReader(io.StringIO(Path(dl.value.path()).read_text(encoding="utf-8"))))
    assert dl.value.suggested_filename.endswith(".csv") and [r["username"] for r in rows] == ["bob"]
    with page.expect_download() as dl:
        page.click("#export-json")
    data = json.loads(Path(dl.value.path()).read_text(encoding="utf-8"))
    assert [d["reason"] for d in data] == ["user_not_permitted"]

    # certificates: rotate → activate, each confirmed
    page.click("nav.admin-nav >> text=Certificates")
    first = page.get_attribute("#keys-table tr[data-state=active]", "data-kid")
    page.click("#rotate")
    assert "Stage a new signing key?" in page.inner_text("h1")
    page.select_option("#key_type", "ec-p256")
    page.click("#confirm")
    assert "Staged the next signing key" in page.inner_text(".flash")
    staged = page.get_attribute("#keys-table tr[data-state=next]", "data-kid")
    page.click("#activate")
    assert "starts signing every response at once" in page.inner_text(".confirm")
    page.click("#confirm")
    assert page.get_attribute("#keys-table tr[data-state=active]", "data-kid") == staged
    assert page.get_attribute("#keys-table tr[data-state=retiring]", "data-kid") == first
    shot(page, "admin-certs")

    page.click("nav.admin-nav >> text=Audit trail")
    assert page.locator("#audit-table td", has_text="web:admin").count() >= 6
    shot(page, "admin-audit")


def test_user_account(live_idp: Any, page: Any) -> None:
    base = live_idp.url
    _seed(live_idp)
    login(page, base, "alice", USER_PASSWORD)
    assert page.locator("#app-tiles a[data-slug=wiki]").count() == 1
    shot(page, "launcher")
    page.click("#account-link")
    assert page.url.endswith("/account")
    assert page.locator("#signins-table tbody tr").count() == 2
    assert page.locator("#enroll-mfa").count() == 0, "no self-enrolment outside the trusted ranges (the default)"
    with live_idp.app.app_context():
        org_svc.add_trusted_range("127.0.0.0/8")
        db.session.commit()
        db.session.remove()
    page.reload()
    page.click("#enroll-mfa")
    secret = page.inner_text("#totp-secret").strip()
    page.fill("#code", pyotp.TOTP(secret).now())
    page.click("#submit")
    assert page.locator("#recovery-codes li").count() == 10
    shot(page, "recovery-codes")
    page.click("#sign-in-again")
    page.fill("#username", "alice")
    page.fill("#password", USER_PASSWORD)
    page.click("#submit")
    page.wait_for_load_state("networkidle")
    assert page.url.endswith("/account")
    assert page.inner_text("#mfa-state") == "enrolled"
    assert page.locator('#signins-table tr[data-reason="mfa_enrolled"]').count() == 2
    # a password-only session: changing the password needs the second factor first (step-up, then back here)
    assert page.locator("#change-password").count() == 0
    page.click("#password-step-up")
    page.fill("#code", pyotp.TOTP(secret).at(time.time() + 30))   # the enrolment used the current step
    page.click("#submit")
    page.wait_for_load_state("networkidle")
    assert page.url.endswith("/account")
    page.fill("#current_password", USER_PASSWORD)
    page.fill("#new_password", "a brand new passphrase")
    page.fill("#new_password_confirm", "a brand new passphrase")
    page.click("#change-password")
    assert "Your password was changed" in page.inner_text(".flash")
    shot(page, "account")
    with live_idp.app.app_context():
        alice = db.session.query(User).filter_by(username="alice").one()
        assert live_idp.app.extensions["idp.passwords"].verify(alice.password_hash, "a brand new passphrase")
        db.session.remove()
