"""The per-app settings schema: the vocabulary admins choose from, AppSettings as stored, AppConfig as read on SSO."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from ...attributes.dictionary import BASIC_PROFILE, NAME_FORMATS, field_for
from ...attributes.release import MAX_ATTRIBUTES, ReleaseConfigError, validate_attribute_name
from ...attributes.schema import Schema
from ...policy.model import AppPolicy, IpPolicy, MfaAction, PermittedUsers
from ...saml.constants import (
    NAMEID_FORMATS,
    SELECTABLE_SIGNATURE_ALGORITHMS,
    EncryptionAlgorithm,
    NameIdFormat,
    SignatureAlgorithm,
    SignMode,
    values,
)
from ...saml.sp_metadata import SpMetadata
from ...text import is_clean_text
from .oidc_settings import OidcSettings

USER_FIELDS = ("username", "email", "first_name", "last_name", "groups", "id", "display_name")
# Sources read from the IdP session, not the user: "amr", how the user signed in (RFC 8176 values, multi-valued).
SESSION_FIELDS = ("amr",)
ATTRIBUTE_SOURCES = USER_FIELDS + SESSION_FIELDS    # what an app's attribute map may release
NAMEID_FIELDS = ("username", "email", "id")
SIGN_MODES = values(SignMode)
SIGNATURE_ALGORITHM_NAMES = {alg.short_name: alg.value for alg in SELECTABLE_SIGNATURE_ALGORITHMS}
ENCRYPTION_ALGORITHMS = values(EncryptionAlgorithm)

def nameid_format_uri(value: str) -> str:
    """A NameID format given as a full URI or as the short name the CLI uses (email, persistent ...) -> its URI;
    a format this IdP cannot issue is returned unchanged (validate_settings refuses it)."""
    short = value.strip()
    return NAMEID_FORMATS[NameIdFormat(short)] if short in NAMEID_FORMATS else short


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")


def is_url_like(value: str) -> bool:
    """Would a browser or SP read this RelayState as a URL leaving the SP (a scheme, or scheme-relative //host,
    also the backslash spellings browsers accept)?"""
    probe = value.strip()
    return bool(_SCHEME.match(probe)) or probe[:2].replace("\\", "/") == "//"


def relay_state_matches(value: str, entry: str) -> bool:
    """Exact match, or `entry` is a prefix ending at a boundary (so https://app.example.com does not admit
    https://app.example.com.evil.net, and /app does not admit /application)."""
    if value == entry:
        return True
    if not entry or not value.startswith(entry):
        return False
    return entry.endswith(("/", "?", "#")) or value[len(entry)] in "/?#"


CLEAR = object()  # a change value meaning "set this optional setting back to None" (change_settings)


@dataclass(frozen=True, slots=True)
class AppSettings:
    """Admin-chosen per-app settings (stored as JSON on ConnectedApp.settings)."""

    nameid_format: str = NameIdFormat.UNSPECIFIED
    nameid_field: str = "username"                # username | email | id
    # NameIDPolicy formats an SP may ask for besides nameid_format and unspecified (URIs); the admin decides
    allowed_nameid_formats: tuple[str, ...] = ()
    # released attributes, in order: name -> source, a field name (built-in, admin-defined or session; stored
    # bare) or "formula:<CEL>" (attributes.release compiles it against the field schema)
    attributes: dict[str, str] = field(default_factory=dict)
    attribute_formats: dict[str, str] = field(default_factory=dict)  # name -> "uri" | "basic" | "unspecified"
    friendly_names: dict[str, str] = field(default_factory=dict)     # name -> FriendlyName
    on_missing: str = "omit"                      # omit | deny (attribute_unavailable): a source with no value
    # the NameID value ("field:F" / "formula:<CEL>"); None: nameid_field (pairwise IDs for persistent/transient)
    nameid_value: str | None = None
    sign: str = SignMode.BOTH
    signature_algorithm: str = SignatureAlgorithm.RSA_SHA256
    require_signed_requests: bool = False         # in addition to the SP's AuthnRequestsSigned
    allow_sha1: bool = False                      # legacy SPs only, explicit opt-in
    # access policy (see idp/policy)
    permitted: str = PermittedUsers.ALL
    allow_groups: tuple[str, ...] = ()
    deny_groups: tuple[str, ...] = ()
    assigned_users: tuple[str, ...] = ()
    ip_policy: str = IpPolicy.RELAX
    ip_ranges: tuple[str, ...] = ()
    require_mfa: bool = False
    mfa_action: str = MfaAction.STEP_UP
    session_timeout: int | None = None            # minutes since the password was entered
    require_phishing_resistant: bool = False      # only a passkey / security key signs in (implies require_mfa)
    # keys and encryption
    signing_key: str | None = None                # pinned key id; None follows the active key
    encrypt_assertion: bool = False
    encryption_algorithm: str = EncryptionAlgorithm.AES256_GCM   # CBC: explicit opt-in
    # IdP-initiated launches (/apps/<slug>/sso and the launcher)
    idp_initiated: bool = True
    start_url: str | None = None                  # the RelayState of a launch that names none
    relay_state_allow: tuple[str, ...] = ()       # RelayState values or URL prefixes a launch may carry
    # the IdP entity ID this app sees (Issuer of its responses, entityID of its IdP metadata); None: the IdP's
    issuer: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> AppSettings:
        known = {k: v for k, v in (d or {}).items() if k in cls.__dataclass_fields__}
        for name in _TUPLE_FIELDS:
            if name in known:
                known[name] = tuple(known[name])
        return cls(**known)

    @property
    def policy(self) -> AppPolicy:
        return AppPolicy(
            permitted=PermittedUsers(self.permitted), allow_groups=frozenset(self.allow_groups),
            deny_groups=frozenset(self.deny_groups), assigned_users=frozenset(self.assigned_users),
            ip_policy=IpPolicy(self.ip_policy), ip_ranges=tuple(self.ip_ranges), require_mfa=self.require_mfa,
            mfa_action=MfaAction(self.mfa_action), session_timeout_min=self.session_timeout,
            require_phishing_resistant=self.require_phishing_resistant,
        )


_TUPLE_FIELDS = ("allow_groups", "deny_groups", "assigned_users", "ip_ranges", "allowed_nameid_formats",
                 "relay_state_allow")


@dataclass(frozen=True, slots=True)
class AppConfig:
    """The read-only view of a connected app used on every SSO request.

    `entity_id` and `sp` are None for an app without SAML settings, `oidc` for one without OIDC settings. The
    SAML lookups (`saml_app_config_by_*`, `app_config_by_entity_id`) only ever return apps with SAML settings.
    """

    id: int
    slug: str
    name: str
    entity_id: str | None
    enabled: bool
    version: int
    created_at: datetime
    sp: SpMetadata | None
    settings: AppSettings
    oidc: OidcSettings | None = None
    # validUntil of the metadata of an app whose metadata is fetched under a trust anchor: past it the app's
    # metadata is expired and SAML SSO / SLO with it is refused (Reason.METADATA_EXPIRED) until a fresh,
    # verified document is applied
    metadata_expires_at: datetime | None = None

    def metadata_expired(self, now: datetime) -> bool:
        return self.metadata_expires_at is not None and self.metadata_expires_at <= now

    @property
    def has_saml(self) -> bool:
        return self.sp is not None and self.entity_id is not None

    @property
    def protocols(self) -> tuple[str, ...]:
        return (("saml",) if self.has_saml else ()) + (("oidc",) if self.oidc is not None else ())

    @property
    def nameid_format_uri(self) -> str:
        return NameIdFormat(self.settings.nameid_format).uri

    @property
    def saml_launchable(self) -> bool:
        """Can the launcher / /apps/<slug>/sso start this app by IdP-initiated SAML SSO?"""
        return self.has_saml and self.settings.idp_initiated

    def accepts_relay_state(self, value: str) -> bool:
        """May an IdP-initiated launch carry this RelayState? The start URL and the allow-list entries match
        exactly or as a prefix ending at a path, query or fragment boundary. With no allow-list, any value that
        is not a URL (a plain path such as /deep/link, an opaque token) is accepted; a URL only under the start
        URL. With an allow-list, only what it (or the start URL) names."""
        entries = [*self.settings.relay_state_allow, *([self.settings.start_url] if self.settings.start_url else [])]
        if any(relay_state_matches(value, entry) for entry in entries):
            return True
        return not self.settings.relay_state_allow and not is_url_like(value)

    def allows_nameid_format(self, uri: str) -> bool:
        """May an SP's NameIDPolicy ask for this format? Only the configured one, unspecified, or an allowed one."""
        return uri in (self.nameid_format_uri, NAMEID_FORMATS[NameIdFormat.UNSPECIFIED]) \
            or uri in self.settings.allowed_nameid_formats

    def idp_entity_id(self, default: str) -> str:
        """The IdP entity ID this app sees (Issuer of what it is sent, entityID of its IdP metadata): its per-app
        issuer, else `default` (the IdP's own)."""
        return self.settings.issuer or default

    @property
    def requires_signed_requests(self) -> bool:
        return bool(self.sp and self.sp.authn_requests_signed) or self.settings.require_signed_requests

    @property
    def saml(self) -> SpMetadata:
        """The SP metadata of an app the SAML lookups returned (they never return an app without it)."""
        if self.sp is None:
            raise LookupError(f"app {self.slug!r} has no SAML settings")
        return self.sp


def default_settings(sp: SpMetadata, schema: Schema | None = None) -> AppSettings:
    """Settings a new app starts with, derived from what its metadata says it wants."""
    nameid, field_name = NameIdFormat.UNSPECIFIED, "username"
    for fmt in sp.nameid_formats:
        known = NameIdFormat.from_uri(fmt)
        if known is not None:
            nameid = known
            break
    if nameid == NameIdFormat.EMAIL:
        field_name = "email"
    elif nameid in (NameIdFormat.PERSISTENT, NameIdFormat.TRANSIENT):
        field_name = "id"
    attributes, formats, friendly = default_release(sp, schema)
    return AppSettings(nameid_format=nameid, nameid_field=field_name, attributes=attributes,
                       attribute_formats=formats, friendly_names=friendly)


def default_release(sp: SpMetadata, schema: Schema | None = None) -> tuple[dict[str, str], dict[str, str],
                                                                           dict[str, str]]:
    """(attributes, attribute_formats, friendly_names) a new app starts with: what its metadata requests
    (AttributeConsumingService / RequestedAttribute), each under the requested name, NameFormat and FriendlyName
    and read from the field the built-in dictionary names (a requested name it does not know, or whose field
    does not exist here, is left for the admin: see release_explanation); when it requests none, the basic
    profile (mail, givenName, sn, displayName under their urn:oid names)."""
    schema = schema or Schema()
    attributes: dict[str, str] = {}
    formats: dict[str, str] = {}
    friendly: dict[str, str] = {}
    if not sp.requested_attributes:
        for known in BASIC_PROFILE:
            attributes[known.oid_name] = known.field
            formats[known.oid_name] = "uri"
            friendly[known.oid_name] = known.friendly_name
        return attributes, formats, friendly
    short_formats = {uri: short for short, uri in NAME_FORMATS.items()}
    for ra in sp.requested_attributes:
        if len(attributes) >= MAX_ATTRIBUTES:
            break
        guess = field_for(ra.name, ra.friendly_name)
        if guess is None or schema.field(guess) is None or ra.name in attributes:
            continue
        try:
            validate_attribute_name(ra.name)   # hostile metadata must not store a release that cannot compile
        except ReleaseConfigError:
            continue
        attributes[ra.name] = guess
        if ra.name_format in short_formats:
            formats[ra.name] = short_formats[ra.name_format]
        if ra.friendly_name and len(ra.friendly_name) <= 256 and is_clean_text(ra.friendly_name):
            friendly[ra.name] = ra.friendly_name
    return attributes, formats, friendly
