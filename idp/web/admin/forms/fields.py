"""The user fields page's form (a new field) and the user page's field values form. The rules (names, types,
values, uniqueness) are the user fields service's: its refusals are shown next to each field."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from idp.attributes.schema import FieldType
from idp.models import UserField
from idp.web.admin.forms.base import AdminForm, FlagField, TextField

VALUE_PREFIX = "field_"   # input name of a user field's value: field_<name> (no clash with csrf_token & co)
SHOWN = "shown"           # one hidden input per field the page showed, its value the field's name


class NewFieldForm(AdminForm):
    name = TextField(limit=100)
    type = TextField(limit=20, default=str(FieldType.STRING))
    unique = FlagField(true_values=("1",))
    label = TextField(limit=200)


class FieldValuesForm(AdminForm):
    """The values of the admin-defined fields on the user page: inputs named field_<name>; only the CSRF token is
    a declared field, the values are read against the current field definitions."""

    @staticmethod
    def changes(formdata: Any, fields: Sequence[UserField], current: Mapping[str, Any]) -> dict[str, str | None]:
        """{name: raw text or None} for every field the page showed (hidden `shown` inputs name them, so a field
        added since the page was loaded is left alone): text as typed ("" clears), a bool checkbox as true/false,
        except that an unchecked box leaves an unset bool unset."""
        shown = set(formdata.getlist(SHOWN))
        values: dict[str, str | None] = {}
        for f in fields:
            if f.name not in shown:
                continue
            key = VALUE_PREFIX + f.name
            if f.type == FieldType.BOOL:
                checked = formdata.get(key) == "1"
                if checked or f.name in current:
                    values[f.name] = "true" if checked else "false"
            else:
                values[f.name] = str(formdata.get(key, ""))[:8192]
        return values
