"""Render the IdP's own metadata (saml-metadata-2.0-os §2.4.3 IDPSSODescriptor)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from lxml import etree

from .artifact import ENDPOINT_INDEX as ARTIFACT_ENDPOINT_INDEX
from .constants import BINDING_SOAP, NAMEID_FORMATS, NS_DS, NS_MD, NS_SAMLP, XML_LANG, Binding, KeyUse
from .responses import instant, new_id

MD = f"{{{NS_MD}}}"
DS = f"{{{NS_DS}}}"


@dataclass(frozen=True, slots=True)
class IdpMetadataSpec:
    entity_id: str
    sso_url: str
    slo_url: str
    signing_certs_b64: Sequence[str]       # every published signing certificate (rollover: several)
    want_authn_requests_signed: bool
    now: datetime
    valid_for: timedelta = timedelta(days=7)
    cache_duration: str = "PT1H"
    organization: str | None = None
    artifact_url: str | None = None        # ArtifactResolutionService (SOAP), index 0


def build_idp_metadata(spec: IdpMetadataSpec) -> etree._Element:
    ed = etree.Element(MD + "EntityDescriptor", nsmap={"md": NS_MD, "ds": NS_DS})
    ed.set("entityID", spec.entity_id)
    ed.set("ID", new_id())
    ed.set("validUntil", instant(spec.now + spec.valid_for))
    ed.set("cacheDuration", spec.cache_duration)
    idp = etree.SubElement(ed, MD + "IDPSSODescriptor")
    idp.set("protocolSupportEnumeration", NS_SAMLP)
    idp.set("WantAuthnRequestsSigned", "true" if spec.want_authn_requests_signed else "false")
    for b64 in spec.signing_certs_b64:
        kd = etree.SubElement(idp, MD + "KeyDescriptor", use=KeyUse.SIGNING)
        x509 = etree.SubElement(etree.SubElement(etree.SubElement(kd, DS + "KeyInfo"), DS + "X509Data"),
                                DS + "X509Certificate")
        x509.text = b64
    if spec.artifact_url:   # schema order: after KeyDescriptor, before SingleLogoutService
        etree.SubElement(idp, MD + "ArtifactResolutionService", Binding=BINDING_SOAP, Location=spec.artifact_url,
                         index=str(ARTIFACT_ENDPOINT_INDEX), isDefault="true")
    for binding in Binding:
        etree.SubElement(idp, MD + "SingleLogoutService", Binding=binding, Location=spec.slo_url)
    for fmt in NAMEID_FORMATS.values():
        etree.SubElement(idp, MD + "NameIDFormat").text = fmt
    for binding in Binding:
        etree.SubElement(idp, MD + "SingleSignOnService", Binding=binding, Location=spec.sso_url)
    if spec.organization:
        org = etree.SubElement(ed, MD + "Organization")
        for tag in ("OrganizationName", "OrganizationDisplayName"):
            el = etree.SubElement(org, MD + tag)
            el.set(XML_LANG, "en")
            el.text = spec.organization
        el = etree.SubElement(org, MD + "OrganizationURL")
        el.set(XML_LANG, "en")
        el.text = spec.entity_id.rsplit("/saml/", 1)[0] + "/"
    return ed
