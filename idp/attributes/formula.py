"""Attribute formulas: Common Expression Language (CEL) expressions over `user`, `app` and `session`.

Contract (used by attributes.release, the CLI, the console and the preview):
- compile_formula(source, schema) -> Formula, or FormulaError (syntax or type error) carrying a 1-based line and
  column; called when an admin saves a formula, so nothing that does not compile is ever stored.
- Formula.evaluate(activation) -> str | list[str] | None, where activation is attributes.release's
  {"user": {...}, "app": {...}, "session": {...}} (values made by activation_value / user_activation); a value
  the formula needs is absent for this user (an unset custom field) or it fails at run time -> FormulaUnavailable
  (the app's on-missing setting decides).
Never `eval`, never a template engine on user data: CEL has no loops, no I/O and no access to Python objects.

Compiling: our parser (cel_parse) and type checker (cel_check) refuse with positions; the `cel` interpreter
(common-expression-language) must also compile the source (its syntax error positions are the fallback); the
program it runs is the checked tree written back by cel_emit with the budget helpers inserted.

Output: a string as is; a list of strings as several values (an empty list is None: no value); a bool as
"true"/"false"; an int in decimal; a timestamp as ISO 8601 in UTC, date only ("2024-05-01") when it is midnight
UTC (every DATE field), else "2024-05-01T08:30:00Z"; null is None.

Bounds (hostile formulas stay contained): source ≤ MAX_SOURCE characters; tree depth and bracket nesting ≤ 32;
list macros nest ≤ 2 deep; every string a function builds ≤ 4096 characters and every list ≤ 256 items, and so is
the result; each evaluation has a work budget (cel_functions.Budget) charged before every list macro runs and by
every function call, so a formula that would iterate or allocate too much stops with FormulaUnavailable. Only
plain values (dict, list, str, bool, int, float, aware datetime, None) are passed to the interpreter, at
most MAX_CELLS of them.
Worst cases measured on the development machine (2 CPUs shared with other work), with the formulas
tests/hostile/test_formula_hostile.py constructs: compiling any 2000-character formula ≤ 40 ms; evaluating
≤ about 220 ms, reached by two nested macros over 300-item list literals or over a user's hundreds of groups
(which then stop with FormulaUnavailable when the budget runs out); a legitimate
`user.groups.filter(g, g.startsWith("aws-"))` for a user in 1000 groups takes about 25 ms.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import cel

from . import cel_functions
from .cel_check import check
from .cel_emit import emit
from .cel_parse import Ident, Index, Literal, Node, Select, children, parse
from .formula_errors import FormulaError, FormulaUnavailable
from .schema import FieldType, Schema

__all__ = ["MAX_SOURCE", "Formula", "FormulaError", "FormulaUnavailable", "activation_value", "compile_formula",
           "user_activation"]

MAX_SOURCE = 2000
MAX_STRING = cel_functions.MAX_STRING
MAX_ITEMS = cel_functions.MAX_ITEMS
# The interpreter logs a WARNING each time one of our functions stops an evaluation (budget, caps): expected,
# handled (FormulaUnavailable), and not worth a log line per sign-in.
logging.getLogger("cel").setLevel(logging.ERROR)
MAX_CELLS = 50_000  # values in an activation (converting them for the interpreter costs ~2 µs each)
_POSITION = re.compile(r"<input>:(\d+):(\d+):\s*(.*)")


class Evaluation:
    """The formulas of one sign-in: the activation handed to the interpreter once, and one work budget
    (cel_functions.BUDGET) for all of them, so an app with many formulas cannot multiply the work."""

    def __init__(self, activation: Mapping[str, Any]) -> None:
        cells = _count_plain(activation, "", 0)
        self.too_large = (f"the user's data is too large for formulas (more than {MAX_CELLS} values)"
                          if cells > MAX_CELLS else "")
        self.budget = cel_functions.Budget(min(cells, MAX_CELLS))
        self.context = None if self.too_large else cel.Context(variables=dict(activation),
                                                                functions=cel_functions.bind(self.budget))


@dataclass(frozen=True)
class Formula:
    source: str
    program: Any = field(repr=False, compare=False)
    # member name -> "variable.member" for the members that may be absent (to name one in FormulaUnavailable)
    fields: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    # the checked result type: string, list, bool, int, timestamp or null (a list: several AttributeValues, never
    # a NameID; OIDC renders bool and int as JSON booleans and numbers)
    result_kind: str = "string"
    # the `user` members the formula reads (for "is this field in use?"; a computed key reads every member)
    reads: frozenset[str] = frozenset()

    @property
    def multi_valued(self) -> bool:
        return self.result_kind == "list"

    def evaluate(self, activation: Mapping[str, Any] | Evaluation) -> str | list[str] | None:
        """The formula's value for one activation; pass an Evaluation to share one conversion of the user's data
        and one work budget between the formulas of a sign-in."""
        evaluation = activation if isinstance(activation, Evaluation) else Evaluation(activation)
        if evaluation.too_large:
            raise FormulaUnavailable(evaluation.too_large)
        budget = evaluation.budget
        if budget.failure:
            raise FormulaUnavailable(budget.failure)
        try:
            value = self.program.execute(evaluation.context)
        except Exception as exc:  # the interpreter's KeyError / RuntimeError / TypeError: no value for this user
            if budget.failure:
                raise FormulaUnavailable(budget.failure) from None
            raise FormulaUnavailable(self._explain(exc)) from None
        return _output(value)

    def _explain(self, exc: Exception) -> str:
        if isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str):
            name = exc.args[0]
            if name in self.fields:
                return f"{self.fields[name]} is not set"
            return "a map key the formula reads is missing"  # the key may be user data: not repeated
        if isinstance(exc, ZeroDivisionError):
            return "division by zero"
        if isinstance(exc, OverflowError):
            return "integer overflow"
        if isinstance(exc, IndexError):
            return "list index out of range"
        return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def _count_plain(value: Any, path: str, depth: int) -> int:
    """The number of values in an activation (its size for the budget); refuses anything but plain data."""
    if depth > 8:
        raise FormulaUnavailable(f"{path or 'the activation'} nests too deeply")
    if value is None or isinstance(value, bool | int | float | str):
        return 1
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise FormulaUnavailable(f"{path} is a timestamp without a time zone")
        return 1
    if isinstance(value, list | tuple):
        return 1 + sum(_count_plain(v, f"{path}[{k}]", depth + 1) for k, v in enumerate(value))
    if isinstance(value, dict):
        total = 1
        for k, v in value.items():
            if not isinstance(k, str):
                raise FormulaUnavailable(f"{path or 'the activation'} has a key that is not a string")
            total += _count_plain(v, f"{path}.{k}" if path else k, depth + 1)
        return total
    raise FormulaUnavailable(f"{path} is not a plain value ({type(value).__name__})")


def _output(value: Any) -> str | list[str] | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise FormulaUnavailable(f"the value is longer than {MAX_STRING} characters")
        return value
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, list):
        if len(value) > MAX_ITEMS:
            raise FormulaUnavailable(f"the value has more than {MAX_ITEMS} items")
        if not all(isinstance(v, str) for v in value):
            raise FormulaUnavailable("the value is a list of something other than strings")
        if any(len(v) > MAX_STRING for v in value):
            raise FormulaUnavailable(f"a value is longer than {MAX_STRING} characters")
        return list(value) or None
    raise FormulaUnavailable(f"the value is a {type(value).__name__}, not a string")


def format_timestamp(value: datetime) -> str:
    """ISO 8601 in UTC; date only at midnight UTC (a DATE field reads back as it was stored)."""
    utc = (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).astimezone(UTC)
    if (utc.hour, utc.minute, utc.second, utc.microsecond) == (0, 0, 0, 0):
        return utc.strftime("%Y-%m-%d")
    return utc.isoformat(timespec="microseconds" if utc.microsecond else "seconds").replace("+00:00", "Z")


def _validate_regex(function: str, pattern: str) -> str:
    """matches() and regexReplace() both run on RE2 (linear time, compiled once and cached, charged to the
    budget): the interpreter's own matches() recompiles its pattern at every call, uncharged."""
    return cel_functions.regex_problem(pattern)


def user_members_read(tree: Node, schema: Schema) -> frozenset[str]:
    """The `user` fields a checked formula reads: user.f, user["f"]; any other index into `user` reads them all."""
    found: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, Select) and isinstance(node.operand, Ident) and node.operand.name == "user":
            found.add(node.field)
        elif isinstance(node, Index) and isinstance(node.operand, Ident) and node.operand.name == "user":
            if isinstance(node.index, Literal) and node.index.kind == "string":
                found.add(str(node.index.value))
            else:
                found.update(f.name for f in schema.user_fields)
        stack.extend(children(node))
    return frozenset(found)


def compile_formula(source: str, schema: Schema) -> Formula:
    if not source.strip():
        raise FormulaError("the formula is empty")
    if len(source) > MAX_SOURCE:
        raise FormulaError(f"the formula is longer than {MAX_SOURCE} characters")
    tree = parse(source)
    analysis = check(tree, schema.formula_variables(), _validate_regex)
    try:
        cel.compile(source)
    except Exception as exc:
        match = _POSITION.search(str(exc))
        if match:
            raise FormulaError(match.group(3).strip(), int(match.group(1)), int(match.group(2))) from None
        raise FormulaError(str(exc).splitlines()[0]) from None
    try:
        program = cel.compile(emit(tree, analysis))
    except Exception:  # pragma: no cover - our rewrite of a source the interpreter accepted
        raise FormulaError("the formula uses a form this version cannot run") from None
    absent = {name: f"{variable}.{name}" for variable, members in schema.formula_variables().items()
              if variable != "user" for name in members}
    absent.update({f.name: f"user.{f.name}" for f in schema.custom})
    result = analysis.result
    return Formula(source, program, absent, result_kind=result.kind if result is not None else "string",
                   reads=user_members_read(tree, schema))


# ------------------------------------------------------------------------------------------------ activation

_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


def activation_value(field_type: FieldType, raw: Any) -> Any:
    """A stored field value as a formula sees it: strings, lists of strings, bools and ints as they are; a DATE
    ("YYYY-MM-DD") as an aware datetime at midnight UTC; a TIMESTAMP as an aware datetime (naive means UTC).
    Raises ValueError for a value that does not fit its type."""
    if field_type is FieldType.STRING:
        if not isinstance(raw, str):
            raise ValueError("expected a string")
        return raw
    if field_type is FieldType.LIST:
        if not isinstance(raw, list | tuple) or not all(isinstance(v, str) for v in raw):
            raise ValueError("expected a list of strings")
        return list(raw)
    if field_type is FieldType.BOOL:
        if not isinstance(raw, bool):
            raise ValueError("expected a bool")
        return raw
    if field_type is FieldType.INT:
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise ValueError("expected an int")
        return raw
    if field_type is FieldType.DATE:
        if isinstance(raw, datetime):
            raw = raw.date()
        if isinstance(raw, date):
            return datetime(raw.year, raw.month, raw.day, tzinfo=UTC)
        match = _DATE.match(raw) if isinstance(raw, str) else None
        if not match:
            raise ValueError("expected a date YYYY-MM-DD")
        return datetime(int(match[1]), int(match[2]), int(match[3]), tzinfo=UTC)
    if field_type is FieldType.TIMESTAMP:
        if isinstance(raw, str):
            raw = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        if not isinstance(raw, datetime):
            raise ValueError("expected a timestamp")
        return raw if raw.tzinfo is not None else raw.replace(tzinfo=UTC)
    raise ValueError(f"unknown field type {field_type!r}")  # pragma: no cover - FieldType is closed


def user_activation(schema: Schema, values: Mapping[str, Any]) -> dict[str, Any]:
    """The `user` variable: every user field of the schema that has a value (None: unset, left out so that a
    formula reading it is unavailable unless guarded by has()), converted by activation_value. A stored value
    that does not fit its field's type (written before a field was re-created with another type) counts as
    unset rather than failing the sign-in."""
    out: dict[str, Any] = {}
    for f in schema.user_fields:
        raw = values.get(f.name)
        if raw is None:
            continue
        try:
            out[f.name] = activation_value(f.type, raw)
        except ValueError:
            continue
    return out
