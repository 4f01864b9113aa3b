"""HTTP-Artifact binding for responses and artifact resolution over SOAP (saml-bindings-2.0-os §3.6, §3.2;
saml-core-2.0-os §3.5).

The artifact is the type 0x0004 format (bindings §3.6.4): TypeCode 0x0004, the EndpointIndex of the IdP's
ArtifactResolutionService, SourceID = SHA-1 of the issuer's entityID, and a 20-byte random MessageHandle. The
SAML message it stands for stays at the IdP until the SP resolves it with a signed ArtifactResolve sent in a
SOAP 1.1 envelope (bindings §3.2.3); the answer is an ArtifactResponse in a SOAP envelope.

Framework-free: parsing establishes shape only; who may resolve what is decided in flows.artifact.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime

from lxml import etree

from .constants import NS_SAMLP
from .requests import RequestParseError, _common
from .responses import SigningChoice, _message, _sign, _status, new_id
from .xmlsafe import UnsafeXmlError, parse_untrusted_xml, text_of

TYPE_CODE = b"\x00\x04"
ARTIFACT_BYTES = 44                     # TypeCode (2) + EndpointIndex (2) + SourceID (20) + MessageHandle (20)
ENDPOINT_INDEX = 0                      # the index of /saml/artifact in this IdP's metadata
NS_SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"   # SOAP 1.1 (bindings §3.2.2.1: SOAP 1.1 only)
SOAP_ENV = f"{{{NS_SOAP_ENV}}}"


class ArtifactError(ValueError):
    """The value is not a SAML 2.0 type 0x0004 artifact."""


class SoapError(ValueError):
    """The body is not a SOAP 1.1 envelope carrying exactly one SAML message."""


@dataclass(frozen=True, slots=True)
class Artifact:
    endpoint_index: int
    source_id: bytes                    # SHA-1 of the issuer's entityID
    message_handle: bytes               # 20 random bytes

    def encode(self) -> str:
        raw = TYPE_CODE + self.endpoint_index.to_bytes(2, "big") + self.source_id + self.message_handle
        return base64.b64encode(raw).decode("ascii")

    @property
    def handle_hex(self) -> str:
        return self.message_handle.hex()


def source_id(entity_id: str) -> bytes:
    """bindings §3.6.4: SourceID is the SHA-1 hash of the artifact issuer's entityID (a name, not a secret)."""
    return hashlib.sha1(entity_id.encode("utf-8"), usedforsecurity=False).digest()


def new_artifact(issuer_entity_id: str, endpoint_index: int = ENDPOINT_INDEX) -> Artifact:
    """A fresh artifact: the MessageHandle is 20 bytes from the OS CSPRNG (bindings §3.6.4: infeasible to guess)."""
    return Artifact(endpoint_index=endpoint_index, source_id=source_id(issuer_entity_id),
                    message_handle=secrets.token_bytes(20))


def parse_artifact(value: str) -> Artifact:
    text = "".join(value.split())
    if len(text) > 64:
        raise ArtifactError("the artifact is too long")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ArtifactError("the artifact is not valid base64") from None
    if len(raw) != ARTIFACT_BYTES or raw[:2] != TYPE_CODE:
        raise ArtifactError("the artifact is not a SAML 2.0 type 0x0004 artifact")
    return Artifact(endpoint_index=int.from_bytes(raw[2:4], "big"), source_id=raw[4:24], message_handle=raw[24:44])


# ---------------------------------------------------------------- the SOAP binding (bindings §3.2)

def unwrap_soap(body: bytes, max_bytes: int) -> bytes:
    """The one SAML element in the SOAP Body, serialised as its own document (an enveloped signature is then
    verified against it exactly as the sender's exclusive c14n saw it). SoapError otherwise."""
    try:
        root = parse_untrusted_xml(body, max_bytes=max_bytes)
    except UnsafeXmlError as exc:
        raise SoapError(str(exc)) from None
    if root.tag != SOAP_ENV + "Envelope":
        raise SoapError("the body is not a SOAP 1.1 Envelope")
    bodies = [el for el in root if el.tag == SOAP_ENV + "Body"]
    if len(bodies) != 1:
        raise SoapError("the Envelope must hold exactly one Body")
    # bindings §3.2.3.1: the header may carry nothing the receiver must understand
    for header in (el for el in root if el.tag == SOAP_ENV + "Header"):
        for block in header:
            if isinstance(block.tag, str) and block.get(SOAP_ENV + "mustUnderstand") in ("1", "true"):
                raise SoapError("a SOAP header block is marked mustUnderstand")
    children = [el for el in bodies[0] if isinstance(el.tag, str)]
    if len(children) != 1:
        raise SoapError("the SOAP Body must hold exactly one SAML message")
    return bytes(etree.tostring(children[0], encoding="utf-8"))


def wrap_soap(message: etree._Element) -> bytes:
    envelope = etree.Element(SOAP_ENV + "Envelope", nsmap={"SOAP-ENV": NS_SOAP_ENV})
    etree.SubElement(envelope, SOAP_ENV + "Body").append(message)
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="utf-8"))


def soap_fault(message: str, *, server: bool = False) -> bytes:
    """A SOAP 1.1 fault (Client, or Server for the IdP's own trouble): only for what is not a SAML request at all,
    or cannot be answered with one (bindings §3.2.3.1)."""
    envelope = etree.Element(SOAP_ENV + "Envelope", nsmap={"SOAP-ENV": NS_SOAP_ENV})
    fault = etree.SubElement(etree.SubElement(envelope, SOAP_ENV + "Body"), SOAP_ENV + "Fault")
    etree.SubElement(fault, "faultcode").text = "SOAP-ENV:Server" if server else "SOAP-ENV:Client"
    etree.SubElement(fault, "faultstring").text = message
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="utf-8"))


# ---------------------------------------------------------------- ArtifactResolve / ArtifactResponse (core §3.5)

@dataclass(frozen=True, slots=True)
class ArtifactResolve:
    id: str
    issuer: str
    issue_instant: datetime
    destination: str | None
    artifact: str
    root: etree._Element = field(compare=False, repr=False)


def parse_artifact_resolve(xml: bytes, max_bytes: int) -> ArtifactResolve:
    root, msg_id, issuer, instant, destination = _common(xml, "ArtifactResolve", max_bytes)
    found = root.findall(f"{{{NS_SAMLP}}}Artifact")
    if len(found) != 1 or not text_of(found[0]):
        raise RequestParseError("ArtifactResolve must carry exactly one Artifact")
    return ArtifactResolve(id=msg_id, issuer=issuer, issue_instant=instant, destination=destination,
                           artifact=text_of(found[0]), root=root)


def build_artifact_response(*, issuer: str, in_response_to: str | None, status: str, sub_status: str | None,
                            message: bytes | None, now: datetime, signing: SigningChoice | None) -> bytes:
    """An ArtifactResponse (core §3.5.2) carrying the stored message, or none (Status says why or Success).

    The stored message is embedded as it was signed; its own signature covers only itself (exclusive
    c14n), so it verifies inside the ArtifactResponse as it would have on its own. No Destination: the
    answer goes back on the requester's SOAP connection.
    """
    resp = _message("ArtifactResponse", new_id(), now, "", in_response_to, issuer)
    del resp.attrib["Destination"]
    _status(resp, status, sub_status, None)
    if message is not None:
        resp.append(parse_untrusted_xml(message, max_bytes=len(message)))
    _sign(resp, signing)
    return wrap_soap(resp)

