"""The attribute editor of an app's settings (SAML settings form, or the attributes form of an OIDC-only app): rows
of name | source (a field of the schema, or a formula) | NameFormat | FriendlyName, the on-missing choice, and (on
the SAML form) the NameID value. Each row is checked as `idp apps set` checks it (services.apps.validation), so a
formula error is shown next to its row with its line and column before anything is stored."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from wtforms import Field
from wtforms.utils import unset_value
from wtforms.validators import StopValidation, ValidationError

from idp.attributes.dictionary import NAME_FORMATS
from idp.attributes.release import FORMULA_PREFIX, ON_MISSING, parse_source
from idp.attributes.schema import FieldType, Schema
from idp.models import ConnectedApp
from idp.services import ServiceError
from idp.services.apps import CLEAR, AppSettings
from idp.services.apps.validation import validate_release_settings
from idp.services.field_schema import current_schema
from idp.web.admin.forms.base import AdminForm, TextField

FORMULA = "formula"                 # the source choice that uses the row's formula text
MAX_ROWS = 200
MAX_FORMULA = 10_000                # longer than a formula may be (2000): the compiler says so, nothing is cut
NAMEID_VALUE_CHOICES = ("default", "field", FORMULA)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class AttributeRow:
    """One row of the editor as posted (or as stored). `name_format` / `friendly_name` are None when the post did
    not carry that column at all (an older form): the app's current values are then kept."""

    name: str
    source: str                       # a field name, FORMULA, or "" (nothing chosen)
    formula: str = ""
    name_format: str | None = ""      # "" (default: uri for a name with a colon, else basic), uri, basic, unspecified
    friendly_name: str | None = ""

    @property
    def uses_formula(self) -> bool:
        return self.source == FORMULA or (not self.source and bool(self.formula))

    @property
    def stored_source(self) -> str:
        return FORMULA_PREFIX + self.formula if self.uses_formula else self.source

    @classmethod
    def of(cls, name: str, text: str, settings: AppSettings) -> AttributeRow:
        kind, value = parse_source(text)
        return cls(name, FORMULA if kind == "formula" else value, value if kind == "formula" else "",
                   settings.attribute_formats.get(name, ""), settings.friendly_names.get(name, ""))


def _column(formdata: Any, key: str, limit: int, *, strip: bool = True) -> list[str] | None:
    """The values of one column of the rows; None when the post has no such column."""
    if key not in formdata:
        return None
    return [(v.strip() if strip else _lines(v))[:limit] for v in formdata.getlist(key)]


def _lines(text: str) -> str:
    """A textarea's text with the line breaks a browser posts (CRLF) as the CLI writes them (LF)."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


class AttributeRowsField(Field):
    """The attribute table, posted as parallel lists (attr_name, attr_field, attr_formula, attr_format,
    attr_friendly) with the row numbers ticked in attr_remove; empty and removed rows left out.

    Problems are kept per row (`row_errors`, by position in `data`, so the page shows each next to its row) and
    summed up as the field's error."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.row_errors: dict[int, str] = {}
        self.formats_posted = self.friendly_posted = True
        self.schema: Schema | None = None

    def process(self, formdata: Any, data: Any = unset_value, extra_filters: Any = None) -> None:
        self.process_errors = []
        self.raw_data: list[str] = []
        self.row_errors = {}
        if formdata is None:
            self.data = [] if data is unset_value else list(data)
            return
        names = [n.strip()[:1100] for n in formdata.getlist("attr_name")]   # over 1024: refused, not cut
        count = len(names)
        sources = [s.strip()[:64] for s in formdata.getlist("attr_field")]
        formulas = _column(formdata, "attr_formula", MAX_FORMULA, strip=False)
        formats = _column(formdata, "attr_format", 20)
        friendly = _column(formdata, "attr_friendly", 300)
        removed = set(formdata.getlist("attr_remove"))
        columns = [sources] + [c for c in (formulas, formats, friendly) if c is not None]
        if any(len(c) != count for c in columns) or count > MAX_ROWS:
            # shown back as far as it came (padded), never saved: validation stops at this error
            self.process_errors.append("the attribute rows are incomplete; reload the page and try again")
        self.formats_posted, self.friendly_posted = formats is not None, friendly is not None

        def cell(column: list[str] | None, i: int) -> str | None:
            return None if column is None else column[i] if i < len(column) else ""

        rows = []
        for i, name in enumerate(names[:MAX_ROWS]):
            row = AttributeRow(name, cell(sources, i) or "", (cell(formulas, i) or "").strip(), cell(formats, i),
                               cell(friendly, i))
            if str(i) in removed or not (row.name or row.source or row.formula or row.name_format
                                         or row.friendly_name):
                continue
            rows.append(row)
        self.data = rows

    def pre_validate(self, form: Any) -> None:
        if self.process_errors:
            raise StopValidation()   # already in errors: nothing more to say about rows that did not arrive whole

    def post_validate(self, form: Any, validation_stopped: bool) -> None:
        if validation_stopped:
            return
        schema = self.schema or current_schema()
        known = {f.name for f in schema.sources}
        seen: set[str] = set()
        for i, row in enumerate(self.data):
            problem = _row_problem(row, seen, known)
            seen.add(row.name)
            if problem is None:
                problem = _service_problem(row, schema)
            if problem is not None:
                self.row_errors[i] = problem
        if self.row_errors:
            raise ValidationError("; ".join(f"row {i + 1}: {m}" for i, m in sorted(self.row_errors.items())))

    def changes(self) -> dict[str, Any]:
        """change_settings values of the table: the attribute map in row order, and the formats and friendly names
        (None when the post did not carry them: the app keeps those of the attributes it still releases)."""
        rows = list(self.data)
        return {
            "attributes": {r.name: r.stored_source for r in rows},
            "attribute_formats": {r.name: r.name_format for r in rows if r.name_format}
            if self.formats_posted else None,
            "friendly_names": {r.name: r.friendly_name for r in rows if r.friendly_name}
            if self.friendly_posted else None,
        }


def _row_problem(row: AttributeRow, seen: set[str], known: set[str]) -> str | None:
    """What is wrong with one row before the formula compiler sees it (None: nothing)."""
    label = f"attribute {row.name!r}"
    if not row.name:
        return "the row has no attribute name"
    if _CONTROL.search(row.name):
        return f"attribute name {row.name!r} contains control characters"
    if row.name in seen:
        return f"{label} is listed twice"
    if row.source == FORMULA and not row.formula:
        return f"{label}: write the formula, or choose a user field"
    if not row.source and not row.formula:
        return f"{label}: choose a user field or write a formula"
    if row.source and row.source != FORMULA and row.formula:
        return f"{label}: choose “formula” as the source, or clear the formula to use the field {row.source!r}"
    if not row.uses_formula and row.source not in known:
        return f"{label}: choose a user field ({', '.join(sorted(known))}) or a formula; {row.source!r} is none"
    if row.name_format not in (None, "", *NAME_FORMATS):
        return f"{label}: NameFormat must be one of {', '.join(NAME_FORMATS)} (or the default)"
    if row.friendly_name and _CONTROL.search(row.friendly_name):
        return f"{label}: the FriendlyName contains control characters"
    return None


def _service_problem(row: AttributeRow, schema: Schema) -> str | None:
    """The service's own check of this one row (the formula compiled and type-checked against the schema)."""
    probe = AppSettings(attributes={row.name: row.stored_source},
                        attribute_formats={row.name: row.name_format} if row.name_format else {},
                        friendly_names={row.name: row.friendly_name} if row.friendly_name else {})
    try:
        validate_release_settings(probe, schema)
    except ServiceError as exc:
        return str(exc)
    return None


def source_groups(schema: Schema) -> list[tuple[str, list[tuple[str, str]]]]:
    """The source choices of the editor, grouped: (group label, [(field name, option text)])."""
    custom = {f.name for f in schema.custom}

    def option(f: Any) -> tuple[str, str]:
        kind = {FieldType.LIST: "list", FieldType.BOOL: "yes/no", FieldType.DATE: "date"}.get(f.type)
        label = f.label if f.label and f.label.casefold() != f.name.replace("_", " ").casefold() else ""
        extra = ", ".join(x for x in (label, kind or "") if x)
        return f.name, f"{f.name} ({extra})" if extra else f.name

    builtin = [option(f) for f in schema.user_fields if f.name not in custom]
    return [(label, items) for label, items in (
        ("User fields", builtin), ("Custom fields", [option(f) for f in schema.custom]),
        ("This sign-in", [option(f) for f in schema.sources if f not in schema.user_fields]),
    ) if items]


def nameid_field_choices(schema: Schema) -> list[str]:
    """Fields a NameID value may name: one value each (a list field holds several)."""
    return [f.name for f in schema.sources if f.type != FieldType.LIST]


class ReleaseForm(AdminForm):
    """The attribute editor and the on-missing choice: the attributes form of an app without SAML settings, and
    the base of the SAML settings form (which adds the NameID value)."""

    attributes = AttributeRowsField()
    on_missing = TextField(limit=10)            # omit | deny; absent from an older form: unchanged
    extra_rows = TextField(limit=20)            # how many blank attribute rows the page showed
    add_row = TextField(limit=20)               # set by the "Add attribute row" button

    blank_rows = 1                              # blank attribute rows to show

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.schema = current_schema()
        self.attributes.schema = self.schema

    @classmethod
    def from_app(cls, app: ConnectedApp) -> ReleaseForm:
        return cls(formdata=None, data=cls.release_data(AppSettings.from_dict(app.settings)))

    @classmethod
    def release_data(cls, s: AppSettings) -> dict[str, Any]:
        """The form's values of an app's attribute release settings."""
        return {"attributes": [AttributeRow.of(name, text, s) for name, text in s.attributes.items()],
                "on_missing": s.on_missing}

    def validate_on_missing(self, field: Field) -> None:
        if field.data and field.data not in ON_MISSING:
            raise ValidationError(f"when a value is missing: must be one of {', '.join(ON_MISSING)}")

    def release_changes(self) -> dict[str, Any]:
        """change_settings arguments of the editor (after validate())."""
        return {**self.attributes.changes(), "on_missing": self.on_missing.data or None}

    def add_blank_row(self) -> None:
        """One more blank attribute row than the page showed (at most 21)."""
        shown = self.extra_rows.data or "1"
        self.blank_rows = min(int(shown) if shown.isascii() and shown.isdigit() and len(shown) <= 3 else 1, 20) + 1

    @property
    def source_groups(self) -> list[tuple[str, list[tuple[str, str]]]]:
        return source_groups(self.schema)


class SamlReleaseForm(ReleaseForm):
    """The editor plus the NameID value (SAML apps): the app's NameID field or pairwise IDs, a field, a formula."""

    nameid_value = TextField(limit=10)          # default | field | formula; absent from an older form: unchanged
    nameid_value_field = TextField(limit=64)
    nameid_value_formula = TextField(limit=MAX_FORMULA)

    @classmethod
    def release_data(cls, s: AppSettings) -> dict[str, Any]:
        data = ReleaseForm.release_data(s)
        if not s.nameid_value:
            return {**data, "nameid_value": "default"}
        kind, value = parse_source(s.nameid_value)
        return {**data, "nameid_value": kind, f"nameid_value_{kind}": value}

    def validate_nameid_value(self, field: Field) -> None:
        choice = field.data
        if not choice:
            return
        if choice not in NAMEID_VALUE_CHOICES:
            raise ValidationError(f"NameID value: choose one of {', '.join(NAMEID_VALUE_CHOICES)}")
        if choice == "field" and not self.nameid_value_field.data:
            raise ValidationError("NameID value: choose the field")
        if choice == FORMULA and not self.nameid_value_formula.data:
            raise ValidationError("NameID value: write the formula, or choose the default")
        source = self.nameid_source()
        if source is not None:
            try:
                validate_release_settings(AppSettings(nameid_value=source), self.schema)
            except ServiceError as exc:
                raise ValidationError(str(exc)) from None

    def nameid_source(self) -> str | None:
        """The NameID value as stored ("field:F" / "formula:E"), None for the default."""
        if self.nameid_value.data == "field":
            return "field:" + self.nameid_value_field.data
        if self.nameid_value.data == FORMULA:
            return FORMULA_PREFIX + _lines(self.nameid_value_formula.data)
        return None

    def release_changes(self) -> dict[str, Any]:
        """The editor's change_settings arguments and the NameID value: None keeps the current one (a form
        without the choice), CLEAR goes back to the default."""
        nameid = None if not self.nameid_value.data else (self.nameid_source() or CLEAR)
        return {**super().release_changes(), "nameid_value": nameid}

    @property
    def nameid_fields(self) -> list[str]:
        return nameid_field_choices(self.schema)
