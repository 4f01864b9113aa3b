"""A recursive-descent parser for the Common Expression Language (CEL) expression grammar, giving an AST whose
every node knows the line and column (1-based, in characters) of the token that names it, so the type checker can
point at the offending token. Grammar: https://github.com/google/cel-spec/blob/master/doc/langdef.md#syntax

Bounded by construction: the caller caps the source length; nesting (parentheses, lists, maps, call arguments) and
the depth of the tree are capped here (MAX_DEPTH), so neither this parser nor the interpreter recurses without
limit. Message construction (`A{f: 1}`) and leading-dot names (`.a`) are refused (not used by formulas).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .formula_errors import FormulaError

MAX_DEPTH = 32

_RESERVED = frozenset({"as", "break", "const", "continue", "else", "for", "function", "if", "import", "let",
                       "loop", "package", "namespace", "return", "var", "void", "while"})
_KEYWORDS = frozenset({"true", "false", "null", "in"})
_SIMPLE_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "`": "`", "?": "?", "a": "\a", "b": "\b", "f": "\f",
                   "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_PUNCT2 = ("==", "!=", "<=", ">=", "&&", "||")
_PUNCT1 = "()[]{}.,:?+-*/%!<>"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


# ------------------------------------------------------------------------------------------------ tokens

@dataclass(frozen=True, slots=True)
class Token:
    kind: str            # "ident", "int", "uint", "double", "string", "bytes", "punct", "eof"
    text: str            # the punctuation or identifier; the decoded value's source for literals
    line: int
    column: int
    value: Any = None    # decoded literal value


def _is_ident_start(ch: str) -> bool:
    return ch == "_" or ("a" <= ch <= "z") or ("A" <= ch <= "Z")


def _is_ident_char(ch: str) -> bool:
    return _is_ident_start(ch) or ("0" <= ch <= "9")


class _Lexer:
    def __init__(self, source: str) -> None:
        self.src = source
        self.i = 0
        self.line = 1
        self.col = 1

    def error(self, message: str, line: int | None = None, column: int | None = None) -> FormulaError:
        return FormulaError(message, line if line is not None else self.line, column if column is not None
                            else self.col)

    def _advance(self, n: int = 1) -> None:
        for _ in range(n):
            if self.src[self.i] == "\n":
                self.line += 1
                self.col = 1
            else:
                self.col += 1
            self.i += 1

    def _peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.src[j] if j < len(self.src) else ""

    def tokens(self) -> list[Token]:
        out: list[Token] = []
        while True:
            self._skip_space()
            if self.i >= len(self.src):
                out.append(Token("eof", "", self.line, self.col))
                return out
            out.append(self._token())

    def _skip_space(self) -> None:
        while self.i < len(self.src):
            ch = self.src[self.i]
            if ch in " \t\n\r\f":
                self._advance()
            elif ch == "/" and self._peek(1) == "/":
                while self.i < len(self.src) and self.src[self.i] != "\n":
                    self._advance()
            else:
                return

    def _token(self) -> Token:
        ch, line, col = self.src[self.i], self.line, self.col
        if _is_ident_start(ch):
            j = self.i
            while j < len(self.src) and _is_ident_char(self.src[j]):
                j += 1
            word = self.src[self.i:j]
            nxt = self.src[j] if j < len(self.src) else ""
            if word.lower() in {"r", "b", "rb", "br"} and nxt in {'"', "'"}:
                self._advance(len(word))
                return self._string(line, col, raw="r" in word.lower(), is_bytes="b" in word.lower())
            self._advance(len(word))
            return Token("ident", word, line, col)
        if ch.isdigit() or (ch == "." and self._peek(1).isdigit()):
            return self._number(line, col)
        if ch in {'"', "'"}:
            return self._string(line, col, raw=False, is_bytes=False)
        two = self.src[self.i:self.i + 2]
        if two in _PUNCT2:
            self._advance(2)
            return Token("punct", two, line, col)
        if ch in _PUNCT1:
            self._advance()
            return Token("punct", ch, line, col)
        raise self.error(f"unexpected character {ch!r}")

    def _number(self, line: int, col: int) -> Token:
        src, start = self.src, self.i
        j = start
        if src.startswith(("0x", "0X"), j):
            j += 2
            k = j
            while j < len(src) and src[j] in "0123456789abcdefABCDEF":
                j += 1
            if j == k:
                raise self.error("invalid hexadecimal number", line, col)
            value = int(src[k:j], 16)
            kind = "int"
        else:
            while j < len(src) and src[j].isdigit():
                j += 1
            is_double = False
            if j < len(src) - 1 and src[j] == "." and src[j + 1].isdigit():
                is_double = True
                j += 1
                while j < len(src) and src[j].isdigit():
                    j += 1
            if j < len(src) and src[j] in "eE":
                k = j + 1
                if k < len(src) and src[k] in "+-":
                    k += 1
                if k < len(src) and src[k].isdigit():
                    is_double = True
                    j = k
                    while j < len(src) and src[j].isdigit():
                        j += 1
            text = src[start:j]
            if not all(c.isascii() for c in text):
                raise self.error("invalid number", line, col)
            if is_double:
                if len(text) > 40:
                    raise self.error("number out of range", line, col)
                dvalue = float(text)
                if dvalue in (float("inf"), float("-inf")):
                    raise self.error("number out of range", line, col)
                self._advance(j - start)
                return Token("double", text, line, col, dvalue)
            if len(text) > 20:
                raise self.error("number out of range", line, col)
            value = int(text)
            kind = "int"
        if j < len(src) and src[j] in "uU":
            j += 1
            kind = "uint"
        if j < len(src) and (_is_ident_char(src[j]) or src[j] == "."
                             and j + 1 < len(src) and src[j + 1].isdigit()):
            raise self.error("invalid number", line, col)
        if value > 2**64:
            raise self.error("number out of range", line, col)
        self._advance(j - start)
        return Token(kind, src[start:j], line, col, value)

    def _string(self, line: int, col: int, *, raw: bool, is_bytes: bool) -> Token:
        quote = self.src[self.i]
        triple = self.src.startswith(quote * 3, self.i)
        delim = quote * 3 if triple else quote
        self._advance(len(delim))
        parts: list[str] = []
        while True:
            if self.i >= len(self.src):
                raise self.error("unterminated string", line, col)
            if self.src.startswith(delim, self.i):
                self._advance(len(delim))
                break
            ch = self.src[self.i]
            if ch in "\r\n" and not triple:
                raise self.error("unterminated string (a newline needs a triple-quoted string)", line, col)
            if ch == "\\" and not raw:
                parts.append(self._escape(is_bytes))
                continue
            if raw and ch == "\\" and self._peek(1) == quote and not triple:
                # a raw string still cannot contain its own quote: r"\"" is the two characters \"
                parts.append(ch + quote)
                self._advance(2)
                continue
            parts.append(ch)
            self._advance()
        text = "".join(parts)
        return Token("bytes" if is_bytes else "string", text, line, col, text)

    def _escape(self, is_bytes: bool) -> str:
        line, col = self.line, self.col
        nxt = self._peek(1)
        if nxt in _SIMPLE_ESCAPES:
            self._advance(2)
            return _SIMPLE_ESCAPES[nxt]
        if nxt in {"x", "X", "u", "U"}:
            width = {"x": 2, "X": 2, "u": 4, "U": 8}[nxt]
            digits = self.src[self.i + 2:self.i + 2 + width]
            if len(digits) != width or any(c not in "0123456789abcdefABCDEF" for c in digits):
                raise self.error(f"invalid escape \\{nxt}: expects {width} hexadecimal digits", line, col)
            code = int(digits, 16)
            if nxt in {"u", "U"} and is_bytes:
                raise self.error("\\u escapes are not allowed in bytes", line, col)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise self.error("invalid escape: not a Unicode character", line, col)
            self._advance(2 + width)
            return chr(code)
        if nxt in "0123":
            digits = self.src[self.i + 1:self.i + 4]
            if len(digits) != 3 or any(c not in "01234567" for c in digits):
                raise self.error("invalid octal escape: expects 3 octal digits", line, col)
            self._advance(4)
            return chr(int(digits, 8))
        raise self.error(f"invalid escape \\{nxt}" if nxt else "invalid escape at the end", line, col)


# ------------------------------------------------------------------------------------------------ AST

@dataclass(eq=False, slots=True)
class Node:
    line: int
    column: int
    depth: int = field(default=1, init=False)


@dataclass(eq=False, slots=True)
class Literal(Node):
    kind: str = "null"   # string, bytes, int, uint, double, bool, null
    value: Any = None


@dataclass(eq=False, slots=True)
class Ident(Node):
    name: str = ""


@dataclass(eq=False, slots=True)
class Select(Node):
    """operand.field (line/column: the field name)."""
    operand: Node | None = None
    field: str = ""


@dataclass(eq=False, slots=True)
class Index(Node):
    """operand[index] (line/column: the bracket)."""
    operand: Node | None = None
    index: Node | None = None


@dataclass(eq=False, slots=True)
class Call(Node):
    """name(args) or target.name(args) (line/column: the function name)."""
    name: str = ""
    args: list[Node] = field(default_factory=list)
    target: Node | None = None


@dataclass(eq=False, slots=True)
class ListLit(Node):
    items: list[Node] = field(default_factory=list)


@dataclass(eq=False, slots=True)
class MapLit(Node):
    entries: list[tuple[Node, Node]] = field(default_factory=list)


@dataclass(eq=False, slots=True)
class Unary(Node):
    op: str = ""
    operand: Node | None = None


@dataclass(eq=False, slots=True)
class Binary(Node):
    """left op right (line/column: the operator)."""
    op: str = ""
    left: Node | None = None
    right: Node | None = None


@dataclass(eq=False, slots=True)
class Cond(Node):
    """cond ? then : otherwise (line/column: the `?`)."""
    cond: Node | None = None
    then: Node | None = None
    otherwise: Node | None = None


def children(node: Node) -> list[Node]:
    if isinstance(node, Select | Unary):
        return [node.operand] if node.operand is not None else []
    if isinstance(node, Index):
        return [n for n in (node.operand, node.index) if n is not None]
    if isinstance(node, Call):
        return ([node.target] if node.target is not None else []) + list(node.args)
    if isinstance(node, ListLit):
        return list(node.items)
    if isinstance(node, MapLit):
        return [n for kv in node.entries for n in kv]
    if isinstance(node, Binary):
        return [n for n in (node.left, node.right) if n is not None]
    if isinstance(node, Cond):
        return [n for n in (node.cond, node.then, node.otherwise) if n is not None]
    return []


def count_nodes(node: Node) -> int:
    """The number of nodes of a tree (depth ≤ MAX_DEPTH, so the recursion is bounded)."""
    return 1 + sum(count_nodes(c) for c in children(node))


# ------------------------------------------------------------------------------------------------ parser

class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.toks = tokens
        self.pos = 0
        self.nesting = 0

    @property
    def tok(self) -> Token:
        return self.toks[self.pos]

    def _next(self) -> Token:
        tok = self.toks[self.pos]
        if tok.kind != "eof":
            self.pos += 1
        return tok

    def _is(self, text: str) -> bool:
        return self.tok.kind == "punct" and self.tok.text == text

    def _accept(self, text: str) -> Token | None:
        if self._is(text):
            return self._next()
        return None

    def _expect(self, text: str, what: str) -> Token:
        if self._is(text):
            return self._next()
        raise self._unexpected(f"expected {text!r} {what}")

    def _unexpected(self, expectation: str) -> FormulaError:
        tok = self.tok
        found = "end of the formula" if tok.kind == "eof" else repr(tok.text if tok.kind in {"punct", "ident"}
                                                                          else _token_source(tok))
        return FormulaError(f"unexpected {found}: {expectation}", tok.line, tok.column)

    def _made(self, node: Node) -> Node:
        kids = children(node)
        node.depth = 1 + max((c.depth for c in kids), default=0)
        if node.depth > MAX_DEPTH:
            raise FormulaError(f"the formula nests too deeply (more than {MAX_DEPTH} levels)", node.line,
                               node.column)
        return node

    def _enter(self, tok: Token) -> None:
        self.nesting += 1
        if self.nesting > MAX_DEPTH:
            raise FormulaError(f"the formula nests too deeply (more than {MAX_DEPTH} levels)", tok.line,
                               tok.column)

    def parse(self) -> Node:
        node = self.expr()
        if self.tok.kind != "eof":
            raise self._unexpected("expected an operator or the end of the formula")
        return node

    def expr(self) -> Node:
        self._enter(self.tok)
        try:
            cond = self.or_expr()
            q = self._accept("?")
            if q is None:
                return cond
            then = self.or_expr()
            self._expect(":", "after the `?` branch")
            otherwise = self.expr()
            return self._made(Cond(q.line, q.column, cond=cond, then=then, otherwise=otherwise))
        finally:
            self.nesting -= 1

    def _binary_chain(self, ops: tuple[str, ...], operand: Any) -> Node:
        left: Node = operand()
        while True:
            tok = self.tok
            is_op = (tok.kind == "punct" and tok.text in ops) or (tok.kind == "ident" and tok.text in ops)
            if not is_op:
                return left
            self._next()
            right = operand()
            left = self._made(Binary(tok.line, tok.column, op=tok.text, left=left, right=right))

    def or_expr(self) -> Node:
        return self._binary_chain(("||",), self.and_expr)

    def and_expr(self) -> Node:
        return self._binary_chain(("&&",), self.relation)

    def relation(self) -> Node:
        return self._binary_chain(("==", "!=", "<", "<=", ">", ">=", "in"), self.addition)

    def addition(self) -> Node:
        return self._binary_chain(("+", "-"), self.multiplication)

    def multiplication(self) -> Node:
        return self._binary_chain(("*", "/", "%"), self.unary)

    def unary(self) -> Node:
        ops: list[Token] = []
        while self._is("!") or self._is("-"):
            ops.append(self._next())
        node = self.member()
        for op in reversed(ops):
            if op.text == "-" and isinstance(node, Literal) and node.kind in {"int", "double"}:
                # fold -literal so that -9223372036854775808 is an int
                node = self._made(Literal(op.line, op.column, kind=node.kind, value=-node.value))
                continue
            node = self._made(Unary(op.line, op.column, op=op.text, operand=node))
        return node

    def member(self) -> Node:
        node = self.primary()
        while True:
            if self._accept("."):
                name = self.tok
                if name.kind != "ident":
                    raise self._unexpected("expected a field or method name after '.'")
                self._next()
                self._check_name(name)
                if self._is("("):
                    args = self._arguments()
                    node = self._made(Call(name.line, name.column, name=name.text, args=args, target=node))
                else:
                    node = self._made(Select(name.line, name.column, operand=node, field=name.text))
            elif self._is("["):
                bracket = self._next()
                index = self.expr()
                self._expect("]", "to close the index")
                node = self._made(Index(bracket.line, bracket.column, operand=node, index=index))
            elif self._is("{"):
                raise self._unexpected("message construction is not supported")
            else:
                return node

    def _check_name(self, tok: Token) -> None:
        if tok.text in _RESERVED:
            raise FormulaError(f"{tok.text!r} is a reserved word", tok.line, tok.column)

    def _arguments(self) -> list[Node]:
        self._expect("(", "")
        args: list[Node] = []
        if not self._is(")"):
            args.append(self.expr())
            while self._accept(","):
                args.append(self.expr())
        self._expect(")", "to close the argument list")
        return args

    def primary(self) -> Node:
        tok = self.tok
        if tok.kind == "ident":
            if tok.text in {"true", "false"}:
                self._next()
                return self._made(Literal(tok.line, tok.column, kind="bool", value=tok.text == "true"))
            if tok.text == "null":
                self._next()
                return self._made(Literal(tok.line, tok.column, kind="null", value=None))
            if tok.text == "in":
                raise self._unexpected("expected a value")
            self._check_name(tok)
            self._next()
            if self._is("("):
                args = self._arguments()
                return self._made(Call(tok.line, tok.column, name=tok.text, args=args))
            return self._made(Ident(tok.line, tok.column, name=tok.text))
        if tok.kind in {"int", "uint", "double", "string", "bytes"}:
            self._next()
            if tok.kind == "int" and tok.value > INT64_MAX + 1:
                raise FormulaError("number out of range", tok.line, tok.column)
            return self._made(Literal(tok.line, tok.column, kind=tok.kind, value=tok.value))
        if self._is("("):
            self._next()
            node = self.expr()
            self._expect(")", "to close the parenthesis")
            return node
        if self._is("["):
            self._next()
            items: list[Node] = []
            while not self._is("]"):
                items.append(self.expr())
                if not self._accept(","):
                    break
            self._expect("]", "to close the list")
            return self._made(ListLit(tok.line, tok.column, items=items))
        if self._is("{"):
            self._next()
            entries: list[tuple[Node, Node]] = []
            while not self._is("}"):
                key = self.expr()
                self._expect(":", "after a map key")
                entries.append((key, self.expr()))
                if not self._accept(","):
                    break
            self._expect("}", "to close the map")
            return self._made(MapLit(tok.line, tok.column, entries=entries))
        if self._is("."):
            raise self._unexpected("leading-dot names are not supported")
        raise self._unexpected("expected a value")


def _token_source(tok: Token) -> str:
    return tok.text if tok.kind not in {"string", "bytes"} else "a string"


def parse(source: str) -> Node:
    """Parse a CEL expression; raise FormulaError with the 1-based position of the offending token."""
    for k, ch in enumerate(source):
        if 0xD800 <= ord(ch) <= 0xDFFF:
            line = source.count("\n", 0, k) + 1
            raise FormulaError("invalid character", line, k - (source.rfind("\n", 0, k) + 1) + 1)
    tokens = _Lexer(source).tokens()
    node = _Parser(tokens).parse()
    _check_int_range(node)
    return node


def _check_int_range(node: Node) -> None:
    if isinstance(node, Literal) and node.kind == "int" and not INT64_MIN <= node.value <= INT64_MAX:
        raise FormulaError("number out of range", node.line, node.column)
    for child in children(node):
        _check_int_range(child)
