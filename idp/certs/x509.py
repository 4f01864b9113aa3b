"""X.509 certificates as admins see and paste them: SHA-256 fingerprint, subject and expiry; PEM or bare base64 in."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding


class CertificateError(ValueError):
    """The text is not a readable certificate; the message says what to paste instead."""


@dataclass(frozen=True, slots=True)
class CertInfo:
    fingerprint: str          # SHA-256, colon-separated upper-case hex
    subject: str
    not_after: datetime | None


def cert_info(pem: str) -> CertInfo:
    """What the console shows of a PEM certificate; an unreadable one is shown as such, not refused."""
    try:
        cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
    except ValueError:
        return CertInfo("(unreadable certificate)", "", None)
    try:
        subject = cert.subject.rfc4514_string()
    except ValueError:
        subject = ""
    return CertInfo(cert.fingerprint(hashes.SHA256()).hex(":").upper(), subject, cert.not_valid_after_utc)


def fingerprint(pem: str) -> str:
    return cert_info(pem).fingerprint


def decode_certificate(text: str) -> str:
    """A PEM certificate (or its bare base64 body) → base64 DER, as ds:X509Certificate holds it; CertificateError
    when it cannot be read as a certificate."""
    body = text.strip()
    if "-----BEGIN CERTIFICATE-----" in body:
        try:
            cert = x509.load_pem_x509_certificate(body.encode("ascii", errors="strict"))
        except (ValueError, UnicodeEncodeError):
            raise CertificateError("not a readable PEM certificate (-----BEGIN CERTIFICATE----- … )") from None
        return base64.b64encode(cert.public_bytes(Encoding.DER)).decode("ascii")
    try:
        der = base64.b64decode("".join(body.split()), validate=True)
        x509.load_der_x509_certificate(der)
    except (binascii.Error, ValueError):
        raise CertificateError("not a readable certificate: paste the PEM text including the BEGIN/END lines") from None
    return base64.b64encode(der).decode("ascii")
