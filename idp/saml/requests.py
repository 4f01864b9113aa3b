"""Parse inbound protocol messages into dataclasses (saml-core-2.0-os §3.4.1, §3.7.1, §3.7.2).

Parsing establishes shape only; trust comes later (signature against the app's metadata,
freshness, replay, Destination, ACS), in that order, in sso.py and slo.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from lxml import etree

from .constants import NAMEID_ENTITY, NS_SAML, NS_SAMLP, AuthnContextComparison
from .xmlsafe import UnsafeXmlError, parse_untrusted_xml, text_of
from .xstypes import XsValueError, parse_xs_boolean, parse_xs_datetime

_NCNAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_UNSIGNED_SHORT = re.compile(r"[0-9]{1,5}")


class RequestParseError(ValueError):
    """The message is not a well-formed SAML request of the expected kind."""


@dataclass(frozen=True, slots=True)
class AuthnRequest:
    id: str
    issuer: str
    issue_instant: datetime
    destination: str | None
    acs_url: str | None
    acs_index: int | None
    protocol_binding: str | None
    force_authn: bool
    is_passive: bool
    nameid_format: str | None
    allow_create: bool | None
    requested_context_comparison: AuthnContextComparison | None
    requested_context_refs: tuple[str, ...]
    root: etree._Element = field(compare=False, repr=False)

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id, "issuer": self.issuer, "issue_instant": self.issue_instant.isoformat(),
            "destination": self.destination, "acs_url": self.acs_url, "acs_index": self.acs_index,
            "protocol_binding": self.protocol_binding, "force_authn": self.force_authn,
            "is_passive": self.is_passive, "nameid_format": self.nameid_format,
            "allow_create": self.allow_create,
            "requested_context_comparison": self.requested_context_comparison,
            "requested_context_refs": list(self.requested_context_refs),
        }


@dataclass(frozen=True, slots=True)
class LogoutRequest:
    id: str
    issuer: str
    issue_instant: datetime
    destination: str | None
    name_id: str
    name_id_format: str | None
    session_indexes: tuple[str, ...]
    not_on_or_after: datetime | None
    root: etree._Element = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class LogoutResponse:
    id: str
    issuer: str
    issue_instant: datetime
    destination: str | None
    in_response_to: str | None
    status: str
    root: etree._Element = field(compare=False, repr=False)


def parse_instant(value: str | None, what: str) -> datetime:
    """An xs:dateTime attribute (IssueInstant, NotOnOrAfter) as aware UTC, to the second: request times are
    compared in whole seconds, as this IdP writes its own."""
    try:
        return parse_xs_datetime(value or "").replace(microsecond=0)
    except XsValueError as exc:
        raise RequestParseError(f"{what} {exc}") from None


def _bool_attr(el: etree._Element, name: str) -> bool | None:
    """An optional xs:boolean attribute; None when absent."""
    value = el.get(name)
    if value is None:
        return None
    try:
        return parse_xs_boolean(value)
    except XsValueError as exc:
        raise RequestParseError(f"{name} {exc}") from None


def _common(xml: bytes, expected: str, max_bytes: int) -> tuple[etree._Element, str, str, datetime, str | None]:
    try:
        root = parse_untrusted_xml(xml, max_bytes=max_bytes)
    except UnsafeXmlError as exc:
        raise RequestParseError(str(exc)) from None
    if root.tag != f"{{{NS_SAMLP}}}{expected}":
        tag = etree.QName(root).localname if isinstance(root.tag, str) else "?"
        raise RequestParseError(f"expected a samlp:{expected}, got {tag[:60]}")
    if root.get("Version") != "2.0":
        raise RequestParseError("Version must be 2.0")
    msg_id = root.get("ID") or ""
    if len(msg_id) > 256 or not _NCNAME.fullmatch(msg_id):
        raise RequestParseError("ID is missing or not an NCName")
    issuer_el = root.find(f"{{{NS_SAML}}}Issuer")
    issuer = text_of(issuer_el)
    if not issuer:
        raise RequestParseError("Issuer is missing")
    if issuer_el is not None and issuer_el.get("Format") not in (None, NAMEID_ENTITY):
        raise RequestParseError("Issuer Format must be entity")
    instant = parse_instant(root.get("IssueInstant"), "IssueInstant")
    return root, msg_id, issuer, instant, root.get("Destination")


def parse_authn_request(xml: bytes, max_bytes: int) -> AuthnRequest:
    root, msg_id, issuer, instant, destination = _common(xml, "AuthnRequest", max_bytes)
    acs_index_raw = root.get("AssertionConsumerServiceIndex")
    acs_index = None
    if acs_index_raw is not None:
        if not _UNSIGNED_SHORT.fullmatch(acs_index_raw) or int(acs_index_raw) > 65535:
            raise RequestParseError("AssertionConsumerServiceIndex is not an unsignedShort")
        acs_index = int(acs_index_raw)
    acs_url = root.get("AssertionConsumerServiceURL")
    if acs_url is not None and acs_index is not None:
        raise RequestParseError("AssertionConsumerServiceURL and AssertionConsumerServiceIndex are exclusive")
    policy = root.find(f"{{{NS_SAMLP}}}NameIDPolicy")
    nameid_format = policy.get("Format") if policy is not None else None
    allow_create = _bool_attr(policy, "AllowCreate") if policy is not None else None
    rac = root.find(f"{{{NS_SAMLP}}}RequestedAuthnContext")
    comparison: AuthnContextComparison | None = None
    refs: tuple[str, ...] = ()
    if rac is not None:
        try:
            comparison = AuthnContextComparison(rac.get("Comparison", AuthnContextComparison.EXACT))
        except ValueError:
            raise RequestParseError("RequestedAuthnContext Comparison is invalid") from None
        refs = tuple(text_of(el) for el in rac.findall(f"{{{NS_SAML}}}AuthnContextClassRef"))
        if not refs:
            # AuthnContextDeclRef is legal but not supported: asked-for contexts we cannot satisfy
            refs = tuple("decl:" + text_of(el) for el in rac.findall(f"{{{NS_SAML}}}AuthnContextDeclRef"))
    return AuthnRequest(
        id=msg_id, issuer=issuer, issue_instant=instant, destination=destination,
        acs_url=acs_url, acs_index=acs_index, protocol_binding=root.get("ProtocolBinding"),
        force_authn=bool(_bool_attr(root, "ForceAuthn")), is_passive=bool(_bool_attr(root, "IsPassive")),
        nameid_format=nameid_format, allow_create=allow_create,
        requested_context_comparison=comparison, requested_context_refs=refs, root=root,
    )


def peek_issuer(xml: bytes, max_bytes: int) -> str | None:
    """Best-effort Issuer of a message that failed to parse fully, for the event log only."""
    try:
        root = parse_untrusted_xml(xml, max_bytes=max_bytes)
    except UnsafeXmlError:
        return None
    return text_of(root.find(f"{{{NS_SAML}}}Issuer")) or None


def parse_logout_request(xml: bytes, max_bytes: int) -> LogoutRequest:
    root, msg_id, issuer, instant, destination = _common(xml, "LogoutRequest", max_bytes)
    name_el = root.find(f"{{{NS_SAML}}}NameID")
    if name_el is None:
        if root.find(f"{{{NS_SAML}}}EncryptedID") is not None:
            raise RequestParseError("encrypted NameIDs in LogoutRequest are not supported")
        raise RequestParseError("LogoutRequest has no NameID")
    noa = root.get("NotOnOrAfter")
    return LogoutRequest(
        id=msg_id, issuer=issuer, issue_instant=instant, destination=destination,
        name_id=text_of(name_el), name_id_format=name_el.get("Format"),
        session_indexes=tuple(text_of(e) for e in root.findall(f"{{{NS_SAMLP}}}SessionIndex")),
        not_on_or_after=parse_instant(noa, "NotOnOrAfter") if noa else None, root=root,
    )


def parse_logout_response(xml: bytes, max_bytes: int) -> LogoutResponse:
    root, msg_id, issuer, instant, destination = _common(xml, "LogoutResponse", max_bytes)
    code = root.find(f"{{{NS_SAMLP}}}Status/{{{NS_SAMLP}}}StatusCode")
    if code is None or not code.get("Value"):
        raise RequestParseError("LogoutResponse has no StatusCode")
    return LogoutResponse(
        id=msg_id, issuer=issuer, issue_instant=instant, destination=destination,
        in_response_to=root.get("InResponseTo"), status=str(code.get("Value")), root=root,
    )
