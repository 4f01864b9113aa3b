"""The fields an app's attributes, NameID and claims may draw from: built-in user fields, admin-defined fields
(UserField rows) and what the IdP session says. One schema for field sources, formula type checking and the
console's choices.

Formulas see three variables (FORMULA_VARIABLES): `user` (every user field by name, `groups` included), `app`
(slug, name, entity_id) and `session` (amr, auth_time, mfa). A field of type DATE is a CEL timestamp (midnight
UTC) inside a formula and "YYYY-MM-DD" everywhere else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class FieldType(StrEnum):
    STRING = "string"
    LIST = "list"        # a list of strings (multi-valued: several AttributeValues, a JSON array claim)
    BOOL = "bool"
    DATE = "date"        # a calendar date, stored "YYYY-MM-DD"
    INT = "int"          # built-in only (never offered for admin-defined fields)
    TIMESTAMP = "timestamp"  # built-in only (session.auth_time)


CUSTOM_FIELD_TYPES = (FieldType.STRING, FieldType.LIST, FieldType.BOOL, FieldType.DATE)
FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


@dataclass(frozen=True, slots=True)
class FieldDef:
    name: str
    type: FieldType
    label: str = ""
    unique: bool = False
    builtin: bool = False


# The user fields every user has (services.users.user_fields gives their values; always present, maybe "").
BUILTIN_USER_FIELDS: tuple[FieldDef, ...] = (
    FieldDef("username", FieldType.STRING, "Username", unique=True, builtin=True),
    FieldDef("email", FieldType.STRING, "Email", builtin=True),
    FieldDef("first_name", FieldType.STRING, "First name", builtin=True),
    FieldDef("last_name", FieldType.STRING, "Last name", builtin=True),
    FieldDef("display_name", FieldType.STRING, "Display name", builtin=True),
    FieldDef("id", FieldType.STRING, "User id", unique=True, builtin=True),
    FieldDef("groups", FieldType.LIST, "Groups", builtin=True),
)
BUILTIN_NAMES = frozenset(f.name for f in BUILTIN_USER_FIELDS)
# Field sources read from the IdP session rather than the user ("amr": how the user signed in, RFC 8176 values).
SESSION_FIELDS: tuple[FieldDef, ...] = (
    FieldDef("amr", FieldType.LIST, "Authentication methods (session)", builtin=True),
)
# Names an admin-defined field may not take: the built-ins, the session sources, and words the CLI or formulas
# give a meaning of their own.
RESERVED_NAMES = BUILTIN_NAMES | {f.name for f in SESSION_FIELDS} | {
    "field", "formula", "user", "app", "session", "password", "is_admin", "disabled", "true", "false", "null",
    "in", "as", "break", "const", "continue", "else", "for", "function", "if", "import", "let", "loop",
    "package", "namespace", "return", "var", "void", "while",
}

# The members of `app` and `session` inside a formula.
APP_MEMBERS: dict[str, FieldType] = {"slug": FieldType.STRING, "name": FieldType.STRING,
                                     "entity_id": FieldType.STRING}
SESSION_MEMBERS: dict[str, FieldType] = {"amr": FieldType.LIST, "auth_time": FieldType.TIMESTAMP,
                                         "mfa": FieldType.BOOL}


@dataclass(frozen=True, slots=True)
class Schema:
    """The built-in and admin-defined user fields, in display order (built-ins first)."""

    custom: tuple[FieldDef, ...] = ()

    @property
    def user_fields(self) -> tuple[FieldDef, ...]:
        return BUILTIN_USER_FIELDS + self.custom

    @property
    def sources(self) -> tuple[FieldDef, ...]:
        """What a `field:` source may name: every user field and the session sources."""
        return self.user_fields + SESSION_FIELDS

    def field(self, name: str) -> FieldDef | None:
        for f in self.sources:
            if f.name == name:
                return f
        return None

    def formula_variables(self) -> dict[str, dict[str, FieldType]]:
        """The variables a formula may use and the members of each, with their types (for the type checker)."""
        return {"user": {f.name: f.type for f in self.user_fields}, "app": dict(APP_MEMBERS),
                "session": dict(SESSION_MEMBERS)}
