"""Assertion encryption (saml-core-2.0-os §6, xmlenc-core): sign first, then encrypt for the SP's certificate.

Data: AES-GCM by default (AES-CBC only by explicit per-app choice: CBC without integrity is open to
padding-oracle attacks on XML encryption); key transport: RSA-OAEP (rsa-oaep-mgf1p).
"""

from __future__ import annotations

import xmlsec
from lxml import etree

from .constants import NS_SAML, EncryptionAlgorithm
from .signing import verification_key

# the xmlsec transform and AES key size of each choice
DATA_ALGORITHMS = {
    EncryptionAlgorithm.AES256_GCM: (xmlsec.Transform.AES256_GCM, 256),
    EncryptionAlgorithm.AES128_GCM: (xmlsec.Transform.AES128_GCM, 128),
    EncryptionAlgorithm.AES256_CBC: (xmlsec.Transform.AES256, 256),
}


class EncryptionError(ValueError):
    """The assertion cannot be encrypted for this app (unknown algorithm, unusable certificate, xmlsec failure)."""


def encrypt_assertion_xml(assertion_xml: bytes, cert_pem: str,
                          algorithm: str = EncryptionAlgorithm.AES256_GCM) -> etree._Element:
    """saml:EncryptedAssertion holding `assertion_xml` (a standalone, signed saml:Assertion) encrypted
    for the SP's certificate: a fresh AES key per assertion, transported with RSA-OAEP."""
    try:
        transform, bits = DATA_ALGORITHMS[EncryptionAlgorithm(algorithm)]
    except ValueError:
        raise EncryptionError(f"unsupported encryption algorithm {algorithm}") from None
    try:
        manager = xmlsec.KeysManager()
        manager.add_key(verification_key(cert_pem)[0])  # parsed once per process (add_key copies it)
    except (xmlsec.Error, ValueError):
        raise EncryptionError("the app's encryption certificate cannot be loaded") from None
    wrapper = etree.Element(f"{{{NS_SAML}}}EncryptedAssertion", nsmap={"saml": NS_SAML})
    enc_data = xmlsec.template.encrypted_data_create(wrapper, transform, type=xmlsec.EncryptionType.ELEMENT,
                                                     ns="xenc")
    xmlsec.template.encrypted_data_ensure_cipher_value(enc_data)
    key_info = xmlsec.template.encrypted_data_ensure_key_info(enc_data, ns="ds")
    enc_key = xmlsec.template.add_encrypted_key(key_info, xmlsec.Transform.RSA_OAEP)
    xmlsec.template.encrypted_data_ensure_cipher_value(enc_key)
    ctx = xmlsec.EncryptionContext(manager)
    ctx.key = xmlsec.Key.generate(xmlsec.KeyData.AES, bits, xmlsec.KeyDataType.SESSION)
    try:
        encrypted = ctx.encrypt_binary(enc_data, assertion_xml)
    except xmlsec.Error as exc:
        raise EncryptionError(f"encryption failed: {exc}") from None
    wrapper.append(encrypted)
    return wrapper

