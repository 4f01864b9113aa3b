"""The functions attribute formulas call that the CEL interpreter lacks (lower, upper, trim, split, join,
substring, replace, regexReplace, date) and the two hidden helpers the emitter inserts (_items before every list
macro, _concat for every string or list `+`). All are bound to one evaluation's Budget: each charges for the work
it causes and caps its output (MAX_STRING characters, MAX_ITEMS items), so a hostile formula runs out of budget and
becomes FormulaUnavailable instead of running long or allocating much.

Regular expressions are RE2 (google-re2: linear time, no backtracking, bounded memory); a pattern is a constant
of the formula, compiled when the formula is saved.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import re2

MAX_STRING = 4096       # characters of any string a function builds
MAX_ITEMS = 256         # items of any list a function builds
BUDGET = 2_000_000      # work units per evaluation (see Budget): about 130 ms at worst
ITEM_COST = 40          # units per item of a list macro (the round trip through _items)
CALL_COST = 100         # units charged for each function call (a Python callback, its arguments converted)
REGEX_MAX_MEM = 1 << 23  # bytes RE2 may use for one compiled pattern


class BudgetExceeded(Exception):
    """Raised inside a function to stop the evaluation; Budget.failure says why."""


class Budget:
    """The work one evaluation may do, in units of about 60 ns of interpreter time. Measured on the interpreter:
    one iteration of a list macro costs about ITEM_COST units for passing the item to and from _items, plus its
    body's nodes, plus the size of the whole activation (cells) for every variable the body reads (the
    interpreter copies a value when it reads it); map() and filter() rebuild their result list at every
    iteration, so they cost size² more. _items charges all that before the macro runs; converting the
    activation costs its cells once."""

    def __init__(self, cells: int, limit: int = BUDGET) -> None:
        self.cells = cells
        self.left = limit - cells
        self.failure: str | None = None

    def fail(self, message: str) -> BudgetExceeded:
        self.failure = self.failure or message
        return BudgetExceeded(message)

    def charge(self, units: int) -> None:
        self.left -= units
        if self.left < 0:
            raise self.fail("the formula needs more work than a formula may do for this user")


def _regex_options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False
    options.max_mem = REGEX_MAX_MEM
    return options


@functools.lru_cache(maxsize=256)
def compile_regex(pattern: str) -> Any:
    """An RE2 pattern (raises re2.error); cached, the same few constants are used at every sign-in."""
    return re2.compile(pattern, _regex_options())


def regex_problem(pattern: str) -> str:
    """What is wrong with a regexReplace() pattern, or "" when RE2 compiles it."""
    try:
        compile_regex(pattern)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else ""
        return detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)
    return ""


def bind(budget: Budget) -> dict[str, Callable[..., Any]]:
    """The functions to register on the interpreter's context for one evaluation."""

    def string(value: Any, what: str) -> str:
        if not isinstance(value, str):
            raise budget.fail(f"{what} needs a string")
        return value

    def out(value: str) -> str:
        if len(value) > MAX_STRING:
            raise budget.fail(f"a string longer than {MAX_STRING} characters")
        budget.charge(CALL_COST + len(value))
        return value

    def lower(s: Any) -> str:
        return out(string(s, "lower()").lower())

    def upper(s: Any) -> str:
        return out(string(s, "upper()").upper())

    def trim(s: Any) -> str:
        return out(string(s, "trim()").strip())

    def split(s: Any, sep: Any) -> list[str]:
        s, sep = string(s, "split()"), string(sep, "split()")
        budget.charge(CALL_COST + len(s))
        parts = list(s[:MAX_ITEMS + 1]) if sep == "" else s.split(sep, MAX_ITEMS)
        if len(parts) > MAX_ITEMS:
            raise budget.fail(f"split() gives more than {MAX_ITEMS} items")
        return parts

    def join(items: Any, sep: Any = "") -> str:
        sep = string(sep, "join()")
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise budget.fail("join() needs a list of strings")
        size = sum(len(i) for i in items) + len(sep) * max(len(items) - 1, 0)
        if size > MAX_STRING:
            raise budget.fail(f"a string longer than {MAX_STRING} characters")
        return out(sep.join(items))

    def substring(s: Any, start: Any, end: Any = None) -> str:
        s = string(s, "substring()")
        if not isinstance(start, int) or isinstance(start, bool) or \
                (end is not None and (not isinstance(end, int) or isinstance(end, bool))):
            raise budget.fail("substring() needs int positions")
        # positions count characters (code points) and are clamped to the string: never an error
        begin = max(0, min(start, len(s)))
        stop = len(s) if end is None else max(begin, min(end, len(s)))
        return out(s[begin:stop])

    def replace(s: Any, old: Any, new: Any) -> str:
        s, old, new = string(s, "replace()"), string(old, "replace()"), string(new, "replace()")
        count = len(s) + 1 if old == "" else s.count(old)
        if len(s) + count * (len(new) - len(old)) > MAX_STRING:
            raise budget.fail(f"a string longer than {MAX_STRING} characters")
        return out(s.replace(old, new))

    def regex_replace(s: Any, pattern: Any, replacement: Any) -> str:
        s, pattern = string(s, "regexReplace()"), string(pattern, "regexReplace()")
        replacement = string(replacement, "regexReplace()")
        budget.charge(CALL_COST + len(s))
        try:
            regex = compile_regex(pattern)
        except re2.error:
            raise budget.fail("regexReplace(): invalid pattern") from None
        pieces: list[str] = []
        size, last = 0, 0
        for match in regex.finditer(s):
            piece = s[last:match.start()] + match.expand(replacement)
            size += len(piece)
            if size > MAX_STRING:
                raise budget.fail(f"a string longer than {MAX_STRING} characters")
            pieces.append(piece)
            last = match.end()
        pieces.append(s[last:])
        return out("".join(pieces))

    def matches(s: Any, pattern: Any) -> bool:
        # CEL's matches(): true when the pattern matches anywhere in the string (RE2 search)
        s, pattern = string(s, "matches()"), string(pattern, "matches()")
        budget.charge(CALL_COST + len(s))
        try:
            regex = compile_regex(pattern)
        except re2.error:
            raise budget.fail("matches(): invalid pattern") from None
        return regex.search(s) is not None

    def date(ts: Any) -> str:
        if not isinstance(ts, datetime):
            raise budget.fail("date() needs a timestamp")
        aware = ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
        return out(aware.astimezone(UTC).strftime("%Y-%m-%d"))

    def items(target: Any, nodes: Any, refs: Any, accumulates: Any) -> Any:
        # charged before the macro runs (see Budget)
        size = len(target) if isinstance(target, list | dict) else 0
        per_item = budget.cells * int(refs) + int(nodes) + ITEM_COST
        budget.charge(CALL_COST + size * per_item + (size * size if accumulates else 0))
        return target

    def concat(a: Any, b: Any) -> Any:
        if isinstance(a, str) and isinstance(b, str):
            if len(a) + len(b) > MAX_STRING:
                raise budget.fail(f"a string longer than {MAX_STRING} characters")
            return out(a + b)
        if isinstance(a, list) and isinstance(b, list):
            if len(a) + len(b) > MAX_ITEMS:
                raise budget.fail(f"a list longer than {MAX_ITEMS} items")
            budget.charge(CALL_COST + len(a) + len(b))
            return a + b
        raise budget.fail("+ needs two strings or two lists")

    return {"lower": lower, "upper": upper, "trim": trim, "split": split, "join": join, "substring": substring,
            "replace": replace, "regexReplace": regex_replace, "date": date, "_items": items, "_concat": concat,
            "_matches": matches}
