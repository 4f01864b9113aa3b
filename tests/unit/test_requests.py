"""Unit tests for idp.saml.requests: inbound AuthnRequest / LogoutRequest / LogoutResponse parsing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from idp.saml.constants import (
    AC_PASSWORD_PROTECTED,
    AC_REFEDS_MFA,
    BINDING_POST,
    NAMEID_EMAIL,
    NAMEID_PERSISTENT,
    STATUS_REQUESTER,
    STATUS_SUCCESS,
)
from idp.saml.requests import (
    RequestParseError,
    parse_authn_request,
    parse_instant,
    parse_logout_request,
    parse_logout_response,
    peek_issuer,
)

MAX = 100_000
NS = ('xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
      'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"')
SP = "https://sp.example/metadata"


def authn(attrs: str = "", body: str = "", *, id_: str = "_req1", version: str = "2.0",
          instant: str = "2024-05-01T12:00:00Z", issuer: str = f"<saml:Issuer>{SP}</saml:Issuer>") -> bytes:
    return (f'<samlp:AuthnRequest {NS} ID="{id_}" Version="{version}" IssueInstant="{instant}" {attrs}>'
            f"{issuer}{body}</samlp:AuthnRequest>").encode()


# ---------------------------------------------------------------- AuthnRequest fields


def test_minimal_authn_request() -> None:
    req = parse_authn_request(authn(), MAX)
    assert req.id == "_req1"
    assert req.issuer == SP
    assert req.issue_instant == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert (req.destination, req.acs_url, req.acs_index, req.protocol_binding) == (None, None, None, None)
    assert (req.force_authn, req.is_passive) == (False, False)
    assert (req.nameid_format, req.allow_create) == (None, None)
    assert (req.requested_context_comparison, req.requested_context_refs) == (None, ())
    assert req.to_dict()["issue_instant"] == "2024-05-01T12:00:00+00:00"


def test_full_authn_request() -> None:
    xml = authn(
        f'Destination="https://idp.example/saml/sso" AssertionConsumerServiceURL="https://sp.example/acs" '
        f'ProtocolBinding="{BINDING_POST}" ForceAuthn="true" IsPassive="false"',
        f'<samlp:NameIDPolicy Format="{NAMEID_EMAIL}" AllowCreate="true"/>'
        f'<samlp:RequestedAuthnContext Comparison="minimum">'
        f"<saml:AuthnContextClassRef>{AC_PASSWORD_PROTECTED}</saml:AuthnContextClassRef>"
        f"<saml:AuthnContextClassRef>{AC_REFEDS_MFA}</saml:AuthnContextClassRef>"
        f"</samlp:RequestedAuthnContext>",
    )
    req = parse_authn_request(xml, MAX)
    assert req.destination == "https://idp.example/saml/sso"
    assert req.acs_url == "https://sp.example/acs"
    assert req.acs_index is None
    assert req.protocol_binding == BINDING_POST
    assert (req.force_authn, req.is_passive) == (True, False)
    assert (req.nameid_format, req.allow_create) == (NAMEID_EMAIL, True)
    assert req.requested_context_comparison == "minimum"
    assert req.requested_context_refs == (AC_PASSWORD_PROTECTED, AC_REFEDS_MFA)


@pytest.mark.parametrize(
    ("attrs", "force_authn", "is_passive"),
    [
        ("", False, False),
        ('ForceAuthn="true"', True, False),
        ('ForceAuthn="1"', True, False),
        ('ForceAuthn="false"', False, False),
        ('ForceAuthn="0"', False, False),
        ('IsPassive="true"', False, True),
        ('IsPassive="1"', False, True),
        ('IsPassive="0"', False, False),
        ('ForceAuthn="1" IsPassive="1"', True, True),
    ],
)
def test_boolean_attributes(attrs: str, force_authn: bool, is_passive: bool) -> None:
    req = parse_authn_request(authn(attrs), MAX)
    assert (req.force_authn, req.is_passive) == (force_authn, is_passive)


@pytest.mark.parametrize(
    "attrs",
    ['ForceAuthn="yes"', 'ForceAuthn="TRUE"', 'IsPassive="True"', 'IsPassive=""', 'IsPassive="2"'],
)
def test_boolean_attributes_invalid(attrs: str) -> None:
    with pytest.raises(RequestParseError, match="not a boolean"):
        parse_authn_request(authn(attrs), MAX)


@pytest.mark.parametrize(
    ("policy", "fmt", "allow_create"),
    [
        ("", None, None),
        ("<samlp:NameIDPolicy/>", None, None),
        (f'<samlp:NameIDPolicy Format="{NAMEID_PERSISTENT}"/>', NAMEID_PERSISTENT, None),
        ('<samlp:NameIDPolicy AllowCreate="1"/>', None, True),
        (f'<samlp:NameIDPolicy Format="{NAMEID_EMAIL}" AllowCreate="false"/>', NAMEID_EMAIL, False),
    ],
)
def test_nameid_policy(policy: str, fmt: str | None, allow_create: bool | None) -> None:
    req = parse_authn_request(authn(body=policy), MAX)
    assert (req.nameid_format, req.allow_create) == (fmt, allow_create)


def test_nameid_policy_allow_create_invalid() -> None:
    with pytest.raises(RequestParseError, match="AllowCreate"):
        parse_authn_request(authn(body='<samlp:NameIDPolicy AllowCreate="maybe"/>'), MAX)


def rac(comparison: str | None, *refs: str, decl: bool = False) -> str:
    tag = "AuthnContextDeclRef" if decl else "AuthnContextClassRef"
    attr = f' Comparison="{comparison}"' if comparison is not None else ""
    inner = "".join(f"<saml:{tag}>{r}</saml:{tag}>" for r in refs)
    return f"<samlp:RequestedAuthnContext{attr}>{inner}</samlp:RequestedAuthnContext>"


@pytest.mark.parametrize(
    ("body", "comparison", "refs"),
    [
        (rac(None, AC_REFEDS_MFA), "exact", (AC_REFEDS_MFA,)),
        (rac("exact", AC_REFEDS_MFA), "exact", (AC_REFEDS_MFA,)),
        (rac("minimum", AC_PASSWORD_PROTECTED), "minimum", (AC_PASSWORD_PROTECTED,)),
        (rac("maximum", AC_PASSWORD_PROTECTED), "maximum", (AC_PASSWORD_PROTECTED,)),
        (rac("better", AC_PASSWORD_PROTECTED, AC_REFEDS_MFA), "better", (AC_PASSWORD_PROTECTED, AC_REFEDS_MFA)),
        (rac("exact", f"  {AC_REFEDS_MFA}\n "), "exact", (AC_REFEDS_MFA,)),
        (rac("exact", "urn:x:decl", decl=True), "exact", ("decl:urn:x:decl",)),
    ],
    ids=["default-exact", "exact", "minimum", "maximum", "better-two", "whitespace", "declref"],
)
def test_requested_authn_context(body: str, comparison: str, refs: tuple[str, ...]) -> None:
    req = parse_authn_request(authn(body=body), MAX)
    assert req.requested_context_comparison == comparison
    assert req.requested_context_refs == refs


def test_requested_authn_context_bad_comparison() -> None:
    with pytest.raises(RequestParseError, match="Comparison"):
        parse_authn_request(authn(body=rac("atleast", AC_REFEDS_MFA)), MAX)


@pytest.mark.parametrize(
    ("attrs", "acs_url", "acs_index"),
    [
        ('AssertionConsumerServiceURL="https://sp.example/acs"', "https://sp.example/acs", None),
        ('AssertionConsumerServiceIndex="0"', None, 0),
        ('AssertionConsumerServiceIndex="3"', None, 3),
        ('AssertionConsumerServiceIndex="65535"', None, 65535),
    ],
)
def test_acs_url_or_index(attrs: str, acs_url: str | None, acs_index: int | None) -> None:
    req = parse_authn_request(authn(attrs), MAX)
    assert (req.acs_url, req.acs_index) == (acs_url, acs_index)


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ('AssertionConsumerServiceURL="https://sp.example/acs" AssertionConsumerServiceIndex="1"', "exclusive"),
        ('AssertionConsumerServiceIndex="-1"', "unsignedShort"),
        ('AssertionConsumerServiceIndex="1.0"', "unsignedShort"),
        ('AssertionConsumerServiceIndex=""', "unsignedShort"),
        ('AssertionConsumerServiceIndex="123456"', "unsignedShort"),
        ('AssertionConsumerServiceIndex="65536"', "AssertionConsumerServiceIndex is not an unsignedShort"),
        ('AssertionConsumerServiceIndex="99999"', "AssertionConsumerServiceIndex is not an unsignedShort"),
        # str.isdigit() accepts these but int() does not (or reads them as other digits): refused cleanly
        ('AssertionConsumerServiceIndex="\u00b2"', "AssertionConsumerServiceIndex is not an unsignedShort"),
        ('AssertionConsumerServiceIndex="\u0661"', "AssertionConsumerServiceIndex is not an unsignedShort"),
    ],
    ids=["url-and-index", "negative", "decimal", "empty", "too-long", "65536", "99999", "superscript-two",
         "arabic-indic-digit"],
)
def test_acs_refused(attrs: str, message: str) -> None:
    with pytest.raises(RequestParseError, match=message):
        parse_authn_request(authn(attrs), MAX)


def test_protocol_binding() -> None:
    assert parse_authn_request(authn(f'ProtocolBinding="{BINDING_POST}"'), MAX).protocol_binding == BINDING_POST


# ---------------------------------------------------------------- common header checks


@pytest.mark.parametrize(
    "id_",
    [
        "_abc",
        "abc",
        "a1.b-c_d",
        "id-" + "x" * 253,  # exactly 256 characters
    ],
)
def test_id_accepted(id_: str) -> None:
    assert parse_authn_request(authn(id_=id_), MAX).id == id_


@pytest.mark.parametrize(
    "id_",
    [
        "",
        "1abc",
        "a b",
        "-abc",
        ".abc",
        "a:b",
        "a#b",
        "id-" + "x" * 254,  # 257 characters
        "_abc&#10;",  # a trailing newline: the pattern must match the whole value, not stop before "\n"
    ],
    ids=["empty", "leading-digit", "space", "leading-hyphen", "leading-dot", "colon", "hash", "257-chars",
         "trailing-newline"],
)
def test_id_not_ncname_refused(id_: str) -> None:
    with pytest.raises(RequestParseError, match="ID is missing or not an NCName"):
        parse_authn_request(authn(id_=id_), MAX)


def test_id_missing_refused() -> None:
    xml = authn().replace(b' ID="_req1"', b"")
    with pytest.raises(RequestParseError, match="ID is missing"):
        parse_authn_request(xml, MAX)


@pytest.mark.parametrize("version", ["1.1", "2", "2.0 ", "", "3.0"])
def test_version_refused(version: str) -> None:
    with pytest.raises(RequestParseError, match="Version must be 2.0"):
        parse_authn_request(authn(version=version), MAX)


@pytest.mark.parametrize(
    ("issuer", "message"),
    [
        ("", "Issuer is missing"),
        ("<saml:Issuer></saml:Issuer>", "Issuer is missing"),
        ("<saml:Issuer>   </saml:Issuer>", "Issuer is missing"),
        ("<samlp:Issuer>https://sp.example</samlp:Issuer>", "Issuer is missing"),  # wrong namespace
        ('<saml:Issuer Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress">a@b</saml:Issuer>',
         "Issuer Format must be entity"),
        ('<saml:Issuer Format="">https://sp.example</saml:Issuer>', "Issuer Format must be entity"),
    ],
    ids=["absent", "empty", "blank", "wrong-namespace", "email-format", "empty-format"],
)
def test_issuer_refused(issuer: str, message: str) -> None:
    with pytest.raises(RequestParseError, match=message):
        parse_authn_request(authn(issuer=issuer), MAX)


@pytest.mark.parametrize(
    "issuer",
    [
        f"<saml:Issuer>{SP}</saml:Issuer>",
        f'<saml:Issuer Format="urn:oasis:names:tc:SAML:2.0:nameid-format:entity">{SP}</saml:Issuer>',
        f"<saml:Issuer>\n  {SP}\n</saml:Issuer>",
        "<saml:Issuer>https://sp<!---->.example/metadata</saml:Issuer>",
    ],
    ids=["plain", "entity-format", "whitespace", "comment"],
)
def test_issuer_accepted(issuer: str) -> None:
    assert parse_authn_request(authn(issuer=issuer), MAX).issuer == SP


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, 0, tzinfo=UTC)),
        ("2024-05-01T12:00:00.123Z", datetime(2024, 5, 1, 12, 0, tzinfo=UTC)),
        ("2024-05-01T12:00:00.123456789Z", datetime(2024, 5, 1, 12, 0, tzinfo=UTC)),
        ("2024-05-01T12:00:00+02:00", datetime(2024, 5, 1, 10, 0, tzinfo=UTC)),
        ("2024-05-01T12:00:00-05:30", datetime(2024, 5, 1, 17, 30, tzinfo=UTC)),
        ("2024-05-01T00:30:00+01:00", datetime(2024, 4, 30, 23, 30, tzinfo=UTC)),
        ("2024-05-01T12:00:00", datetime(2024, 5, 1, 12, 0, tzinfo=UTC)),
        (" 2024-05-01T12:00:00Z ", datetime(2024, 5, 1, 12, 0, tzinfo=UTC)),
        ("2024-05-01T12:00:00+14:00", datetime(2024, 4, 30, 22, 0, tzinfo=UTC)),
        ("2024-05-01T12:00:00-14:00", datetime(2024, 5, 2, 2, 0, tzinfo=UTC)),
        ("2024-05-01T12:00:00+13:59", datetime(2024, 4, 30, 22, 1, tzinfo=UTC)),
        ("0001-01-01T00:00:00-01:00", datetime(1, 1, 1, 1, 0, tzinfo=UTC)),
        ("9999-12-31T23:59:59+01:00", datetime(9999, 12, 31, 22, 59, 59, tzinfo=UTC)),
    ],
    ids=["z", "millis", "nanos", "plus-two", "minus-five-thirty", "crosses-midnight", "no-timezone", "padded",
         "max-offset", "min-offset", "plus-thirteen-fifty-nine", "first-year", "last-year"],
)
def test_issue_instant_formats(value: str, expected: datetime) -> None:
    assert parse_instant(value, "IssueInstant") == expected
    assert parse_authn_request(authn(instant=value.strip()), MAX).issue_instant == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "yesterday",
        "2024-05-01",
        "2024-05-01 12:00:00Z",
        "2024-05-01T12:00Z",
        "2024-13-01T12:00:00Z",
        "2024-02-30T12:00:00Z",
        "2024-05-01T25:00:00Z",
        "1714564800",
        "2024-05-01T12:00:00+0200",
        "2024-05-01T12:00:00z",
        "2024-05-01T12:00:00ZZ",
        "0001-01-01T00:00:00+01:00",  # converting to UTC would underflow datetime.min
        "9999-12-31T23:59:59-01:00",  # converting to UTC would overflow datetime.max
        "2024-05-01T12:00:00+99:99",  # offsets are limited to +-14:00 with minutes 00..59
        "2024-05-01T12:00:00+14:01",
        "2024-05-01T12:00:00-15:00",
        "2024-05-01T12:00:00+00:60",
    ],
)
def test_issue_instant_refused(value: str) -> None:
    # always a RequestParseError naming the field, never a bare ValueError/OverflowError
    with pytest.raises(RequestParseError, match=r"^IssueInstant "):
        parse_instant(value, "IssueInstant")


def test_issue_instant_missing() -> None:
    xml = authn().replace(b' IssueInstant="2024-05-01T12:00:00Z"', b"")
    with pytest.raises(RequestParseError, match="IssueInstant is not an xs:dateTime"):
        parse_authn_request(xml, MAX)


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        (authn().replace(b"samlp:AuthnRequest", b"samlp:LogoutRequest"), "expected a samlp:AuthnRequest"),
        (authn().replace(b"urn:oasis:names:tc:SAML:2.0:protocol", b"urn:evil"), "expected a samlp:AuthnRequest"),
        (b"<AuthnRequest/>", "expected a samlp:AuthnRequest, got AuthnRequest"),
        (b"<samlp:Response " + NS.encode() + b"/>", "got Response"),
        (b"not xml", "not well-formed"),
        (b"<!DOCTYPE x><x/>", "DOCTYPE"),
        (b"", "empty"),
    ],
    ids=["logout-request", "wrong-namespace", "no-namespace", "response", "not-xml", "doctype", "empty"],
)
def test_wrong_document_refused(xml: bytes, message: str) -> None:
    with pytest.raises(RequestParseError, match=message):
        parse_authn_request(xml, MAX)


def test_oversized_refused() -> None:
    xml = authn(body="<!--" + "x" * 2000 + "-->")
    with pytest.raises(RequestParseError, match="larger than"):
        parse_authn_request(xml, 1000)


@pytest.mark.parametrize(
    ("xml", "expected"),
    [
        (authn(), SP),
        (authn(version="1.0"), SP),
        (authn(issuer=""), None),
        (b"garbage", None),
    ],
)
def test_peek_issuer(xml: bytes, expected: str | None) -> None:
    assert peek_issuer(xml, MAX) == expected


# ---------------------------------------------------------------- LogoutRequest


def logout_request(body: str, attrs: str = "") -> bytes:
    return (f'<samlp:LogoutRequest {NS} ID="_lr1" Version="2.0" IssueInstant="2024-05-01T12:00:00Z" '
            f'Destination="https://idp.example/saml/slo" {attrs}>'
            f"<saml:Issuer>{SP}</saml:Issuer>{body}</samlp:LogoutRequest>").encode()


def test_logout_request_fields() -> None:
    xml = logout_request(
        f'<saml:NameID Format="{NAMEID_EMAIL}">alice@example.com</saml:NameID>'
        "<samlp:SessionIndex>_s1</samlp:SessionIndex><samlp:SessionIndex> _s2 </samlp:SessionIndex>",
        'NotOnOrAfter="2024-05-01T12:05:00+01:00"',
    )
    req = parse_logout_request(xml, MAX)
    assert (req.id, req.issuer, req.destination) == ("_lr1", SP, "https://idp.example/saml/slo")
    assert (req.name_id, req.name_id_format) == ("alice@example.com", NAMEID_EMAIL)
    assert req.session_indexes == ("_s1", "_s2")
    assert req.not_on_or_after == datetime(2024, 5, 1, 11, 5, tzinfo=UTC)


def test_logout_request_minimal() -> None:
    req = parse_logout_request(logout_request("<saml:NameID>alice</saml:NameID>"), MAX)
    assert (req.name_id, req.name_id_format, req.session_indexes, req.not_on_or_after) == ("alice", None, (), None)


def test_logout_request_nameid_comment_injection() -> None:
    req = parse_logout_request(logout_request("<saml:NameID>admin@x<!---->.evil.example</saml:NameID>"), MAX)
    assert req.name_id == "admin@x.evil.example"


@pytest.mark.parametrize(
    ("body", "attrs", "message"),
    [
        ("", "", "no NameID"),
        ("<saml:EncryptedID><xenc:EncryptedData xmlns:xenc='http://www.w3.org/2001/04/xmlenc#'/></saml:EncryptedID>",
         "", "encrypted NameIDs"),
        ("<saml:BaseID/>", "", "no NameID"),
        ("<saml:NameID>a</saml:NameID>", 'NotOnOrAfter="soon"', "NotOnOrAfter is not an xs:dateTime"),
    ],
    ids=["no-nameid", "encrypted-id", "base-id", "bad-not-on-or-after"],
)
def test_logout_request_refused(body: str, attrs: str, message: str) -> None:
    with pytest.raises(RequestParseError, match=message):
        parse_logout_request(logout_request(body, attrs), MAX)


def test_logout_request_is_not_an_authn_request() -> None:
    with pytest.raises(RequestParseError, match="expected a samlp:LogoutRequest"):
        parse_logout_request(authn(), MAX)


# ---------------------------------------------------------------- LogoutResponse


def logout_response(status: str, attrs: str = 'InResponseTo="_lr9"') -> bytes:
    return (f'<samlp:LogoutResponse {NS} ID="_resp1" Version="2.0" IssueInstant="2024-05-01T12:00:00Z" {attrs}>'
            f"<saml:Issuer>{SP}</saml:Issuer>{status}</samlp:LogoutResponse>").encode()


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (f'<samlp:Status><samlp:StatusCode Value="{STATUS_SUCCESS}"/></samlp:Status>', STATUS_SUCCESS),
        (f'<samlp:Status><samlp:StatusCode Value="{STATUS_REQUESTER}"><samlp:StatusCode '
         f'Value="urn:oasis:names:tc:SAML:2.0:status:RequestDenied"/></samlp:StatusCode></samlp:Status>',
         STATUS_REQUESTER),
    ],
    ids=["success", "requester-with-sub-status"],
)
def test_logout_response_status(status: str, expected: str) -> None:
    resp = parse_logout_response(logout_response(status), MAX)
    assert (resp.id, resp.issuer, resp.in_response_to, resp.status) == ("_resp1", SP, "_lr9", expected)


def test_logout_response_without_in_response_to() -> None:
    status = f'<samlp:Status><samlp:StatusCode Value="{STATUS_SUCCESS}"/></samlp:Status>'
    assert parse_logout_response(logout_response(status, attrs=""), MAX).in_response_to is None


@pytest.mark.parametrize(
    "status",
    [
        "",
        "<samlp:Status/>",
        "<samlp:Status><samlp:StatusCode/></samlp:Status>",
        '<samlp:Status><samlp:StatusCode Value=""/></samlp:Status>',
        f'<saml:Status><saml:StatusCode Value="{STATUS_SUCCESS}"/></saml:Status>',
    ],
    ids=["no-status", "empty-status", "no-value", "empty-value", "wrong-namespace"],
)
def test_logout_response_without_status_refused(status: str) -> None:
    with pytest.raises(RequestParseError, match="no StatusCode"):
        parse_logout_response(logout_response(status), MAX)
