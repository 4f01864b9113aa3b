"""The bench's software authenticator signs assertions a relying party accepts (the passkey login figure)."""

from __future__ import annotations

import hashlib
import os

import pytest
from cryptography.exceptions import InvalidSignature

from bench.authenticator import FLAG_UP, FLAG_UV, SoftwareAuthenticator, b64url_decode, verify_assertion


def test_assertion_layout_and_signature() -> None:
    auth = SoftwareAuthenticator(rp_id="localhost", origin="http://localhost")
    challenge = os.urandom(32)
    cred = auth.assertion(challenge)
    data = b64url_decode(cred["response"]["authenticatorData"])
    assert data[:32] == hashlib.sha256(b"localhost").digest()
    assert data[32] == FLAG_UP | FLAG_UV and int.from_bytes(data[33:37], "big") == 1 and len(data) == 37
    verify_assertion(auth.key.public_key(), cred)
    assert int.from_bytes(b64url_decode(auth.assertion(challenge)["response"]["authenticatorData"])[33:37],
                          "big") == 2, "the counter grows"
    cred["response"]["clientDataJSON"] = cred["response"]["clientDataJSON"][:-2] + "AA"
    with pytest.raises(InvalidSignature):
        verify_assertion(auth.key.public_key(), cred)


def test_py_webauthn_accepts_the_assertion() -> None:
    webauthn = pytest.importorskip("webauthn")   # the server library (the passkeys branch's dependency)
    auth = SoftwareAuthenticator(rp_id="localhost", origin="http://localhost")
    challenge = os.urandom(32)
    cred = auth.assertion(challenge)
    verified = webauthn.verify_authentication_response(
        credential=cred, expected_challenge=challenge, expected_rp_id="localhost",
        expected_origin="http://localhost", credential_public_key=auth.cose_public_key(),
        credential_current_sign_count=0, require_user_verification=True)
    assert verified.new_sign_count == 1 and verified.user_verified
