"""The type checker of attribute formulas: walks the parsed CEL tree against the variables of the field schema
(Schema.formula_variables()) and refuses, with the position of the offending token, whatever it cannot prove
well-typed: unknown variables, members and functions, wrong argument types or counts, mismatched operands, a
non-bool condition, a result that is not a string, a list of strings, a bool, an int or a timestamp. What it
does not understand it refuses (a safe default): uint and bytes literals, message construction, dyn values used
where a type is needed, iterating over anything but a list or a map.

Types: string, int, double, bool, null, timestamp, dyn, list(T), map(K, V), and the three records `user`, `app`,
`session` (known members only; a record is not a value by itself). `[]` and `{}` have an "empty" element type
that joins with anything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .cel_parse import (
    Binary,
    Call,
    Cond,
    Ident,
    Index,
    ListLit,
    Literal,
    MapLit,
    Node,
    Select,
    Unary,
    children,
    count_nodes,
)
from .formula_errors import FormulaError
from .schema import FieldType

MAX_MACRO_NESTING = 2
MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
# (function name, constant pattern) -> what is wrong with the pattern, or "" when it compiles
RegexValidator = Callable[[str, str], str]


@dataclass(frozen=True, slots=True)
class Type:
    kind: str                 # string int double bool null timestamp dyn empty list map record
    elem: Type | None = None  # list element, map value
    key: Type | None = None   # map key
    name: str = ""            # record name

    def __str__(self) -> str:
        if self.kind == "list":
            return "list" if self.elem is None or self.elem.kind == "empty" else f"list({self.elem})"
        if self.kind == "map":
            if self.key is None or self.key.kind == "empty":
                return "map"
            return f"map({self.key}, {self.elem})"
        if self.kind == "record":
            return self.name
        return self.kind


STRING, INT, DOUBLE, BOOL = Type("string"), Type("int"), Type("double"), Type("bool")
NULL, TIMESTAMP, DYN, EMPTY = Type("null"), Type("timestamp"), Type("dyn"), Type("empty")
LIST_STRING = Type("list", STRING)

FIELD_TYPES: dict[FieldType, Type] = {
    FieldType.STRING: STRING, FieldType.LIST: LIST_STRING, FieldType.BOOL: BOOL, FieldType.DATE: TIMESTAMP,
    FieldType.INT: INT, FieldType.TIMESTAMP: TIMESTAMP,
}
RESULT_TYPES = "a string, a list of strings, a bool, an int or a timestamp"


def _join(a: Type, b: Type) -> Type | None:
    """The common type of two values that may stand in the same place (list items, ?: branches), or None."""
    if a == b:
        return a
    if a.kind == "empty":
        return b
    if b.kind == "empty":
        return a
    if a.kind == "null" and b.kind != "record":
        return b
    if b.kind == "null" and a.kind != "record":
        return a
    if a.kind == "list" and b.kind == "list" and a.elem is not None and b.elem is not None:
        elem = _join(a.elem, b.elem)
        return Type("list", elem) if elem is not None else None
    if a.kind == "map" and b.kind == "map" and None not in (a.key, a.elem, b.key, b.elem):
        assert a.key and a.elem and b.key and b.elem
        key, value = _join(a.key, b.key), _join(a.elem, b.elem)
        return Type("map", value, key) if key is not None and value is not None else None
    return None


def _comparable(a: Type, b: Type) -> bool:
    """May `a == b` be asked (CEL does not coerce: int and double, string and int are not comparable)."""
    return "dyn" in (a.kind, b.kind) or _join(a, b) is not None


@dataclass(frozen=True, slots=True)
class _Fn:
    receivers: tuple[str, ...]            # str(Type) of the accepted receivers ("list(string)", "string", ...)
    args: tuple[Type, ...] = ()           # required arguments after the receiver
    optional: tuple[Type, ...] = ()       # optional arguments after those
    result: Type | None = STRING          # None: the result is the receiver's type... (not used)
    method: bool = True                   # callable as receiver.f(...)
    free: bool = True                     # callable as f(receiver, ...)
    constant: tuple[int, ...] = ()        # indexes (after the receiver) of arguments that must be string literals


FUNCTIONS: dict[str, _Fn] = {
    # the interpreter's own
    "size": _Fn(("string", "list", "map"), result=INT),
    "contains": _Fn(("string",), (STRING,), result=BOOL, free=False),
    "startsWith": _Fn(("string",), (STRING,), result=BOOL, free=False),
    "endsWith": _Fn(("string",), (STRING,), result=BOOL, free=False),
    "matches": _Fn(("string",), (STRING,), result=BOOL, free=False, constant=(0,)),
    "string": _Fn(("string", "int", "double", "timestamp"), result=STRING, method=False),
    "int": _Fn(("int", "double", "string"), result=INT, method=False),
    "double": _Fn(("int", "double", "string"), result=DOUBLE, method=False),
    "timestamp": _Fn(("string",), result=TIMESTAMP, method=False),
    # ours (cel_functions)
    "lower": _Fn(("string",)),
    "upper": _Fn(("string",)),
    "trim": _Fn(("string",)),
    "split": _Fn(("string",), (STRING,), result=LIST_STRING),
    "join": _Fn(("list(string)",), (), (STRING,)),
    "substring": _Fn(("string",), (INT,), (INT,)),
    "replace": _Fn(("string",), (STRING, STRING)),
    "regexReplace": _Fn(("string",), (STRING, STRING), constant=(0,)),
    "date": _Fn(("timestamp",)),
}


@dataclass
class Analysis:
    """What the checker learnt, for the emitter: the result type, which `+` join strings or lists (capped by
    _concat), the cost of one iteration of each macro (its body's nodes and references to the variables),
    the constant regular expressions."""

    result: Type
    concat: set[int] = field(default_factory=set)
    macros: dict[int, tuple[int, int]] = field(default_factory=dict)
    regexes: list[str] = field(default_factory=list)


class _Checker:
    def __init__(self, variables: Mapping[str, Mapping[str, FieldType]], validate_regex: RegexValidator) -> None:
        self.records = {name: {m: FIELD_TYPES[t] for m, t in members.items()} for name, members in variables.items()}
        self.scope: dict[str, Type] = {}
        self.macro_depth = 0
        self.analysis = Analysis(NULL)
        self.validate_regex = validate_regex

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def error(node: Node, message: str) -> FormulaError:
        return FormulaError(message, node.line, node.column)

    @staticmethod
    def error_at_start(node: Node, message: str) -> FormulaError:
        """An error about a whole sub-expression, at its first token."""
        return FormulaError(message, *start(node))

    def value(self, node: Node) -> Type:
        """The type of a node used as a value (a bare record is not one)."""
        t = self.check(node)
        if t.kind == "record":
            raise self.error(node, f"{t.name} is not a value by itself: use one of its fields, e.g. "
                                   f"{t.name}.{next(iter(self.records[t.name]), 'x')}")
        return t

    def expect(self, node: Node, wanted: Type, what: str) -> Type:
        t = self.value(node)
        if t != wanted and not (wanted.kind == "list" and t.kind == "list" and t.elem == EMPTY):
            raise self.error_at_start(node, f"{what} must be {_a(wanted)}, not {_a(t)}")
        return t

    # ------------------------------------------------------------------ nodes
    def check(self, node: Node) -> Type:
        if isinstance(node, Literal):
            return self.literal(node)
        if isinstance(node, Ident):
            return self.ident(node)
        if isinstance(node, Select):
            assert node.operand is not None
            return self.select(node, self.check(node.operand))
        if isinstance(node, Index):
            return self.index(node)
        if isinstance(node, Call):
            return self.call(node)
        if isinstance(node, ListLit):
            return self.list_literal(node)
        if isinstance(node, MapLit):
            return self.map_literal(node)
        if isinstance(node, Unary):
            return self.unary(node)
        if isinstance(node, Binary):
            return self.binary(node)
        if isinstance(node, Cond):
            return self.conditional(node)
        raise self.error(node, "unsupported expression")  # pragma: no cover - every parser node is handled

    def literal(self, node: Literal) -> Type:
        if node.kind == "uint":
            raise self.error(node, "unsigned integers are not supported: write the number without u")
        if node.kind == "bytes":
            raise self.error(node, "bytes literals are not supported")
        return {"string": STRING, "int": INT, "double": DOUBLE, "bool": BOOL, "null": NULL}[node.kind]

    def ident(self, node: Ident) -> Type:
        if node.name in self.scope:
            return self.scope[node.name]
        if node.name in self.records:
            return Type("record", name=node.name)
        if node.name in FUNCTIONS or node.name in MACROS or node.name == "has":
            raise self.error(node, f"{node.name} is a function: call it with ()")
        raise self.error(node, f"unknown variable {node.name!r} (formulas see {_names(self.records)})")

    def select(self, node: Select, operand: Type) -> Type:
        if operand.kind == "record":
            members = self.records[operand.name]
            if node.field not in members:
                raise self.error(node, f"{operand.name} has no field {node.field!r}")
            return members[node.field]
        if operand.kind == "map" and operand.key is not None and operand.key.kind in {"string", "empty"}:
            return operand.elem or DYN
        raise self.error(node, f"{operand} has no field {node.field!r}")

    def index(self, node: Index) -> Type:
        assert node.operand is not None and node.index is not None
        operand = self.check(node.operand)
        if operand.kind == "record":
            if not (isinstance(node.index, Literal) and node.index.kind == "string"):
                raise self.error_at_start(node.index, f"{operand.name}[...] takes a field name in quotes")
            if node.index.value not in self.records[operand.name]:
                raise self.error(node.index, f"{operand.name} has no field {node.index.value!r}")
            return self.records[operand.name][node.index.value]
        if operand.kind == "list":
            self.expect(node.index, INT, "a list index")
            return operand.elem if operand.elem is not None and operand.elem.kind != "empty" else DYN
        if operand.kind == "map":
            key = self.value(node.index)
            if operand.key is not None and not _comparable(key, operand.key):
                raise self.error(node.index, f"the map's keys are {_a(operand.key)}, not {_a(key)}")
            return operand.elem if operand.elem is not None and operand.elem.kind != "empty" else DYN
        raise self.error(node, f"{_a(operand)} cannot be indexed with [...]")

    def list_literal(self, node: ListLit) -> Type:
        elem = EMPTY
        for item in node.items:
            t = self.value(item)
            joined = _join(elem, t)
            if joined is None:
                raise self.error_at_start(item, f"list items have different types: {elem} and {t}")
            elem = joined
        return Type("list", elem)

    def map_literal(self, node: MapLit) -> Type:
        key, value = EMPTY, EMPTY
        for k, v in node.entries:
            kt = self.value(k)
            if kt.kind not in {"string", "int", "bool"}:
                raise self.error_at_start(k, f"a map key must be a string, an int or a bool, not {_a(kt)}")
            joined = _join(key, kt)
            if joined is None:
                raise self.error_at_start(k, f"map keys have different types: {key} and {kt}")
            key = joined
            vt = self.value(v)
            value = _join(value, vt) or DYN
        return Type("map", value, key)

    def unary(self, node: Unary) -> Type:
        assert node.operand is not None
        t = self.value(node.operand)
        if node.op == "!":
            if t != BOOL:
                raise self.error(node, f"! needs a bool, not {_a(t)}")
            return BOOL
        if t.kind not in {"int", "double"}:
            raise self.error(node, f"- needs an int or a double, not {_a(t)}")
        return t

    def binary(self, node: Binary) -> Type:
        assert node.left is not None and node.right is not None
        left, right, op = self.value(node.left), self.value(node.right), node.op
        if op in {"&&", "||"}:
            for side, t in ((node.left, left), (node.right, right)):
                if t != BOOL:
                    raise self.error_at_start(side, f"{op} needs bools, not {_a(t)}")
            return BOOL
        if op in {"==", "!="}:
            if not _comparable(left, right):
                raise self.error(node, f"cannot compare {_a(left)} with {_a(right)}")
            return BOOL
        if op in {"<", "<=", ">", ">="}:
            if left != right or left.kind not in {"int", "double", "string", "timestamp", "bool"}:
                raise self.error(node, f"cannot order {_a(left)} and {_a(right)} with {op}")
            return BOOL
        if op == "in":
            if right.kind == "list":
                if right.elem is not None and not _comparable(left, right.elem):
                    raise self.error(node, f"cannot look for {_a(left)} in {_a(right)}")
                return BOOL
            if right.kind == "map":
                if right.key is not None and not _comparable(left, right.key):
                    raise self.error(node, f"cannot look for {_a(left)} among the keys of {_a(right)}")
                return BOOL
            raise self.error(node, f"`in` needs a list or a map on its right, not {_a(right)}")
        if op == "+":
            if left.kind in {"int", "double", "string"} and left == right:
                if left == STRING:
                    self.analysis.concat.add(id(node))
                return left
            if left.kind == "list" and right.kind == "list":
                joined = _join(left, right)
                if joined is None:
                    raise self.error(node, f"cannot add {_a(left)} and {_a(right)}")
                self.analysis.concat.add(id(node))
                return joined
            raise self.error(node, f"cannot add {_a(left)} and {_a(right)} (convert with string() or int())")
        kinds = {"int", "double"} if op != "%" else {"int"}
        if left != right or left.kind not in kinds:
            raise self.error(node, f"{op} needs two {' or two '.join(sorted(k + 's' for k in kinds))}, "
                                   f"not {_a(left)} and {_a(right)}")
        return left

    def conditional(self, node: Cond) -> Type:
        assert node.cond is not None and node.then is not None and node.otherwise is not None
        cond = self.value(node.cond)
        if cond != BOOL:
            raise self.error_at_start(node.cond, f"the condition of ?: must be a bool, not {_a(cond)}")
        then, otherwise = self.value(node.then), self.value(node.otherwise)
        joined = _join(then, otherwise)
        if joined is None:
            raise self.error(node, f"the branches of ?: have different types: {then} and {otherwise}")
        return joined

    # ------------------------------------------------------------------ calls
    def call(self, node: Call) -> Type:
        if node.name == "has" and node.target is None:
            return self.has(node)
        if node.name in MACROS:
            if node.target is None:
                raise self.error(node, f"{node.name}() is a method: write list.{node.name}(x, ...)")
            return self.macro(node)
        receiver = self.value(node.target) if node.target is not None else None
        fn = FUNCTIONS.get(node.name)
        if fn is None:
            raise self.error(node, f"unknown function {node.name!r}")
        if node.target is not None:
            if not fn.method:
                raise self.error(node, f"{node.name}() is not a method: write {node.name}(x)")
            receiver_node, args = node.target, node.args
        else:
            if not fn.free:
                raise self.error(node, f"{node.name}() is a method: write x.{node.name}(...)")
            if not node.args:
                raise self.error(node, f"{node.name}() needs an argument")
            receiver_node, args = node.args[0], node.args[1:]
        if receiver is None:
            receiver = self.value(receiver_node)
        accepted = str(receiver) in fn.receivers or receiver.kind in fn.receivers \
            or (receiver == Type("list", EMPTY) and any(r.startswith("list") for r in fn.receivers))
        if not accepted:
            message = (f"{node.name}() is not defined on {_a(receiver)} (it takes "
                       f"{' or '.join(_a_name(r) for r in fn.receivers)})")
            raise self.error_at_start(receiver_node, message) if node.target is None else self.error(node, message)
        low, high = len(fn.args), len(fn.args) + len(fn.optional)
        if not low <= len(args) <= high:
            count = f"{low}" if low == high else f"{low} or {high}" if high == low + 1 else f"{low} to {high}"
            raise self.error(node, f"{node.name}() takes {count} argument{'s' if high != 1 else ''}"
                                   f"{' after the value' if node.target is None else ''}, not {len(args)}")
        for k, (arg, wanted) in enumerate(zip(args, fn.args + fn.optional, strict=False)):
            self.expect(arg, wanted, f"argument {k + 1} of {node.name}()")
            if k in fn.constant:
                if not (isinstance(arg, Literal) and arg.kind == "string"):
                    raise self.error_at_start(arg, f"the pattern of {node.name}() must be a constant string")
                problem = self.validate_regex(node.name, arg.value)
                if problem:
                    raise self.error(arg, f"invalid regular expression: {problem}")
                self.analysis.regexes.append(arg.value)
        return fn.result or receiver

    def has(self, node: Call) -> Type:
        if len(node.args) != 1 or not isinstance(node.args[0], Select):
            raise self.error(node, "has() takes one field selection, e.g. has(user.department)")
        arg = node.args[0]
        assert arg.operand is not None
        operand = self.check(arg.operand)
        if operand.kind not in {"record", "map"}:
            raise self.error(arg, f"has() needs a field of user, app, session or a map, not of {_a(operand)}")
        self.select(arg, operand)
        return BOOL

    def macro(self, node: Call) -> Type:
        assert node.target is not None
        n = len(node.args)
        if n not in ((2, 3) if node.name == "map" else (2,)):
            wanted = "an expression (or a condition and an expression)" if node.name == "map" else "a condition"
            raise self.error(node, f"{node.name}() takes a variable name and {wanted}")
        var = node.args[0]
        if not isinstance(var, Ident):
            raise self.error(var, f"the first argument of {node.name}() must be a variable name")
        if var.name in self.records or var.name in self.scope or var.name.startswith("_"):
            raise self.error(var, f"{var.name!r} cannot name the variable of {node.name}(): choose another name")
        target = self.value(node.target)
        if target.kind == "list":
            elem = target.elem if target.elem is not None and target.elem.kind != "empty" else DYN
        elif target.kind == "map":
            elem = target.key if target.key is not None and target.key.kind != "empty" else DYN
        else:
            raise self.error(node, f"{node.name}() needs a list or a map, not {_a(target)}")
        self.macro_depth += 1
        if self.macro_depth > MAX_MACRO_NESTING:
            raise self.error(node, f"list macros (all, exists, exists_one, map, filter) nest at most "
                                   f"{MAX_MACRO_NESTING} deep")
        self.scope[var.name] = elem
        try:
            body = node.args[1:]
            if node.name == "map":
                if n == 3:
                    self.expect(body[0], BOOL, f"the condition of {node.name}()")
                out = self.value(body[-1])
                if out.kind == "record":  # pragma: no cover - value() refuses records
                    raise self.error(body[-1], "not a value")
                result = Type("list", out)
            else:
                self.expect(body[0], BOOL, f"the condition of {node.name}()")
                result = Type("list", elem) if node.name == "filter" else BOOL
        finally:
            del self.scope[var.name]
            self.macro_depth -= 1
        nodes = sum(count_nodes(b) for b in body)
        refs = sum(_variable_refs(b, self.records) for b in body)
        self.analysis.macros[id(node)] = (nodes, refs)
        return result


def start(node: Node) -> tuple[int, int]:
    """The position of a sub-expression's first token."""
    while True:
        if isinstance(node, Select | Index) and node.operand is not None:
            node = node.operand
        elif isinstance(node, Call) and node.target is not None:
            node = node.target
        elif isinstance(node, Binary) and node.left is not None:
            node = node.left
        elif isinstance(node, Cond) and node.cond is not None:
            node = node.cond
        else:
            return node.line, node.column


def _variable_refs(node: Node, records: Mapping[str, object]) -> int:
    own = 1 if isinstance(node, Ident) and node.name in records else 0
    return own + sum(_variable_refs(c, records) for c in children(node))


def check(root: Node, variables: Mapping[str, Mapping[str, FieldType]],
          validate_regex: RegexValidator | None = None) -> Analysis:
    """Type-check a parsed formula; raise FormulaError at the offending token."""
    checker = _Checker(variables, validate_regex or (lambda _function, _pattern: ""))
    result = checker.value(root)
    allowed = result in (STRING, LIST_STRING, BOOL, INT, TIMESTAMP, NULL) or result == Type("list", EMPTY)
    if not allowed:
        raise FormulaError(f"a formula must give {RESULT_TYPES}, not {_a(result)}", root.line, root.column)
    checker.analysis.result = result
    return checker.analysis


def _a(t: Type) -> str:
    s = str(t)
    if t.kind in {"null", "record"}:
        return s
    return ("an " if s[0] in "aeiou" else "a ") + s


def _a_name(s: str) -> str:
    return s if s in {"null"} else ("an " if s[0] in "aeiou" else "a ") + s


def _names(records: Mapping[str, object]) -> str:
    return ", ".join(records)
