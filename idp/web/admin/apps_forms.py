"""Form decoding for the admin app pages: field checks with per-field messages, SP metadata built from hand-entered
values, and the metadata diff shown before a refresh is applied.

Nothing here reads Flask's request: views hand in the posted MultiDict and call the services with what comes out.
The checks here only place messages next to the right field; the services validate everything again.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree
from werkzeug.datastructures import FileStorage, MultiDict

from idp.models import ConnectedApp
from idp.policy.model import IP_MODES, MFA_ACTIONS, PERMITTED_MODES
from idp.saml.constants import BINDING_POST, BINDING_REDIRECT, NAMEID_FORMATS, NS_DS, NS_MD, NS_SAMLP
from idp.saml.sp_metadata import MAX_METADATA_BYTES, SpMetadata
from idp.services import ServiceError
from idp.services.apps import (
    ENCRYPTION_ALGORITHMS,
    NAMEID_FIELDS,
    SIGN_MODES,
    SIGNATURE_ALGORITHM_NAMES,
    USER_FIELDS,
    AppSettings,
    validate_name,
    validate_slug,
)

FORM = "_form"  # key of a form-level error (not tied to one field)
MAX_TEXT = 4096
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SIGALG_BY_URI = {uri: name for name, uri in SIGNATURE_ALGORITHM_NAMES.items()}

# The ACS bindings offered when an SP is entered by hand. This IdP answers with HTTP-POST only
# (saml-bindings §3.5), so that is the one choice; anything else is refused next to the field.
ACS_BINDINGS = {"HTTP-POST": BINDING_POST}
MAX_PICK_RADIOS = 100

Errors = dict[str, str]


def _text(form: MultiDict[str, str], name: str, limit: int = MAX_TEXT) -> str:
    return (form.get(name) or "").strip()[:limit]


def _checked(form: MultiDict[str, str], name: str) -> bool:
    return form.get(name) in ("1", "on", "true", "yes")


def _choice(errors: Errors, name: str, value: str, choices: tuple[str, ...] | list[str], label: str) -> None:
    if value not in choices:
        errors[name] = f"{label} must be one of {', '.join(choices)}"


def short_binding(uri: str) -> str:
    """urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST → HTTP-POST (other URIs shown whole)."""
    prefix = "urn:oasis:names:tc:SAML:2.0:bindings:"
    return uri[len(prefix):] if uri.startswith(prefix) else uri


def nameid_short(uri: str) -> str:
    for short, full in NAMEID_FORMATS.items():
        if full == uri:
            return short
    return uri


# ---------------------------------------------------------------- certificates


@dataclass(frozen=True, slots=True)
class CertInfo:
    fingerprint: str          # SHA-256, colon-separated upper-case hex
    subject: str
    not_after: datetime | None


def cert_info(pem: str) -> CertInfo:
    try:
        cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
    except ValueError:
        return CertInfo("(unreadable certificate)", "", None)
    try:
        subject = cert.subject.rfc4514_string()
    except ValueError:
        subject = ""
    return CertInfo(cert.fingerprint(hashes.SHA256()).hex(":").upper(), subject, cert.not_valid_after_utc)


def fingerprint(pem: str) -> str:
    return cert_info(pem).fingerprint


def decode_certificate(text: str) -> str:
    """A PEM certificate (or its bare base64 body) → base64 DER for ds:X509Certificate; ServiceError otherwise."""
    body = text.strip()
    if "-----BEGIN CERTIFICATE-----" in body:
        try:
            cert = x509.load_pem_x509_certificate(body.encode("ascii", errors="strict"))
        except (ValueError, UnicodeEncodeError):
            raise ServiceError("not a readable PEM certificate (-----BEGIN CERTIFICATE----- … )") from None
        return base64.b64encode(cert.public_bytes(Encoding.DER)).decode("ascii")
    try:
        der = base64.b64decode("".join(body.split()), validate=True)
        x509.load_der_x509_certificate(der)
    except (binascii.Error, ValueError):
        raise ServiceError("not a readable certificate: paste the PEM text including the BEGIN/END lines") from None
    return base64.b64encode(der).decode("ascii")


# ---------------------------------------------------------------- new app


SOURCES = ("metadata_file", "metadata_xml", "metadata_url", "manual")
HAND_FIELDS = ("entity_id", "acs_url", "slo_url", "sp_certificate")


def read_upload(file: Any, errors: dict[str, str], field: str) -> bytes | None:
    """An uploaded metadata file's bytes, read no further than the cap; None with `errors[field]` set
    when it is empty or too large."""
    data: bytes = file.stream.read(MAX_METADATA_BYTES + 1)
    if not data.strip():
        errors[field] = "the uploaded file is empty"
        return None
    if len(data) > MAX_METADATA_BYTES:
        errors[field] = "the uploaded file is larger than 5 MiB"
        return None
    return data


@dataclass
class NewAppForm:
    name: str = ""
    slug: str = ""
    metadata_url: str = ""
    metadata_xml: str = ""
    entity_id_pick: str = ""
    entity_id: str = ""
    acs_url: str = ""
    acs_binding: str = "HTTP-POST"
    slo_url: str = ""
    sp_certificate: str = ""
    file: FileStorage | None = None
    errors: Errors = field(default_factory=dict)

    @classmethod
    def from_post(cls, form: MultiDict[str, str], files: MultiDict[str, FileStorage]) -> NewAppForm:
        upload = files.get("metadata_file")
        return cls(
            name=_text(form, "name", 300), slug=_text(form, "slug", 100), metadata_url=_text(form, "metadata_url"),
            metadata_xml=(form.get("metadata_xml") or "").strip(), entity_id_pick=_text(form, "entity_id_pick"),
            entity_id=_text(form, "entity_id"), acs_url=_text(form, "acs_url"),
            acs_binding=_text(form, "acs_binding", 100) or "HTTP-POST", slo_url=_text(form, "slo_url"),
            sp_certificate=_text(form, "sp_certificate", 20000),
            file=upload if upload is not None and upload.filename else None,
        )

    def sources(self) -> list[str]:
        given = []
        if self.file is not None:
            given.append("metadata_file")
        if self.metadata_xml:
            given.append("metadata_xml")
        if self.metadata_url:
            given.append("metadata_url")
        if any(getattr(self, f) for f in HAND_FIELDS):
            given.append("manual")
        return given

    def check_common(self) -> None:
        """The service's own name and slug rules, shown next to the fields before anything is parsed."""
        for key, value, check in (("name", self.name, validate_name), ("slug", self.slug, validate_slug)):
            if value:
                try:
                    check(value)
                except ServiceError as exc:
                    self.errors[key] = str(exc)
        if self.slug == "new":  # reserved like the others; say why this one is
            self.errors["slug"] = "slug “new” is taken by the admin console's New app page; choose another"

    def read_file(self) -> bytes | None:
        """The uploaded file's bytes (None with an error next to the field when empty or too large)."""
        assert self.file is not None
        return read_upload(self.file, self.errors, "metadata_file")

    def build_manual_xml(self) -> bytes | None:
        """The hand-entered values as a minimal SP metadata document (None with field errors when incomplete)."""
        if not self.entity_id:
            self.errors["entity_id"] = "the SP's entityID is required"
        if not self.acs_url:
            self.errors["acs_url"] = "the Assertion Consumer Service URL is required"
        if self.acs_binding not in ACS_BINDINGS:
            self.errors["acs_binding"] = ("only HTTP-POST can be used: this IdP sends responses with the HTTP-POST "
                                          "binding only")
        for name in ("entity_id", "acs_url", "slo_url"):
            if _CONTROL.search(getattr(self, name)) or any(c.isspace() for c in getattr(self, name)):
                self.errors[name] = "must not contain spaces or control characters"
        cert_b64 = None
        if self.sp_certificate:
            try:
                cert_b64 = decode_certificate(self.sp_certificate)
            except ServiceError as exc:
                self.errors["sp_certificate"] = str(exc)
        if self.errors:
            return None
        return build_sp_metadata_xml(self.entity_id, self.acs_url, ACS_BINDINGS[self.acs_binding],
                                     self.slo_url or None, cert_b64)

    def error_field(self, message: str, source: str) -> str:
        """Which field a service refusal belongs next to."""
        if message.startswith("slug") or "slug " in message[:12]:
            return "slug"
        if message.startswith("name must"):
            return "name"
        if source != "manual":
            return source
        for needle, name in (("AssertionConsumerService", "acs_url"), ("SingleLogoutService", "slo_url"),
                             ("X509Certificate", "sp_certificate"), ("KeyDescriptor", "sp_certificate"),
                             ("entityID", "entity_id")):
            if needle in message:
                return name
        return FORM


def build_sp_metadata_xml(entity_id: str, acs_url: str, acs_binding: str, slo_url: str | None,
                          cert_b64: str | None) -> bytes:
    """A minimal md:EntityDescriptor (saml-metadata-2.0-os §2.3.2, §2.4.4) for an SP entered by hand.

    The KeyDescriptor has no use attribute, so the certificate serves signing and encryption (§2.4.1.1);
    the single ACS is index 0 and the default; SLO is offered with the HTTP-Redirect binding.
    """
    md = f"{{{NS_MD}}}"
    root = etree.Element(f"{md}EntityDescriptor", nsmap={"md": NS_MD, "ds": NS_DS})
    root.set("entityID", entity_id)
    role = etree.SubElement(root, f"{md}SPSSODescriptor")
    role.set("protocolSupportEnumeration", NS_SAMLP)
    if cert_b64:
        kd = etree.SubElement(role, f"{md}KeyDescriptor")
        key_info = etree.SubElement(kd, f"{{{NS_DS}}}KeyInfo")
        data = etree.SubElement(key_info, f"{{{NS_DS}}}X509Data")
        etree.SubElement(data, f"{{{NS_DS}}}X509Certificate").text = cert_b64
    if slo_url:
        etree.SubElement(role, f"{md}SingleLogoutService", Binding=BINDING_REDIRECT, Location=slo_url)
    etree.SubElement(role, f"{md}AssertionConsumerService", Binding=acs_binding, Location=acs_url, index="0",
                     isDefault="true")
    return etree.tostring(root, xml_declaration=True, encoding="utf-8", pretty_print=True)


# ---------------------------------------------------------------- SAML settings


@dataclass
class SamlForm:
    name: str
    nameid_format: str
    nameid_field: str
    attributes: list[tuple[str, str]]
    sign: str
    signature_algorithm: str          # short name (rsa-sha256, …) or the stored URI when it has none
    encrypt_assertion: bool
    encryption_algorithm: str
    signing_key: str                  # "active" or a key id
    require_signed_requests: bool
    allow_sha1: bool
    extra_rows: int = 1
    errors: Errors = field(default_factory=dict)

    @classmethod
    def from_app(cls, app: ConnectedApp) -> SamlForm:
        s = AppSettings.from_dict(app.settings)
        return cls(
            name=app.name, nameid_format=s.nameid_format, nameid_field=s.nameid_field,
            attributes=list(s.attributes.items()), sign=s.sign,
            signature_algorithm=_SIGALG_BY_URI.get(s.signature_algorithm, s.signature_algorithm),
            encrypt_assertion=s.encrypt_assertion, encryption_algorithm=s.encryption_algorithm,
            signing_key=s.signing_key or "active", require_signed_requests=s.require_signed_requests,
            allow_sha1=s.allow_sha1,
        )

    @classmethod
    def from_post(cls, form: MultiDict[str, str]) -> SamlForm:
        names = [n.strip() for n in form.getlist("attr_name")]
        fields = [f.strip() for f in form.getlist("attr_field")]
        removed = set(form.getlist("attr_remove"))
        out = cls(
            name=_text(form, "name", 300), nameid_format=_text(form, "nameid_format", 40),
            nameid_field=_text(form, "nameid_field", 40), attributes=[], sign=_text(form, "sign", 40),
            signature_algorithm=_text(form, "signature_algorithm", 200),
            encrypt_assertion=_checked(form, "encrypt_assertion"),
            encryption_algorithm=_text(form, "encryption_algorithm", 40),
            signing_key=_text(form, "signing_key", 64) or "active",
            require_signed_requests=_checked(form, "require_signed_requests"), allow_sha1=_checked(form, "allow_sha1"),
        )
        if len(names) != len(fields) or len(names) > 200:
            out.errors["attributes"] = "the attribute rows are incomplete; reload the page and try again"
        for i, (name, field_name) in enumerate(zip(names, fields, strict=False)):
            if str(i) in removed or (not name and not field_name):
                continue
            out.attributes.append((name[:1024], field_name[:40]))
        return out

    def attribute_map(self) -> dict[str, str]:
        return dict(self.attributes)

    def check(self, current_pin: str | None, published_kids: list[str] | None) -> None:
        e = self.errors
        if not self.name:
            e["name"] = "the name is required"
        else:
            try:
                validate_name(self.name)
            except ServiceError as exc:
                e["name"] = str(exc)
        _choice(e, "nameid_format", self.nameid_format, tuple(NAMEID_FORMATS), "NameID format")
        _choice(e, "nameid_field", self.nameid_field, NAMEID_FIELDS, "NameID field")
        _choice(e, "sign", self.sign, SIGN_MODES, "what to sign")
        _choice(e, "signature_algorithm", self.signature_algorithm, tuple(SIGNATURE_ALGORITHM_NAMES),
                "signature algorithm")
        _choice(e, "encryption_algorithm", self.encryption_algorithm, ENCRYPTION_ALGORITHMS, "encryption algorithm")
        if self.signature_algorithm == "rsa-sha1" and not self.allow_sha1 and "signature_algorithm" not in e:
            e["signature_algorithm"] = "rsa-sha1 is for legacy SPs only: also tick “Allow SHA-1” to opt in explicitly"
        if self.signing_key not in ("active", current_pin or "active") and published_kids is not None \
                and self.signing_key not in published_kids:
            e["signing_key"] = f"no published signing key {self.signing_key!r}"
        seen: set[str] = set()
        problems = []
        for name, field_name in self.attributes:
            if not name:
                problems.append(f"a row maps {field_name!r} but has no attribute name")
            elif _CONTROL.search(name):
                problems.append(f"attribute name {name!r} contains control characters")
            elif name in seen:
                problems.append(f"attribute {name!r} is listed twice")
            elif field_name not in USER_FIELDS:
                problems.append(f"attribute {name!r}: choose a user field ({', '.join(USER_FIELDS)})")
            seen.add(name)
        if problems and "attributes" not in e:
            e["attributes"] = "; ".join(problems)

    def signing_key_change(self, current_pin: str | None) -> str | None:
        """None when the pin stays as it is (so a no-longer-published pin does not block other edits)."""
        if self.signing_key == (current_pin or "active"):
            return None
        return self.signing_key

    def error_field(self, message: str) -> str:
        for needle, name in (("name must", "name"), ("NameID format", "nameid_format"),
                             ("NameID field", "nameid_field"), ("sign must", "sign"),
                             ("signature algorithm", "signature_algorithm"), ("rsa-sha1", "signature_algorithm"),
                             ("encryption algorithm", "encryption_algorithm"),
                             ("encrypted", "encrypt_assertion"), ("encryption certificate", "encrypt_assertion"),
                             ("signing key", "signing_key"), ("attribute", "attributes")):
            if needle in message:
                return name
        return FORM


# ---------------------------------------------------------------- access policy


_SPLIT_USERS = re.compile(r"[\s,]+")


@dataclass
class PolicyForm:
    permitted: str
    allow_groups: list[str]
    deny_groups: list[str]
    assigned_users: str               # as typed: comma separated
    ip_policy: str
    ip_ranges: str                    # as typed: one CIDR per line
    require_mfa: bool
    mfa_action: str
    session_timeout: str              # as typed: minutes, blank for none
    errors: Errors = field(default_factory=dict)

    @classmethod
    def from_app(cls, app: ConnectedApp) -> PolicyForm:
        s = AppSettings.from_dict(app.settings)
        return cls(
            permitted=s.permitted, allow_groups=list(s.allow_groups), deny_groups=list(s.deny_groups),
            assigned_users=", ".join(s.assigned_users), ip_policy=s.ip_policy, ip_ranges="\n".join(s.ip_ranges),
            require_mfa=s.require_mfa, mfa_action=s.mfa_action,
            session_timeout="" if s.session_timeout is None else str(s.session_timeout),
        )

    @classmethod
    def from_post(cls, form: MultiDict[str, str]) -> PolicyForm:
        def groups(name: str) -> list[str]:
            return list(dict.fromkeys(g.strip()[:150] for g in form.getlist(name)[:500] if g.strip()))

        return cls(
            permitted=_text(form, "permitted", 40), allow_groups=groups("allow_groups"),
            deny_groups=groups("deny_groups"), assigned_users=_text(form, "assigned_users", 20000),
            ip_policy=_text(form, "ip_policy", 40), ip_ranges=(form.get("ip_ranges") or "")[:20000],
            require_mfa=_checked(form, "require_mfa"), mfa_action=_text(form, "mfa_action", 40),
            session_timeout=_text(form, "session_timeout", 20),
        )

    def usernames(self) -> list[str]:
        return list(dict.fromkeys(u for u in _SPLIT_USERS.split(self.assigned_users) if u))

    def range_lines(self) -> list[str]:
        return [line.strip() for line in self.ip_ranges.splitlines() if line.strip()]

    def check(self) -> tuple[list[str], int]:
        """Field checks (unknown groups and users, each CIDR); returns (normalised ranges, timeout minutes, 0=none)."""
        from idp.services.accounts import group_names
        from idp.services.org import normalise_cidr
        from idp.services.users import find_user

        e = self.errors
        _choice(e, "permitted", self.permitted, PERMITTED_MODES, "permitted users")
        _choice(e, "ip_policy", self.ip_policy, IP_MODES, "IP mode")
        _choice(e, "mfa_action", self.mfa_action, MFA_ACTIONS, "MFA action")
        known = set(group_names())
        for name in ("allow_groups", "deny_groups"):
            unknown = [repr(g) for g in getattr(self, name) if g not in known]
            if unknown:
                e[name] = f"no such group: {', '.join(unknown)}"
        unknown_users = [repr(u) for u in self.usernames() if find_user(u[:150]) is None]
        if unknown_users:
            e["assigned_users"] = f"no such user: {', '.join(unknown_users[:20])}"
        ranges, bad = [], []
        for n, line in enumerate(self.range_lines(), start=1):
            try:
                ranges.append(normalise_cidr(line))
            except ServiceError as exc:
                bad.append(f"line {n}: {exc}")
        if bad:
            e["ip_ranges"] = "; ".join(bad[:10])
        timeout = 0
        if self.session_timeout:
            if (not (self.session_timeout.isascii() and self.session_timeout.isdigit()) or len(self.session_timeout) > 6
                    or not 0 <= int(self.session_timeout) <= 10080):
                e["session_timeout"] = "session timeout must be a whole number of minutes from 1 to 10080 " \
                                       "(blank for none)"
            else:
                timeout = int(self.session_timeout)
        return ranges, timeout

    def changes(self, current: AppSettings, ranges: list[str], timeout: int) -> dict[str, Any]:
        """Keyword arguments for services.apps.policy_changes: the posted state as adds and removes."""
        users = self.usernames()
        return {
            "permitted": self.permitted,
            "allow_groups": [g for g in self.allow_groups if g not in current.allow_groups],
            "remove_allow_groups": [g for g in current.allow_groups if g not in self.allow_groups],
            "deny_groups": [g for g in self.deny_groups if g not in current.deny_groups],
            "remove_deny_groups": [g for g in current.deny_groups if g not in self.deny_groups],
            "assign_users": [u for u in users if u not in current.assigned_users],
            "unassign_users": [u for u in current.assigned_users if u not in users],
            "ip_policy": self.ip_policy, "ip_ranges": ranges, "clear_ip_ranges": True,
            "require_mfa": self.require_mfa, "mfa_action": self.mfa_action, "session_timeout": timeout,
        }

    def error_field(self, message: str) -> str:
        for needle, name in (("no group", "allow_groups"), ("no user", "assigned_users"),
                             ("permitted", "permitted"), ("ip policy", "ip_policy"), ("mfa action", "mfa_action"),
                             ("session timeout", "session_timeout"), ("network", "ip_ranges"),
                             ("address", "ip_ranges"), ("CIDR", "ip_ranges")):
            if needle in message:
                return name
        return FORM


def policy_summary(s: AppSettings) -> dict[str, str]:
    """Short words for the app list: who may use the app, the IP mode, the second-factor rule."""
    if s.permitted == "all":
        who = "All users"
    else:
        parts = []
        if s.allow_groups:
            parts.append("groups " + ", ".join(s.allow_groups))
        if s.assigned_users:
            parts.append(f"{len(s.assigned_users)} assigned user{'s' if len(s.assigned_users) != 1 else ''}")
        who = "Admin-approved" + (f" ({'; '.join(parts)})" if parts else " (nobody yet)")
    if s.deny_groups:
        who += "; denied: " + ", ".join(s.deny_groups)
    ip = s.ip_policy + (f" ({len(s.ip_ranges)} range{'s' if len(s.ip_ranges) != 1 else ''})" if s.ip_ranges else "")
    mfa = f"required ({s.mfa_action})" if s.require_mfa else "not required"
    return {"who": who, "ip": ip, "mfa": mfa}


# ---------------------------------------------------------------- metadata diff


@dataclass(frozen=True, slots=True)
class DiffItem:
    label: str
    removed: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    before: str | None = None         # scalar changes
    after: str | None = None
    note: str | None = None


def _acs_line(e: Any) -> str:
    extra = "" if e.index is None else f" index={e.index}"
    if e.is_default:
        extra += " default"
    return f"{short_binding(e.binding)} {e.location}{extra}"


def _slo_line(e: Any) -> str:
    return f"{short_binding(e.binding)} {e.location}" + (f" (response: {e.response_location})"
                                                          if e.response_location else "")


def metadata_diff(old: SpMetadata, new: SpMetadata) -> list[DiffItem]:
    """What a metadata refresh changes, in the terms an admin checks: endpoints, keys by SHA-256, flags."""
    items: list[DiffItem] = []

    def lists(label: str, a: list[str], b: list[str]) -> None:
        removed = tuple(x for x in a if x not in b)
        added = tuple(x for x in b if x not in a)
        if removed or added:
            items.append(DiffItem(label, removed, added))
        elif a != b:
            items.append(DiffItem(label, note="same entries in a new order"))

    def scalar(label: str, a: object, b: object) -> None:
        if a != b:
            items.append(DiffItem(label, before=_show(a), after=_show(b)))

    lists("Assertion Consumer Services", [_acs_line(e) for e in old.acs], [_acs_line(e) for e in new.acs])
    lists("Single Logout Services", [_slo_line(e) for e in old.slo], [_slo_line(e) for e in new.slo])
    lists("Signing certificates (SHA-256)", [fingerprint(c) for c in old.signing_certs],
          [fingerprint(c) for c in new.signing_certs])
    lists("Encryption certificates (SHA-256)", [fingerprint(c) for c in old.encryption_certs],
          [fingerprint(c) for c in new.encryption_certs])
    lists("NameID formats", list(old.nameid_formats), list(new.nameid_formats))
    scalar("AuthnRequestsSigned", old.authn_requests_signed, new.authn_requests_signed)
    scalar("WantAssertionsSigned", old.want_assertions_signed, new.want_assertions_signed)
    lists("Requested attributes", [a.name for a in old.requested_attributes],
          [a.name for a in new.requested_attributes])
    scalar("validUntil", old.valid_until, new.valid_until)
    scalar("Display name", old.display_name, new.display_name)
    return items


def _show(value: object) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    return str(value)
