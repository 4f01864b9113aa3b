"""The IdP's XML signer (lxml exclusive c14n + hashlib + `cryptography`), checked only by independent verifiers.

Every signature made here is verified by python-xmlsec (libxmlsec1), by signxml and, where installed,
by the xmlsec1 command: the signer shares no code with any of them, so a canonicalisation slip in
the signer (namespace rendering, attribute order, escaping) shows up as a failed verification.
"""

from __future__ import annotations

import base64
import shutil
import subprocess  # noqa: S404 - the fixed xmlsec1 binary as an independent verifier
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from signxml import XMLVerifier

from idp.certs.generate import generate_key_pair
from idp.saml.constants import (
    NS_DS,
    NS_SAML,
    NS_SAMLP,
    SIG_ECDSA_SHA256,
    SIG_ECDSA_SHA384,
    SIG_ECDSA_SHA512,
    SIG_RSA_SHA1,
    SIG_RSA_SHA256,
    SIG_RSA_SHA384,
    SIG_RSA_SHA512,
)
from idp.saml.signing import SignatureError, sign_element, signed_info_c14n

DS = f"{{{NS_DS}}}"
SAML = f"{{{NS_SAML}}}"
XMLSEC1 = shutil.which("xmlsec1")


@dataclass(frozen=True)
class Key:
    private_key: Any
    cert_pem: str
    cert_b64: str


def make_key(key_type: str) -> Key:
    if key_type == "ec-p384":  # not a type the IdP generates, but one an imported key may have
        private_key: Any = ec.generate_private_key(ec.SECP384R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "signer.example")])
        now = datetime.now(UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(private_key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now)
                .not_valid_after(now + timedelta(days=30)).sign(private_key, hashes.SHA384()))
        pem = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
    else:
        gen = generate_key_pair("signer.example", key_type, 30)
        private_key, pem = serialization.load_pem_private_key(gen.key_pem, None), gen.cert_pem.decode("ascii")
    b64 = "".join(line for line in pem.splitlines() if not line.startswith("-----"))
    return Key(private_key, pem, b64)


@pytest.fixture(scope="module")
def keys() -> dict[str, Key]:
    return {"rsa2048": make_key("rsa2048"), "rsa3072": make_key("rsa3072"), "ec-p256": make_key("ec-p256"),
            "ec-p384": make_key("ec-p384")}


def response_tree(name_id: str = "alice@example.com", value: str = "staff", attr_name: str = "groups") -> Any:
    """A Response whose Assertion sits inside it, with namespaces declared the way real documents do:
    some on the root only, a redundant one on the Assertion, one that exclusive c14n must drop."""
    root = etree.fromstring(
        f'<samlp:Response xmlns:samlp="{NS_SAMLP}" xmlns:saml="{NS_SAML}" '
        'xmlns:xs="http://www.w3.org/2001/XMLSchema" ID="_resp1" Version="2.0" '
        'IssueInstant="2024-05-01T12:00:00Z" Destination="https://sp.example/acs">'
        '<saml:Issuer>https://idp.example/saml/metadata</saml:Issuer>'
        '<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>'
        f'<saml:Assertion xmlns:saml="{NS_SAML}" ID="_a1" Version="2.0" IssueInstant="2024-05-01T12:00:00Z">'
        '<saml:Issuer>https://idp.example/saml/metadata</saml:Issuer>'
        '<saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"/>'
        '</saml:Subject><saml:AttributeStatement><saml:Attribute><saml:AttributeValue/></saml:Attribute>'
        '</saml:AttributeStatement></saml:Assertion></samlp:Response>'.encode())
    assertion = root.find(f"{SAML}Assertion")
    assertion.find(f"{SAML}Subject/{SAML}NameID").text = name_id
    attr = assertion.find(f"{SAML}AttributeStatement/{SAML}Attribute")
    attr.set("Name", attr_name)
    attr.find(f"{SAML}AttributeValue").text = value
    return root


def xmlsec_verify(xml: bytes, element_xpath: str, cert_pem: str) -> None:
    """python-xmlsec, key from the certificate only (never from the document's KeyInfo)."""
    root = etree.fromstring(xml)
    element = root if element_xpath == "." else root.find(element_xpath)
    xmlsec.tree.add_ids(root, ["ID"])
    ctx = xmlsec.SignatureContext()
    ctx.key = xmlsec.Key.from_memory(cert_pem.encode(), xmlsec.KeyFormat.CERT_PEM, None)
    ctx.verify(element.find(f"{DS}Signature"))


def xmlsec1_verify(xml: bytes, node: str, node_id: str, cert_pem: str, tmp_path: Path) -> None:
    if XMLSEC1 is None:
        pytest.skip("xmlsec1 is not installed")
    doc, cert = tmp_path / f"{node_id}.xml", tmp_path / "cert.pem"
    doc.write_bytes(xml)
    cert.write_text(cert_pem)
    p = subprocess.run([XMLSEC1, "--verify", "--pubkey-cert-pem", str(cert), "--id-attr:ID", node,  # noqa: S603
                        "--node-id", node_id, str(doc)], capture_output=True, text=True, check=False)
    assert p.returncode == 0 and "OK" in p.stderr, p.stderr


def sign_both(root: Any, key: Key, algorithm: str) -> bytes:
    sign_element(root.find(f"{SAML}Assertion"), key.private_key, algorithm, key.cert_b64)
    sign_element(root, key.private_key, algorithm, key.cert_b64)
    return etree.tostring(root)


ALGORITHMS = [
    ("rsa2048", SIG_RSA_SHA256), ("rsa2048", SIG_RSA_SHA384), ("rsa2048", SIG_RSA_SHA512), ("rsa2048", SIG_RSA_SHA1),
    ("rsa3072", SIG_RSA_SHA256), ("ec-p256", SIG_ECDSA_SHA256), ("ec-p256", SIG_ECDSA_SHA384),
    ("ec-p256", SIG_ECDSA_SHA512), ("ec-p384", SIG_ECDSA_SHA384),
]


@pytest.mark.parametrize(("key_type", "algorithm"), ALGORITHMS,
                         ids=[f"{k}-{a.rsplit('#', 1)[1]}" for k, a in ALGORITHMS])
def test_nested_signatures_verify_with_xmlsec_and_xmlsec1(keys: dict[str, Key], key_type: str, algorithm: str,
                                                          tmp_path: Path) -> None:
    key = keys[key_type]
    xml = sign_both(response_tree(), key, algorithm)
    xmlsec_verify(xml, ".", key.cert_pem)
    xmlsec_verify(xml, f"{SAML}Assertion", key.cert_pem)
    xmlsec1_verify(xml, f"{NS_SAMLP}:Response", "_resp1", key.cert_pem, tmp_path)
    xmlsec1_verify(xml, f"{NS_SAML}:Assertion", "_a1", key.cert_pem, tmp_path)


@pytest.mark.parametrize("key_type", ["rsa2048", "ec-p256"])
def test_signxml_verifies_response_and_assertion(keys: dict[str, Key], key_type: str) -> None:
    key = keys[key_type]
    algorithm = SIG_RSA_SHA256 if key_type.startswith("rsa") else SIG_ECDSA_SHA256
    xml = sign_both(response_tree(), key, algorithm)
    root = etree.fromstring(xml)
    XMLVerifier().verify(xml, x509_cert=key.cert_pem, expect_references=1)
    assertion = etree.tostring(root.find(f"{SAML}Assertion"))
    XMLVerifier().verify(assertion, x509_cert=key.cert_pem, expect_references=1)


def test_signed_octets_are_the_canonical_signed_info(keys: dict[str, Key]) -> None:
    """What was signed equals what a verifier canonicalises out of the serialised document."""
    key = keys["rsa2048"]
    xml = sign_both(response_tree(), key, SIG_RSA_SHA256)
    root = etree.fromstring(xml)
    for el in (root, root.find(f"{SAML}Assertion")):
        signed_info = el.find(f"{DS}Signature/{DS}SignedInfo")
        digest = signed_info.findtext(f"{DS}Reference/{DS}DigestValue")
        expected = signed_info_c14n(el.get("ID"), SIG_RSA_SHA256, digest).encode()
        assert etree.tostring(signed_info, method="c14n", exclusive=True) == expected


def test_layout_after_issuer_with_certificate(keys: dict[str, Key]) -> None:
    key = keys["rsa2048"]
    root = response_tree()
    sign_both(root, key, SIG_RSA_SHA256)
    for el in (root, root.find(f"{SAML}Assertion")):
        assert el[0].tag == f"{SAML}Issuer" and el[1].tag == f"{DS}Signature"
        sig = el[1]
        assert [c.tag.split("}")[1] for c in sig] == ["SignedInfo", "SignatureValue", "KeyInfo"]
        assert sig.findtext(f"{DS}KeyInfo/{DS}X509Data/{DS}X509Certificate") == key.cert_b64
        refs = sig.findall(f"{DS}SignedInfo/{DS}Reference")
        assert [r.get("URI") for r in refs] == ["#" + el.get("ID")]


def test_ecdsa_signature_value_is_raw_r_and_s(keys: dict[str, Key]) -> None:
    """XML-DSig ECDSA (RFC 4051 §3.3) is r || s at the curve's size, not the DER SEQUENCE."""
    for key_type, size in (("ec-p256", 64), ("ec-p384", 96)):
        root = response_tree()
        sign_element(root, keys[key_type].private_key, SIG_ECDSA_SHA256, keys[key_type].cert_b64)
        assert len(base64.b64decode(root.findtext(f"{DS}Signature/{DS}SignatureValue"))) == size


def test_element_without_issuer_and_with_tail(keys: dict[str, Key]) -> None:
    """Signature first when there is no Issuer; the element's tail text is not part of what is signed."""
    key = keys["rsa2048"]
    parent = etree.fromstring(f'<wrap xmlns:samlp="{NS_SAMLP}"><samlp:LogoutResponse ID="_lr" Version="2.0">'
                              '<samlp:Status/></samlp:LogoutResponse>tail text</wrap>'.encode())
    el = parent[0]
    sign_element(el, key.private_key, SIG_RSA_SHA256, key.cert_b64)
    assert el[0].tag == f"{DS}Signature"
    xmlsec_verify(etree.tostring(parent), f"{{{NS_SAMLP}}}LogoutResponse", key.cert_pem)


def test_without_certificate_no_key_info(keys: dict[str, Key]) -> None:
    key = keys["rsa2048"]
    root = response_tree()
    sign_element(root, key.private_key, SIG_RSA_SHA256)
    assert root.find(f"{DS}Signature/{DS}KeyInfo") is None
    xmlsec_verify(etree.tostring(root), ".", key.cert_pem)


@pytest.mark.parametrize(
    ("key_type", "algorithm", "id_value", "message"),
    [
        ("rsa2048", "http://www.w3.org/2000/09/xmldsig#hmac-sha1", "_x", "unsupported"),
        ("rsa2048", SIG_ECDSA_SHA256, "_x", "does not match the key type"),
        ("ec-p256", SIG_RSA_SHA256, "_x", "does not match the key type"),
        ("rsa2048", SIG_RSA_SHA256, None, "no ID"),
    ],
)
def test_refusals_leave_the_tree_unchanged(keys: dict[str, Key], key_type: str, algorithm: str,
                                           id_value: str | None, message: str) -> None:
    root = response_tree()
    if id_value is None:
        del root.attrib["ID"]
    before = etree.tostring(root)
    with pytest.raises(SignatureError, match=message):
        sign_element(root, keys[key_type].private_key, algorithm, keys[key_type].cert_b64)
    assert etree.tostring(root) == before


# Text and attribute values that exercise every escaping rule of c14n (&, <, >, quotes, CR, TAB, LF,
# non-ASCII, "]]>"); XML 1.0 forbids most control characters, so the alphabet leaves them out.
XML_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00",
                                          min_codepoint=0x09).filter(lambda c: c in "\t\n\r" or ord(c) >= 0x20),
                   max_size=40)
SPECIALS = st.sampled_from(["&", "<", ">", '"', "'", "\r", "\r\n", "\t", "\n", "]]>", "é", "漢", "\U0001f600"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name_id=XML_TEXT, value=st.lists(st.one_of(XML_TEXT, SPECIALS), max_size=4).map("".join),
       attr_name=st.lists(st.one_of(XML_TEXT, SPECIALS), min_size=1, max_size=3).map("".join))
def test_any_text_content_verifies(keys: dict[str, Key], name_id: str, value: str, attr_name: str) -> None:
    key = keys["rsa2048"]
    xml = sign_both(response_tree(name_id, value, attr_name), key, SIG_RSA_SHA256)
    xmlsec_verify(xml, ".", key.cert_pem)
    xmlsec_verify(xml, f"{SAML}Assertion", key.cert_pem)
