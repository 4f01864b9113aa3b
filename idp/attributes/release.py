"""Attribute release: what one app receives about one user — its attributes (SAML AttributeStatement / OIDC
claims) and, when the admin chose one, the NameID value. Sources are a user field (built-in, admin-defined, or
the session's `amr`) or a formula (attributes.formula).

An app's settings are compiled once per (app version, field schema) — formulas type-checked — and evaluated per
sign-in. A source with no value (an unset field, an empty string or list, a formula that fails for this user) is
left out, or, when the app says `on_missing = deny`, stops the sign-in (AttributeUnavailable → reason
attribute_unavailable) before anything is issued. A NameID value source without a value always stops it: there
is no assertion without a subject.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..text import is_clean_text
from .dictionary import NAME_FORMATS
from .formula import (
    Evaluation,
    Formula,
    FormulaError,
    FormulaUnavailable,
    activation_value,
    compile_formula,
    user_activation,
)
from .schema import APP_MEMBERS, SESSION_MEMBERS, FieldType, Schema

FORMULA_PREFIX = "formula:"
FIELD_PREFIX = "field:"
ON_MISSING = ("omit", "deny")
MAX_ATTRIBUTES = 100
MAX_VALUES = 256


class ReleaseConfigError(ValueError):
    """An attribute or NameID source refused when saved; `field` names the setting (attributes, nameid_value...)."""

    def __init__(self, message: str, field: str = "attributes") -> None:
        super().__init__(message)
        self.field = field


class AttributeUnavailable(Exception):
    """A released attribute (or the NameID value) has no value for this user and the app denies in that case."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"{name}: {why}")
        self.name, self.why = name, why


def parse_source(text: str) -> tuple[str, str]:
    """("field", NAME) or ("formula", EXPR) from "field:NAME", "formula:EXPR" or a bare field name."""
    text = text.strip()
    if text.startswith(FORMULA_PREFIX):
        return "formula", text[len(FORMULA_PREFIX):].strip()
    if text.startswith(FIELD_PREFIX):
        return "field", text[len(FIELD_PREFIX):].strip()
    return "field", text


def stored_source(text: str) -> str:
    """The stored spelling of a source: a bare field name, or "formula:EXPR"."""
    kind, value = parse_source(text)
    return FORMULA_PREFIX + value if kind == "formula" else value


@dataclass(frozen=True, slots=True)
class Source:
    text: str                       # as stored
    field: str | None = None
    formula: Formula | None = None

    @property
    def kind(self) -> str:
        return "formula" if self.formula is not None else "field"

    @property
    def label(self) -> str:
        return f"formula: {self.formula.source}" if self.formula is not None else f"field: {self.field}"


def compile_source(text: str, schema: Schema, *, setting: str, what: str) -> Source:
    """A field source checked against the schema, or a formula compiled and type-checked (ReleaseConfigError,
    with the formula's position, otherwise)."""
    kind, value = parse_source(text)
    if kind == "formula":
        try:
            return Source(FORMULA_PREFIX + value, formula=compile_formula(value, schema))
        except FormulaError as exc:
            raise ReleaseConfigError(f"{what}: formula error at {exc}", field=setting) from None
    if schema.field(value) is None:
        names = ", ".join(f.name for f in schema.sources)
        raise ReleaseConfigError(f"{what}: unknown user field {value!r} (choose from {names}, or formula:EXPR)",
                                 field=setting)
    return Source(value, field=value)


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    source: Source
    name_format: str               # the NameFormat URI
    friendly_name: str | None


@dataclass(frozen=True, slots=True)
class CompiledRelease:
    rules: tuple[Rule, ...]
    nameid: Source | None
    deny_on_missing: bool

    @property
    def uses_formulas(self) -> bool:
        return self.nameid is not None and self.nameid.formula is not None or any(
            r.source.formula is not None for r in self.rules)


def name_format_of(name: str, formats: Mapping[str, str]) -> str:
    """The NameFormat URI of an attribute: the admin's choice, else uri for a URI-looking name, else basic."""
    chosen = formats.get(name)
    if chosen:
        return NAME_FORMATS.get(chosen, chosen)
    return NAME_FORMATS["uri"] if ":" in name else NAME_FORMATS["basic"]


def validate_attribute_name(name: str) -> None:
    if not name or len(name) > 1024 or name != name.strip() or not is_clean_text(name):
        raise ReleaseConfigError(f"attribute name {name[:100]!r} is not valid (1-1024 characters, no control "
                                 "characters or surrounding spaces)")


def compile_release(*, attributes: Mapping[str, str], attribute_formats: Mapping[str, str],
                    friendly_names: Mapping[str, str], on_missing: str, nameid_value: str | None,
                    schema: Schema) -> CompiledRelease:
    """An app's release settings checked and compiled (ReleaseConfigError naming the setting otherwise)."""
    if on_missing not in ON_MISSING:
        raise ReleaseConfigError(f"on-missing must be one of {', '.join(ON_MISSING)}", field="on_missing")
    if len(attributes) > MAX_ATTRIBUTES:
        raise ReleaseConfigError(f"at most {MAX_ATTRIBUTES} attributes per app")
    for name, fmt in attribute_formats.items():
        if name not in attributes:
            raise ReleaseConfigError(f"attribute format for {name[:100]!r}, which the app does not release",
                                     field="attribute_formats")
        if fmt not in NAME_FORMATS:
            raise ReleaseConfigError(f"attribute format of {name[:100]!r} must be one of {', '.join(NAME_FORMATS)}",
                                     field="attribute_formats")
    for name, friendly in friendly_names.items():
        if name not in attributes:
            raise ReleaseConfigError(f"friendly name for {name[:100]!r}, which the app does not release",
                                     field="friendly_names")
        if not friendly or len(friendly) > 256 or not is_clean_text(friendly):
            raise ReleaseConfigError(f"friendly name of {name[:100]!r} must be 1-256 characters",
                                     field="friendly_names")
    rules = []
    for name, text in attributes.items():
        validate_attribute_name(name)
        source = compile_source(text, schema, setting="attributes", what=f"attribute {name[:100]!r}")
        rules.append(Rule(name, source, name_format_of(name, attribute_formats), friendly_names.get(name) or None))
    nameid = None
    if nameid_value:
        nameid = compile_source(nameid_value, schema, setting="nameid_value", what="NameID value")
        if nameid.field is not None and (f := schema.field(nameid.field)) is not None and f.type == FieldType.LIST:
            raise ReleaseConfigError(f"NameID value: {nameid.field} holds several values; a NameID has one",
                                     field="nameid_value")
        f = schema.field(nameid.field) if nameid.field is not None else None
        if f is not None and not f.builtin and not f.unique:
            raise ReleaseConfigError(f"NameID value: {f.name} is not a unique field, so two users could become one "
                                     "account at the SP; use a unique field (idp fields add NAME --unique)",
                                     field="nameid_value")
        if nameid.formula is not None and nameid.formula.multi_valued:
            raise ReleaseConfigError("NameID value: the formula gives a list; a NameID has one value",
                                     field="nameid_value")
    return CompiledRelease(tuple(rules), nameid, on_missing == "deny")


_cache: dict[tuple[Any, ...], CompiledRelease] = {}
_cache_lock = threading.Lock()


def compiled_for(schema: Schema, settings: Any) -> CompiledRelease:
    """compile_release for an app's settings (AppSettings), cached under exactly what is compiled (the release
    settings and the schema), so a cached entry can never be stale. Stored settings were checked when saved; one
    that no longer compiles (a field it names was removed elsewhere) raises ReleaseConfigError here, which the
    flows report as a misconfigured app."""
    full_key = (tuple(settings.attributes.items()), tuple(settings.attribute_formats.items()),
                tuple(settings.friendly_names.items()), settings.on_missing, settings.nameid_value, schema)
    hit = _cache.get(full_key)
    if hit is not None:
        return hit
    compiled = compile_release(attributes=settings.attributes, attribute_formats=settings.attribute_formats,
                               friendly_names=settings.friendly_names, on_missing=settings.on_missing,
                               nameid_value=settings.nameid_value, schema=schema)
    with _cache_lock:
        if len(_cache) > 2000:
            _cache.clear()
        _cache[full_key] = compiled
    return compiled


@dataclass(frozen=True, slots=True)
class Subject:
    """Everything a release reads: the user's fields (services.users.user_fields), the session, the app."""

    fields: Mapping[str, object]
    amr: tuple[str, ...] = ()
    auth_time: datetime | None = None
    mfa: bool = False
    app_slug: str = ""
    app_name: str = ""
    entity_id: str = ""

    def source_value(self, name: str) -> object:
        return list(self.amr) if name == "amr" else self.fields.get(name)

    def activation(self, schema: Schema) -> dict[str, Any]:
        """The variables a formula sees (an unset admin-defined field is absent from `user`)."""
        user = user_activation(schema, self.fields)
        app = {"slug": self.app_slug, "name": self.app_name, "entity_id": self.entity_id}
        session = {"amr": list(self.amr), "mfa": self.mfa}
        if self.auth_time is not None:
            session["auth_time"] = activation_value(FieldType.TIMESTAMP, self.auth_time)
        assert set(app) == set(APP_MEMBERS) and set(session) <= set(SESSION_MEMBERS)
        return {"user": user, "app": app, "session": session}


def values_of(raw: object) -> tuple[str, ...]:
    """A field or formula value as attribute values: None / "" / [] are no value; bool as true/false."""
    if raw is None:
        return ()
    if isinstance(raw, bool):
        return ("true" if raw else "false",)
    if isinstance(raw, list | tuple | set | frozenset):
        out = tuple(str(v) for v in raw if v not in (None, ""))
        return tuple(v for v in out if is_clean_text(v))[:MAX_VALUES]
    text = str(raw)
    return (text,) if text and is_clean_text(text) else ()   # XML could not carry it: no value


@dataclass(frozen=True, slots=True)
class ReleasedAttribute:
    name: str
    name_format: str
    friendly_name: str | None
    values: tuple[str, ...]
    source: str                       # Source.label: what the value came from (preview, app page)


@dataclass(frozen=True, slots=True)
class Release:
    attributes: tuple[ReleasedAttribute, ...]
    nameid_value: str | None          # None: the app's NameID field / pairwise ID applies
    omitted: tuple[tuple[str, str], ...]   # (attribute name, why) left out (on_missing = omit)


def _evaluate(source: Source, subject: Subject, schema: Schema, cache: dict[str, Any]) -> tuple[tuple[str, ...], str]:
    """(values, why-empty) of a source for a subject."""
    if source.formula is None:
        assert source.field is not None
        values = values_of(subject.source_value(source.field))
        return values, "" if values else f"{source.field} has no value for this user"
    if "evaluation" not in cache:   # the user's data converted once, one work budget for the sign-in
        cache["evaluation"] = Evaluation(subject.activation(schema))
    try:
        values = values_of(source.formula.evaluate(cache["evaluation"]))
    except FormulaUnavailable as exc:
        return (), f"formula failed: {exc}"
    return values, "" if values else "the formula gave no value"


def release(compiled: CompiledRelease, subject: Subject, schema: Schema, *, only: Iterable[str] | None = None,
            with_nameid: bool = True) -> Release:
    """Evaluate an app's release for one subject. `only` restricts the attributes evaluated (by name)."""
    wanted = None if only is None else set(only)
    cache: dict[str, Any] = {}
    out, omitted = [], []
    for rule in compiled.rules:
        if wanted is not None and rule.name not in wanted:
            continue
        values, why = _evaluate(rule.source, subject, schema, cache)
        if not values:
            if compiled.deny_on_missing:
                raise AttributeUnavailable(rule.name, why)
            omitted.append((rule.name, why))
            continue
        out.append(ReleasedAttribute(rule.name, rule.name_format, rule.friendly_name, values, rule.source.label))
    nameid_value = None
    if with_nameid and compiled.nameid is not None:
        values, why = _evaluate(compiled.nameid, subject, schema, cache)
        if len(values) != 1:
            raise AttributeUnavailable("NameID", why or "the NameID formula gave several values")
        nameid_value = values[0]
    return Release(tuple(out), nameid_value, tuple(omitted))
