"""Attribute formulas refused when saved: syntax and type errors with the exact (1-based) position of the
offending token, and the message an admin reads."""

from __future__ import annotations

import pytest

from idp.attributes.formula import FormulaError, compile_formula
from tests.unit.formula_data import SCHEMA

ERRORS = [
    # syntax
    ("1 +", 1, 4, "unexpected end of the formula"),
    ("1 +\n  ", 2, 3, "unexpected end of the formula"),
    ('"abc', 1, 1, "unterminated string"),
    ('"a\nb"', 1, 1, "unterminated string"),
    ('"bad \\q escape"', 1, 6, "invalid escape \\q"),
    ('"\\uD800"', 1, 2, "not a Unicode character"),
    ("user.email)", 1, 11, "unexpected ')'"),
    ("(user.email", 1, 12, "expected ')'"),
    ("[1, 2", 1, 6, "expected ']'"),
    ("user.", 1, 6, "field or method name"),
    ("1 # 2", 1, 3, "unexpected character '#'"),
    ("user.email ?", 1, 13, "unexpected end of the formula"),
    ("true ? 1", 1, 9, "expected ':'"),
    ("if", 1, 1, "reserved word"),
    ("user.while", 1, 6, "reserved word"),
    ("Msg{a: 1}", 1, 4, "message construction"),
    (".user", 1, 1, "leading-dot"),
    ("9223372036854775808", 1, 1, "out of range"),
    ("1e999", 1, 1, "out of range"),
    ("12abc", 1, 1, "invalid number"),
    ("", 1, 1, "empty"),
    ("   ", 1, 1, "empty"),
    # unknown names
    ("usr.email", 1, 1, "unknown variable 'usr'"),
    ("user.nonexistent", 1, 6, "user has no field 'nonexistent'"),
    ('user["nonexistent"]', 1, 6, "user has no field 'nonexistent'"),
    ("app.secret", 1, 5, "app has no field 'secret'"),
    ("session.password", 1, 9, "session has no field 'password'"),
    ("user.email.domain", 1, 12, "string has no field 'domain'"),
    ("frobnicate(user.email)", 1, 1, "unknown function 'frobnicate'"),
    ("user.email.frobnicate()", 1, 12, "unknown function 'frobnicate'"),
    ("math.greatest(1, 2)", 1, 1, "unknown variable 'math'"),
    ("lower", 1, 1, "is a function"),
    # types
    ('user.email + 1', 1, 12, "cannot add a string and an int"),
    ("1 + 1.0", 1, 3, "cannot add an int and a double"),
    ('user.groups + "x"', 1, 13, "cannot add a list(string) and a string"),
    ('"a" ? "b" : "c"', 1, 1, "condition of ?: must be a bool, not a string"),
    ('session.mfa ? "b" : 1', 1, 13, "branches of ?: have different types"),
    ("user.email && true", 1, 1, "&& needs bools"),
    ("!user.email", 1, 1, "! needs a bool"),
    ('-"x"', 1, 1, "- needs an int or a double"),
    ('user.email == 1', 1, 12, "cannot compare a string with an int"),
    ('user.email < 1', 1, 12, "cannot order"),
    ('1 in "abc"', 1, 3, "needs a list or a map"),
    ('1 in user.groups', 1, 3, "cannot look for an int in a list(string)"),
    ('"a" % "b"', 1, 5, "% needs two ints"),
    ('user.groups["x"]', 1, 13, "a list index must be an int, not a string"),
    ('user.email[0]', 1, 11, "cannot be indexed"),
    ('user[user.email]', 1, 6, "field name in quotes"),
    ('[1, "a"]', 1, 5, "list items have different types"),
    ('{[1]: 2}', 1, 2, "a map key must be a string, an int or a bool"),
    ('{"a": 1, 2: 3}', 1, 10, "map keys have different types"),
    # functions: receivers, arity, argument types, constants
    ("user.groups.lower()", 1, 13, "lower() is not defined on a list(string)"),
    ("lower(user.groups)", 1, 7, "lower() is not defined on a list(string)"),
    ("user.email.lower(1)", 1, 12, "lower() takes 0 arguments"),
    ('user.email.split()', 1, 12, "split() takes 1 argument"),
    ('user.email.split(1)', 1, 18, "argument 1 of split() must be a string, not an int"),
    ('user.email.substring("1")', 1, 22, "argument 1 of substring() must be an int"),
    ('user.email.substring(1, 2, 3)', 1, 12, "substring() takes 1 or 2 arguments"),
    ('user.email.replace("a")', 1, 12, "replace() takes 2 arguments"),
    ('user.email.join(",")', 1, 12, "join() is not defined on a string"),
    ('user.groups.join(1)', 1, 18, "argument 1 of join() must be a string"),
    ('contains(user.email, "a")', 1, 1, "contains() is a method"),
    ('user.email.string()', 1, 12, "string() is not a method"),
    ('string(true)', 1, 8, "string() is not defined on a bool"),
    ('int(session.auth_time)', 1, 5, "int() is not defined on a timestamp"),
    ('lower()', 1, 1, "lower() needs an argument"),
    ('user.email.date()', 1, 12, "date() is not defined on a string"),
    ('user.email.regexReplace(user.username, "")', 1, 25, "must be a constant string"),
    ('user.email.regexReplace("(", "")', 1, 25, "invalid regular expression: missing )"),
    ('user.email.regexReplace("(a)\\\\1", "")', 1, 25, "invalid regular expression"),
    ('user.email.matches("[")', 1, 20, "invalid regular expression"),
    ('user.email.matches(user.username)', 1, 20, "must be a constant string"),
    # has() and macros
    ("has(user.nonexistent)", 1, 10, "user has no field 'nonexistent'"),
    ("has(user)", 1, 1, "has() takes one field selection"),
    ("has(user.email.x)", 1, 16, "has() needs a field of user, app, session or a map"),
    ("user.groups.filter(g, g)", 1, 23, "condition of filter() must be a bool, not a string"),
    ("user.groups.all(g, g.size())", 1, 20, "condition of all() must be a bool"),
    ("user.groups.map(g)", 1, 13, "map() takes a variable name"),
    ('user.groups.map("g", 1)', 1, 17, "first argument of map() must be a variable name"),
    ("user.groups.map(user, 1)", 1, 17, "cannot name the variable"),
    ("user.groups.map(_x, 1)", 1, 17, "cannot name the variable"),
    ("user.email.map(c, c)", 1, 12, "map() needs a list or a map, not a string"),
    ("map(user.groups, g, g)", 1, 1, "map() is a method"),
    ("user.groups.map(a, user.groups.map(b, user.groups.map(c, c)))", 1, 51, "nest at most 2 deep"),
    ("g", 1, 1, "unknown variable 'g'"),
    ("user.groups.map(g, g.size()).size() > 0 ? g : \"\"", 1, 43, "unknown variable 'g'"),
    # what the checker does not understand
    ("1u", 1, 1, "unsigned integers are not supported"),
    ('b"bytes"', 1, 1, "bytes literals are not supported"),
    # results
    ("1.5", 1, 1, "a formula must give a string, a list of strings, a bool, an int or a timestamp, not a double"),
    ('{"a": "b"}', 1, 1, "not a map(string, string)"),
    ("user.groups.map(g, g.size())", 1, 13, "not a list(int)"),
    ("user", 1, 1, "user is not a value by itself"),
    ('user == user', 1, 1, "user is not a value by itself"),
]


@pytest.mark.parametrize(("source", "line", "column", "message"), ERRORS, ids=[e[0][:50] for e in ERRORS])
def test_refused_with_position(source: str, line: int, column: int, message: str) -> None:
    with pytest.raises(FormulaError) as caught:
        compile_formula(source, SCHEMA)
    err = caught.value
    assert message in err.message
    assert (err.line, err.column) == (line, column), str(err)
    assert str(err) == f"line {line}, column {column}: {err.message}"


def test_too_long() -> None:
    with pytest.raises(FormulaError, match="longer than 2000 characters"):
        compile_formula('"' + "x" * 1999 + '"', SCHEMA)
    compile_formula('"' + "x" * 1998 + '"', SCHEMA)


def test_custom_field_of_another_schema_is_unknown() -> None:
    from idp.attributes.schema import Schema
    compile_formula("user.department", SCHEMA)
    with pytest.raises(FormulaError, match="user has no field 'department'"):
        compile_formula("user.department", Schema())


def test_multiline_positions() -> None:
    source = 'session.mfa\n  ? user.email.lower()\n  : user.nope'
    with pytest.raises(FormulaError) as caught:
        compile_formula(source, SCHEMA)
    assert (caught.value.line, caught.value.column) == (3, 10)


def test_interpreter_also_compiles_it() -> None:
    # a form our parser accepts is also compiled by the interpreter; its refusal would carry its position
    from idp.attributes import formula
    assert formula.compile_formula("user.email", SCHEMA).program is not None
