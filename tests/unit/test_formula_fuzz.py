"""Fuzzing the formula compiler and evaluator (hypothesis): whatever the source, compile_formula returns a Formula
or raises FormulaError, and a compiled formula evaluates to an allowed type or raises FormulaUnavailable."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from idp.attributes.formula import FormulaError, FormulaUnavailable, compile_formula
from tests.unit.formula_data import SCHEMA, activation

settings.register_profile("ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=20_000, deadline=None, suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

TOKENS = [
    "user", "app", "session", ".", "email", "groups", "department", "roles", "hired", "manager", "amr", "mfa",
    "auth_time", "slug", "(", ")", "[", "]", "{", "}", ",", ":", "?", "+", "-", "*", "/", "%", "!", "==", "!=",
    "<", "<=", ">", ">=", "&&", "||", " in ", "true", "false", "null", "0", "1", "-1", "2.5", "1u", '"a"',
    "'b'", 'r"\\d"', '"""x"""', 'b"z"', "lower", "upper", "trim", "split", "join", "substring", "replace",
    "regexReplace", "date", "size", "contains", "startsWith", "endsWith", "matches", "has", "string", "int",
    "double", "timestamp", "map", "filter", "exists", "all", "exists_one", "g", "x", " ", "\n", "//c\n",
    '"\\u00e9"', '"\\x"', "__class__", "_items", "9223372036854775808",
]


def _check(source: str) -> None:
    try:
        formula = compile_formula(source, SCHEMA)
    except FormulaError as err:
        assert err.line >= 1 and err.column >= 1
        return
    try:
        value = formula.evaluate(activation())
    except FormulaUnavailable:
        return
    assert value is None or isinstance(value, str) or (
        isinstance(value, list) and value and all(isinstance(v, str) for v in value))


@given(st.text(max_size=200))
def test_random_text(source: str) -> None:
    _check(source)


@given(st.lists(st.sampled_from(TOKENS), max_size=40))
def test_random_token_soup(tokens: list[str]) -> None:
    _check("".join(tokens))


METHODS = st.sampled_from(['.lower()', '.upper()', '.trim()', '.split(",")', '.size()', '.substring(1)',
                           '.replace("a", "b")', '.regexReplace("[a-z]+", "x")', '.startsWith("a")',
                           '.join(",")', '.filter(g, g.startsWith("a"))', '.map(g, g.upper())', '.date()',
                           '.contains("@")', ".exists(g, g == \"staff\")"])
ROOTS = st.sampled_from(["user.email", "user.groups", "user.department", "user.roles", "user.hired",
                         "session.auth_time", "session.amr", "app.slug", '"lit"', "[]", "user.manager"])


@given(ROOTS, st.lists(METHODS, max_size=5), st.sampled_from(["", ' + "x"', " == null", ' in ["a"]']))
def test_method_chains(root: str, methods: list[str], tail: str) -> None:
    _check(root + "".join(methods) + tail)
