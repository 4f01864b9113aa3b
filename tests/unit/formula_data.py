"""A field schema and an activation shared by the formula tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from idp.attributes.formula import user_activation
from idp.attributes.schema import FieldDef, FieldType, Schema

SCHEMA = Schema(custom=(
    FieldDef("department", FieldType.STRING, "Department"),
    FieldDef("federation_id", FieldType.STRING, "Federation ID", unique=True),
    FieldDef("roles", FieldType.LIST, "Roles"),
    FieldDef("contractor", FieldType.BOOL, "Contractor"),
    FieldDef("hired", FieldType.DATE, "Hired"),
    FieldDef("manager", FieldType.STRING, "Manager"),
))


def activation(**user: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "username": "alice", "email": "Alice@Example.ORG", "first_name": "Alice", "last_name": "Liddell",
        "display_name": "Alice Liddell", "id": "u-1", "groups": ["aws-admin", "staff", "aws-dev"],
        "department": "  Research  ", "roles": ["editor", "viewer"], "contractor": False, "hired": "2021-03-04",
    }
    values.update(user)
    return {
        "user": user_activation(SCHEMA, values),
        "app": {"slug": "wiki", "name": "Team wiki", "entity_id": "https://wiki.example.com/sp"},
        "session": {"amr": ["pwd", "otp"], "auth_time": datetime(2024, 5, 1, 8, 30, 15, tzinfo=UTC), "mfa": True},
    }
