"""SP metadata for a service provider entered by hand: each value checked on its own, then a minimal
md:EntityDescriptor built from them (registered like any uploaded document, so the parser checks it again)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from lxml import etree

from .constants import BINDING_POST, BINDING_REDIRECT, NS_DS, NS_MD, NS_SAMLP

# The parser's own rules, so that a value entered by hand is refused in the same words as inside a document.
from .sp_metadata import MAX_ENTITY_ID_LENGTH, MetadataError, _certificate, _validate_url

# The ACS bindings offered when an SP is entered by hand. This IdP answers with HTTP-POST only
# (saml-bindings §3.5), so that is the one choice.
ACS_BINDINGS = {"HTTP-POST": BINDING_POST}

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class HandEnteredSp:
    entity_id: str
    acs_url: str
    acs_binding: str                  # a binding URI (a value of ACS_BINDINGS)
    slo_url: str | None = None
    cert_b64: str | None = None       # base64 DER, as ds:X509Certificate holds it


def _check_uri_text(value: str) -> None:
    if _CONTROL.search(value) or any(c.isspace() for c in value):
        raise MetadataError("must not contain spaces or control characters")


def validate_entity_id(value: str) -> None:
    """An entityID as typed (SAMLCore §8.3.6: a URI of at most 1024 characters); MetadataError otherwise."""
    _check_uri_text(value)
    if len(value) > MAX_ENTITY_ID_LENGTH:
        raise MetadataError(f"The entityID is longer than {MAX_ENTITY_ID_LENGTH} characters.")


def validate_endpoint_url(value: str, element: str) -> None:
    """An endpoint Location as typed, for `element` (AssertionConsumerService, SingleLogoutService)."""
    _check_uri_text(value)
    _validate_url(value, f"{element} Location")


def validate_certificate(cert_b64: str) -> None:
    """A certificate (base64 DER) carrying a key this IdP can use (RSA or EC); MetadataError otherwise."""
    _certificate(cert_b64)


def build_sp_metadata_xml(sp: HandEnteredSp) -> bytes:
    """A minimal md:EntityDescriptor (saml-metadata-2.0-os §2.3.2, §2.4.4) for an SP entered by hand.

    The KeyDescriptor has no use attribute, so the certificate serves signing and encryption (§2.4.1.1);
    the single ACS is index 0 and the default; SLO is offered with the HTTP-Redirect binding.
    """
    md = f"{{{NS_MD}}}"
    root = etree.Element(f"{md}EntityDescriptor", nsmap={"md": NS_MD, "ds": NS_DS})
    root.set("entityID", sp.entity_id)
    role = etree.SubElement(root, f"{md}SPSSODescriptor")
    role.set("protocolSupportEnumeration", NS_SAMLP)
    if sp.cert_b64:
        kd = etree.SubElement(role, f"{md}KeyDescriptor")
        key_info = etree.SubElement(kd, f"{{{NS_DS}}}KeyInfo")
        data = etree.SubElement(key_info, f"{{{NS_DS}}}X509Data")
        etree.SubElement(data, f"{{{NS_DS}}}X509Certificate").text = sp.cert_b64
    if sp.slo_url:
        etree.SubElement(role, f"{md}SingleLogoutService", Binding=BINDING_REDIRECT, Location=sp.slo_url)
    etree.SubElement(role, f"{md}AssertionConsumerService", Binding=sp.acs_binding, Location=sp.acs_url, index="0",
                     isDefault="true")
    return bytes(etree.tostring(root, xml_declaration=True, encoding="utf-8", pretty_print=True))
