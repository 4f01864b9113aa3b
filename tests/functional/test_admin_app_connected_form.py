"""Issue 15, console: the SAML settings form edits the settings that were read-only there (allowed NameID formats,
start URL, RelayState allow-list, IdP-initiated on/off, per-app issuer) with the CLI's validation, field errors
next to the field, nothing stored on refusal, and an audit row for each change."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask.testing import FlaskClient

from idp import audit
from idp.extensions import db
from idp.models import AdminAudit, ConnectedApp
from idp.saml.constants import NAMEID_EMAIL, NAMEID_TRANSIENT
from idp.services import apps as apps_svc

from ..webclient import saml_form as posted_form
from .test_admin_apps import (  # noqa: F401 - fixtures and helpers
    admin,
    field_error,
    fresh,
    nc,
    root,
    saml_form,
    snapshot,
    text,
)

ISSUER = "https://idp.example.com/tenants/nextcloud"


def audit_count() -> int:
    return db.session.query(AdminAudit).count()


def settings_of(slug: str) -> apps_svc.AppSettings:
    return apps_svc.AppSettings.from_dict(fresh(slug).settings)


def post(client: FlaskClient, token: str, **over: Any) -> Any:
    return client.post("/admin/apps/nextcloud/saml", data={"csrf_token": token, **saml_form(**over)})


def test_connected_settings_saved_like_the_cli(client: FlaskClient, admin: str, nc: ConnectedApp) -> None:  # noqa: F811
    resp = post(client, admin, allowed_nameid_formats=["transient", NAMEID_EMAIL],
                start_url="https://nc.example.com/apps/files/",
                relay_state_allow="https://nc.example.com/apps/\r\n  dashboard  \r\n\r\ndashboard\r\n",
                idp_initiated="off", issuer=ISSUER)
    assert resp.status_code == 303, field_errors(resp)
    s = settings_of("nextcloud")
    assert s.allowed_nameid_formats == (NAMEID_TRANSIENT, NAMEID_EMAIL)
    assert s.start_url == "https://nc.example.com/apps/files/"
    assert s.relay_state_allow == ("https://nc.example.com/apps/", "dashboard")
    assert s.idp_initiated is False and s.issuer == ISSUER
    row = next(r for r in audit.recent() if r.action == "app.settings")
    assert row.actor == "web:root"
    assert row.after["issuer"] == ISSUER and row.before["issuer"] is None
    assert row.after["idp_initiated"] is False and row.after["relay_state_allow"] == ["https://nc.example.com/apps/",
                                                                                       "dashboard"]

    # the page shows the saved values back, in the form and in the overview
    body = text(client.get("/admin/apps/nextcloud"))
    assert 'id="allowed_nameid_formats-transient" value="transient" checked' in body
    assert 'id="allowed_nameid_formats-email" value="email" checked' in body
    assert 'id="allowed_nameid_formats-persistent" value="persistent">' in body
    assert 'id="start_url" name="start_url" value="https://nc.example.com/apps/files/"' in body
    assert ">https://nc.example.com/apps/\ndashboard</textarea>" in body
    assert 'id="idp_initiated-off" value="off" checked' in body
    assert f'id="issuer" name="issuer" value="{ISSUER}"' in body
    assert f"<code>{ISSUER}</code>" in body.split('id="app-issuer"', 1)[1].split("</dd>", 1)[0]
    # the SP owner is given the per-app entity ID and metadata URL
    assert f'<code id="idp-entity-id">{ISSUER}</code>' in body
    assert '<code id="idp-metadata-url">http://localhost/saml/metadata/nextcloud</code>' in body

    # posting the page's own values again changes nothing and writes no audit row
    audits = audit_count()
    again = post(client, admin, allowed_nameid_formats=["transient", "email"],
                 start_url="https://nc.example.com/apps/files/",
                 relay_state_allow="https://nc.example.com/apps/\ndashboard", idp_initiated="off", issuer=ISSUER)
    assert again.status_code == 303 and audit_count() == audits

    # blank values clear, as --start-url '' / --clear-issuer / --clear-* do
    resp = post(client, admin)
    assert resp.status_code == 303
    s = settings_of("nextcloud")
    assert (s.allowed_nameid_formats, s.start_url, s.relay_state_allow, s.idp_initiated, s.issuer) == \
        ((), None, (), True, None)
    body = text(client.get("/admin/apps/nextcloud"))
    assert '<code id="idp-entity-id">http://localhost/saml/metadata</code>' in body


def field_errors(resp: Any) -> list[str]:
    return re.findall(r'<p class="field-error" id="([a-z_]+)-error"[^>]*>(.*?)</p>', text(resp), re.S)


@pytest.mark.parametrize(("over", "field", "message"), [
    ({"allowed_nameid_formats": ["kerberos"]}, "allowed_nameid_formats", "cannot be issued here"),
    ({"start_url": "javascript:alert(1)"}, "start_url", "absolute http(s) URL"),
    ({"start_url": "https://nc.example.com/" + "x" * 80}, "start_url", "start URL"),
    ({"start_url": "/relative"}, "start_url", "absolute http(s) URL"),
    ({"relay_state_allow": "dashboard\n\nftp://files.example.com/"}, "relay_state_allow",
     "line 3: RelayState allow-list entry"),
    ({"relay_state_allow": "<script>"}, "relay_state_allow", "line 1"),
    ({"idp_initiated": "maybe"}, "idp_initiated", "must be one of on, off"),
    ({"idp_initiated": None}, "idp_initiated", "must be one of on, off"),
    ({"issuer": "not a uri"}, "issuer", "spaces or control characters"),
    ({"issuer": "ftp://idp.example.com/x"}, "issuer", "absolute URI"),
    ({"issuer": "urn:nope"}, "issuer", "absolute URI"),
    ({"issuer": "https://idp.example.com/" + "x" * 1010}, "issuer", "1-1024 characters"),
    # checked by the service when saving (it needs the database): not an SP's entityID
    ({"issuer": "SP_ENTITY_ID"}, "issuer", "is the SP entityID of app 'nextcloud'"),
])
def test_refusals_show_next_to_the_field_and_store_nothing(client: FlaskClient, admin: str,  # noqa: F811
                                                           nc: ConnectedApp, over: dict[str, Any], field: str,  # noqa: F811
                                                           message: str) -> None:
    if over.get("issuer") == "SP_ENTITY_ID":
        over = {"issuer": nc.entity_id}
    before, audits = snapshot(), audit_count()
    resp = post(client, admin, **over)
    assert resp.status_code == 422
    assert message in field_error(resp, field).replace("&#39;", "'")
    assert snapshot() == before and audit_count() == audits


def test_post_without_csrf_changes_nothing(client: FlaskClient, admin: str, nc: ConnectedApp) -> None:  # noqa: F811
    before, audits = snapshot(), audit_count()
    resp = client.post("/admin/apps/nextcloud/saml", data=saml_form(issuer=ISSUER, idp_initiated="off"))
    assert resp.status_code == 400
    resp = client.post("/admin/apps/nextcloud/saml", data={"csrf_token": "forged",
                                                           **saml_form(issuer=ISSUER, idp_initiated="off")})
    assert resp.status_code == 400
    assert snapshot() == before and audit_count() == audits


def test_console_changes_take_effect(client: FlaskClient, admin: str, nc: ConnectedApp) -> None:  # noqa: F811
    """What the form saves is what SSO uses (the signed-in admin launches the app): IdP-initiated off refuses a
    launch, the start URL becomes its RelayState, the issuer names the app's metadata."""
    assert post(client, admin, idp_initiated="off", issuer=ISSUER).status_code == 303
    md = client.get("/saml/metadata/nextcloud").get_data(as_text=True)
    assert f'entityID="{ISSUER}"' in md
    resp = client.get("/apps/nextcloud/sso")
    assert resp.status_code == 403 and posted_form(resp) is None
    assert post(client, admin, start_url="https://nc.example.com/home").status_code == 303
    resp = client.get("/apps/nextcloud/sso")
    assert resp.status_code == 200
    form = posted_form(resp)
    assert form is not None and form.relay_state == "https://nc.example.com/home"
