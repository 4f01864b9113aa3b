"""An app with OIDC/OAuth settings only is no SAML app: no SAML request, launch, metadata, certificate, parked request
or logout chain ever resolves to it, whatever identifier the caller puts where a SAML one goes (the client id, the
slug, an empty issuer, a redirect URI). The launcher, the dry run and folder sync treat it correctly too."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from idp.extensions import db
from idp.flows import sso as sso_flow
from idp.models import ConnectedApp, IdpSession, SessionParticipant
from idp.saml.constants import InitiatedBy
from idp.services import apps as apps_svc

from ..functional.conftest import last_event
from ..raw_requests import authn_request_xml
from .conftest import login
from .saml_tools import (
    SLO_URL,
    assert_no_assertion,
    assert_refused,
    case,
    logout_request,
    register_sp,
    send,
    sign_in,
)

CB = "https://crm.example.com/oidc/callback"


@pytest.fixture
def oidc_only(app: Flask) -> ConnectedApp:
    row, _ = apps_svc.register_oidc_app(name="CRM", slug="crm", settings=apps_svc.initial_settings(
        redirect_uris=(CB,), initiate_login_uri="https://crm.example.com/start?x=1"))
    db.session.commit()
    return row


def _identifiers(row: ConnectedApp) -> list[str]:
    assert row.oidc is not None
    return [row.oidc.client_id, row.slug, CB, "https://crm.example.com", ""]


@pytest.mark.parametrize("binding", ["redirect", "post"])
def test_authn_request_never_resolves_to_an_oidc_only_app(client: FlaskClient, alice: Any, oidc_only: ConnectedApp,
                                                           binding: str) -> None:
    for issuer in _identifiers(oidc_only):
        with case(issuer or "empty issuer"):
            resp = send(client, binding, "/saml/sso", authn_request_xml(issuer))
            assert_no_assertion(resp)
            assert resp.status_code in (400, 403)
            ev = last_event()
            assert ev.app_slug is None and ev.reason in ("unknown_sp", "malformed_request")


@pytest.mark.parametrize("binding", ["redirect", "post"])
def test_logout_request_never_resolves_to_an_oidc_only_app(client: FlaskClient, alice: Any,
                                                            oidc_only: ConnectedApp, binding: str) -> None:
    for issuer in _identifiers(oidc_only)[:4]:
        with case(issuer):
            resp = send(client, binding, SLO_URL.removeprefix("http://localhost"), logout_request(issuer, "alice"))
            ev = assert_refused(resp, 403, "unknown_sp", event_type="logout")
            assert ev.app_slug is None


def test_idp_initiated_launch_metadata_and_certificate_refuse_an_oidc_only_app(
        client: FlaskClient, alice: Any, oidc_only: ConnectedApp) -> None:
    login(client)
    resp = client.get("/apps/crm/sso")
    assert resp.status_code == 404
    assert_no_assertion(resp)
    ev = last_event()
    assert ev.reason == "unknown_app" and ev.app_slug is None
    for url in ("/saml/metadata?app=crm", "/saml/certificate?app=crm", "/saml/metadata?app=crm&download=1"):
        with case(url):
            resp = client.get(url)
            assert resp.status_code == 404 and "no SAML app" in resp.get_data(as_text=True)


def test_a_parked_saml_request_naming_an_oidc_only_app_is_refused(client: FlaskClient, alice: Any,
                                                                  oidc_only: ConnectedApp) -> None:
    """A parked SSO request carries only an app id; should that id ever name an app without SAML settings (a
    deleted app's id reused), resuming it issues nothing."""
    token = sso_flow.park(sso_flow.PendingSso(
        app_id=oidc_only.id, initiated_by=InitiatedBy.IDP, binding=None, acs_url=CB, relay_state=None,
        received_at=datetime.now(UTC)))
    db.session.commit()
    login(client)
    resp = client.get(f"/saml/continue/{token}")
    assert resp.status_code == 404
    assert_no_assertion(resp)
    assert CB not in resp.get_data(as_text=True)


def test_logout_chain_skips_an_oidc_only_app(client: FlaskClient, alice: Any, oidc_only: ConnectedApp) -> None:
    sp = register_sp("https://sp1.example.com")
    db.session.commit()
    sign_in(client, sp)
    session = db.session.query(IdpSession).filter(IdpSession.ended_at.is_(None)).one()
    # a participant row naming the OIDC-only app (SAML never writes one): the chain must not treat it as an SP
    db.session.add(SessionParticipant(session_id=session.id, app_id=oidc_only.id, name_id="alice@example.com",
                                      name_id_format="x", session_index="_s"))
    db.session.commit()
    token = client.get("/logout/saml", headers={"Sec-Fetch-Site": "same-origin"})
    body = token.get_data(as_text=True)
    assert token.status_code in (200, 302, 303) and "crm.example.com" not in body
    assert "Traceback" not in body


def test_launcher_shows_oidc_apps_with_an_initiate_login_uri_only(client: FlaskClient, alice: Any,
                                                                  oidc_only: ConnectedApp, app: Flask) -> None:
    apps_svc.register_oidc_app(name="Hidden", slug="hidden", settings=apps_svc.initial_settings(redirect_uris=(CB,)))
    sp = register_sp("https://sp1.example.com")
    db.session.commit()
    login(client)
    body = client.get("/").get_data(as_text=True)
    issuer = app.extensions["idp.settings"].base_url
    from urllib.parse import quote
    assert f'href="https://crm.example.com/start?x=1&amp;iss={quote(issuer, safe="")}"' in body
    assert f'href="/apps/{sp.slug}/sso"' in body
    assert 'data-slug="hidden"' not in body


def test_dry_run_and_access_policy_apply_to_oidc_only_apps(app: Flask, alice: Any, oidc_only: ConnectedApp) -> None:
    apps_svc.change_settings(oidc_only, permitted="admin-approved")
    db.session.commit()
    runner = app.test_cli_runner()
    r = runner.invoke(args=["access", "check", "--user", "alice", "--app", "crm", "--format", "json"])
    assert r.exit_code == 0, r.output
    assert '"deny"' in r.output or "deny" in r.output.lower()


def test_folder_sync_leaves_an_oidc_only_app_alone(app: Flask, oidc_only: ConnectedApp, tmp_path: Path) -> None:
    from .saml_tools import sp_metadata
    (tmp_path / "crm.xml").write_bytes(sp_metadata("https://crm.example.com/saml", "https://crm.example.com/acs"))
    report = apps_svc.sync_folder(tmp_path)
    assert report.added == [] and report.updated == [] and report.refused and report.refused[0][0] == "crm.xml"
    db.session.expire_all()
    assert apps_svc.get_app("crm").entity_id is None


def test_event_log_and_app_list_render_an_oidc_only_app(client: FlaskClient, admin: Any,
                                                        oidc_only: ConnectedApp) -> None:
    from ..webclient import login_admin
    from .conftest import ADMIN_PASSWORD
    db.session.commit()
    login_admin(client, "admin", ADMIN_PASSWORD)
    for url in ("/admin/apps", "/admin/apps/crm", "/admin/events?app=crm", "/admin/apps/crm/delete",
                "/admin/apps/crm/refresh", "/admin/access"):
        with case(url):
            resp = client.get(url)
            assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
