"""Attribute formulas, value in -> value out: every function and operator the engine supports, the output
conversions, missing custom fields and the has() guard, activation values."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from idp.attributes.formula import (
    Formula,
    FormulaUnavailable,
    activation_value,
    compile_formula,
    user_activation,
)
from idp.attributes.schema import FieldType
from tests.unit.formula_data import SCHEMA, activation


def run(source: str, **user: object) -> str | list[str] | None:
    return compile_formula(source, SCHEMA).evaluate(activation(**user))


CASES = [
    # variables and members
    ("user.username", "alice"),
    ("user.email", "Alice@Example.ORG"),
    ('user["first_name"]', "Alice"),
    ("user.groups", ["aws-admin", "staff", "aws-dev"]),
    ("user.roles", ["editor", "viewer"]),
    ("user.contractor", "false"),
    ("user.hired", "2021-03-04"),
    ("app.slug", "wiki"),
    ("app.entity_id", "https://wiki.example.com/sp"),
    ("session.amr", ["pwd", "otp"]),
    ("session.mfa", "true"),
    ("session.auth_time", "2024-05-01T08:30:15Z"),
    # literals
    ('"plain"', "plain"),
    ("'single'", "single"),
    ('"tab\\tnew\\nline \\u00e9 \\x41 \\101 \\U0001F600 \\"q\\" \\\\"', 'tab\tnew\nline é A A 😀 "q" \\'),
    ('r"raw\\d+"', "raw\\d+"),
    ('"""multi\nline"""', "multi\nline"),
    ("'''it's'''", "it's"),
    ("42", "42"),
    ("-42", "-42"),
    ("0x1F", "31"),
    ("-9223372036854775808", "-9223372036854775808"),
    ("true", "true"),
    ("null", None),
    ('["a", "b"]', ["a", "b"]),
    ("[]", None),
    ('{"eng": "Engineering", "res": "Research"}["res"]', "Research"),
    ('{"k": "v"}.k', "v"),
    ('{1: "one"}[1]', "one"),
    # arithmetic and string/list +
    ("1 + 2 * 3", "7"),
    ("(1 + 2) * 3", "9"),
    ("7 / 2", "3"),
    ("7 % 3", "1"),
    ("10 - 4 - 3", "3"),
    ("-(2 - 5)", "3"),
    ("int(7.9 / 2.0)", "3"),
    ('user.first_name + " " + user.last_name', "Alice Liddell"),
    ('user.roles + ["extra"]', ["editor", "viewer", "extra"]),
    ("[] + user.roles", ["editor", "viewer"]),
    # logic and relations
    ("!session.mfa", "false"),
    ("!!true", "true"),
    ("true && false", "false"),
    ("true || false", "true"),
    ('user.username == "alice"', "true"),
    ('user.username != "alice"', "false"),
    ("1 < 2", "true"),
    ("2 <= 1", "false"),
    ('"b" > "a"', "true"),
    ("2.5 >= 2.5", "true"),
    ("user.hired < session.auth_time", "true"),
    ('"staff" in user.groups', "true"),
    ('"nope" in user.groups', "false"),
    ('"k" in {"k": 1}', "true"),
    ("user.email == null", "false"),
    # conditionals
    ('session.mfa ? "strong" : "weak"', "strong"),
    ('user.contractor ? "ext" : user.username == "alice" ? "alice" : "other"', "alice"),
    ('session.mfa ? user.roles : []', ["editor", "viewer"]),
    ('user.contractor ? "x" : null', None),
    # the functions we add (methods and free functions)
    ("user.email.lower()", "alice@example.org"),
    ("lower(user.email)", "alice@example.org"),
    ("user.email.upper()", "ALICE@EXAMPLE.ORG"),
    ("upper(user.first_name)", "ALICE"),
    ("user.department.trim()", "Research"),
    ("trim(user.department)", "Research"),
    ('user.email.split("@")', ["Alice", "Example.ORG"]),
    ('split("a,b,,c", ",")', ["a", "b", "", "c"]),
    ('"abc".split("")', ["a", "b", "c"]),
    ('user.groups.join(",")', "aws-admin,staff,aws-dev"),
    ("user.roles.join()", "editorviewer"),
    ('join(user.roles, " ")', "editor viewer"),
    ('[].join("-")', ""),
    ('"héllo".substring(1)', "éllo"),
    ('"héllo".substring(1, 3)', "él"),
    ('substring("hello", 3, 99)', "lo"),
    ('"hello".substring(-4, 2)', "he"),
    ('"hello".substring(4, 2)', ""),
    ('"hello".substring(10)', ""),
    ('user.email.replace("Example", "example")', "Alice@example.ORG"),
    ('replace("a-b-c", "-", "")', "abc"),
    ('user.email.regexReplace("@.*$", "")', "Alice"),
    ('regexReplace("2021-03-04", "(\\\\d+)-(\\\\d+)-(\\\\d+)", "\\\\3/\\\\2/\\\\1")', "04/03/2021"),
    ('"aaa".regexReplace("a*?", "-")', "-a-a-a-"),
    ("date(session.auth_time)", "2024-05-01"),
    ("session.auth_time.date()", "2024-05-01"),
    ("user.hired.date()", "2021-03-04"),
    # the interpreter's own functions
    ("size(user.groups)", "3"),
    ("user.groups.size()", "3"),
    ('"héllo".size()', "6"),
    ('{"a": 1}.size()', "1"),
    ('user.email.contains("@")', "true"),
    ('user.email.startsWith("Alice")', "true"),
    ('user.email.endsWith(".com")', "false"),
    ('user.email.matches("^[A-Z][a-z]+@")', "true"),
    ('user.username.matches("^b")', "false"),
    ("string(42)", "42"),
    ("string(1.5)", "1.5"),
    ('string("s")', "s"),
    ("string(session.auth_time)", "2024-05-01T08:30:15+00:00"),
    ('int("12") + 1', "13"),
    ("int(2.9)", "2"),
    ('double("1.5") > 1.0', "true"),
    ("double(2) == 2.0", "true"),
    ('timestamp("2020-01-02T00:00:00Z")', "2020-01-02"),
    ('timestamp("2020-01-02T10:11:12Z")', "2020-01-02T10:11:12Z"),
    ('has(user.department) ? user.department.trim() : "none"', "Research"),
    ("has(user.manager)", "false"),
    ('has({"a": 1}.a)', "true"),
    # macros
    ('user.groups.filter(g, g.startsWith("aws-"))', ["aws-admin", "aws-dev"]),
    ('user.groups.filter(g, g.startsWith("gcp-"))', None),
    ('user.groups.map(g, g.upper())', ["AWS-ADMIN", "STAFF", "AWS-DEV"]),
    ('user.groups.map(g, g.startsWith("aws-"), g.substring(4))', ["admin", "dev"]),
    ('user.groups.exists(g, g == "staff")', "true"),
    ('user.groups.all(g, g.size() > 3)', "true"),
    ('user.groups.exists_one(g, g.startsWith("aws-"))', "false"),
    ('{"a": 1, "b": 2}.filter(k, k != "a")', ["b"]),
    ('user.roles.map(r, user.groups.filter(g, g.contains(r)).size() > 0 ? r : "-")', ["-", "-"]),
    ('user.groups.filter(g, g.startsWith("aws-")).map(g, "arn:aws:iam::1:role/" + g.substring(4))',
     ["arn:aws:iam::1:role/admin", "arn:aws:iam::1:role/dev"]),
    # comments and white space
    ("user.username // the login name\n", "alice"),
]


@pytest.mark.parametrize(("source", "expected"), CASES, ids=[c[0][:60] for c in CASES])
def test_value_in_value_out(source: str, expected: object) -> None:
    assert run(source) == expected


def test_every_function_is_covered_by_a_case() -> None:
    from idp.attributes.cel_check import FUNCTIONS, MACROS
    sources = " ".join(c[0] for c in CASES)
    for name in [*FUNCTIONS, *MACROS, "has"]:
        assert f"{name}(" in sources, name


def test_unset_custom_field_is_unavailable_and_named() -> None:
    with pytest.raises(FormulaUnavailable, match=r"^user\.manager is not set$"):
        run("user.manager")
    with pytest.raises(FormulaUnavailable, match=r"^user\.department is not set$"):
        run("user.department.upper()", department=None)
    assert run('has(user.department) ? user.department : "n/a"', department=None) == "n/a"
    assert run('has(user.department) ? user.department : "n/a"', department="Ops") == "Ops"


def test_absent_app_or_session_member_is_named() -> None:
    formula = compile_formula("session.auth_time", SCHEMA)
    act = activation()
    del act["session"]["auth_time"]
    with pytest.raises(FormulaUnavailable, match=r"^session\.auth_time is not set$"):
        formula.evaluate(act)


@pytest.mark.parametrize(("source", "message"), [
    ("1 / 0", "division by zero"),
    ("9223372036854775807 + 1", "overflow"),
    ("user.groups[7]", "out of range"),
    ('{"a": "b"}[user.username]', "missing"),
    ('int("twelve")', "int"),
    ('timestamp("not a time")', "timestamp"),
])
def test_run_time_errors_are_unavailable(source: str, message: str) -> None:
    with pytest.raises(FormulaUnavailable, match=message):
        run(source)


def test_missing_key_does_not_repeat_user_data() -> None:
    with pytest.raises(FormulaUnavailable) as caught:
        run('{"a": "b"}[user.email]')
    assert "Alice" not in str(caught.value)


def test_result_caps() -> None:
    # a list result of more than 256 items, a string of more than 4096 characters: unavailable
    with pytest.raises(FormulaUnavailable, match="256"):
        run("user.groups", groups=[f"g{i}" for i in range(257)])
    with pytest.raises(FormulaUnavailable, match="4096"):
        run("user.department", department="x" * 4097)
    assert run("user.department", department="x" * 4096) == "x" * 4096


@pytest.mark.parametrize(("source", "message"), [
    ('user.department.replace("x", "xx")', "4096"),
    ('user.department + user.department', "4096"),
    ('user.department.split("")', "256"),
    ('user.department.regexReplace("x", "yy")', "4096"),
    ('[user.department, user.department].join("")', "4096"),
    ('user.department.upper() + user.department.substring(0, 100)', "4096"),
])
def test_function_outputs_are_capped(source: str, message: str) -> None:
    with pytest.raises(FormulaUnavailable, match=message):
        run(source, department="x" * 4000)


def test_activation_values() -> None:
    assert activation_value(FieldType.STRING, "x") == "x"
    assert activation_value(FieldType.LIST, ("a", "b")) == ["a", "b"]
    assert activation_value(FieldType.BOOL, True) is True
    assert activation_value(FieldType.INT, 3) == 3
    assert activation_value(FieldType.DATE, "2021-03-04") == datetime(2021, 3, 4, tzinfo=UTC)
    assert activation_value(FieldType.DATE, date(2021, 3, 4)) == datetime(2021, 3, 4, tzinfo=UTC)
    assert activation_value(FieldType.TIMESTAMP, datetime(2024, 1, 1, 5)) == datetime(2024, 1, 1, 5, tzinfo=UTC)
    assert activation_value(FieldType.TIMESTAMP, "2024-01-01T05:00:00Z") == datetime(2024, 1, 1, 5, tzinfo=UTC)
    for field_type, raw in [(FieldType.STRING, 1), (FieldType.LIST, "a"), (FieldType.LIST, [1]),
                            (FieldType.BOOL, "true"), (FieldType.INT, True), (FieldType.DATE, "04/03/2021"),
                            (FieldType.TIMESTAMP, 5)]:
        with pytest.raises(ValueError):
            activation_value(field_type, raw)


def test_user_activation_leaves_unset_fields_out() -> None:
    user = user_activation(SCHEMA, {"username": "bob", "groups": [], "department": None, "hired": "2020-01-01"})
    assert user == {"username": "bob", "groups": [], "hired": datetime(2020, 1, 1, tzinfo=UTC)}


def test_only_plain_values_reach_the_interpreter() -> None:
    formula = compile_formula("user.username", SCHEMA)
    for bad in (object(), {1, 2}, b"bytes", datetime(2020, 1, 1)):
        act = activation()
        act["user"]["username"] = bad
        with pytest.raises(FormulaUnavailable):
            formula.evaluate(act)


def test_timestamp_output() -> None:
    from idp.attributes.formula import format_timestamp
    assert format_timestamp(datetime(2024, 1, 2, tzinfo=UTC)) == "2024-01-02"
    assert format_timestamp(datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2024-01-02T03:04:05Z"
    assert format_timestamp(datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC)) == "2024-01-02T03:04:05.000006Z"


def test_formula_is_reusable_and_keeps_its_source() -> None:
    formula = compile_formula("user.username.upper()", SCHEMA)
    assert isinstance(formula, Formula) and formula.source == "user.username.upper()"
    assert formula.evaluate(activation()) == "ALICE"
    assert formula.evaluate(activation(username="bob")) == "BOB"
