"""What an app releases and why, for `idp apps show` and the console app page: each attribute with its source,
NameFormat and FriendlyName and where it came from (the SP's metadata, the basic profile, an admin), and what the
metadata requests that is not released."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...attributes.dictionary import BASIC_PROFILE
from ...attributes.release import name_format_of, parse_source
from ...saml.sp_metadata import SpMetadata
from .settings import AppSettings

WHY_REQUESTED = "requested in the SP's metadata"
WHY_BASIC = "basic profile (the SP's metadata requests no attribute)"
WHY_ADMIN = "set by an admin"


@dataclass(frozen=True, slots=True)
class ReleaseLine:
    name: str
    source: str              # "field: email" / "formula: ..."
    name_format: str
    friendly_name: str | None
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "name_format": self.name_format,
                "friendly_name": self.friendly_name, "why": self.why}


def _basic_profile(settings: AppSettings) -> bool:
    return {k.oid_name: k.field for k in BASIC_PROFILE} == dict(settings.attributes)


def explain_release(settings: AppSettings, sp: SpMetadata | None) -> tuple[list[ReleaseLine], list[str]]:
    """(released attributes with the reason each is released, notes on requested attributes not released)."""
    requested = {ra.name: ra for ra in (sp.requested_attributes if sp else ())}
    basic = sp is not None and not requested and _basic_profile(settings)
    lines = []
    for name, text in settings.attributes.items():
        kind, value = parse_source(text)
        if name in requested:
            why = WHY_REQUESTED + (" (required)" if requested[name].is_required else "")
        elif basic:
            why = WHY_BASIC
        else:
            why = WHY_ADMIN
        lines.append(ReleaseLine(name, f"{kind}: {value}", name_format_of(name, settings.attribute_formats),
                                 settings.friendly_names.get(name), why))
    notes = [f"{ra.name}{f' ({ra.friendly_name})' if ra.friendly_name else ''} is requested in the metadata"
             f"{' as required' if ra.is_required else ''} but not released: no user field is known for this name "
             "(release it with --add-attribute NAME=field:FIELD or a formula)"
             for ra in requested.values() if ra.name not in settings.attributes]
    return lines, notes
