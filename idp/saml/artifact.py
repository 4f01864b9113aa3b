"""HTTP-Artifact binding for responses and artifact resolution over SOAP (saml-bindings-2.0-os §3.6, §3.2;
saml-core-2.0-os §3.5).

The artifact is the type 0x0004 format (bindings §3.6.4): TypeCode 0x0004, the EndpointIndex of the IdP's
ArtifactResolutionService, SourceID = SHA-1 of the issuer's entityID, and a 20-byte random MessageHandle. The
SAML message it stands for stays at the IdP until the SP resolves it with a signed ArtifactResolve sent in a
SOAP 1.1 envelope (bindings §3.2.3, the codec in saml.soap); the answer is an ArtifactResponse in a SOAP envelope.

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
from .soap import build_soap_envelope
from .xmlsafe import parse_untrusted_xml, text_of

TYPE_CODE = b"\x00\x04"
ARTIFACT_BYTES = 44                     # TypeCode (2) + EndpointIndex (2) + SourceID (20) + MessageHandle (20)
ENDPOINT_INDEX = 0                      # the index of /saml/artifact in this IdP's metadata


class ArtifactError(ValueError):
    """The value is not a SAML 2.0 type 0x0004 artifact."""


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
    return build_soap_envelope(etree.tostring(resp, encoding="utf-8"))
