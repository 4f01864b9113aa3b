"""Unit tests for idp.saml.signing: XML-DSig sign/verify and HTTP-Redirect query signatures.

Most attack documents here carry a signature that is cryptographically valid: `xmlsec_accepts` shows that
xmlsec on its own would take them, so the refusal has to come from verify_enveloped's profile checks.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import xmlsec
from cryptography.hazmat.primitives import serialization
from lxml import etree

from idp.certs.generate import generate_key_pair
from idp.saml.constants import (
    NS_DS,
    NS_SAML,
    NS_SAMLP,
    SIG_ECDSA_SHA256,
    SIG_ECDSA_SHA384,
    SIG_RSA_SHA1,
    SIG_RSA_SHA256,
    SIG_RSA_SHA384,
    SIG_RSA_SHA512,
)
from idp.saml.signing import (
    SignatureError,
    allowed_algorithms,
    has_signature,
    sign_element,
    sign_redirect_query,
    verification_key,
    verify_enveloped,
    verify_redirect_signature,
)
from idp.saml.xmlsafe import parse_untrusted_xml, text_of

DS = f"{{{NS_DS}}}"
SAML = f"{{{NS_SAML}}}"
SAMLP = f"{{{NS_SAMLP}}}"
SP = "https://sp.example/metadata"
ALLOWED = allowed_algorithms(False)
HMAC_SHA1 = "http://www.w3.org/2000/09/xmldsig#hmac-sha1"
HMAC_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256"

REQUEST = f"""<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"
 xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_req1" Version="2.0"
 IssueInstant="2024-05-01T12:00:00Z" Destination="https://idp.example/saml/sso"
 AssertionConsumerServiceURL="https://sp.example/acs"><saml:Issuer>{SP}</saml:Issuer><samlp:NameIDPolicy
 Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress" AllowCreate="true"/></samlp:AuthnRequest>"""


@dataclass(frozen=True)
class Pair:
    xmlsec_key: xmlsec.Key      # private key with its certificate (fills ds:X509Data)
    private_key: Any
    cert_pem: str

    @property
    def cert_b64(self) -> str:
        return "".join(line for line in self.cert_pem.splitlines() if not line.startswith("-----"))


def make_pair(key_type: str) -> Pair:
    gen = generate_key_pair("sp.example", key_type, 30)
    key = xmlsec.Key.from_memory(gen.key_pem, xmlsec.KeyFormat.PEM, None)
    key.load_cert_from_memory(gen.cert_pem, xmlsec.KeyFormat.CERT_PEM)
    return Pair(key, serialization.load_pem_private_key(gen.key_pem, None), gen.cert_pem.decode("ascii"))


@pytest.fixture(scope="module")
def sp() -> Pair:
    return make_pair("rsa2048")


@pytest.fixture(scope="module")
def sp_ec() -> Pair:
    return make_pair("ec-p256")


@pytest.fixture(scope="module")
def attacker() -> Pair:
    return make_pair("rsa2048")


def request_root(xml: str = REQUEST) -> etree._Element:
    return etree.fromstring(xml.encode())


def signed_request(pair: Pair, algorithm: str = SIG_RSA_SHA256) -> bytes:
    root = request_root()
    sign_element(root, pair.private_key, algorithm, cert_b64=pair.cert_b64)
    return etree.tostring(root)


def inbound(xml: bytes) -> etree._Element:
    """What the IdP does with a message from the wire before verifying it."""
    return parse_untrusted_xml(xml, max_bytes=100_000)


def verify(xml: bytes, certs: Sequence[str], allowed: frozenset[str] = ALLOWED) -> str:
    return verify_enveloped(inbound(xml), certs, allowed)


def xmlsec_accepts(xml: bytes, cert_pem: str) -> bool:
    """Plain xmlsec with the right key and no profile checks: does the (first) signature verify?"""
    root = inbound(xml)
    xmlsec.tree.add_ids(root, ["ID"])
    ctx = xmlsec.SignatureContext()
    ctx.key = xmlsec.Key.from_memory(cert_pem.encode(), xmlsec.KeyFormat.CERT_PEM, None)
    try:
        ctx.verify(root.find(f".//{DS}Signature"))
    except xmlsec.Error:
        return False
    return True


def sign_custom(root: etree._Element, key: xmlsec.Key, *, c14n: object = xmlsec.Transform.EXCL_C14N,
                method: object = xmlsec.Transform.RSA_SHA256, digest: object = xmlsec.Transform.SHA256,
                transforms: Sequence[object] = (xmlsec.Transform.ENVELOPED, xmlsec.Transform.EXCL_C14N),
                uri: str | None = None, xpath: str | None = None, key_info: bool = True) -> bytes:
    """A valid signature with whatever (off-profile) parameters the test asks for."""
    sig = xmlsec.template.create(root, c14n, method, ns="ds")
    root.find(f"{SAML}Issuer").addnext(sig)
    ref = xmlsec.template.add_reference(sig, digest, uri="#" + root.get("ID") if uri is None else uri)
    for transform in transforms:
        node = xmlsec.template.add_transform(ref, transform)
        if transform == xmlsec.Transform.XPATH:
            etree.SubElement(node, f"{DS}XPath").text = xpath
    if key_info:
        xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(sig))
    xmlsec.tree.add_ids(root, ["ID"])
    ctx = xmlsec.SignatureContext()
    ctx.key = key
    ctx.sign(sig)
    return etree.tostring(root)


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    ("pair", "algorithm"),
    [
        ("sp", SIG_RSA_SHA256),
        ("sp", SIG_RSA_SHA384),
        ("sp", SIG_RSA_SHA512),
        ("sp_ec", SIG_ECDSA_SHA256),
        ("sp_ec", SIG_ECDSA_SHA384),
    ],
)
def test_sign_then_verify(request: pytest.FixtureRequest, pair: str, algorithm: str) -> None:
    p = request.getfixturevalue(pair)
    xml = signed_request(p, algorithm)
    root = inbound(xml)
    assert has_signature(root)
    assert verify_enveloped(root, [p.cert_pem], ALLOWED) == algorithm


def test_signature_layout(sp: Pair) -> None:
    """saml-core §5.4: enveloped, exclusive c14n, one Reference to "#ID", right after the Issuer."""
    root = inbound(signed_request(sp))
    sig = root[1]
    assert sig.tag == f"{DS}Signature"
    assert root[0].tag == f"{SAML}Issuer"
    refs = sig.findall(f"{DS}SignedInfo/{DS}Reference")
    assert [r.get("URI") for r in refs] == ["#_req1"]
    assert [t.get("Algorithm") for t in refs[0].iterfind(f"{DS}Transforms/{DS}Transform")] == [
        "http://www.w3.org/2000/09/xmldsig#enveloped-signature", "http://www.w3.org/2001/10/xml-exc-c14n#"]
    assert sig.find(f"{DS}SignedInfo/{DS}CanonicalizationMethod").get("Algorithm") == \
        "http://www.w3.org/2001/10/xml-exc-c14n#"
    assert sig.find(f"{DS}KeyInfo/{DS}X509Data/{DS}X509Certificate") is not None


def test_sign_element_without_issuer_puts_signature_first(sp: Pair) -> None:
    root = etree.fromstring(b'<samlp:LogoutResponse xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
                            b'ID="_x" Version="2.0"><samlp:Status/></samlp:LogoutResponse>')
    sign_element(root, sp.private_key, cert_b64=sp.cert_b64)
    assert root[0].tag == f"{DS}Signature"
    assert verify(etree.tostring(root), [sp.cert_pem]) == SIG_RSA_SHA256


def test_sign_element_refuses_unknown_algorithm(sp: Pair) -> None:
    with pytest.raises(SignatureError, match="unsupported"):
        sign_element(request_root(), sp.private_key, HMAC_SHA256, cert_b64=sp.cert_b64)


def test_verify_with_rollover_certificate_list(sp: Pair, attacker: Pair, sp_ec: Pair) -> None:
    assert verify(signed_request(sp), [attacker.cert_pem, sp_ec.cert_pem, sp.cert_pem]) == SIG_RSA_SHA256


def test_verification_does_not_need_keyinfo(sp: Pair) -> None:
    root = inbound(signed_request(sp))
    key_info = root.find(f"{DS}Signature/{DS}KeyInfo")
    key_info.getparent().remove(key_info)
    assert verify(etree.tostring(root), [sp.cert_pem]) == SIG_RSA_SHA256


def test_comment_injection_after_signing_cannot_change_the_value(sp: Pair) -> None:
    """exc-c14n drops comments, so a comment added later keeps the signature valid; text_of must still
    return the signed value, not the part before the comment."""
    xml = signed_request(sp).replace(SP.encode(), b"https://sp<!---->.example/metadata")
    root = inbound(xml)
    assert verify_enveloped(root, [sp.cert_pem], ALLOWED) == SIG_RSA_SHA256
    assert text_of(root.find(f"{SAML}Issuer")) == SP


def test_verification_key_is_cached(sp: Pair) -> None:
    assert verification_key(sp.cert_pem) is verification_key(sp.cert_pem)


# ---------------------------------------------------------------- plain refusals


def test_no_certificates(sp: Pair) -> None:
    with pytest.raises(SignatureError, match="no signing certificate"):
        verify(signed_request(sp), [])


def test_wrong_certificate(sp: Pair, attacker: Pair, sp_ec: Pair) -> None:
    with pytest.raises(SignatureError, match="does not verify"):
        verify(signed_request(sp), [attacker.cert_pem, sp_ec.cert_pem])


def test_unsigned(sp: Pair) -> None:
    with pytest.raises(SignatureError, match="exactly one signature, found 0"):
        verify(REQUEST.encode(), [sp.cert_pem])


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (SP.encode(), b"https://evil.example/metadata"),
        (b"https://sp.example/acs", b"https://evil.example/acs"),
        (b'AllowCreate="true"', b'AllowCreate="false"'),
        (b'Version="2.0"', b'Version="2.0" ForceAuthn="true"'),
    ],
    ids=["issuer", "acs-url", "attribute", "added-attribute"],
)
def test_tampered_content(sp: Pair, old: bytes, new: bytes) -> None:
    xml = signed_request(sp)
    assert old in xml
    with pytest.raises(SignatureError, match="does not verify"):
        verify(xml.replace(old, new), [sp.cert_pem])


def test_tampered_after_signing_in_tree(sp: Pair) -> None:
    root = inbound(signed_request(sp))
    root.find(f"{SAML}Issuer").text = "https://evil.example/metadata"
    with pytest.raises(SignatureError, match="does not verify"):
        verify_enveloped(root, [sp.cert_pem], ALLOWED)


def test_signed_message_without_id(sp: Pair) -> None:
    root = inbound(signed_request(sp))
    del root.attrib["ID"]
    with pytest.raises(SignatureError, match="no ID"):
        verify_enveloped(root, [sp.cert_pem], ALLOWED)


# ---------------------------------------------------------------- signature wrapping (XSW)


def forged_copy(original: etree._Element) -> etree._Element:
    """The attacker's message: the original with a different ACS and Issuer, same ID, no signature."""
    forged = copy.deepcopy(original)
    for sig in forged.findall(f"{DS}Signature"):
        forged.remove(sig)
    forged.set("AssertionConsumerServiceURL", "https://evil.example/acs")
    return forged


def xsw_extensions_original_keeps_signature(original: etree._Element) -> etree._Element:
    forged = forged_copy(original)
    ext = etree.Element(f"{SAMLP}Extensions")
    forged.find(f"{SAML}Issuer").addnext(ext)
    ext.append(original)
    return forged


def xsw_extensions_signature_moved_to_root(original: etree._Element) -> etree._Element:
    forged = forged_copy(original)
    sig = original.find(f"{DS}Signature")
    original.remove(sig)
    ext = etree.Element(f"{SAMLP}Extensions")
    forged.find(f"{SAML}Issuer").addnext(sig)
    sig.addnext(ext)
    ext.append(original)
    return forged


def xsw_extensions_forged_new_id(original: etree._Element) -> etree._Element:
    forged = xsw_extensions_signature_moved_to_root(original)
    forged.set("ID", "_forged")
    return forged


def xsw_signature_object(original: etree._Element) -> etree._Element:
    forged = forged_copy(original)
    sig = original.find(f"{DS}Signature")
    original.remove(sig)
    forged.find(f"{SAML}Issuer").addnext(sig)
    etree.SubElement(sig, f"{DS}Object").append(original)
    return forged


def xsw_signature_object_forged_new_id(original: etree._Element) -> etree._Element:
    forged = xsw_signature_object(original)
    forged.set("ID", "_forged")
    return forged


def xsw_wrapped_in_new_parent(original: etree._Element) -> etree._Element:
    forged = forged_copy(original)
    forged.append(original)
    return forged


def xsw_both_in_new_parent(original: etree._Element) -> etree._Element:
    """Forged and signed original side by side under a new root that carries no ID of its own."""
    wrapper = etree.Element(f"{SAMLP}AuthnRequest", Version="2.0", IssueInstant="2024-05-01T12:00:00Z")
    wrapper.append(forged_copy(original))
    wrapper.append(original)
    return wrapper


def xsw_evil_sibling_same_id(original: etree._Element) -> etree._Element:
    """The signed original stays the root; an evil copy with the same ID sits inside it."""
    evil = forged_copy(original)
    ext = etree.Element(f"{SAMLP}Extensions")
    original.find(f"{DS}Signature").addnext(ext)
    ext.append(evil)
    return original


def xsw_evil_sibling_first(original: etree._Element) -> etree._Element:
    """The evil copy (same ID) comes first in document order, before the signature."""
    evil = forged_copy(original)
    ext = etree.Element(f"{SAMLP}Extensions")
    original.find(f"{SAML}Issuer").addnext(ext)
    ext.append(evil)
    return original


def xsw_signature_in_extensions(original: etree._Element) -> etree._Element:
    sig = original.find(f"{DS}Signature")
    original.remove(sig)
    etree.SubElement(original, f"{SAMLP}Extensions").append(sig)
    return original


def xsw_two_signatures(original: etree._Element) -> etree._Element:
    sig = original.find(f"{DS}Signature")
    sig.addnext(copy.deepcopy(sig))
    return original


def xsw_second_signature_nested(original: etree._Element) -> etree._Element:
    sig = original.find(f"{DS}Signature")
    etree.SubElement(original, f"{SAMLP}Extensions").append(copy.deepcopy(sig))
    return original


@pytest.mark.parametrize(
    ("attack", "message"),
    [
        (xsw_extensions_original_keeps_signature, "not an enveloped signature"),
        (xsw_extensions_signature_moved_to_root, "ID is not unique"),
        (xsw_extensions_forged_new_id, "Reference does not point"),
        (xsw_signature_object, "ID is not unique"),
        (xsw_signature_object_forged_new_id, "Reference does not point"),
        (xsw_wrapped_in_new_parent, "not an enveloped signature"),
        (xsw_both_in_new_parent, "not an enveloped signature"),
        (xsw_evil_sibling_same_id, "ID is not unique"),
        (xsw_evil_sibling_first, "ID is not unique"),
        (xsw_signature_in_extensions, "not an enveloped signature"),
        (xsw_two_signatures, "exactly one signature, found 2"),
        (xsw_second_signature_nested, "exactly one signature, found 2"),
    ],
    ids=lambda v: v.__name__.removeprefix("xsw_") if callable(v) else None,
)
def test_signature_wrapping_refused(sp: Pair, attack: Callable[[etree._Element], etree._Element],
                                    message: str) -> None:
    xml = etree.tostring(attack(inbound(signed_request(sp))))
    with pytest.raises(SignatureError, match=message):
        verify(xml, [sp.cert_pem])


def test_ds_object_refused_even_when_the_signature_is_valid(sp: Pair) -> None:
    root = inbound(signed_request(sp))
    etree.SubElement(root.find(f"{DS}Signature"), f"{DS}Object").append(etree.Element("payload"))
    xml = etree.tostring(root)
    assert xmlsec_accepts(xml, sp.cert_pem)
    with pytest.raises(SignatureError, match="ds:Object"):
        verify(xml, [sp.cert_pem])


# ---------------------------------------------------------------- off-profile but cryptographically valid


def with_child() -> etree._Element:
    root = request_root()
    ext = etree.SubElement(root, f"{SAMLP}Extensions")
    etree.SubElement(ext, "{urn:x}Thing", ID="_child").text = "v"
    return root


OFF_PROFILE = [
    pytest.param(dict(uri="#_child", transforms=(xmlsec.Transform.EXCL_C14N,)), with_child,
                 "Reference does not point", id="reference-to-child"),
    pytest.param(dict(uri=""), request_root, "Reference does not point", id="reference-empty-uri"),
    pytest.param(dict(transforms=(xmlsec.Transform.ENVELOPED, xmlsec.Transform.XPATH, xmlsec.Transform.EXCL_C14N),
                      xpath="true()"), request_root, "REC-xpath-19991116' is not allowed", id="xpath-transform"),
    pytest.param(dict(transforms=(xmlsec.Transform.ENVELOPED, xmlsec.Transform.C14N)), request_root,
                 "REC-xml-c14n-20010315' is not allowed", id="inclusive-c14n-transform"),
    pytest.param(dict(transforms=(xmlsec.Transform.ENVELOPED, xmlsec.Transform.EXCL_C14N_COMMENTS)),
                 request_root, "WithComments' is not allowed", id="c14n-with-comments-transform"),
    pytest.param(dict(c14n=xmlsec.Transform.C14N), request_root, "canonicalization must be exclusive c14n",
                 id="inclusive-c14n-canonicalization"),
    pytest.param(dict(c14n=xmlsec.Transform.EXCL_C14N_COMMENTS), request_root,
                 "canonicalization must be exclusive c14n", id="with-comments-canonicalization"),
    pytest.param(dict(method=xmlsec.Transform.RSA_SHA1, digest=xmlsec.Transform.SHA1), request_root,
                 "rsa-sha1' is not allowed", id="rsa-sha1"),
    pytest.param(dict(digest=xmlsec.Transform.SHA1), request_root, "digest algorithm .*sha1' is not allowed",
                 id="sha1-digest"),
]


@pytest.mark.parametrize(("options", "make_root", "message"), OFF_PROFILE)
def test_off_profile_signature_refused(sp: Pair, options: dict[str, Any], make_root: Callable[[], etree._Element],
                                       message: str) -> None:
    xml = sign_custom(make_root(), sp.xmlsec_key, **options)
    assert xmlsec_accepts(xml, sp.cert_pem)
    with pytest.raises(SignatureError, match=message):
        verify(xml, [sp.cert_pem])


@pytest.mark.parametrize(
    "options",
    [
        dict(method=xmlsec.Transform.RSA_SHA1, digest=xmlsec.Transform.SHA1),
        dict(digest=xmlsec.Transform.SHA1),
    ],
    ids=["rsa-sha1", "sha1-digest"],
)
def test_sha1_accepted_when_allowed(sp: Pair, options: dict[str, Any]) -> None:
    xml = sign_custom(request_root(), sp.xmlsec_key, **options)
    assert verify(xml, [sp.cert_pem], allowed_algorithms(True)) in (SIG_RSA_SHA1, SIG_RSA_SHA256)


def test_sign_element_sha1_round_trip_only_when_allowed(sp: Pair) -> None:
    xml = signed_request(sp, SIG_RSA_SHA1)
    with pytest.raises(SignatureError, match="not allowed"):
        verify(xml, [sp.cert_pem])
    assert verify(xml, [sp.cert_pem], allowed_algorithms(True)) == SIG_RSA_SHA1


@pytest.mark.parametrize(
    ("allow_sha1", "expected"),
    [
        (False, {SIG_RSA_SHA256, SIG_RSA_SHA384, SIG_RSA_SHA512, SIG_ECDSA_SHA256, SIG_ECDSA_SHA384,
                 "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512"}),
        (True, {SIG_RSA_SHA1, SIG_RSA_SHA256, SIG_RSA_SHA384, SIG_RSA_SHA512, SIG_ECDSA_SHA256, SIG_ECDSA_SHA384,
                "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512"}),
    ],
)
def test_allowed_algorithms(allow_sha1: bool, expected: set[str]) -> None:
    assert allowed_algorithms(allow_sha1) == expected
    assert not any("hmac" in a or "dsa-sha1" in a for a in allowed_algorithms(allow_sha1))


@pytest.mark.parametrize(
    ("method", "uri"),
    [(xmlsec.Transform.HMAC_SHA1, HMAC_SHA1), (xmlsec.Transform.HMAC_SHA256, HMAC_SHA256)],
    ids=["hmac-sha1", "hmac-sha256"],
)
@pytest.mark.parametrize("allow_sha1", [False, True])
def test_hmac_keyed_with_the_public_certificate_refused(sp: Pair, method: object, uri: str,
                                                       allow_sha1: bool) -> None:
    """The classic key-confusion forgery: an HMAC whose secret is the SP's public certificate."""
    hmac_key = xmlsec.Key.from_binary_data(xmlsec.constants.KeyDataHmac, sp.cert_pem.encode())
    root = request_root()
    root.set("AssertionConsumerServiceURL", "https://evil.example/acs")
    xml = sign_custom(root, hmac_key, method=method, key_info=False)
    assert f'Algorithm="{uri}"'.encode() in xml
    with pytest.raises(SignatureError, match="signature algorithm .* is not allowed"):
        verify(xml, [sp.cert_pem], allowed_algorithms(allow_sha1))


@pytest.mark.parametrize(
    ("digest", "message"),
    [
        ("http://www.w3.org/2001/04/xmldsig-more#md5", "digest algorithm"),
        ("", "digest algorithm"),
    ],
)
def test_unknown_digest_refused(sp: Pair, digest: str, message: str) -> None:
    root = inbound(signed_request(sp))
    root.find(f"{DS}Signature/{DS}SignedInfo/{DS}Reference/{DS}DigestMethod").set("Algorithm", digest)
    with pytest.raises(SignatureError, match=message):
        verify_enveloped(root, [sp.cert_pem], ALLOWED)


EXC_C14N_NS = "http://www.w3.org/2001/10/xml-exc-c14n#"
INCLUSIVE_NAMESPACES = f"{{{EXC_C14N_NS}}}InclusiveNamespaces"


def signed_with_inclusive_namespaces(pair: Pair, prefixes: str, *, on_enveloped: bool = False) -> bytes:
    """A valid signature whose exc-c14n (or, off-profile, enveloped) Transform carries ec:InclusiveNamespaces,
    as some SP toolkits send it."""
    root = request_root()
    sig = xmlsec.template.create(root, xmlsec.Transform.EXCL_C14N, xmlsec.Transform.RSA_SHA256, ns="ds")
    root.find(f"{SAML}Issuer").addnext(sig)
    ref = xmlsec.template.add_reference(sig, xmlsec.Transform.SHA256, uri="#" + root.get("ID"))
    enveloped = xmlsec.template.add_transform(ref, xmlsec.Transform.ENVELOPED)
    exc_c14n = xmlsec.template.add_transform(ref, xmlsec.Transform.EXCL_C14N)
    xmlsec.template.transform_add_c14n_inclusive_namespaces(enveloped if on_enveloped else exc_c14n, prefixes)
    xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(sig))
    xmlsec.tree.add_ids(root, ["ID"])
    ctx = xmlsec.SignatureContext()
    ctx.key = pair.xmlsec_key
    ctx.sign(sig)
    return etree.tostring(root)


@pytest.mark.parametrize("prefixes", ["saml samlp", "#default"])
def test_exc_c14n_inclusive_namespaces_accepted(sp: Pair, prefixes: str) -> None:
    """Interop: exactly one ec:InclusiveNamespaces under the exc-c14n Transform is allowed."""
    xml = signed_with_inclusive_namespaces(sp, prefixes)
    root = inbound(xml)
    params = root.findall(f".//{DS}Transform/{INCLUSIVE_NAMESPACES}")
    assert [p.get("PrefixList") for p in params] == [prefixes]
    assert params[0].getparent().get("Algorithm") == EXC_C14N_NS
    assert verify_enveloped(root, [sp.cert_pem], ALLOWED) == SIG_RSA_SHA256


def test_inclusive_namespaces_added_after_signing_does_not_verify(sp: Pair) -> None:
    """The Transform is inside the signed SignedInfo: adding a parameter later breaks the signature."""
    root = inbound(signed_request(sp))
    transform = root.findall(f".//{DS}Transform")[1]
    etree.SubElement(transform, INCLUSIVE_NAMESPACES, PrefixList="xs")
    with pytest.raises(SignatureError, match="does not verify"):
        verify_enveloped(root, [sp.cert_pem], ALLOWED)


def test_inclusive_namespaces_under_enveloped_transform_refused(sp: Pair) -> None:
    xml = signed_with_inclusive_namespaces(sp, "saml", on_enveloped=True)
    assert xmlsec_accepts(xml, sp.cert_pem)  # xmlsec ignores it: the refusal must come from the profile check
    with pytest.raises(SignatureError, match="transforms with parameters are not allowed"):
        verify(xml, [sp.cert_pem])


def _add(index: int, tag: str, **attrs: str) -> Callable[[etree._Element], None]:
    def mutate(root: etree._Element) -> None:
        etree.SubElement(root.findall(f".//{DS}Transform")[index], tag, **attrs)
    return mutate


@pytest.mark.parametrize(
    "mutate",
    [
        _add(1, INCLUSIVE_NAMESPACES, PrefixList="ds"),           # a second InclusiveNamespaces
        _add(1, f"{DS}XPath"),                                    # XPath next to the InclusiveNamespaces
        _add(0, f"{DS}XPath"),                                    # XPath under the enveloped transform
        _add(1, f"{DS}InclusiveNamespaces", PrefixList="saml"),   # right name, wrong namespace
        _add(0, INCLUSIVE_NAMESPACES, PrefixList="saml"),         # one on the enveloped transform too
    ],
    ids=["two-inclusive-namespaces", "inclusive-namespaces-and-xpath", "xpath-under-enveloped",
         "inclusive-namespaces-wrong-namespace", "inclusive-namespaces-on-both-transforms"],
)
def test_transform_with_parameters_refused(sp: Pair, mutate: Callable[[etree._Element], None]) -> None:
    """Anything beyond one ec:InclusiveNamespaces under exc-c14n is refused before any cryptography
    (xmlsec cannot even sign most of these, so they are added to a valid signature afterwards)."""
    root = inbound(signed_with_inclusive_namespaces(sp, "saml samlp"))
    mutate(root)
    with pytest.raises(SignatureError, match="transforms with parameters are not allowed"):
        verify_enveloped(root, [sp.cert_pem], ALLOWED)


def test_transform_xpath_child_without_inclusive_namespaces_refused(sp: Pair) -> None:
    root = inbound(signed_request(sp))
    etree.SubElement(root.findall(f".//{DS}Transform")[1], f"{DS}XPath").text = "not(ancestor-or-self::x)"
    with pytest.raises(SignatureError, match="transforms with parameters are not allowed"):
        verify_enveloped(root, [sp.cert_pem], ALLOWED)


def test_two_references_refused(sp: Pair) -> None:
    root = inbound(signed_request(sp))
    ref = root.find(f".//{DS}Reference")
    ref.addnext(copy.deepcopy(ref))
    with pytest.raises(SignatureError, match="Reference does not point"):
        verify_enveloped(root, [sp.cert_pem], ALLOWED)


# ---------------------------------------------------------------- where the key comes from


def test_retrieval_method_refused(sp: Pair) -> None:
    root = inbound(signed_request(sp))
    etree.SubElement(root.find(f"{DS}Signature/{DS}KeyInfo"), f"{DS}RetrievalMethod",
                     URI="file:///etc/passwd", Type="http://www.w3.org/2000/09/xmldsig#rawX509Certificate")
    xml = etree.tostring(root)
    assert xmlsec_accepts(xml, sp.cert_pem)  # KeyInfo is not signed: the signature itself still holds
    with pytest.raises(SignatureError, match="RetrievalMethod"):
        verify(xml, [sp.cert_pem])


def test_key_in_message_keyinfo_is_ignored(sp: Pair, attacker: Pair) -> None:
    """The attacker signs a forged request with their own key and ships their certificate in KeyInfo."""
    root = request_root()
    root.set("AssertionConsumerServiceURL", "https://evil.example/acs")
    sign_element(root, attacker.private_key, cert_b64=attacker.cert_b64)
    xml = etree.tostring(root)
    shipped = inbound(xml).findtext(f".//{DS}X509Certificate").replace("\n", "")
    assert shipped in attacker.cert_pem.replace("\n", "")
    assert verify(xml, [attacker.cert_pem]) == SIG_RSA_SHA256  # the signature itself is fine
    with pytest.raises(SignatureError, match="does not verify"):
        verify(xml, [sp.cert_pem])


def b64_int(n: int) -> str:
    return base64.b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).decode("ascii")


def test_key_value_in_keyinfo_is_ignored(sp: Pair, attacker: Pair) -> None:
    """Same forgery, the attacker's public key given as a bare ds:RSAKeyValue instead of a certificate."""
    root = request_root()
    root.set("AssertionConsumerServiceURL", "https://evil.example/acs")
    sign_element(root, attacker.private_key, cert_b64=attacker.cert_b64)
    root = inbound(etree.tostring(root))
    key_info = root.find(f"{DS}Signature/{DS}KeyInfo")
    key_info.remove(key_info[0])
    numbers = attacker.private_key.public_key().public_numbers()
    rsa_value = etree.SubElement(etree.SubElement(key_info, f"{DS}KeyValue"), f"{DS}RSAKeyValue")
    etree.SubElement(rsa_value, f"{DS}Modulus").text = b64_int(numbers.n)
    etree.SubElement(rsa_value, f"{DS}Exponent").text = b64_int(numbers.e)
    xml = etree.tostring(root)
    assert b"X509Data" not in xml
    with pytest.raises(SignatureError, match="does not verify"):
        verify(xml, [sp.cert_pem])


def test_ec_signature_with_rsa_certificate_does_not_verify(sp: Pair, sp_ec: Pair) -> None:
    with pytest.raises(SignatureError, match="does not verify"):
        verify(signed_request(sp_ec, SIG_ECDSA_SHA256), [sp.cert_pem])


# ---------------------------------------------------------------- HTTP-Redirect signatures

SAML_REQUEST = "fZJNT8MwDIbv%2FIqq9zYfdGOL1kqDCWnSQIghDlyitDNtpDQpiQv8fNK1EnCAa%2BzHr1%2FbG6961Ysd0qOyaW8RbP%2B"


def redirect_query(pair: Pair, algorithm: str = SIG_RSA_SHA256, relay_state: str | None = "rs-1",
                   sig_alg_encoded: str | None = None, message: str = SAML_REQUEST) -> str:
    """A query signed over exactly the octets it carries (saml-bindings §3.4.4.1)."""
    query = f"SAMLRequest={message}"
    if relay_state is not None:
        query += f"&RelayState={relay_state}"
    query += f"&SigAlg={sig_alg_encoded or quote_plus(algorithm)}"
    signature = sign_redirect_query(query, pair.private_key, algorithm)
    return query + "&Signature=" + quote_plus(signature)


def verify_query(query: str | bytes, pair: Pair, allowed: frozenset[str] = ALLOWED) -> str:
    raw = query.encode("ascii") if isinstance(query, str) else query
    return verify_redirect_signature(raw, "SAMLRequest", [pair.cert_pem], allowed)


@pytest.mark.parametrize(
    ("pair", "algorithm"),
    [("sp", SIG_RSA_SHA256), ("sp", SIG_RSA_SHA512), ("sp_ec", SIG_ECDSA_SHA256), ("sp_ec", SIG_ECDSA_SHA384)],
)
@pytest.mark.parametrize("relay_state", ["rs-1", None, ""])
def test_redirect_signature_valid(request: pytest.FixtureRequest, pair: str, algorithm: str,
                                  relay_state: str | None) -> None:
    p = request.getfixturevalue(pair)
    assert verify_query(redirect_query(p, algorithm, relay_state), p) == algorithm


def test_redirect_signature_lower_case_percent_encoding(sp: Pair) -> None:
    """The SP signed lower-case escapes: the raw octets must be verified, not a re-encoding."""
    lower = quote(SIG_RSA_SHA256, safe="").lower()
    assert "%3a%2f%2f" in lower
    query = redirect_query(sp, sig_alg_encoded=lower, message=SAML_REQUEST.replace("%2B", "%2b"),
                           relay_state="https%3a%2f%2fsp.example%2fx")
    assert verify_query(query, sp) == SIG_RSA_SHA256
    upper = query.replace("%3a", "%3A").replace("%2f", "%2F")
    with pytest.raises(SignatureError, match="does not verify"):
        verify_query(upper, sp)


def test_redirect_signature_parameter_order_does_not_matter(sp: Pair) -> None:
    parts = redirect_query(sp).split("&")
    assert verify_query("&".join(reversed(parts)), sp) == SIG_RSA_SHA256


def test_redirect_signature_ignores_unsigned_extra_parameters(sp: Pair) -> None:
    assert verify_query(redirect_query(sp) + "&utm_source=x", sp) == SIG_RSA_SHA256


def test_redirect_signature_with_rollover_list(sp: Pair, attacker: Pair, sp_ec: Pair) -> None:
    query = redirect_query(sp).encode()
    certs = [attacker.cert_pem, sp_ec.cert_pem, sp.cert_pem]
    assert verify_redirect_signature(query, "SAMLRequest", certs, ALLOWED) == SIG_RSA_SHA256


def refused_queries(sp: Pair) -> list[tuple[str, str]]:
    good = redirect_query(sp)
    sha1 = redirect_query(sp, SIG_RSA_SHA1)
    sig = good.rsplit("&Signature=", 1)[1]
    return [
        (good.replace("RelayState=rs-1", "RelayState=rs-2"), "does not verify"),
        (good.replace("&RelayState=rs-1", ""), "does not verify"),
        (good.replace("SAMLRequest=fZ", "SAMLRequest=fY"), "does not verify"),
        (good + "&SAMLRequest=" + SAML_REQUEST, "SAMLRequest appears more than once"),
        (good + "&SAML%52equest=" + SAML_REQUEST, "SAMLRequest appears more than once"),
        (good + "&RelayState=other", "RelayState appears more than once"),
        (good + "&Signature=" + sig, "Signature appears more than once"),
        (good.split("&Signature=")[0], "not signed"),
        (good.replace("&SigAlg=" + quote_plus(SIG_RSA_SHA256), ""), "not signed"),
        (good.replace(quote_plus(SIG_RSA_SHA256), quote_plus(SIG_RSA_SHA512)), "does not verify"),
        (good.replace(quote_plus(SIG_RSA_SHA256), quote_plus(HMAC_SHA256)), "not allowed"),
        (good.replace(quote_plus(SIG_RSA_SHA256), quote_plus("http://www.w3.org/2000/09/xmldsig#dsa-sha1")),
         "not allowed"),
        (good.replace(quote_plus(SIG_RSA_SHA256), "rsa-sha256"), "not allowed"),
        (good.replace(quote_plus(SIG_RSA_SHA256), ""), "not allowed"),
        (sha1, "not allowed"),
        (good.split("&Signature=")[0] + "&Signature=not*base64", "not valid base64"),
        (good.split("&Signature=")[0] + "&Signature=abc", "not valid base64"),
        (good.split("&Signature=")[0] + "&Signature=", "does not verify"),
        (good.split("&Signature=")[0] + "&Signature=" + quote_plus(base64.b64encode(b"\0" * 256).decode()),
         "does not verify"),
    ]


REFUSED_IDS = ["relaystate-altered", "relaystate-dropped", "message-altered", "dup-samlrequest",
               "dup-samlrequest-encoded-name", "dup-relaystate", "dup-signature", "no-signature", "no-sigalg",
               "sigalg-swapped", "hmac", "dsa-sha1", "sigalg-not-uri", "sigalg-empty", "sha1",
               "signature-bad-alphabet", "signature-bad-length", "signature-empty", "signature-zeros"]


@pytest.mark.parametrize("case", range(len(REFUSED_IDS)), ids=REFUSED_IDS)
def test_redirect_signature_refused(sp: Pair, case: int) -> None:
    query, message = refused_queries(sp)[case]
    with pytest.raises(SignatureError, match=message):
        verify_query(query, sp)


def test_redirect_sha1_accepted_only_when_allowed(sp: Pair) -> None:
    query = redirect_query(sp, SIG_RSA_SHA1)
    with pytest.raises(SignatureError, match="not allowed"):
        verify_query(query, sp)
    assert verify_query(query, sp, allowed_algorithms(True)) == SIG_RSA_SHA1


def test_redirect_signature_non_ascii(sp: Pair) -> None:
    query = redirect_query(sp).replace("rs-1", "r\u00e9").encode("utf-8")
    with pytest.raises(SignatureError, match="not ASCII"):
        verify_query(query, sp)


def test_redirect_signature_no_certificates(sp: Pair) -> None:
    with pytest.raises(SignatureError, match="no signing certificate"):
        verify_redirect_signature(redirect_query(sp).encode(), "SAMLRequest", [], ALLOWED)


def test_redirect_signature_wrong_certificate(sp: Pair, attacker: Pair) -> None:
    with pytest.raises(SignatureError, match="does not verify"):
        verify_query(redirect_query(sp), attacker)


@pytest.mark.parametrize(("pair", "algorithm"), [("sp", SIG_ECDSA_SHA256), ("sp_ec", SIG_RSA_SHA256)])
def test_sign_redirect_query_key_type_mismatch(request: pytest.FixtureRequest, pair: str, algorithm: str) -> None:
    with pytest.raises(SignatureError, match="does not match the key type"):
        sign_redirect_query("SAMLRequest=x", request.getfixturevalue(pair).private_key, algorithm)
