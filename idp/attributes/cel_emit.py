"""Writes a checked formula back as the CEL source the interpreter runs: the same expression, fully parenthesised,
with every list macro's target passed through _items (which charges the macro's cost to the evaluation's budget
before it runs) and every string or list `+` through _concat (which caps the result). Nothing else changes."""

from __future__ import annotations

from .cel_check import Analysis
from .cel_parse import Binary, Call, Cond, Ident, Index, ListLit, Literal, MapLit, Node, Select, Unary


def quote(value: str) -> str:
    """A CEL double-quoted string literal for any text."""
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def emit(node: Node, analysis: Analysis) -> str:
    if isinstance(node, Literal):
        if node.kind == "string":
            return quote(node.value)
        if node.kind == "bool":
            return "true" if node.value else "false"
        if node.kind == "null":
            return "null"
        if node.kind == "double":
            return repr(float(node.value))
        return str(int(node.value))
    if isinstance(node, Ident):
        return node.name
    if isinstance(node, Select):
        assert node.operand is not None
        return f"{emit(node.operand, analysis)}.{node.field}"
    if isinstance(node, Index):
        assert node.operand is not None and node.index is not None
        return f"{emit(node.operand, analysis)}[{emit(node.index, analysis)}]"
    if isinstance(node, Call):
        args = ", ".join(emit(a, analysis) for a in node.args)
        if node.target is None:
            return f"{node.name}({args})"
        target = emit(node.target, analysis)
        if node.name == "matches":   # RE2 through cel_functions (cached, charged), not the interpreter's engine
            return f"_matches({target}, {args})"
        if id(node) in analysis.macros:
            nodes, refs = analysis.macros[id(node)]
            accumulates = 1 if node.name in {"map", "filter"} else 0
            target = f"_items({target}, {nodes}, {refs}, {accumulates})"
        return f"{target}.{node.name}({args})"
    if isinstance(node, ListLit):
        return "[" + ", ".join(emit(i, analysis) for i in node.items) + "]"
    if isinstance(node, MapLit):
        return "{" + ", ".join(f"{emit(k, analysis)}: {emit(v, analysis)}" for k, v in node.entries) + "}"
    if isinstance(node, Unary):
        assert node.operand is not None
        return f"{node.op}({emit(node.operand, analysis)})"
    if isinstance(node, Binary):
        assert node.left is not None and node.right is not None
        left, right = emit(node.left, analysis), emit(node.right, analysis)
        if id(node) in analysis.concat:
            return f"_concat({left}, {right})"
        return f"({left} {node.op} {right})"
    if isinstance(node, Cond):
        assert node.cond is not None and node.then is not None and node.otherwise is not None
        return (f"({emit(node.cond, analysis)} ? {emit(node.then, analysis)} : "
                f"{emit(node.otherwise, analysis)})")
    raise TypeError(f"cannot emit {type(node).__name__}")  # pragma: no cover - every parser node is handled
