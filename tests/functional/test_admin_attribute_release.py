"""Issue 15, console: the attribute editor of an app's settings (a field of the schema, custom fields included, or a
formula; NameFormat, FriendlyName, on-missing, the NameID value), its refusals next to the row with the formula's
position and nothing stored, "what is released and why" on the app page, and the preview page (values, the
assertion XML escaped, the OIDC claims) that issues nothing and writes no event."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import pytest
from flask.testing import FlaskClient
from markupsafe import escape

from idp import audit
from idp.extensions import db
from idp.models import AdminAudit, ConnectedApp, SsoEvent
from idp.services import apps as apps_svc
from idp.services import user_fields as fields_svc
from idp.services import users as users_svc

from ..conftest import SP_METADATA_DIR
from .oidc_authz import make_client
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

SANS = SP_METADATA_DIR / "sans-simplesamlphp-sp.xml"
NO_KEYS = SP_METADATA_DIR / "python3-saml-no-keydescriptor.xml"
URI = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"
AWS_ROLES = 'user.groups\n  .filter(g, g.startsWith("aws-"))\n  .map(g, "arn:aws:iam::1:role/" + g)'


def audit_count() -> int:
    return db.session.query(AdminAudit).count()


def event_count() -> int:
    return db.session.query(SsoEvent).count()


def settings_of(slug: str) -> apps_svc.AppSettings:
    return apps_svc.AppSettings.from_dict(fresh(slug).settings)


def post_saml(client: FlaskClient, token: str, slug: str = "nextcloud", **over: Any) -> Any:
    return client.post(f"/admin/apps/{slug}/saml", data={"csrf_token": token, **saml_form(**over)})


def row_error(resp: Any, row: int) -> str:
    m = re.search(rf'<p class="field-error" id="attr-row-{row}-error"[^>]*>(.*?)</p>', text(resp), re.S)
    assert m, f"no error next to row {row}: " + " | ".join(re.findall(r'id="([a-z_0-9-]+-error)"', text(resp)))
    return html.unescape(m.group(1))


@pytest.fixture
def department(app: Any, alice: Any) -> None:
    """A custom field `department` (alice: Research) and alice in two AWS groups."""
    fields_svc.add_field("department", "string", label="Department")
    fields_svc.add_field("federation_id", "string", unique=True, label="Federation ID")
    fields_svc.set_user_fields(alice, {"department": "Research", "federation_id": "A-1"})
    for group in ("aws-admin", "aws-dev"):
        users_svc.add_group(group)
    users_svc.set_user(alice, add_groups=["aws-admin", "aws-dev"])
    db.session.commit()


# ---------------------------------------------------------------- the editor


def test_formula_custom_field_format_friendly_name_on_missing_and_nameid_value_saved(
        client: FlaskClient, admin: str, nc: ConnectedApp, department: None) -> None:  # noqa: F811
    resp = post_saml(client, admin, attr_name=["mail", "dept", "roles", ""],
                     attr_field=["email", "department", "formula", ""],
                     attr_formula=["", "", AWS_ROLES, ""], attr_format=["uri", "", "basic", ""],
                     attr_friendly=["mail", "Department", "", ""], on_missing="deny",
                     nameid_value="formula", nameid_value_formula="user.email.lower()")
    assert resp.status_code == 303, re.findall(r'class="field-error"[^>]*>(.*?)<', text(resp))
    s = settings_of("nextcloud")
    assert s.attributes == {"mail": "email", "dept": "department", "roles": "formula:" + AWS_ROLES}
    assert list(s.attributes) == ["mail", "dept", "roles"]
    assert s.attribute_formats == {"mail": "uri", "roles": "basic"}
    assert s.friendly_names == {"mail": "mail", "dept": "Department"}
    assert s.on_missing == "deny" and s.nameid_value == "formula:user.email.lower()"
    row = next(r for r in audit.recent() if r.action == "app.settings")
    assert row.actor == "web:root" and row.after["attributes"]["roles"] == "formula:" + AWS_ROLES
    assert row.after["on_missing"] == "deny" and row.after["nameid_value"] == "formula:user.email.lower()"

    # the page shows it all back: the editor, and what is released and why
    body = text(client.get("/admin/apps/nextcloud"))
    assert 'id="attr_formula-2" rows="2" spellcheck="false" class="mono"' in body
    assert f">{escape(AWS_ROLES)}</textarea>" in body
    dept_select = re.search(r'<select name="attr_field" id="attr_field-1".*?</select>', body, re.S).group(0)  # type: ignore[union-attr]
    assert '<optgroup label="Custom fields">' in dept_select
    assert '<option value="department" selected>department</option>' in dept_select
    assert re.search(r'<option value="formula" selected>', re.search(
        r'<select name="attr_field" id="attr_field-2".*?</select>', body, re.S).group(0))  # type: ignore[union-attr]
    assert re.search(r'id="attr_format-0".*?<option value="uri" selected>', body, re.S)
    assert 'id="attr_friendly-1" value="Department"' in body
    assert 'id="on_missing-deny" value="deny" checked' in body
    assert 'id="nameid_value-formula" value="formula" checked' in body
    assert ">user.email.lower()</textarea>" in body
    released = body.split('id="released-table"', 1)[1].split("</table>", 1)[0]
    assert f"formula: {escape(AWS_ROLES)}" in released and "field: department" in released

    # posting the page's values again changes nothing and writes no audit row
    audits = audit_count()
    again = post_saml(client, admin, attr_name=["mail", "dept", "roles", ""],
                      attr_field=["email", "department", "formula", ""],
                      attr_formula=["", "", AWS_ROLES, ""], attr_format=["uri", "", "basic", ""],
                      attr_friendly=["mail", "Department", "", ""], on_missing="deny",
                      nameid_value="formula", nameid_value_formula="user.email.lower()")
    assert again.status_code == 303 and audit_count() == audits

    # a field NameID value (a non-unique field is refused: two users would share one SP account), then back to
    # the default; a row removed takes its format and friendly name along
    refused = post_saml(client, admin, attr_name=["mail", "dept", "roles"],
                        attr_field=["email", "department", "formula"], attr_formula=["", "", AWS_ROLES],
                        attr_format=["uri", "", "basic"],
                        attr_friendly=["mail", "Department", ""], nameid_value="field",
                        nameid_value_field="department")
    assert refused.status_code == 422 and "not a unique field" in text(refused)
    resp = post_saml(client, admin, attr_name=["mail", "dept", "roles"], attr_field=["email", "department", "formula"],
                     attr_formula=["", "", AWS_ROLES], attr_format=["uri", "", "basic"],
                     attr_friendly=["mail", "Department", ""], attr_remove=["0"], nameid_value="field",
                     nameid_value_field="federation_id")
    assert resp.status_code == 303
    s = settings_of("nextcloud")
    assert list(s.attributes) == ["dept", "roles"] and s.attribute_formats == {"roles": "basic"}
    assert s.friendly_names == {"dept": "Department"} and s.nameid_value == "field:federation_id"
    assert s.on_missing == "omit"
    assert 'id="nameid_value-field" value="field" checked' in text(client.get("/admin/apps/nextcloud"))
    assert post_saml(client, admin, nameid_value="default").status_code == 303
    assert settings_of("nextcloud").nameid_value is None


def test_formulas_typed_in_a_browser_are_stored_with_plain_line_breaks(client: FlaskClient, admin: str,  # noqa: F811
                                                                      nc: ConnectedApp) -> None:  # noqa: F811
    resp = post_saml(client, admin, attr_name=["mail", "roles"], attr_field=["email", "formula"],
                     attr_formula=["", AWS_ROLES.replace("\n", "\r\n")], nameid_value="formula",
                     nameid_value_formula="user.email\r\n  .lower()")
    assert resp.status_code == 303
    s = settings_of("nextcloud")
    assert s.attributes["roles"] == "formula:" + AWS_ROLES and s.nameid_value == "formula:user.email\n  .lower()"


def test_a_blank_source_with_a_formula_is_a_formula(client: FlaskClient, admin: str, nc: ConnectedApp) -> None:  # noqa: F811
    resp = post_saml(client, admin, attr_name=["mail", "upn"], attr_field=["email", ""],
                     attr_formula=["", 'user.username + "@corp.example"'])
    assert resp.status_code == 303
    assert settings_of("nextcloud").attributes["upn"] == 'formula:user.username + "@corp.example"'


def test_an_older_form_without_the_new_columns_keeps_formats_friendly_names_and_the_rest(
        client: FlaskClient, admin: str, nc: ConnectedApp) -> None:  # noqa: F811
    assert post_saml(client, admin, attr_name=["mail", "uid"], attr_field=["email", "username"],
                     attr_format=["uri", "basic"], attr_friendly=["mail", "uid"], on_missing="deny",
                     nameid_value="field", nameid_value_field="username").status_code == 303
    resp = post_saml(client, admin, attr_name=["mail", "uid"], attr_field=["email", "username"],
                     attr_formula=None, attr_format=None, attr_friendly=None, on_missing=None, nameid_value=None)
    assert resp.status_code == 303
    s = settings_of("nextcloud")
    assert s.attribute_formats == {"mail": "uri", "uid": "basic"} and s.friendly_names == {"mail": "mail", "uid": "uid"}
    assert s.on_missing == "deny" and s.nameid_value == "field:username"


@pytest.mark.parametrize(("formula", "row_message"), [
    ("user.email.lower(", "line 1, column"),
    ("user.nonexistent", "line 1, column 6"),
    ('user.email\n  + 1', "line 2, column"),
])
def test_a_formula_error_is_shown_next_to_its_row_with_the_position_and_nothing_is_stored(
        client: FlaskClient, admin: str, nc: ConnectedApp, formula: str, row_message: str) -> None:  # noqa: F811
    before, audits = snapshot(), audit_count()
    resp = post_saml(client, admin, attr_name=["mail", "bad", ""], attr_field=["email", "formula", ""],
                     attr_formula=["", formula, ""], attr_format=["", "uri", ""], attr_friendly=["", "Bad", ""])
    assert resp.status_code == 422
    message = row_error(resp, 1)
    assert "attribute 'bad'" in message and "formula error" in message and row_message in message
    assert f"row 2: {message}" in html.unescape(field_error(resp, "attributes"))
    body = text(resp)
    # the row keeps what was typed, so the admin can correct it
    assert f">{escape(formula)}</textarea>" in body and 'id="attr_friendly-1" value="Bad"' in body
    assert 'aria-describedby="attr-row-1-error"' in body
    assert snapshot() == before and audit_count() == audits


@pytest.mark.parametrize(("over", "message"), [
    ({"attr_field": ["email", "formula"], "attr_formula": ["", ""]}, "write the formula"),
    ({"attr_field": ["email", ""], "attr_formula": ["", ""]}, "choose a user field or write a formula"),
    ({"attr_field": ["email", "username"], "attr_formula": ["", "user.email"]}, "choose “formula” as the source"),
    ({"attr_field": ["email", "salary"]}, "choose a user field"),
    ({"attr_field": ["email", "username"], "attr_format": ["", "xml"]}, "NameFormat must be one of"),
    ({"attr_name": ["mail", "mail"]}, "listed twice"),
    ({"attr_name": ["mail", ""], "attr_friendly": ["", "Orphan"]}, "no attribute name"),
    ({"attr_name": ["mail", "n" * 1050]}, "is not valid (1-1024 characters"),   # refused, never cut to fit
    ({"attr_friendly": ["", "f" * 257]}, "must be 1-256 characters"),
])
def test_row_refusals_store_nothing(client: FlaskClient, admin: str, nc: ConnectedApp, over: dict[str, Any],  # noqa: F811
                                    message: str) -> None:
    before, audits = snapshot(), audit_count()
    data = {"attr_name": ["mail", "second"], "attr_field": ["email", "username"], **over}
    resp = post_saml(client, admin, **data)
    assert resp.status_code == 422
    assert message in row_error(resp, 1)
    assert message in html.unescape(field_error(resp, "attributes"))
    assert snapshot() == before and audit_count() == audits


@pytest.mark.parametrize(("over", "message"), [
    ({"nameid_value": "field", "nameid_value_field": ""}, "choose the field"),
    ({"nameid_value": "field", "nameid_value_field": "groups"}, "holds several values"),
    ({"nameid_value": "field", "nameid_value_field": "salary"}, "unknown user field"),
    ({"nameid_value": "formula", "nameid_value_formula": ""}, "write the formula"),
    ({"nameid_value": "formula", "nameid_value_formula": "user.email +"}, "line 1, column"),
    ({"nameid_value": "formula", "nameid_value_formula": "user.groups"}, "gives a list"),
    ({"nameid_value": "subject"}, "choose one of"),
    ({"on_missing": "shrug"}, "must be one of omit, deny"),
])
def test_nameid_value_and_on_missing_refusals_store_nothing(client: FlaskClient, admin: str, nc: ConnectedApp,  # noqa: F811
                                                            over: dict[str, Any], message: str) -> None:
    before, audits = snapshot(), audit_count()
    resp = post_saml(client, admin, **over)
    assert resp.status_code == 422
    field = "on_missing" if "on_missing" in over else "nameid_value"
    assert message in html.unescape(field_error(resp, field))
    assert snapshot() == before and audit_count() == audits


def test_incomplete_rows_are_shown_back_and_nothing_is_stored(client: FlaskClient, admin: str,  # noqa: F811
                                                               nc: ConnectedApp) -> None:  # noqa: F811
    before, audits = snapshot(), audit_count()
    resp = post_saml(client, admin, attr_name=["mail", "uid"], attr_field=["email"], attr_formula=[""],
                     attr_format=["", ""], attr_friendly=["", "uid"])
    assert resp.status_code == 422 and "incomplete" in field_error(resp, "attributes")
    assert 'id="attr_name-1" value="uid"' in text(resp) and 'id="attr_friendly-1" value="uid"' in text(resp)
    assert snapshot() == before and audit_count() == audits


def test_add_row_keeps_formula_rows_and_saves_nothing(client: FlaskClient, admin: str, nc: ConnectedApp) -> None:  # noqa: F811
    before = snapshot()
    resp = post_saml(client, admin, add_row="1", extra_rows="1", attr_name=["mail", "x"],
                     attr_field=["email", "formula"], attr_formula=["", "user.email.upper()"])
    assert resp.status_code == 200 and "Nothing is saved" in text(resp)
    assert text(resp).count('class="attr-row new"') == 2 and ">user.email.upper()</textarea>" in text(resp)
    assert snapshot() == before


# ---------------------------------------------------------------- an app without SAML settings


def test_oidc_only_app_edits_its_attributes_on_their_own_form(client: FlaskClient, admin: str, app: Any,  # noqa: F811
                                                              department: None) -> None:
    make_client("ledger")
    body = text(client.get("/admin/apps/ledger"))
    assert 'id="release-form"' in body and 'id="saml-form"' not in body
    assert 'id="released-none"' in body and "the subject (sub) only" in body
    before, audits = snapshot(), audit_count()
    bad = client.post("/admin/apps/ledger/attributes", data={
        "csrf_token": admin, "attr_name": ["dept"], "attr_field": ["formula"], "attr_formula": ["user.dept"],
        "attr_format": [""], "attr_friendly": [""], "on_missing": "omit"})
    assert bad.status_code == 422 and "line 1, column" in row_error(bad, 0)
    assert snapshot() == before and audit_count() == audits
    ok = client.post("/admin/apps/ledger/attributes", data={
        "csrf_token": admin, "attr_name": ["department", "upper"], "attr_field": ["department", "formula"],
        "attr_formula": ["", "user.email.upper()"], "attr_format": ["", ""], "attr_friendly": ["", ""],
        "on_missing": "deny"})
    assert ok.status_code == 303 and ok.headers["Location"].endswith("#attribute-release")
    s = settings_of("ledger")
    assert s.attributes == {"department": "department", "upper": "formula:user.email.upper()"}
    assert s.on_missing == "deny"
    assert next(r for r in audit.recent() if r.action == "app.settings").target == "ledger"
    # a SAML app edits them in its SAML settings form
    apps_svc.register_app(NO_KEYS.read_bytes(), slug="onelogin")
    db.session.commit()
    assert client.post("/admin/apps/onelogin/attributes", data={"csrf_token": admin}).status_code == 409


# ---------------------------------------------------------------- what is released and why


def released_rows(body: str) -> dict[str, list[str]]:
    table = body.split('id="released-table"', 1)[1].split("</table>", 1)[0]
    rows = {}
    for tr in re.findall(r"<tr data-attribute=.*?</tr>", table, re.S):
        cells = [html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)]
        rows[cells[0]] = cells[1:]
    return rows


def test_explanation_for_an_app_registered_from_metadata_with_requested_attributes(
        client: FlaskClient, admin: str) -> None:  # noqa: F811
    apps_svc.register_app(SANS.read_bytes(), slug="sans")
    db.session.commit()
    body = text(client.get("/admin/apps/sans"))
    rows = released_rows(body)
    assert rows["mail"] == ["field: email", "basic", "", "requested in the SP's metadata"]
    assert rows["urn:oid:2.5.4.42"] == ["field: first_name", "uri", "givenName", "requested in the SP's metadata"]
    assert rows["urn:oid:2.5.4.4"][0] == "field: last_name"
    assert "eduPersonPrincipalName" in rows
    # an attribute the admin adds says so; one the admin removes is listed as requested but not released
    resp = post_saml(client, admin, "sans", name="SANS", nameid_format="unspecified", nameid_field="username",
                     attr_name=["mail", "urn:oid:2.5.4.42", "urn:oid:2.5.4.4", "dept"],
                     attr_field=["email", "first_name", "last_name", "formula"],
                     attr_formula=["", "", "", '"Research"'])
    assert resp.status_code == 303
    body = text(client.get("/admin/apps/sans"))
    rows = released_rows(body)
    assert rows["dept"][-1] == "set by an admin" and rows["dept"][0] == 'formula: "Research"'
    notes = body.split('id="not-released"', 1)[1].split("</ul>", 1)[0]
    assert "eduPersonPrincipalName is requested in the metadata but not released" in notes


def test_explanation_for_the_basic_profile(client: FlaskClient, admin: str) -> None:  # noqa: F811
    apps_svc.register_app(NO_KEYS.read_bytes(), slug="onelogin")
    db.session.commit()
    body = text(client.get("/admin/apps/onelogin"))
    rows = released_rows(body)
    assert rows["urn:oid:0.9.2342.19200300.100.1.3"] == ["field: email", "uri", "mail",
                                                         "basic profile (the SP's metadata requests no attribute)"]
    assert {r[0] for r in rows.values()} == {"field: email", "field: first_name", "field: last_name",
                                             "field: display_name"}
    assert 'id="not-released"' not in body


# ---------------------------------------------------------------- preview


def test_preview_shows_values_sources_xml_and_writes_nothing(client: FlaskClient, admin: str, nc: ConnectedApp,  # noqa: F811
                                                             department: None) -> None:
    resp = post_saml(client, admin, attr_name=["mail", "dept", "roles", "html"],
                     attr_field=["email", "department", "formula", "formula"],
                     attr_formula=["", "", AWS_ROLES, '"<script>alert(1)</script>"'],
                     attr_friendly=["mail", "", "", ""], nameid_value="formula",
                     nameid_value_formula='"<b>" + user.email.upper()')
    assert resp.status_code == 303
    page = text(client.get("/admin/apps/nextcloud"))
    assert 'action="/admin/apps/nextcloud/preview"' in page and 'name="user"' in page

    before, audits, events = snapshot(), audit_count(), event_count()
    resp = client.get("/admin/apps/nextcloud/preview?user=alice")
    assert resp.status_code == 200
    body = text(resp)
    assert "Nothing was issued and no event was written" in body
    assert '<code id="preview-nameid">&lt;b&gt;ALICE@EXAMPLE.COM</code>' in body
    table = body.split('id="preview-attributes-table"', 1)[1].split("</table>", 1)[0]
    assert '<code class="value">alice@example.com</code>' in table and "Research" in table
    assert "arn:aws:iam::1:role/aws-admin" in table and "arn:aws:iam::1:role/aws-dev" in table
    assert "field: department" in table
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body and "<script>alert" not in body
    xml = body.split('<pre id="preview-xml">', 1)[1].split("</pre>", 1)[0]
    assert xml.startswith("&lt;saml:Assertion") and "<saml:" not in xml
    assert "&lt;saml:NameID" in xml and "arn:aws:iam::1:role/aws-dev" in xml
    assert 'id="preview-oidc"' not in body   # a SAML-only app has no claims
    assert snapshot() == before and audit_count() == audits and event_count() == events


def test_preview_lists_what_is_left_out_and_a_refusal(client: FlaskClient, admin: str, nc: ConnectedApp,  # noqa: F811
                                                       bob: Any, department: None) -> None:
    assert post_saml(client, admin, attr_name=["mail", "dept"], attr_field=["email", "department"]).status_code == 303
    body = text(client.get("/admin/apps/nextcloud/preview?user=bob"))
    omitted = body.split('id="preview-omitted"', 1)[1].split("</table>", 1)[0]
    assert "<code>dept</code>" in omitted
    assert post_saml(client, admin, attr_name=["mail", "dept"], attr_field=["email", "department"],
                     on_missing="deny").status_code == 303
    events = event_count()
    resp = client.get("/admin/apps/nextcloud/preview?user=bob")
    assert resp.status_code == 200
    body = text(resp)
    assert 'id="preview-denied"' in body and '<code id="preview-reason">attribute_unavailable</code>' in body
    assert 'id="preview-xml"' not in body and event_count() == events


def test_preview_of_an_oidc_app_shows_the_claims(client: FlaskClient, admin: str, department: None) -> None:  # noqa: F811
    make_client("ledger", policy={"attributes": {"department": "department"}})
    resp = client.get("/admin/apps/ledger/preview?user=alice")
    assert resp.status_code == 200
    body = text(resp)
    claims = json.loads(html.unescape(body.split('<pre id="preview-claims">', 1)[1].split("</pre>", 1)[0]))
    assert claims["email"] == "alice@example.com" and claims["department"] == "Research"
    assert "sub" in claims and 'id="preview-xml"' not in body


def test_preview_of_an_unknown_or_missing_user(client: FlaskClient, admin: str, nc: ConnectedApp) -> None:  # noqa: F811
    events = event_count()
    resp = client.get("/admin/apps/nextcloud/preview?user=%3Cmallory%3E")
    assert resp.status_code == 404
    body = text(resp)
    assert "No user &#39;&lt;mallory&gt;&#39;" in body and 'id="preview-user-error"' in body
    assert 'value="&lt;mallory&gt;"' in body and "<mallory>" not in body
    resp = client.get("/admin/apps/nextcloud/preview")
    assert resp.status_code == 400 and "Enter the username" in text(resp)
    assert client.get("/admin/apps/no-such-app/preview?user=root").status_code == 404
    assert event_count() == events
