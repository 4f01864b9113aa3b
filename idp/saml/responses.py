"""Build signed SAML protocol messages (saml-core-2.0-os §2, §3.2.2, §3.7).

The SSO Response (every sign-in) is written as canonical text by c14n_writer; error responses
and logout messages are built with lxml's element API. Either way user data only ever enters as
escaped element text or attribute values, so it cannot inject markup. Signing happens here,
in-process, with keys loaded once by the key store.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from lxml import etree

from . import c14n_writer as w
from .constants import (
    ATTRNAME_BASIC,
    ATTRNAME_URI,
    CM_BEARER,
    NS_SAML,
    NS_SAMLP,
    STATUS_SUCCESS,
    SignatureAlgorithm,
)
from .signing import SigningKey, enveloped_signature, sign_element

SAMLP = f"{{{NS_SAMLP}}}"
SAML = f"{{{NS_SAML}}}"
_RESPONSE_NSMAP = {"samlp": NS_SAMLP, "saml": NS_SAML}


def new_id() -> str:
    """A fresh message ID: an NCName with 128 bits of randomness (saml-core §1.3.4)."""
    return "_" + secrets.token_hex(16)


def instant(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class AssertionSpec:
    """Everything a Response with an Assertion needs; built by the SSO use case."""

    issuer: str
    audience: str
    destination: str                     # the ACS URL (Response Destination, Recipient)
    in_response_to: str | None
    name_id: str
    name_id_format: str
    session_index: str
    authn_instant: datetime
    authn_context: str
    now: datetime
    lifetime: timedelta
    clock_skew: timedelta
    session_not_on_or_after: datetime | None = None
    # (name, name_format, values) or (name, name_format, values, friendly_name)
    attributes: Sequence[tuple[str, str | None, Sequence[str]] | tuple[str, str | None, Sequence[str], str | None]] = ()
    sp_name_qualifier: str | None = None
    response_id: str = field(default_factory=new_id)
    assertion_id: str = field(default_factory=new_id)


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str | None) -> etree._Element:
    """A child element; attributes whose value is None are left out."""
    el = etree.SubElement(parent, tag, {k: v for k, v in attrs.items() if v is not None})
    if text is not None:
        el.text = text
    return el


def _status(parent: etree._Element, code: str, sub_code: str | None, message: str | None) -> None:
    status = _sub(parent, SAMLP + "Status")
    top = _sub(status, SAMLP + "StatusCode", Value=code)
    if sub_code:
        _sub(top, SAMLP + "StatusCode", Value=sub_code)
    if message:
        _sub(status, SAMLP + "StatusMessage", message)


def _message(tag: str, msg_id: str, now: datetime, destination: str, in_response_to: str | None,
             issuer: str) -> etree._Element:
    """The common head of every protocol message this IdP sends (saml-core §3.2.2): ID, version,
    instant, Destination, InResponseTo and Issuer, in schema order."""
    el = etree.Element(SAMLP + tag, nsmap=_RESPONSE_NSMAP)
    el.set("ID", msg_id)
    el.set("Version", "2.0")
    el.set("IssueInstant", instant(now))
    el.set("Destination", destination)
    if in_response_to:
        el.set("InResponseTo", in_response_to)
    _sub(el, SAML + "Issuer", issuer)
    return el


def _sign(el: etree._Element, signing: SigningChoice | None) -> None:
    if signing is not None:
        sign_element(el, signing.key, signing.algorithm, signing.cert_b64)


_SAML_NS = w.ns_decl("saml", NS_SAML)
_SAMLP_NS = w.ns_decl("samlp", NS_SAMLP)


def _saml(local: str, attrs: Sequence[tuple[str, str | None]] = (), content: str = "") -> str:
    return w.element("saml:" + local, attrs, content)


def assertion_parts(spec: AssertionSpec) -> tuple[str, str, str]:
    """The Assertion as canonical text in three parts: start tag + Issuer, the rest, end tag.

    An enveloped Signature goes between the first two (saml-core §5.4.1: after the Issuer). No
    xsi:type="xs:string" on values: a QName in an attribute value binds a prefix that exclusive
    c14n does not sign and that SPs re-serialising a decrypted assertion lose (pysaml2).
    """
    not_after = instant(spec.now + spec.lifetime)
    subject = _saml("Subject", (), _saml("NameID", (("Format", spec.name_id_format),
                                                     ("SPNameQualifier", spec.sp_name_qualifier)), w.text(spec.name_id))
                    + _saml("SubjectConfirmation", (("Method", CM_BEARER),), _saml(
                        "SubjectConfirmationData", (("InResponseTo", spec.in_response_to),
                                                    ("NotOnOrAfter", not_after), ("Recipient", spec.destination)))))
    conditions = _saml("Conditions", (("NotBefore", instant(spec.now - spec.clock_skew)), ("NotOnOrAfter", not_after)),
                       _saml("AudienceRestriction", (), _saml("Audience", (), w.text(spec.audience))))
    authn = _saml("AuthnStatement", (
        ("AuthnInstant", instant(spec.authn_instant)), ("SessionIndex", spec.session_index),
        ("SessionNotOnOrAfter", instant(spec.session_not_on_or_after) if spec.session_not_on_or_after else None),
    ), _saml("AuthnContext", (), _saml("AuthnContextClassRef", (), w.text(spec.authn_context))))
    statements = ""
    if spec.attributes:
        statements = _saml("AttributeStatement", (), "".join(
            _saml("Attribute", (("Name", attr[0]), ("NameFormat", attr[1] or ATTRNAME_BASIC),
                                ("FriendlyName", attr[3] if len(attr) > 3 else None)),
                  "".join(_saml("AttributeValue", (), w.text(value)) for value in attr[2]))
            for attr in spec.attributes))
    head = (w.start_tag("saml:Assertion", (("ID", spec.assertion_id), ("IssueInstant", instant(spec.now)),
                                           ("Version", "2.0")), _SAML_NS)
            + _saml("Issuer", (), w.text(spec.issuer)))
    return head, subject + conditions + authn + statements, "</saml:Assertion>"


@dataclass(frozen=True, slots=True)
class SigningChoice:
    key: SigningKey                # loaded once by the key store
    algorithm: str = SignatureAlgorithm.RSA_SHA256
    sign_response: bool = True
    sign_assertion: bool = True
    cert_b64: str | None = None    # the certificate (DER base64) written into KeyInfo


def build_response(spec: AssertionSpec, signing: SigningChoice,
                   encrypt: Callable[[bytes], etree._Element] | None = None) -> bytes:
    """A Success Response carrying one Assertion, signed as the app asks (default both).

    Written as canonical text (c14n_writer): each signed element's digest is taken over its own
    substring, which is exactly what a verifier's exclusive c14n of the parsed element yields.
    `encrypt` turns the signed Assertion's octets into a saml:EncryptedAssertion element
    (sign-then-encrypt, saml-core §6.2).
    """
    head, body, tail = assertion_parts(spec)
    if signing.sign_assertion:
        unsigned = (head + body + tail).encode("utf-8")
        head += enveloped_signature(spec.assertion_id, unsigned, signing.key, signing.algorithm, signing.cert_b64)
    assertion = head + body + tail
    if encrypt is not None:
        # the encrypted element is embedded in its own canonical form; the Response's ancestors
        # render only xmlns:samlp, which it does not use, so that form is also its form in context
        assertion = etree.tostring(encrypt(assertion.encode("utf-8")), method="c14n", exclusive=True,
                                   with_comments=False).decode("utf-8")
    start = w.start_tag("samlp:Response", (
        ("Destination", spec.destination), ("ID", spec.response_id), ("InResponseTo", spec.in_response_to),
        ("IssueInstant", instant(spec.now)), ("Version", "2.0")), _SAMLP_NS)
    issuer = w.element("saml:Issuer", (), w.text(spec.issuer), _SAML_NS)
    rest = (w.element("samlp:Status", (), w.element("samlp:StatusCode", (("Value", STATUS_SUCCESS),)))
            + assertion + "</samlp:Response>")
    if signing.sign_response:
        unsigned = (start + issuer + rest).encode("utf-8")
        issuer += enveloped_signature(spec.response_id, unsigned, signing.key, signing.algorithm, signing.cert_b64)
    return (start + issuer + rest).encode("utf-8")


def build_error_response(*, issuer: str, destination: str, in_response_to: str | None, status: str,
                         sub_status: str | None, message: str | None, now: datetime,
                         signing: SigningChoice | None) -> tuple[str, bytes]:
    """A Response without an Assertion, carrying an error status (saml-core §3.2.2.2)."""
    rid = new_id()
    resp = _message("Response", rid, now, destination, in_response_to, issuer)
    _status(resp, status, sub_status, message)
    _sign(resp, signing)
    return rid, etree.tostring(resp, encoding="utf-8")


def build_logout_request(*, issuer: str, destination: str, name_id: str, name_id_format: str,
                         session_index: str, now: datetime, lifetime: timedelta,
                         sp_name_qualifier: str | None = None,
                         signing: SigningChoice | None = None) -> tuple[str, bytes]:
    rid = new_id()
    req = _message("LogoutRequest", rid, now, destination, None, issuer)
    req.set("NotOnOrAfter", instant(now + lifetime))
    _sub(req, SAML + "NameID", name_id, Format=name_id_format,
         SPNameQualifier=sp_name_qualifier)
    _sub(req, SAMLP + "SessionIndex", session_index)
    _sign(req, signing)
    return rid, etree.tostring(req, encoding="utf-8")


def build_logout_response(*, issuer: str, destination: str, in_response_to: str | None, status: str,
                          now: datetime, signing: SigningChoice | None,
                          sub_status: str | None = None) -> tuple[str, bytes]:
    rid = new_id()
    resp = _message("LogoutResponse", rid, now, destination, in_response_to, issuer)
    _status(resp, status, sub_status, None)
    _sign(resp, signing)
    return rid, etree.tostring(resp, encoding="utf-8")


def attribute_values(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list | tuple | set | frozenset):
        return [str(v) for v in value]
    return [str(value)]


def map_attributes(mapping: Mapping[str, str], fields: Mapping[str, object]) -> list[tuple[str, str | None,
                                                                                      list[str]]]:
    """Turn the app's {SAML name: user field} map into (name, format, values), names exactly as configured."""
    out = []
    for name, field_name in mapping.items():
        values = attribute_values(fields.get(field_name))
        if values:
            fmt = None if ":" not in name else ATTRNAME_URI
            out.append((name, fmt, values))
    return out
