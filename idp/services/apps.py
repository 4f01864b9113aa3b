"""Connected apps: registration from SP metadata, settings, sync from a folder, and a per-process cache."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError

from .. import audit
from ..extensions import db
from ..models import ConnectedApp
from ..policy.checks import parse_cidr
from ..policy.model import IP_MODES, MFA_ACTIONS, PERMITTED_MODES, AppPolicy, IpPolicy, MfaAction, PermittedUsers
from ..prepared import Prepared
from ..saml.constants import (
    NAMEID_FORMATS,
    SELECTABLE_SIGNATURE_ALGORITHMS,
    EncryptionAlgorithm,
    NameIdFormat,
    SignatureAlgorithm,
    SignMode,
    values,
)
from ..saml.signing import SIGNATURE_ALGORITHMS
from ..saml.sp_metadata import MetadataError, SpMetadata, parse_sp_metadata
from . import ServiceError

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
USER_FIELDS = ("username", "email", "first_name", "last_name", "groups", "id", "display_name")
NAMEID_FIELDS = ("username", "email", "id")
SIGN_MODES = values(SignMode)
SIGNATURE_ALGORITHM_NAMES = {alg.short_name: alg.value for alg in SELECTABLE_SIGNATURE_ALGORITHMS}
ENCRYPTION_ALGORITHMS = values(EncryptionAlgorithm)

# Well-known attribute names SPs ask for in RequestedAttribute, mapped to user fields.
KNOWN_ATTRIBUTES = {
    "urn:oid:0.9.2342.19200300.100.1.3": "email", "mail": "email", "email": "email", "emailaddress": "email",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress": "email",
    "urn:oid:2.5.4.42": "first_name", "givenname": "first_name", "firstname": "first_name",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname": "first_name",
    "urn:oid:2.5.4.4": "last_name", "sn": "last_name", "surname": "last_name", "lastname": "last_name",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname": "last_name",
    "urn:oid:0.9.2342.19200300.100.1.1": "username", "uid": "username",
    "urn:oid:2.16.840.1.113730.3.1.241": "display_name", "displayname": "display_name",
}


@dataclass(frozen=True, slots=True)
class AppSettings:
    """Admin-chosen per-app settings (stored as JSON on ConnectedApp.settings)."""

    nameid_format: str = NameIdFormat.UNSPECIFIED
    nameid_field: str = "username"                # username | email | id
    attributes: dict[str, str] = field(default_factory=dict)  # SAML attribute name -> user field
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
    # keys and encryption
    signing_key: str | None = None                # pinned key id; None follows the active key
    encrypt_assertion: bool = False
    encryption_algorithm: str = EncryptionAlgorithm.AES256_GCM   # CBC: explicit opt-in

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
        )


_TUPLE_FIELDS = ("allow_groups", "deny_groups", "assigned_users", "ip_ranges")


@dataclass(frozen=True, slots=True)
class AppConfig:
    """The read-only view of a connected app used on every SSO request."""

    id: int
    slug: str
    name: str
    entity_id: str
    enabled: bool
    version: int
    created_at: datetime
    sp: SpMetadata
    settings: AppSettings

    @property
    def nameid_format_uri(self) -> str:
        return NameIdFormat(self.settings.nameid_format).uri

    @property
    def requires_signed_requests(self) -> bool:
        return self.sp.authn_requests_signed or self.settings.require_signed_requests


def default_settings(sp: SpMetadata) -> AppSettings:
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
    attributes: dict[str, str] = {}
    for ra in sp.requested_attributes:
        guess = KNOWN_ATTRIBUTES.get(ra.name) or KNOWN_ATTRIBUTES.get(ra.name.lower())
        if guess is None and ra.friendly_name:
            guess = KNOWN_ATTRIBUTES.get(ra.friendly_name.lower())
        if guess:
            attributes[ra.name] = guess
    return AppSettings(nameid_format=nameid, nameid_field=field_name, attributes=attributes)


def slugify(text: str) -> str:
    text = re.sub(r"^[a-z]+://", "", text.lower())
    slug = re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:60].strip("-")
    return slug or "app"


def _unique_slug(base: str) -> str:
    if base in RESERVED_SLUGS:
        base = f"{base}-app"
    slug, n = base, 2
    while db.session.scalar(select(ConnectedApp.id).where(ConnectedApp.slug == slug)) is not None:
        slug = f"{base[:58]}-{n}"
        n += 1
    return slug


def validate_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 200 or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ServiceError("name must be 1-200 characters without control characters")
    return name


RESERVED_SLUGS = frozenset({"new", "admin", "api", "static", "login", "logout", "saml"})


def validate_slug(slug: str) -> str:
    if not SLUG_RE.fullmatch(slug):
        raise ServiceError(f"slug {slug!r} must be 1-64 lower-case letters, digits and inner hyphens")
    if slug in RESERVED_SLUGS:
        raise ServiceError(f"slug {slug!r} is reserved; choose another")
    return slug


def parse_metadata_or_refuse(xml: bytes, entity_id: str | None) -> SpMetadata:
    try:
        return parse_sp_metadata(xml, entity_id)
    except MetadataError as exc:
        raise ServiceError(str(exc)) from None


def register_app(xml: bytes, *, name: str | None = None, slug: str | None = None, entity_id: str | None = None,
                 source: str = "cli", source_ref: str | None = None) -> ConnectedApp:
    """Register a connected app from SP metadata; refuses with ServiceError and stores nothing on any problem."""
    if name is not None:
        name = validate_name(name)
    sp = parse_metadata_or_refuse(xml, entity_id)
    if db.session.scalar(select(ConnectedApp.id).where(ConnectedApp.entity_id == sp.entity_id)) is not None:
        raise ServiceError(f"an app with entityID {sp.entity_id!r} is already registered")
    if slug is not None:
        validate_slug(slug)
        if db.session.scalar(select(ConnectedApp.id).where(ConnectedApp.slug == slug)) is not None:
            raise ServiceError(f"slug {slug!r} is already taken")
    else:
        slug = _unique_slug(slugify(name or sp.display_name or sp.entity_id))
    app = ConnectedApp(
        slug=slug,
        name=(name or sp.display_name or sp.entity_id)[:200],
        entity_id=sp.entity_id,
        enabled=True,
        metadata_xml=xml.decode("utf-8", errors="replace"),
        sp=sp.to_dict(),
        settings=default_settings(sp).to_dict(),
        source=source,
        source_ref=source_ref,
        version=1,
    )
    db.session.add(app)
    audit.record("app.add", "app", slug, after={"entity_id": sp.entity_id, "name": app.name, "source": source,
                                               "source_ref": source_ref})
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ServiceError("an app with that entityID or slug was registered at the same time") from None
    return app


def update_metadata(app: ConnectedApp, xml: bytes, *, source_ref: str | None = None) -> bool:
    """Replace an app's metadata (same entityID); returns False when nothing changed."""
    sp = parse_metadata_or_refuse(xml, app.entity_id)
    text = xml.decode("utf-8", errors="replace")
    if text == app.metadata_xml:
        return False
    before = _metadata_summary(app.sp)
    app.metadata_xml = text
    app.sp = sp.to_dict()
    audit.record("app.metadata", "app", app.slug, before=before, after=_metadata_summary(app.sp))
    if source_ref:
        app.source_ref = source_ref
    app.version += 1
    db.session.commit()
    invalidate_cache()
    return True


def get_app(slug: str) -> ConnectedApp:
    app = db.session.scalar(select(ConnectedApp).where(ConnectedApp.slug == slug))
    if app is None:
        raise ServiceError(f"no app with slug {slug!r}")
    return app


def list_apps() -> list[ConnectedApp]:
    return list(db.session.scalars(select(ConnectedApp).order_by(ConnectedApp.slug)))


def _metadata_summary(sp: dict[str, Any]) -> dict[str, Any]:
    return {"acs": [a["location"] for a in sp.get("acs", [])], "slo": [e["location"] for e in sp.get("slo", [])],
            "signing_certs": len(sp.get("signing_certs", [])), "encryption_certs": len(sp.get("encryption_certs", [])),
            "nameid_formats": sp.get("nameid_formats", [])}


def remove_app(slug: str) -> None:
    app = get_app(slug)
    audit.record("app.remove", "app", slug, before={"entity_id": app.entity_id, "name": app.name})
    db.session.delete(app)
    db.session.commit()
    invalidate_cache()


def signing_changes(*, signing_key: str | None = None, signature_algorithm: str | None = None,
                    encrypt_assertion: bool | None = None, encryption_algorithm: str | None = None,
                    published_kids: Iterable[str] | None = None) -> dict[str, Any]:
    changes: dict[str, Any] = {"encrypt_assertion": encrypt_assertion, "encryption_algorithm": encryption_algorithm}
    if signature_algorithm is not None:
        if signature_algorithm not in SIGNATURE_ALGORITHM_NAMES:
            raise ServiceError(f"signature algorithm must be one of {', '.join(SIGNATURE_ALGORITHM_NAMES)}")
        changes["signature_algorithm"] = SIGNATURE_ALGORITHM_NAMES[signature_algorithm]
    if signing_key is not None:
        if signing_key == "active":
            changes["signing_key"] = _CLEAR
        else:
            if published_kids is not None and signing_key not in set(published_kids):
                raise ServiceError(f"no published signing key {signing_key!r} (see idp certs status)")
            changes["signing_key"] = signing_key
    return changes


def pinned_keys() -> dict[str, list[str]]:
    """key id → slugs of the apps pinned to it."""
    out: dict[str, list[str]] = {}
    for slug, settings in db.session.execute(select(ConnectedApp.slug, ConnectedApp.settings)):
        kid = (settings or {}).get("signing_key")
        if kid:
            out.setdefault(kid, []).append(slug)
    return out


def change_settings(app: ConnectedApp, *, enabled: bool | None = None, name: str | None = None,
                    **changes: Any) -> AppSettings:
    """Validate and apply setting changes; nothing is written if any value is invalid."""
    current = AppSettings.from_dict(app.settings)
    if name is not None:
        name = validate_name(name)
    updates: dict[str, Any] = {k: (None if v is _CLEAR else v) for k, v in changes.items() if v is not None}
    new = replace(current, **updates)
    validate_settings(new)
    # only when this change asks for encryption: an app whose metadata lost its certificate since
    # (refresh, sync) must still be editable and disable-able; its SSO fails with app_misconfigured
    if new.encrypt_assertion and updates.get("encrypt_assertion") and not app.sp.get("encryption_certs"):
        raise ServiceError("this app's metadata has no encryption certificate; assertions cannot be encrypted")
    before = {**current.to_dict(), "enabled": app.enabled, "name": app.name}
    app.settings = new.to_dict()
    if enabled is not None:
        app.enabled = enabled
    if name is not None:
        app.name = name
    after = {**new.to_dict(), "enabled": app.enabled, "name": app.name}
    diff_keys = [k for k in after if before.get(k) != after.get(k)]
    if diff_keys:
        audit.record("app.settings", "app", app.slug, before={k: before.get(k) for k in diff_keys},
                     after={k: after[k] for k in diff_keys})
    app.version += 1
    db.session.commit()
    invalidate_cache()
    return new


def validate_settings(s: AppSettings) -> None:
    if s.nameid_format not in NAMEID_FORMATS:
        raise ServiceError(f"NameID format must be one of {', '.join(NAMEID_FORMATS)}")
    if s.nameid_field not in NAMEID_FIELDS:
        raise ServiceError(f"NameID field must be one of {', '.join(NAMEID_FIELDS)}")
    if s.sign not in SIGN_MODES:
        raise ServiceError(f"sign must be one of {', '.join(SIGN_MODES)}")
    if s.signature_algorithm not in SIGNATURE_ALGORITHMS:
        raise ServiceError("unsupported signature algorithm")
    if s.signature_algorithm == SignatureAlgorithm.RSA_SHA1 and not s.allow_sha1:
        raise ServiceError("rsa-sha1 is for legacy SPs only: also pass --allow-sha1 to opt in explicitly")
    if s.encryption_algorithm not in ENCRYPTION_ALGORITHMS:
        raise ServiceError(f"encryption algorithm must be one of {', '.join(ENCRYPTION_ALGORITHMS)}")
    if s.permitted not in PERMITTED_MODES:
        raise ServiceError(f"permitted must be one of {', '.join(PERMITTED_MODES)}")
    if s.ip_policy not in IP_MODES:
        raise ServiceError(f"ip policy must be one of {', '.join(IP_MODES)}")
    if s.mfa_action not in MFA_ACTIONS:
        raise ServiceError(f"mfa action must be one of {', '.join(MFA_ACTIONS)}")
    if s.session_timeout is not None and not 1 <= s.session_timeout <= 7 * 24 * 60:
        raise ServiceError("session timeout must be between 1 and 10080 minutes")
    for cidr in s.ip_ranges:
        try:
            parse_cidr(cidr)
        except ValueError as exc:
            raise ServiceError(str(exc)) from None
    for name, field_name in s.attributes.items():
        if not name or len(name) > 1024 or any(ord(c) < 32 for c in name):
            raise ServiceError(f"attribute name {name!r} is not valid")
        if field_name not in USER_FIELDS:
            raise ServiceError(f"attribute {name!r}: unknown user field {field_name!r} "
                               f"(choose from {', '.join(USER_FIELDS)})")


def policy_changes(current: AppSettings, *, permitted: str | None = None, allow_groups: Iterable[str] = (),
                   deny_groups: Iterable[str] = (), remove_allow_groups: Iterable[str] = (),
                   remove_deny_groups: Iterable[str] = (), assign_users: Iterable[str] = (),
                   unassign_users: Iterable[str] = (), ip_policy: str | None = None, ip_ranges: Iterable[str] = (),
                   clear_ip_ranges: bool = False, require_mfa: bool | None = None, mfa_action: str | None = None,
                   session_timeout: int | None = None) -> dict[str, Any]:
    """Turn add/remove options into new setting values; unknown groups and users are refused."""
    from .org import normalise_cidr
    from .users import find_user, lock_group

    for g in (*allow_groups, *deny_groups):
        lock_group(g)  # held until the change commits: remove_group cannot delete it in between
    for u in assign_users:
        if find_user(u) is None:
            raise ServiceError(f"no user {u!r}")

    def merged(existing: tuple[str, ...], add: Iterable[str], remove: Iterable[str]) -> tuple[str, ...] | None:
        add, remove = list(add), list(remove)
        if not add and not remove:
            return None
        out = [x for x in existing if x not in remove]
        out += [x for x in add if x not in out]
        return tuple(out)

    ranges = None
    new_ranges = [normalise_cidr(r) for r in ip_ranges]
    if clear_ip_ranges or new_ranges:
        base = () if clear_ip_ranges else current.ip_ranges
        ranges = tuple(dict.fromkeys([*base, *new_ranges]))
    changes: dict[str, Any] = {
        "permitted": permitted, "ip_policy": ip_policy, "require_mfa": require_mfa, "mfa_action": mfa_action,
        "allow_groups": merged(current.allow_groups, allow_groups, remove_allow_groups),
        "deny_groups": merged(current.deny_groups, deny_groups, remove_deny_groups),
        "assigned_users": merged(current.assigned_users, assign_users, unassign_users),
        "ip_ranges": ranges,
    }
    if session_timeout is not None:
        changes["session_timeout"] = session_timeout or _CLEAR
    return changes


_CLEAR = object()  # a value meaning "set this optional setting back to None"


def parse_attribute_option(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        name, sep, field_name = item.rpartition("=")
        if not sep or not name:
            raise ServiceError(f"--attribute expects NAME=FIELD, got {item!r}")
        out[name] = field_name
    return out


# ---------------------------------------------------------------- runtime cache

_cache: dict[int, AppConfig] = {}
_cache_lock = threading.Lock()


def _to_config(row: ConnectedApp) -> AppConfig:
    return AppConfig(
        id=row.id, slug=row.slug, name=row.name, entity_id=row.entity_id, enabled=row.enabled,
        version=row.version, created_at=row.created_at, sp=SpMetadata.from_dict(row.sp),
        settings=AppSettings.from_dict(row.settings),
    )


# How long a resolved lookup is trusted before its version is checked again. Changes made in this
# process invalidate at once; changes from another process (CLI, another instance) apply within it.
LOOKUP_TTL_S = 1.0
_recent: dict[tuple[str, object], tuple[float, AppConfig]] = {}


def invalidate_cache() -> None:
    with _cache_lock:
        _recent.clear()
        _cache.clear()


def _lookup_cached(kind: str, value: object) -> AppConfig | None:
    key = (kind, value)
    hit = _recent.get(key)
    now = time.monotonic()
    if hit is not None and now - hit[0] < LOOKUP_TTL_S:
        return hit[1]
    config = _lookup(kind, value)
    if config is not None:
        with _cache_lock:
            if len(_recent) > 20_000:
                _recent.clear()
            _recent[key] = (now, config)
    return config


_VERSION_BY = {
    kind: Prepared(select(ConnectedApp.id, ConnectedApp.version, ConnectedApp.created_at)
                   .where(column == bindparam("value")))
    for kind, column in (("id", ConnectedApp.id), ("slug", ConnectedApp.slug), ("entity_id", ConnectedApp.entity_id))
}


def _lookup(kind: str, value: object) -> AppConfig | None:
    """One indexed query for (id, version); the parsed config is rebuilt only when the version changed."""
    hit = _VERSION_BY[kind].first({"value": value})
    if hit is None:
        return None
    app_id, version, created_at = hit
    cached = _cache.get(app_id)
    # created_at guards against a deleted app's id being reused by a new row (SQLite reuses rowids)
    if cached is not None and cached.version == version and cached.created_at == created_at:
        return cached
    row = db.session.get(ConnectedApp, app_id)
    if row is None:
        return None
    config = _to_config(row)
    with _cache_lock:
        _cache[app_id] = config
    return config


def app_config_by_entity_id(entity_id: str) -> AppConfig | None:
    return _lookup_cached("entity_id", entity_id)


def app_config_by_slug(slug: str) -> AppConfig | None:
    return _lookup_cached("slug", slug)


def app_config_by_id(app_id: int) -> AppConfig | None:
    return _lookup_cached("id", app_id)


# ---------------------------------------------------------------- sync from a folder

@dataclass
class SyncReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)


def sync_folder(folder: Path) -> SyncReport:
    """Register or update one app per *.xml (slug = file name); never deletes, never touches apps it did not create."""
    report = SyncReport()
    for path in sorted(folder.glob("*.xml")):
        slug = path.stem.lower()
        try:
            validate_slug(slug)
            xml = path.read_bytes()
            existing = db.session.scalar(select(ConnectedApp).where(ConnectedApp.slug == slug))
            if existing is None:
                register_app(xml, slug=slug, source="sync", source_ref=str(path))
                report.added.append(slug)
            elif existing.source != "sync":
                raise ServiceError(f"slug {slug!r} belongs to an app that was not created by sync; left alone")
            elif update_metadata(existing, xml, source_ref=str(path)):
                report.updated.append(slug)
            else:
                report.unchanged.append(slug)
        except (ServiceError, OSError) as exc:
            db.session.rollback()
            report.refused.append((path.name, str(exc)))
    return report


