"""The type 0x0004 artifact (saml-bindings-2.0-os §3.6.4), the SOAP envelope reader on inbound requests, and the
default ACS among HTTP-POST and HTTP-Artifact endpoints (saml-metadata-2.0-os §2.2.3)."""

from __future__ import annotations

import base64
import hashlib

import pytest

from idp.saml.artifact import ArtifactError, new_artifact, parse_artifact, source_id
from idp.saml.soap import SoapError, build_soap_fault, parse_soap_message
from idp.saml.sp_metadata import Endpoint, MetadataError, SpMetadata

POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
ARTIFACT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Artifact"
PAOS = "urn:oasis:names:tc:SAML:2.0:bindings:PAOS"
ENV = "http://schemas.xmlsoap.org/soap/envelope/"


def test_artifact_layout_and_round_trip() -> None:
    art = new_artifact("https://idp.example.org/saml/metadata")
    raw = base64.b64decode(art.encode())
    assert len(raw) == 44 and raw[:2] == b"\x00\x04" and raw[2:4] == b"\x00\x00"
    assert raw[4:24] == hashlib.sha1(b"https://idp.example.org/saml/metadata").digest()  # noqa: S324
    assert raw[4:24] == source_id("https://idp.example.org/saml/metadata")
    assert parse_artifact(art.encode()) == art
    assert new_artifact("x").message_handle != new_artifact("x").message_handle


@pytest.mark.parametrize("value", [
    "", "not base64!", base64.b64encode(b"\x00\x04" + b"\x00" * 41).decode(),          # 43 bytes
    base64.b64encode(b"\x00\x01" + b"\x00" * 42).decode(),                              # SAML 1 type code
    "A" * 100,
])
def test_not_an_artifact(value: str) -> None:
    with pytest.raises(ArtifactError):
        parse_artifact(value)


@pytest.mark.parametrize("body", [
    b"<x/>",
    f'<e:Envelope xmlns:e="{ENV}"/>'.encode(),
    f'<e:Envelope xmlns:e="{ENV}"><e:Body/></e:Envelope>'.encode(),
    f'<e:Envelope xmlns:e="{ENV}"><e:Body><a/><b/></e:Body></e:Envelope>'.encode(),
    f'<e:Envelope xmlns:e="{ENV}"><e:Header><h e:mustUnderstand="1"/></e:Header><e:Body><a/></e:Body>'
    f'</e:Envelope>'.encode(),
    b'<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>',
])
def test_soap_envelopes_refused(body: bytes) -> None:
    with pytest.raises(SoapError):
        parse_soap_message(body, 65536)


def test_soap_body_child_keeps_inherited_namespaces() -> None:
    body = (f'<e:Envelope xmlns:e="{ENV}" xmlns:p="urn:p"><e:Body><p:Msg ID="_1"><p:x/></p:Msg></e:Body>'
            f'</e:Envelope>').encode()
    out = parse_soap_message(body, 65536)
    assert out.startswith(b"<p:Msg ") and b'xmlns:p="urn:p"' in out and out.endswith(b"<p:x/></p:Msg>")


def _md(*acs: Endpoint) -> SpMetadata:
    return SpMetadata("urn:x", acs, (), (), (), (), False, False, (), (), None, None)


@pytest.mark.parametrize(("acs", "wanted", "expected"), [
    # isDefault on the artifact ACS wins (firstmarblehead's metadata)
    ((Endpoint(POST, "p", 1), Endpoint(ARTIFACT, "a", 0, True)), None, "a"),
    # no isDefault: the first usable one in document order; PAOS is never chosen
    ((Endpoint(PAOS, "e", 0), Endpoint(ARTIFACT, "a", 1), Endpoint(POST, "p", 2)), None, "a"),
    ((Endpoint(PAOS, "e", 0), Endpoint(ARTIFACT, "a", 1), Endpoint(POST, "p", 2)), POST, "p"),
    # all isDefault="false": the lowest index
    ((Endpoint(POST, "p", 5, False), Endpoint(ARTIFACT, "a", 3, False)), None, "a"),
])
def test_default_acs(acs: tuple[Endpoint, ...], wanted: str | None, expected: str) -> None:
    assert _md(*acs).default_acs(wanted).location == expected


def test_default_acs_of_a_binding_the_sp_lacks() -> None:
    with pytest.raises(MetadataError):
        _md(Endpoint(POST, "p", 0)).default_acs(ARTIFACT)


def test_fault_is_an_envelope() -> None:
    with pytest.raises(SoapError, match="SOAP-ENV:Server"):
        parse_soap_message(build_soap_fault("busy", server=True), 65536)
