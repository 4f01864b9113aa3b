"""Attribute formulas: Common Expression Language (CEL) expressions over `user`, `app` and `session`.

Contract (used by attributes.release, the CLI, the console and the preview):
- compile_formula(source, schema) -> Formula, or FormulaError (syntax or type error) carrying a 1-based line and
  column; called when an admin saves a formula, so nothing that does not compile is ever stored.
- Formula.evaluate(activation) -> str | list[str] | None, where activation is attributes.release's
  {"user": {...}, "app": {...}, "session": {...}}; a value the formula needs is absent for this user (an unset
  custom field) or it fails at run time -> FormulaUnavailable (the app's on-missing setting decides).
Never `eval`, never a template engine on user data: CEL has no loops, no I/O and no access to Python objects.

FIRST VERSION: syntax checking by the interpreter only (to be replaced by the type checker).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import cel

from .schema import FieldType, Schema

MAX_SOURCE = 2000


class FormulaError(ValueError):
    """A formula refused when saved: a syntax or type error at (line, column), both 1-based."""

    def __init__(self, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(message)
        self.message, self.line, self.column = message, line, column

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.message}"


class FormulaUnavailable(Exception):
    """A formula could not produce a value for this user (a field it reads is unset, or a run-time error)."""


_POSITION = re.compile(r"<input>:(\d+):(\d+):\s*(.*)")


@dataclass(frozen=True)
class Formula:
    source: str
    program: Any = field(repr=False, compare=False)

    def evaluate(self, activation: dict[str, Any]) -> str | list[str] | None:
        try:
            value = self.program.execute(activation)
        except Exception as exc:  # the interpreter's KeyError / RuntimeError / TypeError: no value for this user
            raise FormulaUnavailable(str(exc).splitlines()[0][:200]) from None
        return _output(value)


def _output(value: Any) -> str | list[str] | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [str(_output(v)) for v in value if v is not None]
    return str(value)


def activation_value(field_type: FieldType, raw: Any) -> Any:
    """A stored field value as the interpreter sees it (a DATE as an aware datetime at midnight UTC)."""
    if field_type == FieldType.DATE and isinstance(raw, str):
        try:
            return datetime.fromisoformat(raw).replace(tzinfo=UTC)
        except ValueError:
            return raw
    if field_type == FieldType.LIST and isinstance(raw, list | tuple):
        return [str(v) for v in raw]
    return raw


def compile_formula(source: str, schema: Schema) -> Formula:
    if not source.strip():
        raise FormulaError("the formula is empty")
    if len(source) > MAX_SOURCE:
        raise FormulaError(f"the formula is longer than {MAX_SOURCE} characters")
    try:
        program = cel.compile(source)
    except Exception as exc:
        match = _POSITION.search(str(exc))
        if match:
            raise FormulaError(match.group(3).strip(), int(match.group(1)), int(match.group(2)) + 1) from None
        raise FormulaError(str(exc).splitlines()[0]) from None
    return Formula(source, program)
