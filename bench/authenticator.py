"""A software WebAuthn authenticator for the bench: one ES256 (P-256) credential that signs assertions.

It does what a platform authenticator does for `navigator.credentials.get()` (WebAuthn Level 3, §6.1 and §6.3.3):
authenticatorData = SHA-256(rp_id) || flags || signCount (4 bytes, big-endian), and an ECDSA P-256 / SHA-256
signature (DER) over authenticatorData || SHA-256(clientDataJSON). Key material comes from `cryptography`; the
COSE public key is encoded with `cbor2` (installed with the server's WebAuthn library), never by hand.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

FLAG_UP = 0x01    # user present
FLAG_UV = 0x04    # user verified
FLAG_BE = 0x08    # backup eligible (a synced passkey)
FLAG_BS = 0x10    # backed up

COSE_KTY_EC2, COSE_ALG_ES256, COSE_CRV_P256 = 2, -7, 1


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class SoftwareAuthenticator:
    """One discoverable ES256 credential for `rp_id`, used from `origin`."""

    rp_id: str
    origin: str
    user_handle: bytes = field(default_factory=lambda: os.urandom(16))
    backup_eligible: bool = False
    credential_id: bytes = field(default_factory=lambda: os.urandom(32))
    sign_count: int = 0
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    def cose_public_key(self) -> bytes:
        """The credential public key as a COSE_Key (RFC 9053 EC2, alg ES256), as registration stores it."""
        import cbor2  # a dependency of py_webauthn

        numbers = self.key.public_key().public_numbers()
        return bytes(cbor2.dumps({1: COSE_KTY_EC2, 3: COSE_ALG_ES256, -1: COSE_CRV_P256,
                                  -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")}))

    def authenticator_data(self, *, user_verified: bool = True) -> bytes:
        flags = FLAG_UP | (FLAG_UV if user_verified else 0) | (FLAG_BE | FLAG_BS if self.backup_eligible else 0)
        return hashlib.sha256(self.rp_id.encode()).digest() + bytes([flags]) + self.sign_count.to_bytes(4, "big")

    def client_data(self, challenge: bytes) -> bytes:
        return json.dumps({"type": "webauthn.get", "challenge": b64url(challenge), "origin": self.origin,
                           "crossOrigin": False}, separators=(",", ":")).encode()

    def assertion(self, challenge: bytes, *, user_verified: bool = True) -> dict[str, Any]:
        """The PublicKeyCredential JSON a browser posts after `navigator.credentials.get()` (counter + 1)."""
        self.sign_count += 1
        auth_data = self.authenticator_data(user_verified=user_verified)
        client_data = self.client_data(challenge)
        signature = self.key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        return {
            "id": b64url(self.credential_id), "rawId": b64url(self.credential_id), "type": "public-key",
            "authenticatorAttachment": "platform", "clientExtensionResults": {},
            "response": {"clientDataJSON": b64url(client_data), "authenticatorData": b64url(auth_data),
                         "signature": b64url(signature), "userHandle": b64url(self.user_handle)},
        }


def verify_assertion(public_key: ec.EllipticCurvePublicKey, credential: dict[str, Any]) -> None:
    """The relying party's signature check (raises InvalidSignature): for the bench's self-test."""
    r = credential["response"]
    auth_data, client_data = b64url_decode(r["authenticatorData"]), b64url_decode(r["clientDataJSON"])
    public_key.verify(b64url_decode(r["signature"]), auth_data + hashlib.sha256(client_data).digest(),
                      ec.ECDSA(hashes.SHA256()))
