"""Unit tests for idp.saml.sp_metadata_builder and idp.certs.x509: an SP entered by hand becomes metadata the
parser reads back, and each hand-entered value is refused in the parser's own words."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.x509.oid import NameOID

from idp.certs.x509 import CertificateError, cert_info, decode_certificate
from idp.saml.constants import BINDING_POST, BINDING_REDIRECT
from idp.saml.sp_metadata import MetadataError, parse_sp_metadata
from idp.saml.sp_metadata_builder import (
    ACS_BINDINGS,
    HandEnteredSp,
    build_sp_metadata_xml,
    validate_certificate,
    validate_endpoint_url,
    validate_entity_id,
)


def _cert_pem(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sp.example.com")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .sign(key, None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


@pytest.fixture(scope="module")
def rsa_pem() -> str:
    return _cert_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))


def test_built_metadata_reads_back(rsa_pem: str) -> None:
    sp = HandEnteredSp(entity_id="https://sp.example.com/saml", acs_url="https://sp.example.com/acs",
                       acs_binding=ACS_BINDINGS["HTTP-POST"], slo_url="https://sp.example.com/slo",
                       cert_b64=decode_certificate(rsa_pem))
    md = parse_sp_metadata(build_sp_metadata_xml(sp))
    assert md.entity_id == "https://sp.example.com/saml"
    assert md.default_post_acs().location == "https://sp.example.com/acs" and md.acs[0].binding == BINDING_POST
    assert md.acs[0].index == 0 and md.acs[0].is_default is True
    assert [(e.binding, e.location) for e in md.slo] == [(BINDING_REDIRECT, "https://sp.example.com/slo")]
    assert len(md.signing_certs) == 1 and md.signing_certs == md.encryption_certs  # no use=: both purposes
    assert cert_info(md.signing_certs[0]).fingerprint == cert_info(rsa_pem).fingerprint


def test_minimal_metadata_without_slo_and_certificate() -> None:
    md = parse_sp_metadata(build_sp_metadata_xml(HandEnteredSp("urn:sp", "https://sp.example.com/acs",
                                                               BINDING_POST)))
    assert md.slo == () and md.signing_certs == () and md.encryption_certs == ()


@pytest.mark.parametrize(("value", "words"), [
    ("javascript:alert(1)", r"is not an absolute http\(s\) URL"),
    ("https://user:pw@sp.example.com/acs", "must not contain a user name or password"),
    ("https://sp.example.com:99999/acs", "is not a valid URL"),
    ("https://sp.example.com/a b", "must not contain spaces or control characters"),
    ("https://sp.example.com/\x01", "must not contain spaces or control characters"),
])
def test_endpoint_urls_are_checked_as_the_parser_does(value: str, words: str) -> None:
    with pytest.raises(MetadataError, match=words):
        validate_endpoint_url(value, "AssertionConsumerService")


def test_entity_id_checks() -> None:
    validate_entity_id("urn:example:sp")
    with pytest.raises(MetadataError, match="spaces"):
        validate_entity_id("urn:has space")
    with pytest.raises(MetadataError, match="longer than 1024"):
        validate_entity_id("urn:" + "x" * 1024)


def test_certificate_checks(rsa_pem: str) -> None:
    body = "".join(rsa_pem.splitlines()[1:-1])
    assert decode_certificate(rsa_pem) == decode_certificate(body)   # PEM or the bare base64 body
    validate_certificate(decode_certificate(rsa_pem))
    with pytest.raises(CertificateError, match="PEM"):
        decode_certificate("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----")
    with pytest.raises(CertificateError, match="BEGIN/END"):
        decode_certificate("not base64 !!")
    ed = decode_certificate(_cert_pem(ed25519.Ed25519PrivateKey.generate()))
    with pytest.raises(MetadataError, match="RSA or EC keys only"):
        validate_certificate(ed)
    assert base64.b64decode(ed)  # readable, only not usable here


def test_unreadable_certificate_is_shown_not_refused() -> None:
    info = cert_info("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    assert info.fingerprint == "(unreadable certificate)" and info.not_after is None
