"""What a metadata refresh changes for a connected app, in the terms an admin checks before applying it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..certs.x509 import fingerprint
from ..saml.sp_metadata import Endpoint, SpMetadata

_BINDING_PREFIX = "urn:oasis:names:tc:SAML:2.0:bindings:"


@dataclass(frozen=True, slots=True)
class DiffItem:
    label: str
    removed: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    before: str | None = None         # scalar changes
    after: str | None = None
    note: str | None = None


def short_binding(uri: str) -> str:
    """urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST → HTTP-POST (other URIs shown whole)."""
    return uri[len(_BINDING_PREFIX):] if uri.startswith(_BINDING_PREFIX) else uri


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


def _acs_line(e: Endpoint) -> str:
    extra = "" if e.index is None else f" index={e.index}"
    if e.is_default:
        extra += " default"
    return f"{short_binding(e.binding)} {e.location}{extra}"


def _slo_line(e: Endpoint) -> str:
    return f"{short_binding(e.binding)} {e.location}" + (f" (response: {e.response_location})"
                                                          if e.response_location else "")


def _show(value: object) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    return str(value)
