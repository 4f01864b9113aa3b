"""The SOAP binding codec (saml-bindings-2.0-os 3.2) and the back-channel settings."""

from __future__ import annotations

import pytest
from lxml import etree

from idp.config import ConfigError, load_settings
from idp.saml.soap import NS_SOAP11, SoapError, SoapFault, build_soap_envelope, parse_soap_message

MSG = b'<samlp:LogoutResponse xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_a" Version="2.0"/>'


def envelope(body: str, header: str = "") -> bytes:
    return (f'<S:Envelope xmlns:S="{NS_SOAP11}">{header}<S:Body>{body}</S:Body></S:Envelope>').encode()


def test_round_trip_keeps_the_message() -> None:
    out = parse_soap_message(build_soap_envelope(MSG), 10_000)
    assert etree.fromstring(out).get("ID") == "_a"
    root = etree.fromstring(build_soap_envelope(MSG))
    assert root.tag == f"{{{NS_SOAP11}}}Envelope" and root[0][0].tag.endswith("LogoutResponse")


def test_a_fault_is_a_soap_fault() -> None:
    with pytest.raises(SoapFault) as exc:
        parse_soap_message(envelope("<S:Fault><faultcode>S:Server</faultcode><faultstring>down</faultstring>"
                                    "</S:Fault>"), 10_000)
    assert exc.value.code == "S:Server" and "down" in str(exc.value)


@pytest.mark.parametrize("data", [
    b"<notsoap/>",
    envelope(""),                                                    # nothing in the Body
    envelope(MSG.decode() + MSG.decode()),                           # two messages
    envelope(MSG.decode(), header='<S:Header><x:a xmlns:x="urn:x" S:mustUnderstand="1"/></S:Header>'),
    envelope(MSG.decode()).replace(b"</S:Envelope>", b"<S:Body/></S:Envelope>"),   # two Bodies
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]>' + envelope(MSG.decode()),
    b"not xml",
])
def test_unusable_answers_are_refused(data: bytes) -> None:
    with pytest.raises(SoapError):
        parse_soap_message(data, 10_000)


def test_size_limit() -> None:
    with pytest.raises(SoapError):
        parse_soap_message(envelope(MSG.decode()), 50)


def test_client_certificate_and_key_come_together() -> None:
    base = {"IDP_BASE_URL": "https://idp.example.org", "IDP_SECRET_KEY": "x"}
    s = load_settings(base)
    assert (s.saml_backchannel_allow_private, s.saml_backchannel_timeout_s, s.saml_backchannel_client_cert) == (
        False, 3.0, None)
    with pytest.raises(ConfigError, match="IDP_SAML_BACKCHANNEL_CLIENT_KEY"):
        load_settings({**base, "IDP_SAML_BACKCHANNEL_CLIENT_CERT": "/etc/idp/client.pem"})
    s = load_settings({**base, "IDP_SAML_BACKCHANNEL_TIMEOUT": "5", "IDP_SAML_BACKCHANNEL_ALLOW_PRIVATE": "true"})
    assert (s.saml_backchannel_timeout_s, s.saml_backchannel_allow_private) == (5.0, True)
