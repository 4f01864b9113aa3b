"""The rules a connected app must keep: name and slug, metadata, settings, key choices and policy references.

Every refusal is a ServiceError naming the input it is about (`field`), so the console can show it next to that field.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select

from ...attributes.release import ReleaseConfigError, compile_release
from ...attributes.schema import Schema
from ...extensions import db
from ...models import ConnectedApp
from ...policy.checks import parse_cidr
from ...policy.model import IP_MODES, MFA_ACTIONS, PERMITTED_MODES
from ...saml.bindings import BindingError, check_relay_state
from ...saml.constants import NAMEID_FORMATS, SignatureAlgorithm
from ...saml.signing import SIGNATURE_ALGORITHMS
from ...saml.sp_metadata import MetadataError, SpMetadata, list_sp_entity_ids, parse_sp_metadata
from .. import ServiceError
from ..field_schema import current_schema
from .settings import (
    CLEAR,
    ENCRYPTION_ALGORITHMS,
    NAMEID_FIELDS,
    SIGN_MODES,
    SIGNATURE_ALGORITHM_NAMES,
    AppSettings,
    is_url_like,
)

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
MAX_ISSUER_LENGTH = 1024   # as for an SP's entityID (saml-core §8.3.6 caps entity identifiers at 1024 characters)
_NOT_IN_URIS = frozenset('<>"{}|\\^`')
_URN = re.compile(r"^urn:[A-Za-z0-9][A-Za-z0-9-]{0,31}:\S+$", re.IGNORECASE)
OWN_ENTITY_ID_MESSAGE = "this is the IdP's own entity ID: register the SP's metadata, not the IdP's"
RESERVED_SLUGS = frozenset({"new", "admin", "api", "static", "login", "logout", "saml"})


def validate_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 200 or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ServiceError("name must be 1-200 characters without control characters", field="name")
    return name


def validate_slug(slug: str) -> str:
    if not SLUG_RE.fullmatch(slug):
        raise ServiceError(f"slug {slug!r} must be 1-64 lower-case letters, digits and inner hyphens", field="slug")
    if slug in RESERVED_SLUGS:
        raise ServiceError(f"slug {slug!r} is reserved; choose another", field="slug")
    return slug


def parse_metadata_or_refuse(xml: bytes, entity_id: str | None) -> SpMetadata:
    """The SP's metadata, or a ServiceError about the document ("metadata") or, when `entity_id` picks an SP
    the document does not describe, about that choice ("entity_id")."""
    try:
        return parse_sp_metadata(xml, entity_id)
    except MetadataError as exc:
        raise ServiceError(str(exc), field=_refused_input(xml, entity_id)) from None


def _refused_input(xml: bytes, entity_id: str | None) -> str:
    """Only on refusal: whether the picked entityID is missing from an otherwise readable document."""
    if entity_id is None:
        return "metadata"
    try:
        present = list_sp_entity_ids(xml)
    except MetadataError:
        return "metadata"
    return "metadata" if entity_id.strip() in present else "entity_id"


def validate_settings(s: AppSettings) -> None:
    def refuse(field: str, message: str) -> ServiceError:
        return ServiceError(message, field=field)

    if s.nameid_format not in NAMEID_FORMATS:
        raise refuse("nameid_format", f"NameID format must be one of {', '.join(NAMEID_FORMATS)}")
    if s.nameid_field not in NAMEID_FIELDS:
        raise refuse("nameid_field", f"NameID field must be one of {', '.join(NAMEID_FIELDS)}")
    for fmt in s.allowed_nameid_formats:
        validate_allowed_nameid_format(fmt)
    _validate_relay_state_settings(s)
    if s.issuer is not None:
        validate_issuer(s.issuer)
    if s.sign not in SIGN_MODES:
        raise refuse("sign", f"sign must be one of {', '.join(SIGN_MODES)}")
    if s.signature_algorithm not in SIGNATURE_ALGORITHMS:
        raise refuse("signature_algorithm", "unsupported signature algorithm")
    if s.signature_algorithm == SignatureAlgorithm.RSA_SHA1 and not s.allow_sha1:
        raise refuse("signature_algorithm",
                     "rsa-sha1 is for legacy SPs only: also pass --allow-sha1 to opt in explicitly")
    if s.encryption_algorithm not in ENCRYPTION_ALGORITHMS:
        raise refuse("encryption_algorithm", f"encryption algorithm must be one of {', '.join(ENCRYPTION_ALGORITHMS)}")
    if s.permitted not in PERMITTED_MODES:
        raise refuse("permitted", f"permitted must be one of {', '.join(PERMITTED_MODES)}")
    if s.ip_policy not in IP_MODES:
        raise refuse("ip_policy", f"ip policy must be one of {', '.join(IP_MODES)}")
    if s.mfa_action not in MFA_ACTIONS:
        raise refuse("mfa_action", f"mfa action must be one of {', '.join(MFA_ACTIONS)}")
    if s.require_phishing_resistant and not s.require_mfa:
        raise refuse("require_mfa", "an app that requires phishing-resistant sign-in (a passkey) requires MFA: "
                                    "turn off require-phishing-resistant first")
    if s.session_timeout is not None and not 1 <= s.session_timeout <= 7 * 24 * 60:
        raise refuse("session_timeout", "session timeout must be between 1 and 10080 minutes")
    for cidr in s.ip_ranges:
        try:
            parse_cidr(cidr)
        except ValueError as exc:
            raise refuse("ip_ranges", str(exc)) from None
    validate_release_settings(s)


def validate_release_settings(s: AppSettings, schema: Schema | None = None) -> None:
    """Attribute sources and the NameID value: fields that exist, formulas that compile and type-check."""
    try:
        compile_release(attributes=s.attributes, attribute_formats=s.attribute_formats,
                        friendly_names=s.friendly_names, on_missing=s.on_missing, nameid_value=s.nameid_value,
                        schema=schema or current_schema(fresh=True))
    except ReleaseConfigError as exc:
        raise ServiceError(str(exc), field=exc.field) from None


def validate_issuer(value: str) -> str:
    """A per-app IdP entity ID: an absolute URI (an http(s) URL with a host, or a urn:NID:NSS), at most 1024
    characters, without spaces or control characters (it is written into Issuer elements and metadata)."""
    if not value or len(value) > MAX_ISSUER_LENGTH:
        raise ServiceError(f"issuer must be 1-{MAX_ISSUER_LENGTH} characters", field="issuer")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value):
        raise ServiceError("issuer must not contain spaces or control characters", field="issuer")
    if any(c in _NOT_IN_URIS for c in value):
        raise ServiceError(f"issuer must not contain any of {' '.join(sorted(_NOT_IN_URIS))} (not allowed in a URI, "
                           "RFC 3986)", field="issuer")
    if not _http_url(value) and not _URN.fullmatch(value):
        raise ServiceError(f"issuer {value[:100]!r} must be an absolute URI: an http(s) URL with a host "
                           "(https://idp.example.com/tenant-a) or a URN (urn:example:idp:tenant-a)", field="issuer")
    return value


def check_issuer_free(issuer: str) -> None:
    """A per-app issuer must not be an SP's entityID (that app's own or another's): the SP would read
    responses as coming from itself, and an inbound message naming it would be ambiguous."""
    taken = db.session.scalar(select(ConnectedApp.slug).where(ConnectedApp.entity_id == issuer))
    if taken is not None:
        raise ServiceError(f"issuer {issuer[:100]!r} is the SP entityID of app {taken!r}: choose an IdP entity ID "
                           "no SP uses", field="issuer")


def check_not_an_idp_entity_id(entity_id: str, idp_entity_id: str) -> None:
    """SP metadata must not name the IdP itself: neither the IdP's entity ID nor an app's per-app issuer."""
    if entity_id == idp_entity_id:
        raise ServiceError(OWN_ENTITY_ID_MESSAGE, field="entity_id")
    for slug, settings in db.session.execute(select(ConnectedApp.slug, ConnectedApp.settings)):
        if (settings or {}).get("issuer") == entity_id:
            raise ServiceError(f"this is the IdP entity ID app {slug!r} uses (its issuer): register the SP's "
                               "metadata, not the IdP's", field="entity_id")


def stale_metadata_warning(sp: SpMetadata | dict[str, Any] | None, now: datetime | None = None) -> str | None:
    """A warning when the SP's metadata says it expired (validUntil in the past): accepted as Shibboleth does
    without a RequiredValidUntil filter, but the admin should ask the SP for fresh metadata."""
    if sp is None:
        return None
    if isinstance(sp, dict):
        raw = sp.get("valid_until")
        valid_until = datetime.fromisoformat(raw) if raw else None
    else:
        valid_until = sp.valid_until
    if valid_until is None:
        return None
    if valid_until.tzinfo is None:
        valid_until = valid_until.replace(tzinfo=UTC)
    if valid_until >= (now or datetime.now(UTC)):
        return None
    return (f"the SP's metadata expired: its validUntil ({valid_until.strftime('%Y-%m-%d %H:%M UTC')}) is in the "
            "past; it was accepted, but ask the SP for fresh metadata")


def plain_http_endpoint_warnings(sp: SpMetadata | dict[str, Any] | None) -> list[str]:
    """A warning per ACS or SLO endpoint at a plain http:// URL on a host other than loopback: accepted (test and
    internal SPs use them), but assertions and logout messages would cross the network unencrypted."""
    if sp is None:
        return []
    data = sp if isinstance(sp, dict) else sp.to_dict()
    warnings = []
    for kind, label in (("acs", "AssertionConsumerService"), ("slo", "SingleLogoutService")):
        seen: set[str] = set()
        for ep in data.get(kind) or []:
            for url in (ep.get("location"), ep.get("response_location")):
                if not url or url in seen or not _plain_http_off_loopback(url):
                    continue
                seen.add(url)
                warnings.append(f"the {label} {url[:200]} is plain http://: assertions and logout messages to it "
                                "travel unencrypted; ask the SP for an https:// endpoint")
    return warnings


def _plain_http_off_loopback(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme.lower() != "http":
        return False
    host = (parts.hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def metadata_warnings(sp: SpMetadata | dict[str, Any] | None, now: datetime | None = None) -> list[str]:
    """Everything about accepted SP metadata an admin should look at: expired validUntil, plain-http endpoints."""
    stale = stale_metadata_warning(sp, now)
    return ([stale] if stale else []) + plain_http_endpoint_warnings(sp)


def signing_changes(*, signing_key: str | None = None, signature_algorithm: str | None = None,
                    encrypt_assertion: bool | None = None, encryption_algorithm: str | None = None,
                    published_kids: Iterable[str] | None = None) -> dict[str, Any]:
    """change_settings arguments from the key and algorithm choices as admins name them: a short algorithm name,
    a key id to pin or "active" to follow rotation (refused when `published_kids` does not list the key)."""
    changes: dict[str, Any] = {"encrypt_assertion": encrypt_assertion, "encryption_algorithm": encryption_algorithm}
    if signature_algorithm is not None:
        if signature_algorithm not in SIGNATURE_ALGORITHM_NAMES:
            raise ServiceError(f"signature algorithm must be one of {', '.join(SIGNATURE_ALGORITHM_NAMES)}",
                               field="signature_algorithm")
        changes["signature_algorithm"] = SIGNATURE_ALGORITHM_NAMES[signature_algorithm]
    if signing_key is not None:
        if signing_key == "active":
            changes["signing_key"] = CLEAR
        else:
            if published_kids is not None and signing_key not in set(published_kids):
                raise ServiceError(f"no published signing key {signing_key!r} (see idp certs status)",
                                   field="signing_key")
            changes["signing_key"] = signing_key
    return changes


def validate_policy_references(*, allow_groups: Iterable[str] = (), deny_groups: Iterable[str] = (),
                            assigned_users: Iterable[str] = ()) -> None:
    """The groups and users a policy change adds must exist.

    The groups stay locked until the change commits, so remove_group cannot delete one in between.
    """
    from ..users import find_user, lock_group

    for field_name, groups in (("allow_groups", allow_groups), ("deny_groups", deny_groups)):
        for g in groups:
            try:
                lock_group(g)
            except ServiceError as exc:
                raise ServiceError(str(exc), field=field_name) from None
    for u in assigned_users:
        if find_user(u) is None:
            raise ServiceError(f"no user {u!r}", field="assigned_users")


def _validate_relay_state_settings(s: AppSettings) -> None:
    if s.start_url is not None:
        validate_start_url(s.start_url)
    for entry in s.relay_state_allow:
        validate_relay_state_entry(entry)


# One value at a time, shared by validate_settings and the console's field checks (the same rules, the same words).

def validate_start_url(value: str) -> str:
    """Start URL: an absolute http(s) URL. It is sent as RelayState, so it fits its 80 bytes and holds no markup
    or control characters."""
    _usable_relay_state(value, "start_url", "start URL")
    if not _http_url(value):
        raise ServiceError("start URL must be an absolute http(s) URL", field="start_url")
    return value


def validate_relay_state_entry(entry: str) -> str:
    """A RelayState allow-list entry: non-empty, a usable RelayState, and an http(s) URL with a host when
    URL-like."""
    _usable_relay_state(entry, "relay_state_allow", f"RelayState allow-list entry {entry[:100]!r}")
    if is_url_like(entry) and not _http_url(entry):
        raise ServiceError(f"RelayState allow-list entry {entry[:100]!r}: a URL must be http(s) with a host",
                           field="relay_state_allow")
    return entry


def validate_allowed_nameid_format(uri: str) -> str:
    """A NameIDPolicy format an app may be asked for: one this IdP can issue (its URI)."""
    if uri not in NAMEID_FORMATS.values():
        raise ServiceError(f"NameID format {uri[:100]!r} cannot be issued here: allow one of "
                           f"{', '.join(NAMEID_FORMATS)} (short names or their URIs)", field="allowed_nameid_formats")
    return uri


def _usable_relay_state(value: str, field: str, what: str) -> None:
    try:
        check_relay_state(value)
    except BindingError as exc:
        raise ServiceError(f"{what}: {exc}", field=field) from None
    if not value.strip():
        raise ServiceError(f"{what} must not be empty", field=field)


def _http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:   # an unparseable host or port
        return False
