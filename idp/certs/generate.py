"""Key pair and self-signed certificate generation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID


class KeyType(StrEnum):
    """The key pairs `idp certs generate|rotate --key-type` and the console can make."""

    RSA2048 = "rsa2048"
    RSA3072 = "rsa3072"
    EC_P256 = "ec-p256"


DEFAULT_KEY_TYPE = KeyType.RSA3072
# The plain strings, for CLI `click.Choice` and form choices (a Choice of enum members would match by name).
KEY_TYPES = tuple(t.value for t in KeyType)


@dataclass(frozen=True, slots=True)
class GeneratedKey:
    key_pem: bytes
    cert_pem: bytes


def generate_key_pair(common_name: str, key_type: str = DEFAULT_KEY_TYPE, days: int = 730) -> GeneratedKey:
    if key_type == KeyType.RSA2048:
        key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = rsa.generate_private_key(65537, 2048)
    elif key_type == KeyType.RSA3072:
        key = rsa.generate_private_key(65537, 3072)
    elif key_type == KeyType.EC_P256:
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        raise ValueError(f"unknown key type {key_type!r}; choose one of {', '.join(KEY_TYPES)}")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return GeneratedKey(key_pem=key_pem, cert_pem=cert.public_bytes(serialization.Encoding.PEM))
