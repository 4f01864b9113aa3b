"""Issue 15, defaults that work out of the box: what a new app releases from its metadata (real SP metadata
documents from tests/data/sp-metadata), the built-in dictionary of names and OIDs, the basic profile, and the
explanation the app page and `idp apps show` give."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from idp.attributes.dictionary import BASIC_PROFILE, field_for
from idp.attributes.release import (
    ReleaseConfigError,
    Subject,
    compile_release,
    name_format_of,
    parse_source,
    release,
    stored_source,
)
from idp.attributes.schema import FieldDef, FieldType, Schema
from idp.saml.sp_metadata import RequestedAttribute, parse_sp_metadata
from idp.services.apps.release_view import WHY_ADMIN, WHY_BASIC, WHY_REQUESTED, explain_release
from idp.services.apps.settings import AppSettings, default_release, default_settings

DATA = Path(__file__).resolve().parent.parent / "data" / "sp-metadata"
URI = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"
BASIC = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"
WITH_EMPLOYEE = Schema(custom=(FieldDef("employee_number", FieldType.STRING),
                               FieldDef("department", FieldType.STRING)))


def sp(name: str):  # type: ignore[no-untyped-def]
    return parse_sp_metadata((DATA / name).read_bytes())


@pytest.mark.parametrize(("name", "field"), [
    ("urn:oid:0.9.2342.19200300.100.1.3", "email"), ("mail", "email"), ("Mail", "email"),
    ("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress", "email"),
    ("urn:oid:2.5.4.42", "first_name"), ("givenName", "first_name"), ("urn:oid:2.5.4.4", "last_name"),
    ("sn", "last_name"), ("urn:oid:2.16.840.1.113730.3.1.241", "display_name"), ("cn", "display_name"),
    ("uid", "username"), ("urn:oid:1.3.6.1.4.1.5923.1.1.1.6", "username"), ("eduPersonPrincipalName", "username"),
    ("memberOf", "groups"), ("urn:oid:1.2.840.113556.1.2.102", "groups"), ("employeeNumber", "employee_number"),
    ("title", None), ("statecode", None), ("urn:oid:2.5.4.12", None),
])
def test_dictionary(name: str, field: str | None) -> None:
    assert field_for(name) == field


def test_friendly_name_identifies_an_unknown_name() -> None:
    assert field_for("urn:example:x", "givenName") == "first_name"


def test_gitlab_requests_basic_names_with_friendly_names() -> None:
    attributes, formats, friendly = default_release(sp("gitlab-omniauth-saml-ruby-saml.xml"))
    assert attributes == {"email": "email", "name": "display_name", "first_name": "first_name",
                          "last_name": "last_name"}
    assert set(formats.values()) == {"basic"} and friendly["email"] == "Email address"


def test_simplesamlphp_mixes_oids_and_words() -> None:
    attributes, formats, friendly = default_release(sp("sans-simplesamlphp-sp.xml"))
    assert attributes["eduPersonPrincipalName"] == "username" and attributes["mail"] == "email"
    assert attributes["urn:oid:2.5.4.4"] == "last_name" and friendly["urn:oid:2.5.4.4"] == "sn"


def test_unknown_requested_names_are_left_for_the_admin_and_explained() -> None:
    meta = sp("gartner-pingfederate-signed.xml")
    attributes, _, _ = default_release(meta)
    assert attributes["uid"] == "username" and attributes["email"] == "email"
    assert "title" not in attributes and "statecode" not in attributes
    lines, notes = explain_release(AppSettings(attributes=attributes), meta)
    assert all(line.why.startswith(WHY_REQUESTED) for line in lines)
    assert any(n.startswith("title ") and "not released" in n for n in notes)


def test_admin_defined_fields_are_used_only_when_they_exist() -> None:
    requested = (RequestedAttribute("urn:oid:2.16.840.1.113730.3.1.3", URI, "employeeNumber", True),
                 RequestedAttribute("ou", None, None, False))
    meta = replace(sp("gitlab-omniauth-saml-ruby-saml.xml"), requested_attributes=requested)
    assert default_release(meta)[0] == {}
    attributes, formats, friendly = default_release(meta, WITH_EMPLOYEE)
    assert attributes == {"urn:oid:2.16.840.1.113730.3.1.3": "employee_number", "ou": "department"}
    assert formats == {"urn:oid:2.16.840.1.113730.3.1.3": "uri"} and friendly == {
        "urn:oid:2.16.840.1.113730.3.1.3": "employeeNumber"}


def test_no_requested_attribute_gives_the_basic_profile() -> None:
    meta = sp("crewjam-go-saml-sp-post-and-artifact.xml")
    assert not meta.requested_attributes
    s = default_settings(meta)
    assert s.attributes == {k.oid_name: k.field for k in BASIC_PROFILE}
    assert s.friendly_names == {k.oid_name: k.friendly_name for k in BASIC_PROFILE}
    assert set(s.attribute_formats.values()) == {"uri"}
    lines, notes = explain_release(s, meta)
    assert [line.why for line in lines] == [WHY_BASIC] * 4 and notes == []
    changed = AppSettings(attributes={**s.attributes, "extra": "username"})
    assert {line.why for line in explain_release(changed, meta)[0]} == {WHY_ADMIN}


def test_sources_parse_and_store() -> None:
    assert parse_source("field:email") == ("field", "email") == parse_source(" email ")
    assert parse_source("formula: user.email ") == ("formula", "user.email")
    assert stored_source("field:email") == "email" and stored_source("formula:a") == "formula:a"


def test_name_formats() -> None:
    assert name_format_of("urn:oid:1", {}) == URI and name_format_of("mail", {}) == BASIC
    assert name_format_of("mail", {"mail": "uri"}) == URI
    assert name_format_of("x", {"x": "unspecified"}).endswith(":unspecified")


def _compile(**kw):  # type: ignore[no-untyped-def]
    base = {"attributes": {}, "attribute_formats": {}, "friendly_names": {}, "on_missing": "omit",
            "nameid_value": None, "schema": WITH_EMPLOYEE}
    return compile_release(**{**base, **kw})


@pytest.mark.parametrize(("kw", "field", "text"), [
    ({"on_missing": "maybe"}, "on_missing", "omit, deny"),
    ({"attributes": {"a": "nope"}}, "attributes", "unknown user field 'nope'"),
    ({"attributes": {" a": "email"}}, "attributes", "not valid"),
    ({"attributes": {"a\x01": "email"}}, "attributes", "not valid"),
    ({"attributes": {"a": "formula:user.email +"}}, "attributes", "line 1, column"),
    ({"attribute_formats": {"a": "uri"}}, "attribute_formats", "does not release"),
    ({"attributes": {"a": "email"}, "attribute_formats": {"a": "ldap"}}, "attribute_formats", "uri, basic"),
    ({"attributes": {"a": "email"}, "friendly_names": {"a": ""}}, "friendly_names", "1-256"),
    ({"nameid_value": "field:groups"}, "nameid_value", "several values"),
    ({"nameid_value": "formula:user.groups"}, "nameid_value", "gives a list"),
    ({"nameid_value": "field:missing"}, "nameid_value", "unknown user field"),
])
def test_release_settings_refused(kw, field: str, text: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ReleaseConfigError) as info:
        _compile(**kw)
    assert info.value.field == field and text in str(info.value)


def test_release_values_omitted_and_denied() -> None:
    compiled = _compile(attributes={"dept": "department", "mail": "email", "flag": 'formula:"x"',
                                    "n": "formula:user.employee_number"})
    subject = Subject(fields={"email": "a@b.c", "username": "a", "groups": []})
    out = release(compiled, subject, WITH_EMPLOYEE)
    assert [a.name for a in out.attributes] == ["mail", "flag"]
    assert dict(out.omitted)["dept"] == "department has no value for this user"
    assert "not set" in dict(out.omitted)["n"]
    denying = _compile(attributes={"dept": "department"}, on_missing="deny")
    with pytest.raises(Exception) as info:
        release(denying, subject, WITH_EMPLOYEE)
    assert type(info.value).__name__ == "AttributeUnavailable" and info.value.name == "dept"  # type: ignore[attr-defined]


def test_hostile_requested_attributes_never_store_a_release_that_cannot_compile() -> None:
    """121 RequestedAttributes claiming FriendlyName mail, names with newlines or over 1024 characters, a 10 KB
    FriendlyName: the defaults keep what a release may hold and skip the rest."""
    requested = tuple(RequestedAttribute(f"urn:example:{i}", None, "mail", False) for i in range(121)) + (
        RequestedAttribute("bad\nname", None, "mail", False), RequestedAttribute("x" * 2000, None, "mail", False))
    meta = replace(sp("gitlab-omniauth-saml-ruby-saml.xml"), requested_attributes=requested)
    attributes, formats, friendly = default_release(meta)
    assert len(attributes) == 100 and "bad\nname" not in attributes and "x" * 2000 not in attributes
    compile_release(attributes=attributes, attribute_formats=formats, friendly_names=friendly, on_missing="omit",
                    nameid_value=None, schema=Schema())
    long_friendly = (RequestedAttribute("mail", None, "m" * 10_000, False),)
    _, _, friendly = default_release(replace(meta, requested_attributes=long_friendly))
    assert friendly == {}


def test_nameid_value_needs_a_unique_admin_defined_field() -> None:
    schema = Schema(custom=(FieldDef("department", FieldType.STRING), FieldDef("fid", FieldType.STRING, unique=True)))
    with pytest.raises(ReleaseConfigError, match="not a unique field"):
        _compile(nameid_value="field:department", schema=schema)
    assert _compile(nameid_value="field:fid", schema=schema).nameid is not None
    assert _compile(nameid_value="field:email", schema=schema).nameid is not None   # built-in, as --nameid-field
