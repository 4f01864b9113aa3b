"""Unit tests for idp.saml.responses (and idp.saml.idp_metadata): what the IdP sends, checked with
the IdP's own verifier, plain xmlsec and signxml, and the IdP metadata read by pysaml2 and python3-saml."""

from __future__ import annotations

import base64
import dataclasses
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from signxml import XMLVerifier

from idp.certs.generate import generate_key_pair
from idp.saml.constants import (
    AC_PASSWORD_PROTECTED,
    ATTRNAME_BASIC,
    ATTRNAME_URI,
    BINDING_POST,
    BINDING_REDIRECT,
    CM_BEARER,
    NAMEID_EMAIL,
    NAMEID_FORMATS,
    NAMEID_PERSISTENT,
    NS_DS,
    NS_MD,
    NS_SAML,
    NS_SAMLP,
    SIG_ECDSA_SHA256,
    SIG_RSA_SHA256,
    SIG_RSA_SHA512,
    STATUS_NO_AUTHN_CONTEXT,
    STATUS_PARTIAL_LOGOUT,
    STATUS_REQUEST_DENIED,
    STATUS_REQUESTER,
    STATUS_RESPONDER,
    STATUS_SUCCESS,
)
from idp.saml.encryption import encrypt_assertion_xml
from idp.saml.idp_metadata import IdpMetadataSpec, build_idp_metadata
from idp.saml.requests import parse_logout_request, parse_logout_response
from idp.saml.responses import (
    AssertionSpec,
    SigningChoice,
    attribute_values,
    build_error_response,
    build_logout_request,
    build_logout_response,
    build_response,
    instant,
    map_attributes,
    new_id,
)
from idp.saml.signing import allowed_algorithms, verify_enveloped
from idp.saml.xmlsafe import parse_untrusted_xml

DS = f"{{{NS_DS}}}"
SAML = f"{{{NS_SAML}}}"
SAMLP = f"{{{NS_SAMLP}}}"
MD = f"{{{NS_MD}}}"
NS_XS = "http://www.w3.org/2001/XMLSchema"
NS_XSI = "http://www.w3.org/2001/XMLSchema-instance"
NCNAME = re.compile(r"[A-Za-z_][\w.\-]*\Z")
ALLOWED = allowed_algorithms(False)

IDP = "https://idp.example/saml/metadata"
SP = "https://sp.example/metadata"
ACS = "https://sp.example/acs"
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
HOSTILE = "<b>&amp;</b> \"double\" 'single' ]]> <!-- c -->"


@dataclasses.dataclass(frozen=True)
class IdpKey:
    private_key: Any
    cert_pem: str
    cert_b64: str
    private_pem: bytes = b""


def make_key(key_type: str) -> IdpKey:
    gen = generate_key_pair("idp.example", key_type, 30)
    key = serialization.load_pem_private_key(gen.key_pem, None)
    der = x509.load_pem_x509_certificate(gen.cert_pem).public_bytes(serialization.Encoding.DER)
    return IdpKey(key, gen.cert_pem.decode("ascii"), base64.b64encode(der).decode("ascii"), gen.key_pem)


@pytest.fixture(scope="module")
def idp_key() -> IdpKey:
    return make_key("rsa2048")


@pytest.fixture(scope="module")
def idp_ec_key() -> IdpKey:
    return make_key("ec-p256")


@pytest.fixture(scope="module")
def next_key() -> IdpKey:
    return make_key("rsa2048")


def signing_choice(key: IdpKey, *args: Any, **kw: Any) -> SigningChoice:
    """What idp.flows.saml_keys.signing_for hands the builder: the private key and the certificate text."""
    return SigningChoice(key.private_key, *args, cert_b64=key.cert_b64, **kw)


def make_spec(**overrides: object) -> AssertionSpec:
    values: dict[str, object] = dict(
        issuer=IDP, audience=SP, destination=ACS, in_response_to="_req1", name_id="alice@example.com",
        name_id_format=NAMEID_EMAIL, session_index="_sess1", authn_instant=NOW - timedelta(minutes=3),
        authn_context=AC_PASSWORD_PROTECTED, now=NOW, lifetime=timedelta(minutes=5),
        clock_skew=timedelta(seconds=90), session_not_on_or_after=NOW + timedelta(hours=8),
        attributes=[
            ("mail", None, ["alice@example.com"]),
            ("urn:oid:0.9.2342.19200300.100.1.3", ATTRNAME_URI, ["alice@example.com"]),
            ("groups", None, ["staff", "admins", "vpn-users"]),
            ("Display Name", ATTRNAME_BASIC, ["Alice Example"]),
        ],
    )
    values.update(overrides)
    return AssertionSpec(**values)  # type: ignore[arg-type]


def parse(xml: bytes) -> etree._Element:
    return parse_untrusted_xml(xml, max_bytes=1_000_000)


def build(key: IdpKey, spec: AssertionSpec | None = None, **choice: object) -> etree._Element:
    return parse(build_response(spec or make_spec(), signing_choice(key, **choice)))  # type: ignore[arg-type]


def assertion_of(root: etree._Element) -> etree._Element:
    assertions = root.findall(f"{SAML}Assertion")
    assert len(assertions) == 1
    return assertions[0]


def xmlsec_verify(element: etree._Element, cert_pem: str) -> None:
    """Check one enveloped signature of `element` with plain xmlsec (for a Response that also holds a signed
    Assertion, where verify_enveloped's one-signature rule for inbound messages does not apply)."""
    sigs = element.findall(f"{DS}Signature")
    assert len(sigs) == 1
    refs = sigs[0].findall(f"{DS}SignedInfo/{DS}Reference")
    assert [r.get("URI") for r in refs] == ["#" + element.get("ID")]
    xmlsec.tree.add_ids(element, ["ID"])
    ctx = xmlsec.SignatureContext()
    ctx.key = xmlsec.Key.from_memory(cert_pem.encode(), xmlsec.KeyFormat.CERT_PEM, None)
    ctx.verify(sigs[0])


# ---------------------------------------------------------------- content of a Success response


def test_response_envelope(idp_key: IdpKey) -> None:
    root = build(idp_key)
    assert root.tag == f"{SAMLP}Response"
    assert root.get("Version") == "2.0"
    assert root.get("IssueInstant") == "2024-05-01T12:00:00Z"
    assert root.get("Destination") == ACS
    assert root.get("InResponseTo") == "_req1"
    assert root.findtext(f"{SAML}Issuer") == IDP
    assert root[0].tag == f"{SAML}Issuer"
    codes = root.findall(f"{SAMLP}Status/{SAMLP}StatusCode")
    assert [c.get("Value") for c in codes] == [STATUS_SUCCESS]
    assert len(codes[0]) == 0


def test_response_without_in_response_to(idp_key: IdpKey) -> None:
    root = build(idp_key, make_spec(in_response_to=None))
    assert "InResponseTo" not in root.attrib
    data = assertion_of(root).find(f"{SAML}Subject/{SAML}SubjectConfirmation/{SAML}SubjectConfirmationData")
    assert "InResponseTo" not in data.attrib


def test_assertion_content(idp_key: IdpKey) -> None:
    a = assertion_of(build(idp_key))
    assert a.get("Version") == "2.0"
    assert a.get("IssueInstant") == "2024-05-01T12:00:00Z"
    assert a.findtext(f"{SAML}Issuer") == IDP

    name_id = a.find(f"{SAML}Subject/{SAML}NameID")
    assert name_id.text == "alice@example.com"
    assert name_id.get("Format") == NAMEID_EMAIL
    assert "SPNameQualifier" not in name_id.attrib
    conf = a.find(f"{SAML}Subject/{SAML}SubjectConfirmation")
    assert conf.get("Method") == CM_BEARER
    data = conf.find(f"{SAML}SubjectConfirmationData")
    assert dict(data.attrib) == {"Recipient": ACS, "NotOnOrAfter": "2024-05-01T12:05:00Z", "InResponseTo": "_req1"}

    cond = a.find(f"{SAML}Conditions")
    assert cond.get("NotBefore") == "2024-05-01T11:58:30Z"
    assert cond.get("NotOnOrAfter") == "2024-05-01T12:05:00Z"
    assert [el.text for el in cond.iterfind(f"{SAML}AudienceRestriction/{SAML}Audience")] == [SP]

    authn = a.find(f"{SAML}AuthnStatement")
    assert authn.get("AuthnInstant") == "2024-05-01T11:57:00Z"
    assert authn.get("SessionIndex") == "_sess1"
    assert authn.get("SessionNotOnOrAfter") == "2024-05-01T20:00:00Z"
    assert authn.findtext(f"{SAML}AuthnContext/{SAML}AuthnContextClassRef") == AC_PASSWORD_PROTECTED


def test_assertion_element_order(idp_key: IdpKey) -> None:
    """saml-core §2.3.3: Issuer, Signature, Subject, Conditions, statements."""
    a = assertion_of(build(idp_key))
    assert [etree.QName(el).localname for el in a] == [
        "Issuer", "Signature", "Subject", "Conditions", "AuthnStatement", "AttributeStatement"]


def test_attributes_exact_names_and_multiple_values(idp_key: IdpKey) -> None:
    raw = build_response(make_spec(), signing_choice(idp_key))
    a = assertion_of(parse(raw))
    attrs = a.findall(f"{SAML}AttributeStatement/{SAML}Attribute")
    got = [(at.get("Name"), at.get("NameFormat"), [v.text for v in at.iterfind(f"{SAML}AttributeValue")])
           for at in attrs]
    assert got == [
        ("mail", ATTRNAME_BASIC, ["alice@example.com"]),
        ("urn:oid:0.9.2342.19200300.100.1.3", ATTRNAME_URI, ["alice@example.com"]),
        ("groups", ATTRNAME_BASIC, ["staff", "admins", "vpn-users"]),
        ("Display Name", ATTRNAME_BASIC, ["Alice Example"]),
    ]
    # No xsi:type="xs:string": a QName-valued attribute binds a prefix that exclusive c14n does not sign
    # and that SPs re-serialising a decrypted assertion lose; untyped values are plain strings anyway.
    for value in a.iter(f"{SAML}AttributeValue"):
        assert dict(value.attrib) == {}
        assert len(value) == 0
    # ... and the Assertion no longer declares the xs / xsi namespaces at all
    assert NS_XS not in a.nsmap.values()
    assert NS_XSI not in a.nsmap.values()
    assert b"XMLSchema" not in raw


@pytest.mark.parametrize(
    ("overrides", "present"),
    [
        ({"attributes": ()}, False),
        ({"session_not_on_or_after": None}, True),
        ({"sp_name_qualifier": SP, "name_id_format": NAMEID_PERSISTENT}, True),
    ],
    ids=["no-attributes", "no-session-not-on-or-after", "sp-name-qualifier"],
)
def test_optional_parts(idp_key: IdpKey, overrides: dict[str, object], present: bool) -> None:
    a = assertion_of(build(idp_key, make_spec(**overrides)))
    assert (a.find(f"{SAML}AttributeStatement") is not None) is present
    authn = a.find(f"{SAML}AuthnStatement")
    assert ("SessionNotOnOrAfter" in authn.attrib) is (overrides.get("session_not_on_or_after", 1) is not None)
    name_id = a.find(f"{SAML}Subject/{SAML}NameID")
    assert name_id.get("SPNameQualifier") == overrides.get("sp_name_qualifier")
    assert name_id.get("Format") == overrides.get("name_id_format", NAMEID_EMAIL)


@pytest.mark.parametrize(
    "field",
    ["name_id", "attribute", "audience", "session_index"],
)
def test_user_data_with_markup_is_text(idp_key: IdpKey, field: str) -> None:
    overrides: dict[str, object] = {
        "name_id": {"name_id": HOSTILE},
        "attribute": {"attributes": [("displayName", None, [HOSTILE, "plain"])]},
        "audience": {"audience": HOSTILE},
        "session_index": {"session_index": HOSTILE},
    }[field]
    raw = build_response(make_spec(**overrides), signing_choice(idp_key))
    assert b"<b>" not in raw and b"<!-- c -->" not in raw
    # escaped as exclusive c14n writes it (">" stays literal inside attribute values, which is well-formed)
    assert b"&lt;b&gt;&amp;amp;&lt;/b&gt;" in raw or b"&lt;b>&amp;amp;&lt;/b>" in raw
    root = parse(raw)
    assert not list(root.iter("b")), "user data became an element"
    assert not [el for el in root.iter() if not isinstance(el.tag, str)], "user data became a comment"
    a = assertion_of(root)
    found = {
        "name_id": lambda: a.findtext(f"{SAML}Subject/{SAML}NameID"),
        "attribute": lambda: a.findtext(f"{SAML}AttributeStatement/{SAML}Attribute/{SAML}AttributeValue"),
        "audience": lambda: a.findtext(f"{SAML}Conditions/{SAML}AudienceRestriction/{SAML}Audience"),
        "session_index": lambda: a.find(f"{SAML}AuthnStatement").get("SessionIndex"),
    }[field]()
    assert found == HOSTILE
    xmlsec_verify(root, idp_key.cert_pem)


@pytest.mark.parametrize("bad", ["\x00", "\x07", "\ud800"])
def test_user_data_that_xml_cannot_carry_is_refused(idp_key: IdpKey, bad: str) -> None:
    with pytest.raises(ValueError):
        build_response(make_spec(name_id="alice" + bad), signing_choice(idp_key))


# ---------------------------------------------------------------- IDs


def test_ids_are_ncnames_and_unique(idp_key: IdpKey) -> None:
    ids = {new_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(NCNAME.match(i) and len(i) == 33 for i in ids)
    roots = [build(idp_key) for _ in range(3)]
    seen = [r.get("ID") for r in roots] + [assertion_of(r).get("ID") for r in roots]
    assert len(set(seen)) == 6
    assert all(NCNAME.match(i) for i in seen)


def test_spec_ids_are_used(idp_key: IdpKey) -> None:
    root = build(idp_key, make_spec(response_id="_resp-x", assertion_id="_assert-x"))
    assert (root.get("ID"), assertion_of(root).get("ID")) == ("_resp-x", "_assert-x")


@pytest.mark.parametrize(
    ("dt", "expected"),
    [
        (datetime(2024, 5, 1, 12, 0, 0, 999_999, tzinfo=UTC), "2024-05-01T12:00:00Z"),
        (datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC), "1999-12-31T23:59:59Z"),
    ],
)
def test_instant(dt: datetime, expected: str) -> None:
    assert instant(dt) == expected


# ---------------------------------------------------------------- signing modes


@pytest.mark.parametrize(
    ("sign_response", "sign_assertion"),
    [(True, True), (True, False), (False, True), (False, False)],
    ids=["both", "response", "assertion", "none"],
)
def test_sign_modes(idp_key: IdpKey, sign_response: bool, sign_assertion: bool) -> None:
    raw = build_response(make_spec(), signing_choice(idp_key, SIG_RSA_SHA256, sign_response,
                                                    sign_assertion))
    root = parse(raw)
    a = assertion_of(root)
    assert (root.find(f"{DS}Signature") is not None) is sign_response
    assert (a.find(f"{DS}Signature") is not None) is sign_assertion
    assert len(root.findall(f".//{DS}Signature")) == sign_response + sign_assertion
    if sign_response:
        assert root[1].tag == f"{DS}Signature"  # right after the Issuer
        xmlsec_verify(root, idp_key.cert_pem)
        if not sign_assertion:
            assert verify_enveloped(root, [idp_key.cert_pem], ALLOWED) == SIG_RSA_SHA256
        result = XMLVerifier().verify(raw, x509_cert=idp_key.cert_pem)
        assert etree.QName(result.signed_xml).localname == "Response"
        assert result.signed_xml.get("ID") == root.get("ID")
    if sign_assertion:
        assert a[1].tag == f"{DS}Signature"
        assert verify_enveloped(a, [idp_key.cert_pem], ALLOWED) == SIG_RSA_SHA256
        result = XMLVerifier().verify(etree.tostring(a), x509_cert=idp_key.cert_pem)
        assert etree.QName(result.signed_xml).localname == "Assertion"
    if not sign_response and not sign_assertion:
        with pytest.raises(Exception, match="[Ss]ignature"):
            XMLVerifier().verify(raw, x509_cert=idp_key.cert_pem)


@pytest.mark.parametrize(("key", "algorithm"), [("idp_key", SIG_RSA_SHA512), ("idp_ec_key", SIG_ECDSA_SHA256)])
def test_other_algorithms_verify(request: pytest.FixtureRequest, key: str, algorithm: str) -> None:
    k = request.getfixturevalue(key)
    raw = build_response(make_spec(), signing_choice(k, algorithm))
    root = parse(raw)
    assert verify_enveloped(assertion_of(root), [k.cert_pem], ALLOWED) == algorithm
    xmlsec_verify(root, k.cert_pem)
    XMLVerifier().verify(raw, x509_cert=k.cert_pem)


def test_signature_covers_assertion(idp_key: IdpKey) -> None:
    raw = build_response(make_spec(), signing_choice(idp_key, sign_assertion=True, sign_response=False))
    forged = raw.replace(b"alice@example.com</saml:NameID>", b"admin@example.com</saml:NameID>")
    assert forged != raw
    with pytest.raises(Exception, match="[Dd]igest|verif"):
        XMLVerifier().verify(etree.tostring(assertion_of(parse(forged))), x509_cert=idp_key.cert_pem)


def test_response_signed_with_another_key_fails(idp_key: IdpKey, next_key: IdpKey) -> None:
    raw = build_response(make_spec(), signing_choice(idp_key, sign_assertion=False))
    with pytest.raises(Exception, match="does not verify"):
        verify_enveloped(parse(raw), [next_key.cert_pem], ALLOWED)


def test_encrypt_hook_receives_the_signed_assertion(idp_key: IdpKey) -> None:
    """Sign, then encrypt (saml-core §6.2), then sign the Response over the EncryptedAssertion. The hook
    gets the signed Assertion's octets (a standalone document) and returns the EncryptedAssertion."""
    seen: list[bytes] = []

    def encrypt(assertion_xml: bytes) -> etree._Element:
        seen.append(assertion_xml)
        enc = etree.Element(f"{SAML}EncryptedAssertion")
        etree.SubElement(enc, "{http://www.w3.org/2001/04/xmlenc#}EncryptedData").text = "opaque"
        return enc

    raw = build_response(make_spec(), signing_choice(idp_key), encrypt=encrypt)
    root = parse(raw)
    assert len(seen) == 1
    standalone = etree.fromstring(seen[0])
    assert standalone.tag == f"{SAML}Assertion"
    assert verify_enveloped(standalone, [idp_key.cert_pem], ALLOWED) == SIG_RSA_SHA256
    assert root.find(f"{SAML}Assertion") is None
    assert root.find(f"{SAML}EncryptedAssertion") is not None
    assert verify_enveloped(root, [idp_key.cert_pem], ALLOWED) == SIG_RSA_SHA256
    xmlsec_verify(root, idp_key.cert_pem)


@pytest.mark.parametrize("algorithm", ["aes256-gcm", "aes128-gcm", "aes256-cbc"])
def test_encrypted_assertion_decrypts_and_verifies(idp_key: IdpKey, next_key: IdpKey, algorithm: str) -> None:
    """Real encryption for the SP's key (here `next_key`): the Response signature covers the
    EncryptedAssertion, and the decrypted Assertion carries its own valid signature."""
    raw = build_response(make_spec(), signing_choice(idp_key),
                         encrypt=lambda xml: encrypt_assertion_xml(xml, next_key.cert_pem, algorithm))
    root = parse(raw)
    xmlsec_verify(root, idp_key.cert_pem)
    enc_data = root.find(f"{SAML}EncryptedAssertion/{{http://www.w3.org/2001/04/xmlenc#}}EncryptedData")
    manager = xmlsec.KeysManager()
    manager.add_key(xmlsec.Key.from_memory(next_key.private_pem, xmlsec.KeyFormat.PEM, None))
    decrypted = xmlsec.EncryptionContext(manager).decrypt(enc_data)
    assertion = decrypted if decrypted.tag == f"{SAML}Assertion" else decrypted.find(f".//{SAML}Assertion")
    assert assertion is not None
    standalone = parse(etree.tostring(assertion))
    assert standalone.findtext(f"{SAML}Subject/{SAML}NameID") == "alice@example.com"
    assert verify_enveloped(standalone, [idp_key.cert_pem], ALLOWED) == SIG_RSA_SHA256


def test_written_text_is_its_own_canonical_form(idp_key: IdpKey) -> None:
    """The Response is written in exclusive-c14n form: lxml's c14n of the parsed Response and of its
    Assertion reproduce the written octets (what makes digest-over-substring correct)."""
    raw = build_response(make_spec(in_response_to=None, session_not_on_or_after=None, sp_name_qualifier=SP),
                         signing_choice(idp_key))
    root = parse(raw)
    assert etree.tostring(root, method="c14n", exclusive=True) == raw
    a = assertion_of(root)
    a_c14n = etree.tostring(a, method="c14n", exclusive=True)
    assert a_c14n in raw


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.lists(st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=8)
                                 | st.sampled_from(["&", "<", ">", '"', "'", "\t", "\n", "\r", "]]>", "\r\n"]),
                                 max_size=6).map("".join), min_size=1, max_size=6))
def test_any_values_round_trip_canonically(idp_key: IdpKey, values: list[str]) -> None:
    """Arbitrary user data in every position a value can take: parsed back unchanged, the text is
    canonical, and both signatures verify with xmlsec."""
    spec = make_spec(name_id=values[0], audience=values[-1], session_index=values[0] or "_s",
                     in_response_to=values[-1] or None, attributes=[(values[0] or "n", None, values)])
    raw = build_response(spec, signing_choice(idp_key))
    root = parse(raw)
    assert etree.tostring(root, method="c14n", exclusive=True) == raw
    a = assertion_of(root)
    assert a.findtext(f"{SAML}Subject/{SAML}NameID") == values[0]
    assert [v.text or "" for v in a.iterfind(f".//{SAML}AttributeValue")] == values
    xmlsec_verify(root, idp_key.cert_pem)
    xmlsec_verify(a, idp_key.cert_pem)


# ---------------------------------------------------------------- error responses


@pytest.mark.parametrize(
    ("status", "sub_status", "message"),
    [
        (STATUS_RESPONDER, STATUS_NO_AUTHN_CONTEXT, None),
        (STATUS_REQUESTER, STATUS_REQUEST_DENIED, "access denied"),
        (STATUS_RESPONDER, None, None),
        (STATUS_REQUESTER, None, HOSTILE),
    ],
)
@pytest.mark.parametrize("signed", [True, False])
def test_error_response(idp_key: IdpKey, status: str, sub_status: str | None, message: str | None,
                        signed: bool) -> None:
    rid, raw = build_error_response(
        issuer=IDP, destination=ACS, in_response_to="_req1", status=status, sub_status=sub_status,
        message=message, now=NOW, signing=signing_choice(idp_key) if signed else None)
    root = parse(raw)
    assert root.tag == f"{SAMLP}Response"
    assert (root.get("ID"), root.get("Destination"), root.get("InResponseTo")) == (rid, ACS, "_req1")
    assert NCNAME.match(rid)
    assert root.findtext(f"{SAML}Issuer") == IDP
    top = root.find(f"{SAMLP}Status/{SAMLP}StatusCode")
    assert top.get("Value") == status
    assert [c.get("Value") for c in top.findall(f"{SAMLP}StatusCode")] == ([sub_status] if sub_status else [])
    assert root.findtext(f"{SAMLP}Status/{SAMLP}StatusMessage") == message
    assert root.find(f".//{SAML}Assertion") is None
    assert root.find(f".//{SAML}EncryptedAssertion") is None
    if signed:
        assert verify_enveloped(root, [idp_key.cert_pem], ALLOWED) == SIG_RSA_SHA256
    else:
        assert root.find(f".//{DS}Signature") is None


def test_error_response_without_in_response_to(idp_key: IdpKey) -> None:
    _, raw = build_error_response(issuer=IDP, destination=ACS, in_response_to=None, status=STATUS_RESPONDER,
                                  sub_status=None, message=None, now=NOW, signing=None)
    assert "InResponseTo" not in parse(raw).attrib


# ---------------------------------------------------------------- logout messages


@pytest.mark.parametrize("signed", [True, False])
def test_logout_request(idp_key: IdpKey, signed: bool) -> None:
    rid, raw = build_logout_request(
        issuer=IDP, destination="https://sp.example/slo", name_id="alice@example.com",
        name_id_format=NAMEID_EMAIL, session_index="_sess1", now=NOW, lifetime=timedelta(minutes=2),
        sp_name_qualifier=SP, signing=signing_choice(idp_key) if signed else None)
    req = parse_logout_request(raw, 100_000)
    assert (req.id, req.issuer, req.destination) == (rid, IDP, "https://sp.example/slo")
    assert (req.name_id, req.name_id_format, req.session_indexes) == ("alice@example.com", NAMEID_EMAIL, ("_sess1",))
    assert req.issue_instant == NOW
    assert req.not_on_or_after == NOW + timedelta(minutes=2)
    assert req.root.find(f"{SAML}NameID").get("SPNameQualifier") == SP
    if signed:
        assert verify_enveloped(req.root, [idp_key.cert_pem], ALLOWED) == SIG_RSA_SHA256
        XMLVerifier().verify(raw, x509_cert=idp_key.cert_pem)
    else:
        assert req.root.find(f"{DS}Signature") is None


@pytest.mark.parametrize(
    ("status", "sub_status", "in_response_to"),
    [(STATUS_SUCCESS, None, "_lr1"), (STATUS_RESPONDER, STATUS_PARTIAL_LOGOUT, "_lr2"), (STATUS_SUCCESS, None, None)],
)
@pytest.mark.parametrize("signed", [True, False])
def test_logout_response(idp_key: IdpKey, status: str, sub_status: str | None, in_response_to: str | None,
                         signed: bool) -> None:
    rid, raw = build_logout_response(
        issuer=IDP, destination="https://sp.example/slo", in_response_to=in_response_to, status=status, now=NOW,
        signing=signing_choice(idp_key) if signed else None, sub_status=sub_status)
    resp = parse_logout_response(raw, 100_000)
    assert (resp.id, resp.issuer, resp.in_response_to, resp.status) == (rid, IDP, in_response_to, status)
    subs = resp.root.findall(f"{SAMLP}Status/{SAMLP}StatusCode/{SAMLP}StatusCode")
    assert [s.get("Value") for s in subs] == ([sub_status] if sub_status else [])
    if signed:
        assert verify_enveloped(resp.root, [idp_key.cert_pem], ALLOWED) == SIG_RSA_SHA256


# ---------------------------------------------------------------- attribute mapping


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, []),
        ("x", ["x"]),
        ("", [""]),
        (3, ["3"]),
        (["a", "b"], ["a", "b"]),
        (("a", 1), ["a", "1"]),
        (frozenset({"only"}), ["only"]),
        ([], []),
    ],
)
def test_attribute_values(value: object, expected: list[str]) -> None:
    assert attribute_values(value) == expected


def test_map_attributes() -> None:
    mapping = {"mail": "email", "urn:oid:2.5.4.42": "first_name", "groups": "groups", "missing": "nope",
               "Empty": "empty"}
    fields = {"email": "a@example.com", "first_name": "Alice", "groups": ["g1", "g2"], "empty": None}
    assert map_attributes(mapping, fields) == [
        ("mail", None, ["a@example.com"]),
        ("urn:oid:2.5.4.42", ATTRNAME_URI, ["Alice"]),
        ("groups", None, ["g1", "g2"]),
    ]


# ---------------------------------------------------------------- IdP metadata


def metadata_spec(certs: list[str], want_signed: bool = True, **kw: object) -> IdpMetadataSpec:
    return IdpMetadataSpec(entity_id=IDP, sso_url="https://idp.example/saml/sso",
                           slo_url="https://idp.example/saml/slo", signing_certs_b64=certs,
                           want_authn_requests_signed=want_signed, now=datetime.now(UTC), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("want_signed", [True, False])
def test_idp_metadata(idp_key: IdpKey, want_signed: bool) -> None:
    spec = metadata_spec([idp_key.cert_b64], want_signed)
    ed = parse(etree.tostring(build_idp_metadata(spec)))
    assert ed.tag == f"{MD}EntityDescriptor"
    assert ed.get("entityID") == IDP
    assert NCNAME.match(ed.get("ID"))
    assert ed.get("validUntil") == instant(spec.now + timedelta(days=7))
    assert ed.get("cacheDuration") == "PT1H"
    idps = ed.findall(f"{MD}IDPSSODescriptor")
    assert len(idps) == 1
    idp = idps[0]
    assert idp.get("protocolSupportEnumeration") == NS_SAMLP
    assert idp.get("WantAuthnRequestsSigned") == ("true" if want_signed else "false")
    kds = idp.findall(f"{MD}KeyDescriptor")
    assert [kd.get("use") for kd in kds] == ["signing"]
    assert kds[0].findtext(f"{DS}KeyInfo/{DS}X509Data/{DS}X509Certificate") == idp_key.cert_b64
    for tag, url in (("SingleSignOnService", spec.sso_url), ("SingleLogoutService", spec.slo_url)):
        services = idp.findall(f"{MD}{tag}")
        assert [(s.get("Binding"), s.get("Location")) for s in services] == [
            (BINDING_REDIRECT, url), (BINDING_POST, url)]
    assert [el.text for el in idp.findall(f"{MD}NameIDFormat")] == list(NAMEID_FORMATS.values())
    assert [etree.QName(el).localname for el in idp] == (
        ["KeyDescriptor", "SingleLogoutService", "SingleLogoutService"] + ["NameIDFormat"] * 4
        + ["SingleSignOnService", "SingleSignOnService"])  # saml-metadata §2.4.2/§2.4.3 order
    assert ed.find(f"{MD}Organization") is None


def test_idp_metadata_rollover_and_organization(idp_key: IdpKey, next_key: IdpKey) -> None:
    spec = metadata_spec([idp_key.cert_b64, next_key.cert_b64], organization="Example & Co <x>",
                         valid_for=timedelta(days=2), cache_duration="PT6H")
    ed = parse(etree.tostring(build_idp_metadata(spec)))
    kds = ed.findall(f"{MD}IDPSSODescriptor/{MD}KeyDescriptor")
    assert [kd.get("use") for kd in kds] == ["signing", "signing"]
    assert [kd.findtext(f".//{DS}X509Certificate") for kd in kds] == [idp_key.cert_b64, next_key.cert_b64]
    assert ed.get("validUntil") == instant(spec.now + timedelta(days=2))
    assert ed.get("cacheDuration") == "PT6H"
    org = ed.find(f"{MD}Organization")
    assert org.findtext(f"{MD}OrganizationName") == "Example & Co <x>"
    assert org.findtext(f"{MD}OrganizationURL") == "https://idp.example/"


def test_idp_metadata_parsed_by_pysaml2(idp_key: IdpKey, next_key: IdpKey) -> None:
    from saml2.attribute_converter import ac_factory
    from saml2.mdstore import InMemoryMetaData

    xml = etree.tostring(build_idp_metadata(metadata_spec([idp_key.cert_b64, next_key.cert_b64])))
    md = InMemoryMetaData(ac_factory(), metadata=xml.decode())
    md.load()
    assert list(md.keys()) == [IDP]
    sso = md.service(IDP, "idpsso_descriptor", "single_sign_on_service")
    assert {b: [s["location"] for s in v] for b, v in sso.items()} == {
        BINDING_REDIRECT: ["https://idp.example/saml/sso"], BINDING_POST: ["https://idp.example/saml/sso"]}
    slo = md.service(IDP, "idpsso_descriptor", "single_logout_service")
    assert set(slo) == {BINDING_REDIRECT, BINDING_POST}
    certs = [c[1] for c in md.certs(IDP, "idpsso", "signing")]
    assert [c.replace("\n", "") for c in certs] == [idp_key.cert_b64, next_key.cert_b64]


def test_idp_metadata_parsed_by_python3_saml(idp_key: IdpKey, next_key: IdpKey) -> None:
    from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser

    one = OneLogin_Saml2_IdPMetadataParser.parse(
        etree.tostring(build_idp_metadata(metadata_spec([idp_key.cert_b64]))).decode())
    assert one["idp"]["entityId"] == IDP
    assert one["idp"]["singleSignOnService"]["url"] == "https://idp.example/saml/sso"
    assert one["idp"]["singleLogoutService"]["url"] == "https://idp.example/saml/slo"
    assert one["idp"]["x509cert"] == idp_key.cert_b64
    assert one["security"]["authnRequestsSigned"] is True

    two = OneLogin_Saml2_IdPMetadataParser.parse(
        etree.tostring(build_idp_metadata(metadata_spec([idp_key.cert_b64, next_key.cert_b64], False))).decode())
    assert two["idp"]["x509certMulti"]["signing"] == [idp_key.cert_b64, next_key.cert_b64]
    assert two["security"]["authnRequestsSigned"] is False
