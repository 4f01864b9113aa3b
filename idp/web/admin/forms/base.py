"""What every console form shares: the field kinds the pages post, the messages the templates show next to each
field, and `refuse`, which turns a service's refusal into those messages."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from flask_wtf import FlaskForm
from wtforms import Field, StringField
from wtforms.validators import StopValidation, ValidationError

from idp.extensions import db
from idp.services import ServiceError
from idp.services.accounts import FormErrors
from idp.web.params import TRUE_VALUES

FORM = "_form"          # key of the form-level message (not tied to one field), as the templates expect it
MAX_TEXT = 4096

Validator = Callable[[Any, Field], None]


class AdminForm(FlaskForm):
    """A console form. FlaskForm checks the CSRF token; the templates render it once per <form> element."""

    @property
    def messages(self) -> dict[str, str]:
        """The first error of each field by field name, and the form-level one under FORM."""
        out = {name: str(field.errors[0]) for name, field in self._fields.items() if field.errors}
        if self.form_errors:
            out[FORM] = str(self.form_errors[0])
        return out

    def add_error(self, name: str | None, message: str) -> None:
        """An error next to field `name`; above the form when `name` is None or no field of this form."""
        field = self._fields.get(name) if name else None
        if field is None:
            self.form_errors.append(message)
        else:
            field.errors = [*field.errors, message]


def refuse(form: AdminForm, exc: ServiceError, fields: Mapping[str, str | None] | None = None) -> None:
    """A service refused what the form asked for: undo the request's unit of work, so no partial write survives,
    then put the message next to the field the error names. `fields` maps the service's input names to this
    form's field names where they differ (None: above the form); an error naming no field goes above the form."""
    db.session.rollback()
    if isinstance(exc, FormErrors):
        for name, message in exc.errors.items():
            form.add_error(name, message)
        return
    target = exc.field
    if target is not None and fields is not None and target in fields:
        target = fields[target]
    form.add_error(target, str(exc))


# ---------------------------------------------------------------- field kinds


class TextField(StringField):
    """A text input as typed, stripped (unless strip=False) and cut to `limit` characters (None: no limit)."""

    def __init__(self, label: str | None = None, validators: Sequence[Validator] | None = None, *,
                 limit: int | None = MAX_TEXT, strip: bool = True, default: str = "", **kwargs: Any) -> None:
        def clean(value: object) -> str:
            text = str(value or "")
            text = text.strip() if strip else text
            return text if limit is None else text[:limit]

        super().__init__(label, validators, default=default, filters=[clean], **kwargs)


class FlagField(Field):
    """A checkbox or a hidden on/off value: true when the posted value is one of `true_values`."""

    def __init__(self, label: str | None = None, validators: Sequence[Validator] | None = None, *,
                 true_values: Collection[str] = TRUE_VALUES, **kwargs: Any) -> None:
        super().__init__(label, validators, default=False, **kwargs)
        self.true_values = true_values

    def process_data(self, value: object) -> None:
        self.data = bool(value)

    def process_formdata(self, valuelist: list[str]) -> None:
        self.data = bool(valuelist) and valuelist[0] in self.true_values


class ListField(Field):
    """Every value posted under one name (checkbox groups, repeated rows), each stripped and cut to `limit`;
    `keep_empty=False` drops empty values, `unique=True` drops repeats, at most `max_items` are read."""

    def __init__(self, label: str | None = None, validators: Sequence[Validator] | None = None, *,
                 limit: int = MAX_TEXT, keep_empty: bool = True, unique: bool = False, max_items: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(label, validators, default=(), **kwargs)
        self.limit, self.keep_empty, self.unique, self.max_items = limit, keep_empty, unique, max_items

    def process_data(self, value: Any) -> None:
        self.data = list(value or ())

    def process_formdata(self, valuelist: list[str]) -> None:
        values = [v.strip()[:self.limit] for v in valuelist[:self.max_items]]
        if not self.keep_empty:
            values = [v for v in values if v]
        self.data = list(dict.fromkeys(values)) if self.unique else values


# ---------------------------------------------------------------- validators


def one_of(choices: Collection[str], label: str) -> Validator:
    """The value must be one of `choices`: "<label> must be one of a, b, c"."""
    def check(form: Any, field: Field) -> None:
        if field.data not in choices:
            raise ValidationError(f"{label} must be one of {', '.join(choices)}")
    return check


def required(message: str) -> Validator:
    """A value must be given (after stripping); stops the field's other checks when it is not."""
    def check(form: Any, field: Field) -> None:
        if not field.data:
            raise StopValidation(message)
    return check


def optional(form: Any, field: Field) -> None:
    """Nothing more to check when the field was left empty."""
    if not field.data:
        raise StopValidation()


def service_rule(rule: Callable[[str], object]) -> Validator:
    """A service's own check of one value (it raises ServiceError), shown next to the field before anything is
    stored; the service applies it again when the form is saved."""
    def check(form: Any, field: Field) -> None:
        try:
            rule(field.data)
        except ServiceError as exc:
            raise ValidationError(str(exc)) from None
    return check


class ConfirmForm(AdminForm):
    """A confirmation button (delete, reset, a key step): nothing but the CSRF token."""
