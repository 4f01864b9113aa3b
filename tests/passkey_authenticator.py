"""A software WebAuthn authenticator for tests: builds what a browser would post after
navigator.credentials.create() (attestation "none") and .get(), with ES256 keys (`cryptography`) and CBOR
(`cbor2`, installed with py_webauthn). Written from the WebAuthn Level 3 spec (§6.1 authenticator data, §6.5
attested credential data, §8.7 "none" attestation), independent of the server, which verifies with py_webauthn.

Knobs let a test build the hostile cases: another origin or RP ID, no user verification, a counter that goes
backwards (a cloned authenticator), changed backup flags, a wrong signature, a malformed credential public key,
an assertion without its user handle.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

FLAG_UP, FLAG_UV, FLAG_BE, FLAG_BS, FLAG_AT = 0x01, 0x04, 0x08, 0x10, 0x40


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Credential:
    credential_id: bytes
    key: ec.EllipticCurvePrivateKey
    rp_id: str
    user_handle: bytes
    sign_count: int = 0
    backup_eligible: bool = False
    backup_state: bool = False

    def cose_public_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"),
                            -3: numbers.y.to_bytes(32, "big")})


@dataclass
class SoftAuthenticator:
    """Holds discoverable credentials per RP ID, like a platform authenticator with user verification."""

    origin: str = "http://localhost"
    counter_step: int = 1                    # 0: a counter that never moves (allowed when always 0)
    aaguid: bytes = b"\x00" * 16
    credentials: list[Credential] = field(default_factory=list)

    # -------------------------------------------------------------- registration

    def create(self, options: dict[str, Any], *, origin: str | None = None, rp_id: str | None = None,
               uv: bool = True, backup_eligible: bool = False, challenge: str | None = None,
               cose_key: bytes | None = None) -> dict[str, Any]:
        """The RegistrationResponseJSON for PublicKeyCredentialCreationOptionsJSON `options`. `cose_key`: these
        bytes in place of the credential's COSE public key (hostile registrations)."""
        rp = rp_id or options["rp"]["id"]
        cred = Credential(os.urandom(32), ec.generate_private_key(ec.SECP256R1()), rp,
                          unb64url(options["user"]["id"]), backup_eligible=backup_eligible,
                          backup_state=backup_eligible)
        client_data = self._client_data("webauthn.create", challenge or options["challenge"], origin)
        flags = FLAG_UP | FLAG_AT | (FLAG_UV if uv else 0) | (FLAG_BE if backup_eligible else 0) \
            | (FLAG_BS if cred.backup_state else 0)
        attested = self.aaguid + struct.pack(">H", len(cred.credential_id)) + cred.credential_id \
            + (cred.cose_public_key() if cose_key is None else cose_key)
        auth_data = hashlib.sha256(rp.encode()).digest() + bytes([flags]) + struct.pack(">I", 0) + attested
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        self.credentials.append(cred)
        return {"id": b64url(cred.credential_id), "rawId": b64url(cred.credential_id), "type": "public-key",
                "authenticatorAttachment": "platform", "clientExtensionResults": {},
                "response": {"clientDataJSON": b64url(client_data), "attestationObject": b64url(attestation),
                             "transports": ["internal"]}}

    # -------------------------------------------------------------- authentication

    def get(self, options: dict[str, Any], *, credential: Credential | None = None, origin: str | None = None,
            rp_id: str | None = None, uv: bool = True, sign_count: int | None = None,
            backup_eligible: bool | None = None, user_handle: bytes | None = None, tamper: bool = False,
            challenge: str | None = None, omit_user_handle: bool = False) -> dict[str, Any]:
        """The AuthenticationResponseJSON for PublicKeyCredentialRequestOptionsJSON `options`: the given credential,
        else the first allowed one this authenticator holds, else its first discoverable one for the RP.
        `omit_user_handle`: no userHandle in the response (allowed only when the user was identified first)."""
        rp = options.get("rpId") or "localhost"
        cred = credential or self._pick(options, rp)
        if sign_count is None:
            cred.sign_count += self.counter_step
            count = cred.sign_count
        else:
            count = sign_count
        be = cred.backup_eligible if backup_eligible is None else backup_eligible
        flags = FLAG_UP | (FLAG_UV if uv else 0) | (FLAG_BE if be else 0) | (FLAG_BS if be and cred.backup_state
                                                                            else 0)
        auth_data = hashlib.sha256((rp_id or rp).encode()).digest() + bytes([flags]) + struct.pack(">I", count)
        client_data = self._client_data("webauthn.get", challenge or options["challenge"], origin)
        signature = cred.key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        if tamper:
            auth_data = auth_data[:-1] + bytes([auth_data[-1] ^ 1])
        handle = cred.user_handle if user_handle is None else user_handle
        response = {"clientDataJSON": b64url(client_data), "authenticatorData": b64url(auth_data),
                    "signature": b64url(signature)}
        if not omit_user_handle:
            response["userHandle"] = b64url(handle)
        return {"id": b64url(cred.credential_id), "rawId": b64url(cred.credential_id), "type": "public-key",
                "authenticatorAttachment": "platform", "clientExtensionResults": {}, "response": response}

    def _pick(self, options: dict[str, Any], rp: str) -> Credential:
        allowed = [unb64url(c["id"]) for c in options.get("allowCredentials") or []]
        for cred in self.credentials:
            if cred.rp_id == rp and (not allowed or cred.credential_id in allowed):
                return cred
        raise LookupError("no credential for this RP (NotAllowedError in a browser)")

    def _client_data(self, typ: str, challenge: str, origin: str | None) -> bytes:
        return json.dumps({"type": typ, "challenge": challenge, "origin": origin or self.origin,
                           "crossOrigin": False}, separators=(",", ":")).encode()
