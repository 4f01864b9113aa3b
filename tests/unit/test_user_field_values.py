"""User field values: parsing by type (what the CLI, CSV import and console accept) and the text form that reads
back to the same value."""

from __future__ import annotations

from typing import Any

import pytest

from idp.services import ServiceError
from idp.services.user_fields import MAX_CLAIM, format_value, normalise_claim, parse_value


@pytest.mark.parametrize(("type_", "raw", "value"), [
    ("string", "Sales", "Sales"),
    ("string", "  padded  ", "padded"),
    ("string", "x" * 1024, "x" * 1024),
    ("string", "", None),
    ("string", "   ", None),
    ("string", None, None),
    ("list", "a;b; c ;;", ["a", "b", "c"]),
    ("list", "a;a;b", ["a", "b"]),
    ("list", '["x;y", " z "]', ["x;y", " z "]),
    ("list", "[]", None),
    ("list", ";", None),
    ("list", ["p", "q"], ["p", "q"]),
    ("bool", "true", True), ("bool", "YES", True), ("bool", "1", True),
    ("bool", "false", False), ("bool", "No", False), ("bool", "0", False),
    ("bool", True, True),
    ("date", "2024-02-29", "2024-02-29"),
    ("date", " 1999-12-31 ", "1999-12-31"),
])
def test_parse_accepts(type_: str, raw: Any, value: Any) -> None:
    assert parse_value(type_, raw) == value


@pytest.mark.parametrize(("type_", "raw", "fragment"), [
    ("string", "x" * 1025, "longer than 1024"),
    ("string", "a\x00b", "control characters"),
    ("string", "tab\there", "control characters"),
    ("list", ";".join(str(i) for i in range(257)), "at most 256"),
    ("list", "[1, 2]", "JSON array of strings"),
    ("list", "[not json", "JSON array of strings"),
    ("list", "ok;bad\x07", "control characters"),
    ("bool", "maybe", "not a bool"),
    ("bool", "2", "not a bool"),
    ("date", "2023-02-29", "not a real date"),
    ("date", "2023-13-01", "not a real date"),
    ("date", "31/12/2023", "YYYY-MM-DD"),
    ("date", "2023-1-1", "YYYY-MM-DD"),
])
def test_parse_refuses(type_: str, raw: str, fragment: str) -> None:
    with pytest.raises(ServiceError) as info:
        parse_value(type_, raw)
    assert fragment in str(info.value)


@pytest.mark.parametrize(("type_", "value"), [
    ("string", "Sales & Marketing"), ("string", "=1+1"),
    ("list", ["a", "b"]), ("list", ["has;semicolon", "b"]), ("list", ["[bracket", "b"]), ("list", [" spaced"]),
    ("bool", True), ("bool", False), ("date", "2020-01-31"),
])
def test_text_form_reads_back(type_: str, value: Any) -> None:
    assert parse_value(type_, format_value(type_, value)) == value


def test_unique_claims_are_case_folded_and_fit_the_column() -> None:
    assert normalise_claim("ABC-Straße") == normalise_claim("abc-strasse")
    long = "É" * 1024
    claim = normalise_claim(long)
    assert len(claim) <= MAX_CLAIM and claim == normalise_claim(long.lower())
