"""Admin-defined user fields: their definitions (add, list, remove) and each user's values, parsed by type and
claimed in user_field_unique when the field is unique.

Values are stored in User.custom_fields as JSON: string → str, list → [str, ...] (never empty), bool → true/false,
date → "YYYY-MM-DD". An unset field is absent. Text forms of values (CLI, CSV, console) are parsed by
`parse_value` and written by `format_value`, which round-trip.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import date
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from .. import audit
from ..attributes.formula import FormulaError, compile_formula
from ..attributes.release import parse_source
from ..attributes.schema import CUSTOM_FIELD_TYPES, FIELD_NAME, RESERVED_NAMES, FieldType
from ..extensions import db
from ..models import ConnectedApp, User, UserField, UserFieldUnique
from ..text import is_clean_text
from . import ServiceError
from .accounts import FormErrors
from .field_schema import current_schema, invalidate_schema
from .users import touch

MAX_STRING = 1024          # characters of a string value or of one list item
MAX_LIST_ITEMS = 256
MAX_LABEL = 150
MAX_CLAIM = 512            # user_field_unique.value; longer normalised values are stored as their SHA-256
TRUE_WORDS = frozenset({"true", "yes", "1"})
FALSE_WORDS = frozenset({"false", "no", "0"})
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

RawValue = str | bool | list[str] | None


# ---------------------------------------------------------------- definitions

def find_field(name: str) -> UserField | None:
    return db.session.scalar(select(UserField).where(UserField.name == name))


def get_field(name: str) -> UserField:
    row = find_field(name)
    if row is None:
        raise ServiceError(f"no user field {name!r} (see `idp fields list`)", field="name")
    return row


def list_fields() -> list[UserField]:
    return list(db.session.scalars(select(UserField).order_by(UserField.name)))


def _has_control(text: str) -> bool:
    """Control characters, or anything else XML cannot carry (idp.text): such a value could not be released."""
    return not is_clean_text(text)


def add_field(name: str, type: str, unique: bool = False, label: str = "") -> UserField:  # noqa: A002
    """Define a field (no user has a value yet, so a unique one conflicts with nothing)."""
    name = name.strip()
    label = label.strip()
    if not FIELD_NAME.fullmatch(name):
        raise ServiceError(f"field name {name!r} is not valid: a lower-case letter, then lower-case letters, "
                           "digits and _ (at most 63)", field="name")
    if name in RESERVED_NAMES:
        raise ServiceError(f"field name {name!r} is reserved (a built-in field or a word formulas use)",
                           field="name")
    if type not in CUSTOM_FIELD_TYPES:
        raise ServiceError(f"field type {type!r} is not one of {', '.join(CUSTOM_FIELD_TYPES)}", field="type")
    if unique and type == FieldType.BOOL:
        raise ServiceError("a bool field cannot be unique (two values for all users)", field="unique")
    if len(label) > MAX_LABEL or _has_control(label):
        raise ServiceError(f"label must be at most {MAX_LABEL} characters, without control characters",
                           field="label")
    if find_field(name) is not None:
        raise ServiceError(f"user field {name!r} already exists", field="name")
    row = UserField(name=name, type=str(type), unique=bool(unique), label=label)
    db.session.add(row)
    try:
        db.session.flush()
    except IntegrityError:  # added at the same time elsewhere; the caller's unit of work rolls back
        raise ServiceError(f"user field {name!r} already exists", field="name") from None
    audit.record("field.add", "field", name, after={"type": str(type), "unique": bool(unique), "label": label})
    invalidate_schema()
    return row


def _mentions(source: str, name: str) -> bool:
    """A "field:" source naming the field, or a formula that reads user.NAME in any spelling (user["NAME"], escapes,
    raw or triple-quoted strings, comments): the formula engine's parse says which members it reads. A formula
    that no longer compiles (it names a field removed since) is searched for user.NAME / user["NAME"] instead."""
    kind, value = parse_source(source)
    if kind == "field":
        return value == name
    try:
        return name in compile_formula(value, current_schema(fresh=True)).reads
    except FormulaError:
        word = re.escape(name)
        return bool(re.search(rf"\buser\s*\.\s*{word}\b", value)
                    or re.search(rf"\buser\s*\[\s*(['\"]){word}\1\s*\]", value))


def apps_using_field(name: str) -> list[tuple[str, str]]:
    """(app slug, where) for every app whose released attributes or NameID value read the field."""
    found: list[tuple[str, str]] = []
    for slug, app_settings in db.session.execute(select(ConnectedApp.slug, ConnectedApp.settings)
                                                 .order_by(ConnectedApp.slug)):
        app_settings = app_settings or {}
        attributes = app_settings.get("attributes") or {}
        if isinstance(attributes, dict):
            for attr, source in attributes.items():
                if isinstance(source, str) and _mentions(source, name):
                    found.append((slug, f"attribute {attr}"))
        nameid_value = app_settings.get("nameid_value")
        if isinstance(nameid_value, str) and _mentions(nameid_value, name):
            found.append((slug, "NameID value"))
    return found


def remove_field(name: str) -> int:
    """Delete a field, its values on every user and its unique claims; returns how many users had a value.

    Refused while an app releases it (an attribute or the NameID value naming it, or a formula reading it):
    removing it would silently change what those apps receive.
    """
    row = get_field(name)
    # lock first, check second (as users.remove_group): a row lock on PostgreSQL, the write lock on SQLite
    db.session.execute(update(UserField).where(UserField.id == row.id).values(name=row.name))
    used = apps_using_field(row.name)
    if used:
        apps: dict[str, list[str]] = {}
        for slug, where in used:
            apps.setdefault(slug, []).append(where)
        listed = ", ".join(f"{slug} ({', '.join(wheres)})" for slug, wheres in apps.items())
        raise ServiceError(f"user field {row.name!r} is used by app{'s' if len(apps) > 1 else ''} {listed}; "
                           "change those apps first", field="name")
    holders = 0
    # each user's row locked while its values are rewritten (a concurrent set_user_fields is not overwritten)
    for user_id, values in db.session.execute(select(User.id, User.custom_fields).with_for_update()).all():
        if isinstance(values, dict) and row.name in values:
            rest = {k: v for k, v in values.items() if k != row.name}
            db.session.execute(update(User).where(User.id == user_id).values(custom_fields=rest))
            holders += 1
    db.session.execute(delete(UserFieldUnique).where(UserFieldUnique.field_name == row.name))
    audit.record("field.remove", "field", row.name,
                 before={"type": row.type, "unique": row.unique, "label": row.label, "users_with_value": holders})
    db.session.delete(row)
    invalidate_schema()
    return holders


# ---------------------------------------------------------------- values

def _check_text(text: str, what: str) -> str:
    if len(text) > MAX_STRING:
        raise ServiceError(f"{what} is longer than {MAX_STRING} characters")
    if _has_control(text):
        raise ServiceError(f"{what} contains control characters")
    return text


def parse_value(type_: str, raw: RawValue) -> Any:
    """The stored form of `raw` for a field of `type_`; None (unset) for None or an empty value. ServiceError
    (without a field name: the caller knows it) when `raw` is not a value of that type."""
    if raw is None:
        return None
    if type_ == FieldType.BOOL and isinstance(raw, bool):
        return raw
    if type_ == FieldType.LIST and isinstance(raw, list):
        return _parse_items(raw)
    if not isinstance(raw, str):
        raise ServiceError(f"expected a {type_} value")
    text = raw.strip()
    if not text:
        return None
    if type_ == FieldType.STRING:
        return _check_text(text, "the value")
    if type_ == FieldType.BOOL:
        word = text.lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ServiceError(f"{text[:40]!r} is not a bool (true/false, yes/no, 1/0)")
    if type_ == FieldType.DATE:
        if not _DATE.fullmatch(text):
            raise ServiceError(f"{text[:40]!r} is not a date (YYYY-MM-DD)")
        try:
            date.fromisoformat(text)
        except ValueError:
            raise ServiceError(f"{text!r} is not a real date") from None
        return text
    if type_ == FieldType.LIST:
        if text.startswith("["):
            try:
                items = json.loads(text)
            except ValueError:
                raise ServiceError("the value starts with [ but is not a JSON array of strings") from None
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise ServiceError("the value starts with [ but is not a JSON array of strings")
            return _parse_items(items)
        return _parse_items([part.strip() for part in text.split(";")])
    raise ServiceError(f"field type {type_!r} cannot hold values")


def _parse_items(items: list[Any]) -> list[str] | None:
    if len(items) > MAX_LIST_ITEMS:
        raise ServiceError(f"a list holds at most {MAX_LIST_ITEMS} items (got {len(items)})")
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ServiceError("list items must be strings")
        if item and item not in out:
            out.append(_check_text(item, "a list item"))
    return out or None


def format_value(type_: str, value: Any) -> str:
    """The text form of a stored value, which parse_value reads back to the same value ("" when unset)."""
    if value is None:
        return ""
    if type_ == FieldType.BOOL:
        return "true" if value else "false"
    if type_ == FieldType.LIST:
        items = [str(v) for v in value]
        if any(";" in i or i != i.strip() for i in items) or (items and items[0].startswith("[")):
            return json.dumps(items, ensure_ascii=False)
        return ";".join(items)
    return str(value)


def normalise_claim(value: str) -> str:
    """What user_field_unique stores for a value: case-folded; its SHA-256 when longer than the column."""
    folded = value.casefold()
    if len(folded) > MAX_CLAIM:
        return "sha256:" + hashlib.sha256(folded.encode()).hexdigest()
    return folded


def _claims(value: Any) -> list[str]:
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    return list(dict.fromkeys(normalise_claim(str(v)) for v in values))


def _holder(field_name: str, claim: str) -> int | None:
    return db.session.scalar(select(UserFieldUnique.user_id).where(UserFieldUnique.field_name == field_name,
                                                                  UserFieldUnique.value == claim))


def _taken_message(user_id: int | None) -> str:
    other = db.session.scalar(select(User.username).where(User.id == user_id)) if user_id is not None else None
    return f"this value is already held by {other}" if other else "this value is already held by another user"


def set_user_fields(user: User, values: Mapping[str, RawValue]) -> dict[str, tuple[Any, Any]]:
    """Set (or, for None or an empty value, clear) custom field values of `user`; every value is checked before
    anything changes. Returns {name: (old, new)} for what changed (audited as one `user.fields` row).

    Refused with FormErrors (field name → message) for an unknown field, a value not of the field's type, or a
    value of a unique field another user holds (case-insensitive). A unique value is claimed in user_field_unique
    (the old claim is released), so a concurrent claim by someone else fails on the primary key.
    """
    if not values:
        return {}
    if user.id is not None:
        # PostgreSQL: lock the user's row and re-read its values (a concurrent change of another field is not
        # lost), and hold the fields' definitions for share (a concurrent remove_field waits, or we see it gone)
        db.session.flush()
        db.session.refresh(user, attribute_names=["custom_fields"], with_for_update=True)
    fields = {f.name: f for f in db.session.scalars(select(UserField).where(UserField.name.in_(list(values)))
                                                    .with_for_update(read=True))}
    current = dict(user.custom_fields or {})
    errors: dict[str, str] = {}
    changed: dict[str, tuple[Any, Any]] = {}
    for name, raw in values.items():
        fdef = fields.get(name)
        if fdef is None:
            errors[name] = f"no user field {name!r} (see `idp fields list`)"
            continue
        try:
            value = parse_value(fdef.type, raw)
        except ServiceError as exc:
            errors[name] = str(exc)
            continue
        if value != current.get(name):
            changed[name] = (current.get(name), value)
    for name, (_old, new) in changed.items():
        if fields[name].unique and user.id is not None:
            for claim in _claims(new):
                holder = _holder(name, claim)
                if holder is not None and holder != user.id:
                    errors[name] = _taken_message(holder)
                    break
    if errors:
        raise FormErrors(errors)
    if not changed:
        return {}
    if user.id is None:
        db.session.flush()
    for name, (_old, new) in changed.items():
        if fields[name].unique:
            _claim(user, name, _claims(new))
        if new is None:
            current.pop(name, None)
        else:
            current[name] = new
    user.custom_fields = current  # a new dict: the JSON column is marked changed
    audit.record("user.fields", "user", user.username, before={n: old for n, (old, _new) in changed.items()},
                 after={n: new for n, (_old, new) in changed.items()})
    touch(user)
    return changed


def _claim(user: User, name: str, claims: list[str]) -> None:
    db.session.execute(delete(UserFieldUnique).where(UserFieldUnique.field_name == name,
                                                     UserFieldUnique.user_id == user.id))
    if not claims:
        return
    try:
        with db.session.begin_nested():  # a savepoint: a lost race is a clear refusal, not a broken transaction
            db.session.execute(insert(UserFieldUnique),
                               [{"field_name": name, "value": c, "user_id": user.id} for c in claims])
    except IntegrityError:
        # another user claimed it since the check above (a concurrent change or import)
        holder = next((h for c in claims if (h := _holder(name, c)) not in (None, user.id)), None)
        raise FormErrors({name: _taken_message(holder)}) from None


def custom_values_text(user: User) -> dict[str, str]:
    """Every defined field's value of `user` as text (format_value), "" when unset, in field order."""
    values = user.custom_fields or {}
    return {f.name: format_value(f.type, values.get(f.name)) for f in list_fields()}
