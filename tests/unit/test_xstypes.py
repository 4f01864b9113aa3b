"""The two XML Schema value parsers every SAML core uses: xs:dateTime and xs:boolean (idp.saml.xstypes)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from idp.saml.xstypes import XsValueError, parse_xs_boolean, parse_xs_datetime

# ---------------------------------------------------------------- xs:dateTime


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, 0, tzinfo=UTC)),
        ("2024-05-01T12:00:00", datetime(2024, 5, 1, 12, 0, tzinfo=UTC)),  # no zone: UTC (saml-core §1.3.3)
        ("2024-05-01T12:00:00.5Z", datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=UTC)),
        ("2024-05-01T12:00:00.123Z", datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)),
        ("2024-05-01T12:00:00.123456Z", datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)),
        ("2024-05-01T12:00:00.1234569999Z", datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)),  # truncated
        ("2024-05-01T12:00:00.000000000000000000000001Z", datetime(2024, 5, 1, 12, 0, tzinfo=UTC)),
        ("2024-05-01T12:00:00+02:00", datetime(2024, 5, 1, 10, 0, tzinfo=UTC)),
        ("2024-05-01T12:00:00-05:30", datetime(2024, 5, 1, 17, 30, tzinfo=UTC)),
        ("2024-05-01T12:00:00+00:00", datetime(2024, 5, 1, 12, 0, tzinfo=UTC)),
        ("2024-05-01T12:00:00-00:00", datetime(2024, 5, 1, 12, 0, tzinfo=UTC)),
        ("2024-05-01T12:00:00+14:00", datetime(2024, 4, 30, 22, 0, tzinfo=UTC)),
        ("2024-05-01T12:00:00-14:00", datetime(2024, 5, 2, 2, 0, tzinfo=UTC)),
        ("2024-05-01T12:00:00+13:59", datetime(2024, 4, 30, 22, 1, tzinfo=UTC)),
        ("2024-05-01T00:30:00+01:00", datetime(2024, 4, 30, 23, 30, tzinfo=UTC)),
        ("2024-02-29T00:00:00Z", datetime(2024, 2, 29, tzinfo=UTC)),
        ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),
        ("0001-01-01T00:00:00-01:00", datetime(1, 1, 1, 1, 0, tzinfo=UTC)),
        ("9999-12-31T23:59:59Z", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
        ("9999-12-31T23:59:59+01:00", datetime(9999, 12, 31, 22, 59, 59, tzinfo=UTC)),
        (" 2024-05-01T12:00:00Z ", datetime(2024, 5, 1, 12, 0, tzinfo=UTC)),
        ("\t\r\n2024-05-01T12:00:00Z\n", datetime(2024, 5, 1, 12, 0, tzinfo=UTC)),
    ],
)
def test_datetime_accepted(text: str, expected: datetime) -> None:
    parsed = parse_xs_datetime(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "phrase", "well_formed"),
    [
        ("", "is not an xs:dateTime", False),
        ("yesterday", "is not an xs:dateTime", False),
        ("2024-05-01", "is not an xs:dateTime", False),
        ("12:00:00Z", "is not an xs:dateTime", False),
        ("2024-05-01 12:00:00Z", "is not an xs:dateTime", False),
        ("2024-05-01t12:00:00Z", "is not an xs:dateTime", False),
        ("2024-05-01T12:00Z", "is not an xs:dateTime", False),
        ("2024-05-01T12:00:00.Z", "is not an xs:dateTime", False),
        ("2024-05-01T12:00:00,5Z", "is not an xs:dateTime", False),
        ("2024-05-01T12:00:00z", "is not an xs:dateTime", False),
        ("2024-05-01T12:00:00ZZ", "is not an xs:dateTime", False),
        ("2024-05-01T12:00:00+0200", "is not an xs:dateTime", False),
        ("2024-05-01T12:00:00+02", "is not an xs:dateTime", False),
        ("2024-5-01T12:00:00Z", "is not an xs:dateTime", False),
        ("1714564800", "is not an xs:dateTime", False),
        # huge, negative and expanded years: xs:dateTime allows them, Python's datetime cannot hold them
        ("12024-05-01T12:00:00Z", "is not an xs:dateTime", False),
        ("999999999-05-01T12:00:00Z", "is not an xs:dateTime", False),
        ("-2024-05-01T12:00:00Z", "is not an xs:dateTime", False),
        ("+2024-05-01T12:00:00Z", "is not an xs:dateTime", False),
        # digits of other scripts (int() would take them): Arabic-Indic, fullwidth, Devanagari
        ("\u0662\u0660\u0662\u0664-05-01T12:00:00Z", "is not an xs:dateTime", False),
        ("２０２４-05-01T12:00:00Z", "is not an xs:dateTime", False),
        ("2024-05-01T12:00:0\u0966Z", "is not an xs:dateTime", False),
        ("2024-05-01T12:00:00.\u0661Z", "is not an xs:dateTime", False),
        # only XML whitespace is collapsed
        ("\u00a02024-05-01T12:00:00Z", "is not an xs:dateTime", False),
        ("2024-05-01T12:00:00Z\u2003", "is not an xs:dateTime", False),
        ("2024-05-01T12:00:00Z\x00", "is not an xs:dateTime", False),
        ("2024-05-01T12:00:00Z\n2024-05-01T12:00:00Z", "is not an xs:dateTime", False),
        # offsets beyond +-14:00 or with minutes past 59 (XML Schema Part 2 §3.2.7.3)
        ("2024-05-01T12:00:00+14:01", "has an invalid time zone offset", True),
        ("2024-05-01T12:00:00-15:00", "has an invalid time zone offset", True),
        ("2024-05-01T12:00:00+99:99", "has an invalid time zone offset", True),
        ("2024-05-01T12:00:00+00:60", "has an invalid time zone offset", True),
        ("2024-05-01T12:00:00+24:00", "has an invalid time zone offset", True),
        # well-formed, but no such instant
        ("0000-01-01T00:00:00Z", "is not a valid date", True),
        ("2024-13-01T12:00:00Z", "is not a valid date", True),
        ("2024-00-01T12:00:00Z", "is not a valid date", True),
        ("2024-02-30T12:00:00Z", "is not a valid date", True),
        ("2023-02-29T12:00:00Z", "is not a valid date", True),
        ("2024-05-01T25:00:00Z", "is not a valid date", True),
        ("2024-05-01T12:60:00Z", "is not a valid date", True),
        ("2024-05-01T24:00:00Z", "is not a valid date", True),  # xs:dateTime's end of day: refused
        ("2016-12-31T23:59:60Z", "is not a valid date", True),  # leap second: refused
        ("0001-01-01T00:00:00+01:00", "is not a valid date", True),  # before year 1 in UTC
        ("9999-12-31T23:59:59-01:00", "is not a valid date", True),  # after year 9999 in UTC
    ],
)
def test_datetime_refused(text: str, phrase: str, well_formed: bool) -> None:
    with pytest.raises(XsValueError) as raised:
        parse_xs_datetime(text)
    assert str(raised.value) == phrase
    assert raised.value.well_formed is well_formed
    assert isinstance(raised.value, ValueError)


def test_datetime_long_fraction_is_linear() -> None:
    assert parse_xs_datetime("2024-05-01T12:00:00." + "9" * 100_000 + "Z") == datetime(
        2024, 5, 1, 12, 0, 0, 999999, tzinfo=UTC)
    with pytest.raises(XsValueError):
        parse_xs_datetime("2024-05-01T12:00:00." + "9" * 100_000 + "x")


# ---------------------------------------------------------------- xs:boolean


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("1", True),
        ("false", False),
        ("0", False),
        (" true ", True),  # whiteSpace="collapse" (XML Schema Part 2 §3.2.2)
        ("\t1\n", True),
        ("\r\nfalse", False),
    ],
)
def test_boolean_accepted(text: str, expected: bool) -> None:
    assert parse_xs_boolean(text) is expected


@pytest.mark.parametrize(
    "text",
    ["", " ", "TRUE", "True", "FALSE", "yes", "no", "on", "off", "t", "f", "2", "01", "00", "-0", "+1", "1.0",
     "true false", "tru", "\u0661", "１", "\u00a0true", "true\x00", "ｔｒｕｅ"],
)
def test_boolean_refused(text: str) -> None:
    with pytest.raises(XsValueError) as raised:
        parse_xs_boolean(text)
    assert str(raised.value) == "is not a boolean"
    assert raised.value.well_formed is False


# ---------------------------------------------------------------- the parsers' callers name the field


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("\u0662\u0660\u0662\u0664-05-01T12:00:00Z", "IssueInstant is not an xs:dateTime"),
        ("2024-05-01T12:00:00+15:00", "IssueInstant has an invalid time zone offset"),
        ("2016-12-31T23:59:60Z", "IssueInstant is not a valid date"),
    ],
)
def test_request_instants_use_the_parser(value: str, message: str) -> None:
    from idp.saml.requests import RequestParseError, parse_instant

    with pytest.raises(RequestParseError, match=f"^{message}$"):
        parse_instant(value, "IssueInstant")
    assert parse_instant("2024-05-01T12:00:00.999Z", "IssueInstant") == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("\u0662\u0660\u0662\u0664-05-01T12:00:00Z", "is not an xs:dateTime such as"),
        ("2030-05-01T12:00:00+15:00", "is not a valid date and time"),
        ("2030-05-01T12:00:00.5+14:00", None),
    ],
)
def test_metadata_valid_until_uses_the_parser(value: str, message: str | None) -> None:
    from lxml import etree

    from idp.saml.sp_metadata import MetadataError, _valid_until

    el = etree.Element("x", validUntil=value)
    if message is None:
        assert _valid_until(el) == datetime(2030, 4, 30, 22, 0, 0, 500000, tzinfo=UTC)
    else:
        with pytest.raises(MetadataError, match=message):
            _valid_until(el)
