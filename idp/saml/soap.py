"""SAML SOAP binding codec (saml-bindings-2.0-os §3.2): a SAML message in a SOAP 1.1 envelope, and back.

Outbound: the (already signed) protocol message becomes the only child of soap:Body. Inbound (an SP's answer, or
an ArtifactResolve sent to this IdP): the envelope is parsed with the hardened parser (xmlsafe: no DTD, bounded size
and depth); a SOAP fault, a Header that must be understood, or a Body that does not hold exactly one element is
refused. The SAML message is returned as bytes, re-serialised on its own, for the protocol parser and the checks
that follow (nothing in it is trusted here).
"""

from __future__ import annotations

from lxml import etree

from .xmlsafe import UnsafeXmlError, parse_untrusted_xml, text_of

NS_SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
# saml-bindings-2.0-os §3.2.2.3: the SOAPAction a SAML requester sends
SOAP_ACTION = "http://www.oasis-open.org/committees/security"
SOAP_CONTENT_TYPE = "text/xml; charset=utf-8"
_ENV = f"{{{NS_SOAP11}}}"


class SoapError(ValueError):
    """The answer is not a usable SOAP envelope carrying one SAML message."""


class SoapFault(SoapError):
    """The responder answered with a SOAP fault (saml-bindings-2.0-os §3.2.3.3: an error, not a SAML answer)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"SOAP fault {code[:100]}: {message[:300]}")
        self.code = code[:100]


def build_soap_envelope(message_xml: bytes) -> bytes:
    """Wrap one serialised SAML protocol message (its enveloped signature stays valid: exclusive c14n)."""
    # the message is our own, built by saml.responses: parsing it back needs no hardening
    message = etree.fromstring(message_xml)  # noqa: S320 - our own output
    envelope = etree.Element(f"{_ENV}Envelope", nsmap={"SOAP-ENV": NS_SOAP11})
    etree.SubElement(envelope, f"{_ENV}Body").append(message)
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="UTF-8"))


def parse_soap_message(data: bytes, max_bytes: int) -> bytes:
    """The SAML message an answer's soap:Body carries, serialised on its own; SoapFault / SoapError otherwise."""
    try:
        root = parse_untrusted_xml(data, max_bytes=max_bytes)
    except UnsafeXmlError as exc:
        raise SoapError(f"the answer is not acceptable XML: {exc}") from None
    if root.tag != f"{_ENV}Envelope":
        raise SoapError("the answer is not a SOAP 1.1 envelope")
    children = [el for el in root if isinstance(el.tag, str)]
    header = [el for el in children if el.tag == f"{_ENV}Header"]
    bodies = [el for el in children if el.tag == f"{_ENV}Body"]
    if len(bodies) != 1 or len(header) > 1 or len(children) != len(bodies) + len(header):
        raise SoapError("the SOAP envelope must hold one Body (and at most one Header)")
    for block in (header[0] if header else ()):
        if isinstance(block.tag, str) and block.get(f"{_ENV}mustUnderstand") in ("1", "true"):
            raise SoapError("the SOAP answer has a header block that must be understood")
    content = [el for el in bodies[0] if isinstance(el.tag, str)]
    if len(content) == 1 and content[0].tag == f"{_ENV}Fault":
        fault = content[0]
        raise SoapFault(text_of(fault.find("faultcode")) or "?", text_of(fault.find("faultstring")))
    if len(content) != 1:
        raise SoapError("the SOAP Body must carry exactly one SAML message")
    return bytes(etree.tostring(content[0], encoding="utf-8"))


def build_soap_fault(message: str, *, server: bool = False) -> bytes:
    """A SOAP 1.1 fault answering a request (Client: not a SAML request at all; Server: the responder cannot answer
    now). saml-bindings-2.0-os §3.2.3.1: SAML processing errors are SAML answers, never SOAP faults."""
    envelope = etree.Element(f"{_ENV}Envelope", nsmap={"SOAP-ENV": NS_SOAP11})
    fault = etree.SubElement(etree.SubElement(envelope, f"{_ENV}Body"), f"{_ENV}Fault")
    etree.SubElement(fault, "faultcode").text = "SOAP-ENV:Server" if server else "SOAP-ENV:Client"
    etree.SubElement(fault, "faultstring").text = message
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="UTF-8"))
