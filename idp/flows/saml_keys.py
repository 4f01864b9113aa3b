"""Which key signs an app's messages, with which algorithm, and how its assertions are encrypted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..certs.keystore import KeyFamily, KeySet, LoadedKey
from ..errors import AppMisconfigured, SigningKeyUnavailable
from ..saml.constants import SignatureAlgorithm, SignMode
from ..saml.encryption import encrypt_assertion_xml
from ..saml.responses import SigningChoice
from ..services.apps import AppConfig

_FAMILY_SWAP: dict[str, str] = {
    SignatureAlgorithm.RSA_SHA256: SignatureAlgorithm.ECDSA_SHA256,
    SignatureAlgorithm.RSA_SHA384: SignatureAlgorithm.ECDSA_SHA384,
    SignatureAlgorithm.RSA_SHA512: SignatureAlgorithm.ECDSA_SHA512,
    SignatureAlgorithm.RSA_SHA1: SignatureAlgorithm.ECDSA_SHA256,
}
_FAMILY_SWAP_BACK = {v: k for k, v in _FAMILY_SWAP.items() if k != SignatureAlgorithm.RSA_SHA1}


def signing_key_for(app: AppConfig, keys: KeySet) -> LoadedKey:
    """The app's pinned key (any published one) or the active key; never silently another one."""
    kid = app.settings.signing_key
    if not kid:
        return keys.active
    key = keys.get(kid)
    if key is None:
        raise SigningKeyUnavailable(f"the app is pinned to signing key {kid}, which is no longer available")
    return key


def algorithm_for(app: AppConfig, key: LoadedKey) -> str:
    """The app's algorithm, in the family of the key (an EC key cannot make an RSA signature)."""
    alg = app.settings.signature_algorithm
    if key.key_type == KeyFamily.EC:
        return _FAMILY_SWAP.get(alg, alg)
    return _FAMILY_SWAP_BACK.get(alg, alg)


def signing_for(app: AppConfig, keys: KeySet) -> SigningChoice:
    mode = SignMode(app.settings.sign)
    key = signing_key_for(app, keys)
    return SigningChoice(key=key.private_key, cert_b64=key.cert_b64, algorithm=algorithm_for(app, key),
                         sign_response=mode.signs_response, sign_assertion=mode.signs_assertion)


def encryptor_for(app: AppConfig) -> Callable[[bytes], Any] | None:
    if not app.settings.encrypt_assertion:
        return None
    certs = app.saml.encryption_certs
    if not certs:
        raise AppMisconfigured("assertion encryption is on but the app's metadata has no encryption certificate")
    algorithm = app.settings.encryption_algorithm
    return lambda assertion_xml: encrypt_assertion_xml(assertion_xml, certs[0], algorithm)
