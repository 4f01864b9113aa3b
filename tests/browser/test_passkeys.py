"""Passkeys in a real browser: chromium with a CDP virtual authenticator (internal transport, resident keys, user
verification) registers a passkey on /account, signs out, signs in without a password, then completes SP-initiated
SSO to an app that requires MFA, with an independent SP (pysaml2) validating the assertion."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from idp.extensions import db
from idp.models import Passkey
from idp.services import apps as apps_svc
from idp.services import org

from ..functional.test_policy_flows import MFA_CLASS, set_policy
from ..sp_harness import Pysaml2SP
from .conftest import USER_PASSWORD, login, shot


def virtual_authenticator(page: Any) -> tuple[Any, str]:
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    result = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": True, "automaticPresenceSimulation": True}})
    return cdp, result["authenticatorId"]


def test_register_sign_out_passwordless_then_sso_to_mfa_app(live_idp_localhost: Any, page: Any,
                                                             tmp_path: Path) -> None:
    idp = live_idp_localhost
    base = idp.url
    assert base.startswith("http://localhost:")
    cdp, authenticator_id = virtual_authenticator(page)

    # 1. alice signs in with her password (she has no factor yet; self-enrolment is allowed from the org's
    #    trusted ranges, loopback here) and adds a passkey on /account
    with idp.app.app_context():
        org.add_trusted_range("127.0.0.0/8")
        db.session.commit()
        db.session.remove()
    login(page, base, "alice", USER_PASSWORD, "/account")
    page.fill("#passkey-name", "virtual laptop")
    page.click("#add-passkey")
    page.wait_for_selector("#first-factor-done")
    assert page.locator("#recovery-codes li").count() == 10   # shown once, with the new first factor
    shot(page, "passkeys-first-factor")
    creds = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator_id})["credentials"]
    assert len(creds) == 1 and creds[0]["isResidentCredential"] and creds[0]["rpId"] == "localhost"
    with idp.app.app_context():
        assert db.session.query(Passkey).one().name == "virtual laptop"
        db.session.remove()

    # 2. a first factor never counts in the session that enrolled it: that session has ended (signed out)
    page.goto(base + "/account")
    page.wait_for_selector("#username")

    # 3. an SP-initiated request to an app that requires MFA: passwordless sign-in continues it
    with idp.app.app_context():
        idp_md = idp.app.test_client().get("/saml/metadata").get_data(as_text=True)
        sp = Pysaml2SP(tmp_path / "sp", idp_md, base_url="https://sp.example.com")
        row = apps_svc.register_app(sp.metadata_xml().encode(), slug="mfa-app")
        sp.slug = row.slug  # type: ignore[attr-defined]
        set_policy(sp, require_mfa=True)
        db.session.commit()
        db.session.remove()
    posted: dict[str, str] = {}

    def acs(route: Any) -> None:
        fields = parse_qs(route.request.post_data or "")
        posted.update({k: v[0] for k, v in fields.items()})
        route.fulfill(content_type="text/html", body="<html><body><p id='sp-done'>signed in</p></body></html>")

    page.context.route(sp.acs_url, acs)
    req = sp.authn_request("redirect")
    page.goto(req.url)
    page.wait_for_selector("#passkey-login")
    assert "/login" in page.url
    shot(page, "passkeys-login")
    page.click("#passkey-login")
    page.wait_for_selector("#sp-done")
    assert "SAMLResponse" in posted, "the IdP posted an assertion to the SP"
    result = sp.process_response(posted["SAMLResponse"], req.request_id)
    assert result.authn_context == MFA_CLASS
    assert base64.b64decode(posted["SAMLResponse"])  # a real, validated response

    with idp.app.app_context():
        (key,) = db.session.query(Passkey).all()
        assert key.name == "virtual laptop" and key.last_used_at is not None
        db.session.remove()
