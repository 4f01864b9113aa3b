"""saml.metadata_trust: metadata signatures made by independent signers (python-xmlsec templates with Reference
URI "", an ECDSA key through the product's signer), the anchor rules, validUntil and xs:duration."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from idp.saml.constants import SignatureAlgorithm
from idp.saml.metadata_trust import (
    TrustError,
    check_valid_until,
    load_trust_anchor,
    parse_xs_duration,
    root_times,
    verify_metadata_signature,
)
from idp.saml.signing import sign_element

MD = "urn:oasis:names:tc:SAML:2.0:metadata"
POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"


def _cert(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "metadata signer")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


@pytest.fixture(scope="module")
def rsa_pair() -> tuple[rsa.RSAPrivateKey, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key, _cert(key)


def aggregate() -> etree._Element:
    """A two-SP EntitiesDescriptor without an ID (a whole-document signature, Reference URI "")."""
    entities = "".join(
        f'<md:EntityDescriptor entityID="https://sp{i}.example.org/sp"><md:SPSSODescriptor '
        f'protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:AssertionConsumerService '
        f'Binding="{POST}" Location="https://sp{i}.example.org/acs" index="0"/></md:SPSSODescriptor>'
        f"</md:EntityDescriptor>" for i in (1, 2))
    return etree.fromstring(f'<md:EntitiesDescriptor xmlns:md="{MD}" Name="urn:example:federation">{entities}'
                            "</md:EntitiesDescriptor>")


def xmlsec_sign(root: etree._Element, key_pem: bytes, uri: str = "",
                method: object = xmlsec.constants.TransformRsaSha256,
                digest: object = xmlsec.constants.TransformSha256) -> bytes:
    sig = xmlsec.template.create(root, xmlsec.constants.TransformExclC14N, method)
    root.insert(0, sig)
    ref = xmlsec.template.add_reference(sig, digest, uri=uri)
    xmlsec.template.add_transform(ref, xmlsec.constants.TransformEnveloped)
    xmlsec.template.add_transform(ref, xmlsec.constants.TransformExclC14N)
    ctx = xmlsec.SignatureContext()
    ctx.key = xmlsec.Key.from_memory(key_pem, xmlsec.constants.KeyDataFormatPem, None)
    if uri:
        xmlsec.tree.add_ids(root, ["ID"])
    ctx.sign(sig)
    return etree.tostring(root)


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def test_whole_document_signature_by_xmlsec_verifies(rsa_pair: tuple[rsa.RSAPrivateKey, str]) -> None:
    key, cert = rsa_pair
    signed = xmlsec_sign(aggregate(), pem(key))
    assert verify_metadata_signature(signed, cert) == SignatureAlgorithm.RSA_SHA256
    with pytest.raises(TrustError) as err:
        verify_metadata_signature(signed.replace(b"sp2.example.org/acs", b"sp2.example.org/evil"), cert)
    assert err.value.code == "signature_invalid"


def test_sha1_from_xmlsec_is_refused(rsa_pair: tuple[rsa.RSAPrivateKey, str]) -> None:
    key, cert = rsa_pair
    signed = xmlsec_sign(aggregate(), pem(key), method=xmlsec.constants.TransformRsaSha1,
                         digest=xmlsec.constants.TransformSha1)
    with pytest.raises(TrustError) as err:
        verify_metadata_signature(signed, cert)
    assert err.value.code == "signature_algorithm"
    # SHA-256 signature method over a SHA-1 digest: refused too
    signed = xmlsec_sign(aggregate(), pem(key), digest=xmlsec.constants.TransformSha1)
    with pytest.raises(TrustError) as err:
        verify_metadata_signature(signed, cert)
    assert err.value.code == "signature_algorithm"


def test_ecdsa_signed_entity_descriptor_verifies() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert(key)
    root = etree.fromstring(
        f'<md:EntityDescriptor xmlns:md="{MD}" ID="_e1" entityID="https://sp.example.org/sp"><md:SPSSODescriptor '
        f'protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:AssertionConsumerService '
        f'Binding="{POST}" Location="https://sp.example.org/acs" index="0"/></md:SPSSODescriptor>'
        "</md:EntityDescriptor>")
    cert_b64 = base64.b64encode(x509.load_pem_x509_certificate(cert.encode()).public_bytes(
        serialization.Encoding.DER)).decode()
    sign_element(root, key, SignatureAlgorithm.ECDSA_SHA256, cert_b64)
    assert verify_metadata_signature(etree.tostring(root), cert) == SignatureAlgorithm.ECDSA_SHA256


def test_two_signatures_on_the_root_are_refused(rsa_pair: tuple[rsa.RSAPrivateKey, str]) -> None:
    key, cert = rsa_pair
    root = etree.fromstring(xmlsec_sign(aggregate(), pem(key)))
    root.insert(0, etree.fromstring(etree.tostring(root[0])))
    with pytest.raises(TrustError, match="exactly one"):
        verify_metadata_signature(etree.tostring(root), cert)


def test_trust_anchor_rules(rsa_pair: tuple[rsa.RSAPrivateKey, str]) -> None:
    _, cert = rsa_pair
    assert load_trust_anchor(cert).subject.rfc4514_string() == "CN=metadata signer"
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ValueError, match="at least 2048"):
        load_trust_anchor(_cert(weak))
    with pytest.raises(ValueError, match="one PEM certificate"):
        load_trust_anchor(cert + cert)
    with pytest.raises(ValueError, match="one PEM certificate"):
        load_trust_anchor("not a certificate")


def test_valid_until_rules() -> None:
    now = datetime(2026, 12, 5, 12, tzinfo=UTC)
    check_valid_until(None, now, max_validity=None)
    check_valid_until(now + timedelta(days=400), now, max_validity=None)
    check_valid_until(now + timedelta(days=30), now, max_validity=timedelta(days=30))
    for value, limit, code in ((now, None, "valid_until_past"),
                               (now - timedelta(seconds=1), timedelta(days=30), "valid_until_past"),
                               (None, timedelta(days=30), "valid_until_missing"),
                               (now + timedelta(days=30, seconds=1), timedelta(days=30), "valid_until_too_far")):
        with pytest.raises(TrustError) as err:
            check_valid_until(value, now, max_validity=limit)
        assert err.value.code == code


@pytest.mark.parametrize(("text", "expected"), [
    ("PT6H", timedelta(hours=6)), ("P1D", timedelta(days=1)), ("P1DT12H30M", timedelta(days=1, hours=12, minutes=30)),
    ("PT90S", timedelta(seconds=90)), ("PT0.5S", timedelta(seconds=0.5)), ("P1Y", timedelta(days=365)),
    ("P", None), ("PT", None), ("6h", None), ("-PT1H", None), ("P1DT", None), ("", None)])
def test_xs_duration(text: str, expected: timedelta | None) -> None:
    assert parse_xs_duration(text) == expected


def test_root_times() -> None:
    xml = (f'<md:EntityDescriptor xmlns:md="{MD}" entityID="x" validUntil="2030-01-01T00:00:00Z" '
           'cacheDuration="PT2H"/>').encode()
    times = root_times(xml)
    assert times.valid_until == datetime(2030, 1, 1, tzinfo=UTC) and times.cache_duration == timedelta(hours=2)
