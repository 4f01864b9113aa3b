"""Parse untrusted SAML 2.0 SP metadata (saml-metadata-2.0-os) into a frozen SpMetadata value for a ConnectedApp."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from lxml import etree

from .constants import BINDING_POST, NS_DS, NS_MD, NS_SAMLP, RESPONSE_BINDINGS, XML_LANG, KeyUse
from .xmlsafe import UnsafeXmlError, parse_untrusted_xml
from .xstypes import XsValueError, parse_xs_boolean, parse_xs_datetime

MAX_METADATA_BYTES = 5 * 1024 * 1024

SAML2_PROTOCOL = NS_SAMLP
NS_MDUI = "urn:oasis:names:tc:SAML:metadata:ui"

# SAMLCore §8.3.6: an entity identifier is a URI of at most 1024 characters.
MAX_ENTITY_ID_LENGTH = 1024
# saml-metadata-2.0-os §2.2.3: IndexedEndpointType/@index is an xs:unsignedShort.
MAX_ENDPOINT_INDEX = 65535
# How much of an offending value an error message shows (it is repr-escaped, so control characters stay visible).
_SHOWN_CHARS = 100

_MD_ENTITY = f"{{{NS_MD}}}EntityDescriptor"
_MD_ENTITIES = f"{{{NS_MD}}}EntitiesDescriptor"
_MD_SP = f"{{{NS_MD}}}SPSSODescriptor"
_MD_IDP = f"{{{NS_MD}}}IDPSSODescriptor"
_MD_ACS = f"{{{NS_MD}}}AssertionConsumerService"
_MD_SLO = f"{{{NS_MD}}}SingleLogoutService"
_MD_KEY = f"{{{NS_MD}}}KeyDescriptor"
_MD_ENC_METHOD = f"{{{NS_MD}}}EncryptionMethod"
_MD_NAMEID_FORMAT = f"{{{NS_MD}}}NameIDFormat"
_MD_ATTR_SERVICE = f"{{{NS_MD}}}AttributeConsumingService"
_MD_SERVICE_NAME = f"{{{NS_MD}}}ServiceName"
_MD_REQUESTED_ATTR = f"{{{NS_MD}}}RequestedAttribute"
_MD_EXTENSIONS = f"{{{NS_MD}}}Extensions"
_MD_ORGANIZATION = f"{{{NS_MD}}}Organization"
_MD_ORG_DISPLAY_NAME = f"{{{NS_MD}}}OrganizationDisplayName"
_DS_KEY_INFO = f"{{{NS_DS}}}KeyInfo"
_DS_X509_DATA = f"{{{NS_DS}}}X509Data"
_DS_X509_CERT = f"{{{NS_DS}}}X509Certificate"
_MDUI_UIINFO = f"{{{NS_MDUI}}}UIInfo"
_MDUI_DISPLAY_NAME = f"{{{NS_MDUI}}}DisplayName"

# Schemes that start a protocol identifier in protocolSupportEnumeration (SAML 1.x/2.0 and Shibboleth URNs, WS-Fed
# http URIs). Whitespace before anything else is taken to be a hard line wrap inside a URI (swamid-shibboleth-sp-uu-se).
_URI_LIST_ITEM_START = re.compile(r"(?:urn|https?):", re.IGNORECASE)
_XS_UNSIGNED = re.compile(r"\+?[0-9]{1,10}")
_CONTROL_CHARS = re.compile(r"[\x00-\x20\x7f]")


class MetadataError(ValueError):
    """The SP metadata cannot be used; the message is a sentence an administrator can act on."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    binding: str
    location: str
    index: int | None = None
    is_default: bool | None = None
    response_location: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "binding": self.binding,
            "location": self.location,
            "index": self.index,
            "is_default": self.is_default,
            "response_location": self.response_location,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Endpoint:
        return cls(
            binding=d["binding"],
            location=d["location"],
            index=d["index"],
            is_default=d["is_default"],
            response_location=d["response_location"],
        )


@dataclass(frozen=True, slots=True)
class RequestedAttribute:
    name: str
    name_format: str | None
    friendly_name: str | None
    is_required: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "name_format": self.name_format,
            "friendly_name": self.friendly_name,
            "is_required": self.is_required,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RequestedAttribute:
        return cls(
            name=d["name"],
            name_format=d["name_format"],
            friendly_name=d["friendly_name"],
            is_required=d["is_required"],
        )


@dataclass(frozen=True, slots=True)
class SpMetadata:
    entity_id: str
    acs: tuple[Endpoint, ...]
    slo: tuple[Endpoint, ...]
    signing_certs: tuple[str, ...]
    encryption_certs: tuple[str, ...]
    nameid_formats: tuple[str, ...]
    authn_requests_signed: bool
    want_assertions_signed: bool
    requested_attributes: tuple[RequestedAttribute, ...]
    encryption_methods: tuple[str, ...]
    valid_until: datetime | None
    display_name: str | None

    def post_acs(self) -> tuple[Endpoint, ...]:
        """The HTTP-POST AssertionConsumerServices, in document order."""
        return tuple(e for e in self.acs if e.binding == BINDING_POST)

    def default_post_acs(self) -> Endpoint:
        """The default HTTP-POST AssertionConsumerService (saml-metadata-2.0-os §2.2.3, applied to HTTP-POST only).

        The first with isDefault="true"; else the first without isDefault="false"; else the lowest index (where all
        are isDefault="false" the spec takes the first in document order; the lowest index is this IdP's choice).
        """
        post = self.post_acs()
        if not post:
            raise MetadataError(f"SP {self.entity_id!r} has no usable HTTP-POST AssertionConsumerService.")
        return _default_of(post)

    def response_acs(self, binding: str | None = None) -> tuple[Endpoint, ...]:
        """The AssertionConsumerServices this IdP can answer at (HTTP-POST, HTTP-Artifact), or those of one binding."""
        return tuple(e for e in self.acs if e.binding in RESPONSE_BINDINGS and binding in (None, e.binding))

    def default_acs(self, binding: str | None = None) -> Endpoint:
        """The default AssertionConsumerService among those this IdP can answer at (HTTP-POST or HTTP-Artifact),
        or among those of one binding; the same §2.2.3 rule as default_post_acs."""
        usable = self.response_acs(binding)
        if not usable:
            raise MetadataError(f"SP {self.entity_id!r} has no usable AssertionConsumerService"
                                + (f" for {binding}." if binding else "."))
        return _default_of(usable)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (lists, str, bool, None; valid_until as ISO 8601)."""
        return {
            "entity_id": self.entity_id,
            "acs": [e.to_dict() for e in self.acs],
            "slo": [e.to_dict() for e in self.slo],
            "signing_certs": list(self.signing_certs),
            "encryption_certs": list(self.encryption_certs),
            "nameid_formats": list(self.nameid_formats),
            "authn_requests_signed": self.authn_requests_signed,
            "want_assertions_signed": self.want_assertions_signed,
            "requested_attributes": [a.to_dict() for a in self.requested_attributes],
            "encryption_methods": list(self.encryption_methods),
            "valid_until": None if self.valid_until is None else self.valid_until.isoformat(),
            "display_name": self.display_name,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SpMetadata:
        """The exact inverse of to_dict."""
        valid_until = d["valid_until"]
        return cls(
            entity_id=d["entity_id"],
            acs=tuple(Endpoint.from_dict(e) for e in d["acs"]),
            slo=tuple(Endpoint.from_dict(e) for e in d["slo"]),
            signing_certs=tuple(d["signing_certs"]),
            encryption_certs=tuple(d["encryption_certs"]),
            nameid_formats=tuple(d["nameid_formats"]),
            authn_requests_signed=d["authn_requests_signed"],
            want_assertions_signed=d["want_assertions_signed"],
            requested_attributes=tuple(RequestedAttribute.from_dict(a) for a in d["requested_attributes"]),
            encryption_methods=tuple(d["encryption_methods"]),
            valid_until=None if valid_until is None else _as_utc(datetime.fromisoformat(valid_until)),
            display_name=d["display_name"],
        )


def _default_of(endpoints: tuple[Endpoint, ...]) -> Endpoint:
    for endpoint in endpoints:
        if endpoint.is_default is True:
            return endpoint
    for endpoint in endpoints:
        if endpoint.is_default is None:
            return endpoint
    return min(endpoints, key=lambda e: MAX_ENDPOINT_INDEX + 1 if e.index is None else e.index)


# --------------------------------------------------------------------------------------------------------------------
# XML parsing


def safe_parse_xml(xml: bytes, max_bytes: int = MAX_METADATA_BYTES) -> etree._Element:
    """Parse untrusted metadata with the shared hardened parser; MetadataError on anything unsafe or malformed.

    No DOCTYPE (so no entity can be declared, let alone expanded), no network, no file system;
    comments and processing instructions are dropped so they cannot split text content.
    """
    if isinstance(xml, str):
        raise TypeError("safe_parse_xml() takes bytes, not str: pass the uploaded file's raw content")
    data = bytes(xml)
    if len(data) > max_bytes:
        raise MetadataError(
            f"The metadata is {_size(len(data))}, over the {_size(max_bytes)} limit; upload only the SP's own metadata."
        )
    try:
        return parse_untrusted_xml(data, max_bytes=max_bytes, max_depth=256, remove_comments=True)
    except UnsafeXmlError as exc:
        message = str(exc)
        if "DOCTYPE" in message:
            raise _doctype_error() from None
        if message == "document is empty":
            raise MetadataError("The metadata is empty.") from None
        if message.startswith("not well-formed XML: "):
            message = message[len("not well-formed XML: "):]
        raise MetadataError(f"The metadata is not well-formed XML: {_short(message)}") from None


def _doctype_error() -> MetadataError:
    return MetadataError(
        "The metadata contains a DOCTYPE declaration; SAML metadata never needs one and it is refused because "
        "DTDs can declare entities (billion-laughs, external file or network entities)."
    )


# --------------------------------------------------------------------------------------------------------------------
# Public entry points


def list_sp_entity_ids(xml: bytes) -> list[str]:
    """The entityIDs (document order, no duplicates) that have a SAML 2.0 SPSSODescriptor."""
    root = safe_parse_xml(xml)
    _check_root(root)
    ids: list[str] = []
    for entity in _iter_entities(root):
        if entity.sp_roles and entity.entity_id not in ids:
            ids.append(entity.entity_id)
    return ids


def parse_sp_metadata(xml: bytes, entity_id: str | None = None) -> SpMetadata:
    """Parse SP metadata bytes (an EntityDescriptor or an aggregate) into SpMetadata, or raise MetadataError.

    entity_id picks one SP out of an aggregate; it may be omitted when the document holds exactly one SP. Metadata
    signatures are not verified (there is no trust anchor for uploaded metadata) and ds:Signature is ignored.
    """
    root = safe_parse_xml(xml)
    _check_root(root)
    entities = list(_iter_entities(root))
    if not entities:
        raise MetadataError("The metadata contains no EntityDescriptor.")
    sp_entities = [e for e in entities if e.sp_roles]

    if entity_id is not None:
        wanted = entity_id.strip()
        matches = [e for e in entities if e.entity_id == wanted]
        if not matches:
            raise MetadataError(
                f"The entityID {_show(wanted)} is not in this metadata; SP entityIDs present: "
                f"{_show_list(e.entity_id for e in sp_entities)}."
            )
        if len(matches) > 1:
            raise MetadataError(f"The entityID {_show(wanted)} appears {len(matches)} times in this metadata.")
        chosen = matches[0]
        if not chosen.sp_roles:
            raise MetadataError(
                f"The entity {_show(wanted)} has no SAML 2.0 SPSSODescriptor: {_no_sp_reason([chosen])}"
            )
    else:
        if not sp_entities:
            raise MetadataError(f"The metadata has no SAML 2.0 SPSSODescriptor: {_no_sp_reason(entities)}")
        if len(sp_entities) > 1:
            ids = [e.entity_id for e in sp_entities]
            if len(set(ids)) == 1:
                raise MetadataError(f"The entityID {_show(ids[0])} appears {len(ids)} times in this metadata.")
            raise MetadataError(
                f"The metadata describes {len(ids)} service providers ({_show_list(ids)}); choose one with --entity-id."
            )
        chosen = sp_entities[0]
    return _build(chosen)


# --------------------------------------------------------------------------------------------------------------------
# Entities


@dataclass(frozen=True, slots=True)
class _Entity:
    element: etree._Element
    entity_id: str
    sp_roles: tuple[etree._Element, ...]  # SPSSODescriptors that list the SAML 2.0 protocol
    inherited_valid_until: datetime | None  # earliest validUntil of the enclosing EntitiesDescriptors


def _check_root(root: etree._Element) -> None:
    if root.tag in (_MD_ENTITY, _MD_ENTITIES):
        return
    qname = etree.QName(root)
    where = f"namespace {_show(qname.namespace)}" if qname.namespace else "no namespace"
    raise MetadataError(
        f"This is not SAML 2.0 metadata: the root element is {_show(qname.localname)} in {where}, expected "
        f"EntityDescriptor or EntitiesDescriptor in {NS_MD}."
    )


def _iter_entities(element: etree._Element, inherited: datetime | None = None) -> Iterator[_Entity]:
    """EntityDescriptors in document order, nested EntitiesDescriptors included (saml-metadata-2.0-os §2.3.1)."""
    if element.tag == _MD_ENTITY:
        sp_roles = tuple(r for r in element if r.tag == _MD_SP and SAML2_PROTOCOL in _protocols(r))
        yield _Entity(element, (element.get("entityID") or "").strip(), sp_roles, inherited)
        return
    valid_until = _earliest(inherited, _valid_until(element))
    for child in element:
        if child.tag in (_MD_ENTITY, _MD_ENTITIES):
            yield from _iter_entities(child, valid_until)


def _no_sp_reason(entities: list[_Entity]) -> str:
    roles = [r for e in entities for r in e.element]
    if any(r.tag == _MD_SP for r in roles):
        found = sorted({p for r in roles if r.tag == _MD_SP for p in _protocols(r)})
        return (
            f"its SPSSODescriptor does not list {SAML2_PROTOCOL} in protocolSupportEnumeration "
            f"(it lists {_show_list(found)})."
        )
    if any(r.tag == _MD_IDP for r in roles):
        return "this is identity provider metadata (IDPSSODescriptor only); upload the service provider's metadata."
    return "there is no SPSSODescriptor, so this does not describe a SAML service provider."


def _protocols(role: etree._Element) -> list[str]:
    """protocolSupportEnumeration (saml-metadata-2.0-os §2.4.1), a whitespace-separated list of URIs."""
    return _split_uri_list(role.get("protocolSupportEnumeration") or "")


def _split_uri_list(value: str) -> list[str]:
    """Split a list of URIs, rejoining URIs that a hard line wrap broke ("urn\\n:oasis:..." reads as "urn :oasis:...").

    Whitespace counts as a separator only when what follows starts a new URI (urn:, http:, https:).
    """
    parts = value.split()
    items: list[str] = []
    for i, part in enumerate(parts):
        ahead = "".join(parts[i : i + 6])[:6]  # enough to recognise "https:" however it was wrapped
        if not items or _URI_LIST_ITEM_START.match(ahead):
            items.append(part)
        else:
            items[-1] += part
    return items


# --------------------------------------------------------------------------------------------------------------------
# Building SpMetadata from one entity


def _build(entity: _Entity) -> SpMetadata:
    entity_id = entity.entity_id
    # saml-metadata-2.0-os §2.3.2: entityID is required; SAMLCore §8.3.6 caps it at 1024 characters.
    if not entity_id:
        raise MetadataError("The EntityDescriptor has an empty or missing entityID.")
    if len(entity_id) > MAX_ENTITY_ID_LENGTH:
        raise MetadataError(f"The entityID is longer than {MAX_ENTITY_ID_LENGTH} characters: {_show(entity_id)}.")
    if len(entity.sp_roles) > 1:
        raise MetadataError(
            f"The entity {_show(entity_id)} has {len(entity.sp_roles)} SAML 2.0 SPSSODescriptors; expected one."
        )
    role = entity.sp_roles[0]

    # saml-metadata-2.0-os §2.4.4: AssertionConsumerService is an IndexedEndpointType, SingleLogoutService an
    # EndpointType (§2.4.2).
    acs = tuple(_endpoint(el, "AssertionConsumerService", indexed=True) for el in role if el.tag == _MD_ACS)
    slo = tuple(_endpoint(el, "SingleLogoutService", indexed=False) for el in role if el.tag == _MD_SLO)
    if not any(e.binding == BINDING_POST for e in acs):
        found = _show_list(dict.fromkeys(e.binding for e in acs)) if acs else "none"
        raise MetadataError(
            f"The SP {_show(entity_id)} has no usable HTTP-POST AssertionConsumerService (bindings found: {found}); "
            "this IdP needs one (it answers at HTTP-Artifact ACSs too, where a request asks for them)."
        )
    seen_indexes: set[int] = set()
    for endpoint in acs:
        if endpoint.index is None:
            continue
        # §2.2.3: index "assigns a unique integer value to the endpoint"; a duplicate makes
        # AssertionConsumerServiceIndex in an AuthnRequest ambiguous.
        if endpoint.index in seen_indexes:
            raise MetadataError(
                f'Two AssertionConsumerService elements share index="{endpoint.index}"; indexes must be unique.'
            )
        seen_indexes.add(endpoint.index)

    signing, encryption, methods = _keys(role)
    attr_service = _default_indexed([el for el in role if el.tag == _MD_ATTR_SERVICE])
    requested = () if attr_service is None else _requested_attributes(attr_service)

    return SpMetadata(
        entity_id=entity_id,
        acs=acs,
        slo=slo,
        signing_certs=signing,
        encryption_certs=encryption,
        nameid_formats=_nameid_formats(role),
        # saml-metadata-2.0-os §2.4.4: both attributes are optional and default to false.
        authn_requests_signed=_xs_boolean(role, "AuthnRequestsSigned") is True,
        want_assertions_signed=_xs_boolean(role, "WantAssertionsSigned") is True,
        requested_attributes=requested,
        encryption_methods=methods,
        # §2.3.1–§2.3.2, §2.4.1: validUntil bounds the element and everything it contains, so the earliest wins.
        valid_until=_earliest(
            _earliest(entity.inherited_valid_until, _valid_until(entity.element)), _valid_until(role)
        ),
        display_name=_display_name(entity.element, role, attr_service),
    )


def _endpoint(el: etree._Element, what: str, *, indexed: bool) -> Endpoint:
    """saml-metadata-2.0-os §2.2.2 EndpointType / §2.2.3 IndexedEndpointType."""
    binding = _uri_attr(el, "Binding")
    if not binding:
        raise MetadataError(f"{_a(what)} has no Binding attribute.")
    location = _uri_attr(el, "Location")
    if not location:
        label = f"HTTP-POST {what}" if binding == BINDING_POST else what
        raise MetadataError(f"{_a(label)} (Binding {_show(binding)}) has no Location attribute.")
    _validate_url(location, f"{what} Location")
    response_location = _uri_attr(el, "ResponseLocation")
    if response_location is not None:
        _validate_url(response_location, f"{what} ResponseLocation")
    if not indexed:
        return Endpoint(binding=binding, location=location, response_location=response_location)
    return Endpoint(
        binding=binding,
        location=location,
        index=_index(el, what),
        is_default=_xs_boolean(el, "isDefault"),
        response_location=response_location,
    )


def _index(el: etree._Element, what: str) -> int | None:
    raw = el.get("index")
    if raw is None:  # required by the schema, but tolerated: the endpoint can still be chosen by Location
        return None
    text = raw.strip()
    if not _XS_UNSIGNED.fullmatch(text) or int(text) > MAX_ENDPOINT_INDEX:
        raise MetadataError(
            f"{_a(what)} has index={_show(raw)}; an index must be an integer from 0 to {MAX_ENDPOINT_INDEX}."
        )
    return int(text)


def _validate_url(url: str, what: str) -> None:
    """Endpoint locations must be absolute http(s) URLs with a host: nothing else can receive an HTTP POST."""
    problem = None
    try:
        parts = urlsplit(url)
        if _CONTROL_CHARS.search(url):
            problem = "contains control characters"
        elif parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            problem = "is not an absolute http(s) URL with a host name"
        elif parts.username is not None or parts.password is not None:
            problem = "must not contain a user name or password"
        else:
            _ = parts.port  # raises ValueError for a malformed port
    except ValueError:
        problem = "is not a valid URL"
    if problem:
        raise MetadataError(f"The {what} {_show(url)} {problem}.")


def _keys(role: etree._Element) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Signing certs, encryption certs and EncryptionMethod algorithms (saml-metadata-2.0-os §2.4.1.1).

    A KeyDescriptor without use serves both purposes. Only KeyDescriptor/ds:KeyInfo is read, so a ds:Signature
    placed inside the role (python3-saml-signature-inside-spssodescriptor.xml) contributes nothing.
    """
    signing: dict[bytes, str] = {}
    encryption: dict[bytes, str] = {}
    methods: dict[str, None] = {}
    for kd in role:
        if kd.tag != _MD_KEY:
            continue
        raw_use = kd.get("use")
        use: KeyUse | None = None
        if raw_use is not None:
            try:
                use = KeyUse(raw_use.strip())
            except ValueError:
                raise MetadataError(
                    f'A KeyDescriptor has use={_show(raw_use.strip())}; expected "signing" or "encryption".'
                ) from None
        certs = [
            _certificate(_text(c))
            for key_info in kd.iterchildren(_DS_KEY_INFO)
            for data in key_info.iterchildren(_DS_X509_DATA)
            for c in data.iterchildren(_DS_X509_CERT)
        ]
        if not certs:
            raise MetadataError(
                "A KeyDescriptor has no ds:KeyInfo/ds:X509Data/ds:X509Certificate; "
                "this IdP needs the SP's keys as X.509 certificates."
            )
        for der, pem in certs:
            if use in (None, KeyUse.SIGNING):
                signing.setdefault(der, pem)
            if use in (None, KeyUse.ENCRYPTION):
                encryption.setdefault(der, pem)
        if use in (None, KeyUse.ENCRYPTION):
            for method in kd.iterchildren(_MD_ENC_METHOD):
                algorithm = _uri_attr(method, "Algorithm")
                if algorithm:
                    methods.setdefault(algorithm, None)
    return tuple(signing.values()), tuple(encryption.values()), tuple(methods)


def _certificate(text: str) -> tuple[bytes, str]:
    """Decode an X509Certificate (base64 DER); return (DER, PEM). Expiry is not checked: the cert only carries a key."""
    b64 = "".join(text.split())
    if not b64:
        raise MetadataError("An X509Certificate element is empty.")
    try:
        der = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise MetadataError(f"An X509Certificate is not valid base64: {_show(b64)}.") from None
    try:
        key = x509.load_der_x509_certificate(der).public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise MetadataError(f"An X509Certificate cannot be read as an X.509 certificate: {_short(str(exc))}") from None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise MetadataError(f"An X509Certificate holds a {type(key).__name__.removesuffix('PublicKey').lstrip('_')} "
                            "key; SAML signatures and encryption here use RSA or EC keys only.")
    body = base64.b64encode(der).decode("ascii")
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return der, f"-----BEGIN CERTIFICATE-----\n{lines}\n-----END CERTIFICATE-----\n"


def _nameid_formats(role: etree._Element) -> tuple[str, ...]:
    """NameIDFormat elements (saml-metadata-2.0-os §2.4.2); anyURI, so all whitespace is dropped."""
    formats: dict[str, None] = {}
    for el in role.iterchildren(_MD_NAMEID_FORMAT):
        value = "".join(_text(el).split())
        if value:
            formats.setdefault(value, None)
    return tuple(formats)


def _default_indexed(elements: list[etree._Element]) -> etree._Element | None:
    """The default of a sequence of indexed elements (saml-metadata-2.0-os §2.2.3, §2.4.4.1)."""
    for el in elements:
        if _xs_boolean(el, "isDefault") is True:
            return el
    for el in elements:
        if _xs_boolean(el, "isDefault") is None:
            return el
    return elements[0] if elements else None


def _requested_attributes(service: etree._Element) -> tuple[RequestedAttribute, ...]:
    """RequestedAttribute elements of one AttributeConsumingService (saml-metadata-2.0-os §2.4.4.2)."""
    result = []
    for el in service.iterchildren(_MD_REQUESTED_ATTR):
        name = (el.get("Name") or "").strip()
        if not name:
            raise MetadataError("A RequestedAttribute has no Name.")
        friendly = " ".join((el.get("FriendlyName") or "").split()) or None
        result.append(
            RequestedAttribute(
                name=name,
                name_format=_uri_attr(el, "NameFormat") or None,
                friendly_name=friendly,
                is_required=_xs_boolean(el, "isRequired") is True,
            )
        )
    return tuple(result)


def _display_name(entity: etree._Element, role: etree._Element, attr_service: etree._Element | None) -> str | None:
    """mdui:DisplayName (SAML V2.0 Metadata Extensions for Login and Discovery User Interface §2.1), else the
    AttributeConsumingService's ServiceName, else OrganizationDisplayName; English preferred."""
    ui_names = [
        name
        for ext in role.iterchildren(_MD_EXTENSIONS)
        for ui in ext.iterchildren(_MDUI_UIINFO)
        for name in ui.iterchildren(_MDUI_DISPLAY_NAME)
    ]
    service_names = [] if attr_service is None else list(attr_service.iterchildren(_MD_SERVICE_NAME))
    # Organization belongs to the EntityDescriptor (§2.3.2); wecomply-nonconformant.xml puts it in the role.
    org_names = [
        name
        for parent in (entity, role)
        for org in parent.iterchildren(_MD_ORGANIZATION)
        for name in org.iterchildren(_MD_ORG_DISPLAY_NAME)
    ]
    for candidates in (ui_names, service_names, org_names):
        name = _pick_english(candidates)
        if name:
            return name
    return None


def _pick_english(elements: list[etree._Element]) -> str | None:
    named = [(el.get(XML_LANG) or "").strip().lower() for el in elements]
    texts = [" ".join(_text(el).split()) for el in elements]
    for wanted in (lambda lang: lang == "en", lambda lang: lang.startswith("en-"), lambda lang: True):
        for lang, text in zip(named, texts, strict=True):
            if text and wanted(lang):
                return text
    return None


# --------------------------------------------------------------------------------------------------------------------
# Small value helpers


def _text(el: etree._Element) -> str:
    """Full text content. Comments are removed at parse time and never split it; .text alone could be partial."""
    return "".join(el.itertext())


def _uri_attr(el: etree._Element, name: str) -> str | None:
    """A URI-valued attribute with all whitespace removed: URIs contain none, so any is a line wrap."""
    value = el.get(name)
    return None if value is None else "".join(value.split())


def _xs_boolean(el: etree._Element, name: str) -> bool | None:
    """An optional xs:boolean attribute; None when absent."""
    value = el.get(name)
    if value is None:
        return None
    try:
        return parse_xs_boolean(value)
    except XsValueError:
        raise MetadataError(f"{name}={_show(value)} is not a valid boolean; use true, false, 1 or 0.") from None


def _valid_until(el: etree._Element) -> datetime | None:
    """validUntil (saml-metadata-2.0-os §2.2.1), an xs:dateTime."""
    value = el.get("validUntil")
    if value is None:
        return None
    try:
        return parse_xs_datetime(value)
    except XsValueError as exc:
        if exc.well_formed:
            raise MetadataError(f"validUntil={_show(value)} is not a valid date and time.") from None
        raise MetadataError(f"validUntil={_show(value)} is not an xs:dateTime such as 2030-01-31T12:00:00Z.") from None


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _a(noun: str) -> str:
    return f"{'An' if noun[:1] in 'AEIOUH' else 'A'} {noun}"


def _show(value: str) -> str:
    """A value for an error message: repr-escaped and truncated."""
    if len(value) > _SHOWN_CHARS:
        return repr(value[:_SHOWN_CHARS]) + "…"
    return repr(value)


def _show_list(values: Iterable[str]) -> str:
    shown = [_show(v) for v in values]
    if len(shown) > 20:
        shown = [*shown[:20], f"and {len(shown) - 20} more"]
    return ", ".join(shown) if shown else "none"


def _short(message: str) -> str:
    message = " ".join(message.split())
    return message if len(message) <= 200 else message[:200] + "…"


def _size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MiB"
    if n >= 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n} bytes"
