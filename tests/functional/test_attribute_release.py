"""Issue 15, what each app receives: requested-attribute defaults and the basic profile, formula attributes,
multi-valued values, NameFormat / FriendlyName, Federation-ID subjects, on-missing omit|deny — end to end with
the independent SPs (pysaml2, python3-saml) and the CLI; the preview equals what a real sign-in issues."""

from __future__ import annotations

import base64
import json
import re

import pytest
from lxml import etree

from idp.extensions import db
from idp.services import apps as apps_svc
from idp.services import user_fields as fields_svc
from idp.services import users as users_svc

from ..webclient import Browser, saml_form
from .conftest import PASSWORD, last_event
from .oidc_authz import at_rp, authorize_url, make_client
from .oidc_authz import last_event as oidc_last_event
from .oidc_authz import sign_in as oidc_sign_in

OID_MAIL, OID_GIVEN, OID_SN, OID_DISPLAY = ("urn:oid:0.9.2342.19200300.100.1.3", "urn:oid:2.5.4.42",
                                            "urn:oid:2.5.4.4", "urn:oid:2.16.840.1.113730.3.1.241")
URI = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"
BASIC = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"
NS = {"saml": "urn:oasis:names:tc:SAML:2.0:assertion"}


def cli(app, *args):  # type: ignore[no-untyped-def]
    result = app.test_cli_runner().invoke(args=list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result


def attribute_elements(res) -> dict[str, etree._Element]:  # type: ignore[no-untyped-def]
    root = etree.fromstring(res.raw_xml.encode())
    return {a.get("Name"): a for a in root.iterfind(".//saml:Attribute", NS)}


def sign_in(sp, browser, username: str = "alice"):  # type: ignore[no-untyped-def]
    req = sp.authn_request("redirect")
    form = saml_form(browser.sso(req, username, PASSWORD))
    assert form is not None and form.action == sp.acs_url
    return sp.process_response(form.saml_response, req.request_id)


def strict_python3_saml(make_sp, **kw):  # type: ignore[no-untyped-def]
    """python3-saml as it ships: wantAttributeStatement on (an assertion without attributes is refused)."""
    sp = make_sp("onelogin", register=False, **kw)
    sp._base_settings["security"]["wantAttributeStatement"] = True
    return sp


def register(sp, slug: str):  # type: ignore[no-untyped-def]
    row = apps_svc.register_app(sp.metadata_xml().encode(), slug=slug)
    db.session.commit()
    sp.slug = row.slug
    return row


# ---------------------------------------------------------------- defaults that work out of the box

def test_python3_saml_with_default_settings_gets_the_basic_profile(make_sp, browser, alice):
    sp = strict_python3_saml(make_sp)
    register(sp, "strict-onelogin")
    res = sign_in(sp, browser)
    assert res.attributes[OID_MAIL] == ["alice@example.com"] and res.attributes[OID_GIVEN] == ["Alice"]
    assert res.attributes[OID_SN] == ["Liddell"] and res.attributes[OID_DISPLAY] == ["Alice Liddell"]
    els = attribute_elements(res)
    assert (els[OID_GIVEN].get("NameFormat"), els[OID_GIVEN].get("FriendlyName")) == (URI, "givenName")
    assert els[OID_MAIL].get("FriendlyName") == "mail"


def test_requested_attributes_are_released_under_the_requested_names(app, make_sp, browser, alice):
    sp = strict_python3_saml(make_sp)
    sp._base_settings["sp"]["attributeConsumingService"] = {
        "serviceName": "Wiki", "requestedAttributes": [
            {"name": "urn:oid:1.3.6.1.4.1.5923.1.1.1.6", "friendlyName": "eduPersonPrincipalName",
             "nameFormat": URI, "isRequired": True},
            {"name": "mail", "nameFormat": BASIC, "isRequired": False},
            {"name": "memberOf", "isRequired": False},
            {"name": "favouriteColour", "isRequired": False},
        ]}
    register(sp, "wiki")
    settings = apps_svc.AppSettings.from_dict(apps_svc.get_app("wiki").settings)
    assert settings.attributes == {"urn:oid:1.3.6.1.4.1.5923.1.1.1.6": "username", "mail": "email",
                                   "memberOf": "groups"}
    res = sign_in(sp, browser)
    assert res.attributes["urn:oid:1.3.6.1.4.1.5923.1.1.1.6"] == ["alice"]
    assert res.attributes["mail"] == ["alice@example.com"] and res.attributes["memberOf"] == ["engineering"]
    assert "favouriteColour" not in res.attributes
    els = attribute_elements(res)
    assert els["mail"].get("NameFormat") == BASIC
    assert els["urn:oid:1.3.6.1.4.1.5923.1.1.1.6"].get("FriendlyName") == "eduPersonPrincipalName"
    shown = cli(app, "apps", "show", "wiki").output
    assert "requested in the SP's metadata (required)" in shown
    assert "favouriteColour is requested in the metadata but not released" in shown
    release = json.loads(cli(app, "apps", "show", "wiki", "--format", "json").output)["release"]
    assert [a["name"] for a in release["attributes"]] == list(settings.attributes)


# ---------------------------------------------------------------- formulas, multi-valued values, formats

@pytest.mark.parametrize("kind", ["pysaml2", "onelogin"])
def test_formula_attributes_and_multi_valued_values(app, make_sp, browser, alice, kind):
    for group in ("aws-admin", "aws-dev", "staff"):
        users_svc.add_group(group)
    users_svc.set_user(alice, add_groups=["aws-admin", "aws-dev", "staff"])
    db.session.commit()
    sp = make_sp(kind)
    r = cli(app, "apps", "set", sp.slug, "--attribute", 'roles=formula:user.groups.filter(g, g.startsWith("aws-"))',
            "--attribute", "upn=formula:user.username + \"@corp.example\"",
            "--attribute", 'initials=formula:user.first_name.substring(0, 1) + user.last_name.substring(0, 1)',
            "--attribute", "mail=field:email", "--attribute-format", "roles=uri",
            "--friendly-name", "roles=awsRoles")
    assert r.exit_code == 0, r.output
    res = sign_in(sp, browser)
    assert res.attributes["roles"] == ["aws-admin", "aws-dev"]           # two AttributeValues
    assert res.attributes["upn"] == ["alice@corp.example"] and res.attributes["initials"] == ["AL"]
    assert res.attributes["mail"] == ["alice@example.com"]
    els = attribute_elements(res)
    assert (els["roles"].get("NameFormat"), els["roles"].get("FriendlyName")) == (URI, "awsRoles")
    assert len(els["roles"].findall("saml:AttributeValue", NS)) == 2
    assert els["mail"].get("NameFormat") == BASIC and els["mail"].get("FriendlyName") is None


def test_formula_errors_are_refused_with_the_position_and_nothing_is_written(app, make_sp, alice):
    sp = make_sp("pysaml2")
    before = apps_svc.get_app(sp.slug).settings
    r = cli(app, "apps", "set", sp.slug, "--attribute", "x=formula:user.email +")
    assert r.exit_code != 0 and re.search(r"line 1, column \d+", r.output), r.output
    r = cli(app, "apps", "set", sp.slug, "--add-attribute", "x=formula:user.email + 1")
    assert r.exit_code != 0 and "line 1, column" in r.output, r.output
    r = cli(app, "apps", "set", sp.slug, "--add-attribute", "x=formula:user.cost_centre")
    assert r.exit_code != 0 and "cost_centre" in r.output
    r = cli(app, "apps", "set", sp.slug, "--add-attribute", "x=field:nope")
    assert r.exit_code != 0 and "unknown user field 'nope'" in r.output
    r = cli(app, "apps", "set", sp.slug, "--nameid-value", "formula:user.groups")
    assert r.exit_code != 0
    db.session.expire_all()
    assert apps_svc.get_app(sp.slug).settings == before


def test_add_remove_formats_and_friendly_names(app, make_sp, alice):
    sp = make_sp("pysaml2")
    assert cli(app, "apps", "set", sp.slug, "--clear-attributes").exit_code == 0
    assert cli(app, "apps", "set", sp.slug, "--add-attribute", "a=field:email", "--add-attribute",
               'b=formula:user.email == "x" ? "y" : "z"', "--friendly-name", "a=Mail").exit_code == 0
    s = apps_svc.AppSettings.from_dict(apps_svc.get_app(sp.slug).settings)
    assert s.attributes == {"a": "email", "b": 'formula:user.email == "x" ? "y" : "z"'}
    assert s.friendly_names == {"a": "Mail"}
    r = cli(app, "apps", "set", sp.slug, "--attribute-format", "a=bogus")
    assert r.exit_code != 0 and "uri, basic, unspecified" in r.output
    assert cli(app, "apps", "set", sp.slug, "--remove-attribute", "a").exit_code == 0
    s = apps_svc.AppSettings.from_dict(apps_svc.get_app(sp.slug).settings)
    assert list(s.attributes) == ["b"] and s.friendly_names == {}
    r = cli(app, "apps", "set", sp.slug, "--remove-attribute", "zzz")
    assert r.exit_code != 0 and "does not release" in r.output


# ---------------------------------------------------------------- subjects: a Federation ID, a formula

@pytest.mark.parametrize("kind", ["pysaml2", "onelogin"])
def test_federation_id_subject(app, make_sp, browser, alice, kind):
    fields_svc.add_field("federation_id", "string", unique=True)
    fields_svc.set_user_fields(alice, {"federation_id": "A-1234@corp"})
    db.session.commit()
    sp = make_sp(kind, settings={"nameid_format": "persistent"})
    assert cli(app, "apps", "set", sp.slug, "--nameid-value", "field:federation_id").exit_code == 0
    res = sign_in(sp, browser)
    assert res.name_id == "A-1234@corp"
    assert cli(app, "apps", "set", sp.slug, "--nameid-value", "formula:user.federation_id.lower()").exit_code == 0
    res = sign_in(sp, browser)
    assert res.name_id == "a-1234@corp"


def test_subject_without_a_value_refuses_the_sign_in(app, make_sp, browser, alice):
    fields_svc.add_field("federation_id", "string", unique=True)
    db.session.commit()
    sp = make_sp("pysaml2")
    assert cli(app, "apps", "set", sp.slug, "--nameid-value", "field:federation_id").exit_code == 0
    req = sp.authn_request("redirect")
    xml = base64.b64decode(saml_form(browser.sso(req, "alice", PASSWORD)).saml_response).decode()
    assert "urn:oasis:names:tc:SAML:2.0:status:Responder" in xml and "Assertion" not in xml
    ev = last_event()
    assert (ev.outcome, ev.reason) == ("denied", "attribute_unavailable")


# ---------------------------------------------------------------- on-missing: omit | deny

def test_on_missing_omit_then_deny(app, make_sp, browser, alice):
    fields_svc.add_field("department", "string")
    db.session.commit()
    sp = make_sp("onelogin")
    assert cli(app, "apps", "set", sp.slug, "--attribute", "dept=field:department", "--attribute",
               "mail=field:email").exit_code == 0
    res = sign_in(sp, browser)
    assert "dept" not in res.attributes and res.attributes["mail"] == ["alice@example.com"]
    assert cli(app, "apps", "set", sp.slug, "--on-missing", "deny").exit_code == 0
    req = sp.authn_request("redirect")
    resp = browser.send(req)
    xml = base64.b64decode(saml_form(resp).saml_response).decode()
    assert "status:Responder" in xml and "Assertion" not in xml and "alice@example.com" not in xml
    ev = last_event()
    assert (ev.outcome, ev.reason) == ("denied", "attribute_unavailable")
    fields_svc.set_user_fields(alice, {"department": "Research"})
    db.session.commit()
    res = sign_in(sp, browser)
    assert res.attributes["dept"] == ["Research"]


# ---------------------------------------------------------------- the preview is what a sign-in issues

_VOLATILE = re.compile(r'\b(ID|IssueInstant|NotBefore|NotOnOrAfter|AuthnInstant|SessionIndex|'
                       r'SessionNotOnOrAfter)="[^"]*"')


def _normalised(assertion_xml: str) -> str:
    return _VOLATILE.sub(r'\1="*"', assertion_xml)


def _signed_assertion_without_signature(response_xml: str) -> str:
    root = etree.fromstring(response_xml.encode())
    assertion = root.find("saml:Assertion", NS)
    sig = assertion.find("{http://www.w3.org/2000/09/xmldsig#}Signature")
    assertion.remove(sig)
    return etree.tostring(assertion, method="c14n", exclusive=True).decode()


@pytest.mark.parametrize("nameid", ["unspecified", "persistent"])
def test_preview_equals_a_real_idp_initiated_sign_in(app, make_sp, browser, alice, nameid):
    fields_svc.add_field("employee_number", "string")
    fields_svc.set_user_fields(alice, {"employee_number": "E-42"})
    db.session.commit()
    sp = make_sp("pysaml2", settings={"nameid_format": nameid})
    assert cli(app, "apps", "set", sp.slug, "--add-attribute", "employeeNumber=field:employee_number",
               "--add-attribute", 'groupsUpper=formula:user.groups.map(g, g.upper())').exit_code == 0
    events_before = db.session.execute(db.text("select count(*) from sso_events")).scalar()
    preview = json.loads(cli(app, "apps", "preview", sp.slug, "--user", "alice", "--format", "json").output)
    xml_only = cli(app, "apps", "preview", sp.slug, "--user", "alice", "--format", "xml").output.strip()
    assert db.session.execute(db.text("select count(*) from sso_events")).scalar() == events_before
    assert _normalised(preview["assertion_xml"]) == _normalised(xml_only)
    names = {a["name"]: a["values"] for a in preview["attributes"]}
    assert names["employeeNumber"] == ["E-42"] and names["groupsUpper"] == ["ENGINEERING"]
    # a real IdP-initiated sign-in into the same app (persistent: the first sign-in creates the pairwise ID)
    form = saml_form(browser.sso_path(f"/apps/{sp.slug}/sso", "alice", PASSWORD))
    real_xml = base64.b64decode(form.saml_response).decode()
    real = _signed_assertion_without_signature(real_xml)
    again = json.loads(cli(app, "apps", "preview", sp.slug, "--user", "alice", "--format", "json").output)
    assert _normalised(again["assertion_xml"]) == _normalised(real)
    assert again["nameid"]["value"] == sp.process_response(form.saml_response, None).name_id


def test_preview_text_shows_sources_and_what_is_left_out(app, make_sp, alice):
    fields_svc.add_field("department", "string")
    db.session.commit()
    sp = make_sp("onelogin")
    cli(app, "apps", "set", sp.slug, "--add-attribute", "dept=field:department")
    out = cli(app, "apps", "preview", sp.slug, "--user", "alice").output
    assert "field: email" in out and "(left out) dept" in out and "NameID: alice" in out
    cli(app, "apps", "set", sp.slug, "--on-missing", "deny")
    r = cli(app, "apps", "preview", sp.slug, "--user", "alice")
    assert r.exit_code == 1 and "attribute_unavailable" in r.output
    r = cli(app, "apps", "preview", sp.slug, "--user", "nobody")
    assert r.exit_code != 0 and "nobody" in r.output


# ---------------------------------------------------------------- OpenID Connect: the same release as claims

def test_oidc_deny_on_missing_refuses_at_authorization(app, client, alice):
    fields_svc.add_field("cost_center", "string")
    cid = make_client("ledger", policy={"attributes": {"cost_center": "field:cost_center"}, "on_missing": "deny"})
    browser = Browser(client)
    params = at_rp(oidc_sign_in(browser, authorize_url(cid)))
    assert params["error"] == "access_denied" and "code" not in params
    ev = oidc_last_event()
    assert (ev.outcome, ev.reason, ev.protocol) == ("denied", "attribute_unavailable", "oidc")
    fields_svc.set_user_fields(alice, {"cost_center": "CC-7"})
    db.session.commit()
    params = at_rp(oidc_sign_in(browser, authorize_url(cid)))
    assert params.get("code"), params


# ---------------------------------------------------------------- text XML cannot carry never reaches a response

@pytest.mark.parametrize("value", ["bad\uffff", "x\x85y", "tab\there", '["\\ud800"]'])
def test_values_xml_cannot_carry_are_refused_where_they_enter(alice, value):
    fields_svc.add_field("tags", "list")
    fields_svc.add_field("nick", "string")
    db.session.commit()
    with pytest.raises(Exception) as info:
        fields_svc.set_user_fields(alice, {"tags" if value.startswith("[") else "nick": value})
    assert type(info.value).__name__ in ("ServiceError", "FormErrors")   # a refusal naming the field


def test_a_formula_giving_text_xml_cannot_carry_has_no_value(app, make_sp, browser, alice):
    sp = make_sp("pysaml2")
    assert cli(app, "apps", "set", sp.slug, "--attribute", 'odd=formula:"a\\uffff"',
               "--attribute", "mail=field:email").exit_code == 0
    res = sign_in(sp, browser)
    assert "odd" not in res.attributes and res.attributes["mail"] == ["alice@example.com"]
    r = cli(app, "apps", "set", sp.slug, "--add-attribute", "bad\u0085name=field:email")
    assert r.exit_code != 0 and "not valid" in r.output


@pytest.mark.parametrize("spelling", ['user["d\\x65partment"]', 'user[r"department"]', "user['''department''']",
                                      "user.//comment\ndepartment"])
def test_a_field_a_formula_reads_in_any_spelling_cannot_be_removed(app, make_sp, spelling):
    fields_svc.add_field("department", "string")
    db.session.commit()
    sp = make_sp("pysaml2")
    assert cli(app, "apps", "set", sp.slug, "--add-attribute", f"dept=formula:{spelling}").exit_code == 0
    r = cli(app, "fields", "remove", "department")
    assert r.exit_code != 0 and sp.slug in r.output
    assert fields_svc.find_field("department") is not None


@pytest.mark.parametrize("mfa", [False, True])
def test_oidc_claims_keep_the_formula_types_and_session_values(app, client, alice, mfa):
    """ID token and UserInfo give what SAML gives: a one-item list stays a list, a bool and an int keep their JSON
    types, and session.mfa / session.amr are the sign-in's (the token endpoint and UserInfo read them from the
    code and the access token, not from a live session)."""
    from ..oidc_token_kit import exchange, seed_code
    from ..oidc_token_kit import make_client as make_token_client

    row, cid, secret = make_token_client("typed")
    apps_svc.change_settings(row, attributes={
        "teams": 'formula:user.groups.filter(g, g.startsWith("eng"))', "strong": "formula:session.mfa",
        "n": "formula:size(user.groups)", "method": 'formula:session.amr.join(" ")'})
    code, _ = seed_code(row, alice, scopes=("openid", "profile"), mfa=mfa)
    body = exchange(client, code, cid, secret).get_json()
    claims = json.loads(base64.urlsafe_b64decode(body["id_token"].split(".")[1] + "==="))
    assert claims["teams"] == ["engineering"] and claims["strong"] is mfa and claims["n"] == 1
    assert claims["method"] == ("pwd otp mfa" if mfa else "pwd")
    info = client.get("/oauth2/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}).get_json()
    assert (info["teams"], info["strong"], info["n"], info["method"]) == (
        ["engineering"], mfa, 1, claims["method"])
