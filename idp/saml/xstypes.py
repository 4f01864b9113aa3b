"""The XML Schema built-in types SAML values use (XML Schema Part 2): xs:dateTime and xs:boolean, parsed here only.

Both are strict about the lexical form (ASCII digits, the spec's spellings, no locale) and raise XsValueError,
which callers turn into their own error naming the field. Whitespace around a value is XML whitespace and is
dropped (both types have whiteSpace="collapse", §3.2.2 and §3.2.7).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_XML_WHITESPACE = " \t\r\n"

# §3.2.7.1 lexical form: a four-digit year (no sign, no expanded years), seconds with an optional fraction, an
# optional zone. [0-9], not \d: \d also matches other scripts' digits, which int() would silently accept.
_DATETIME = re.compile(
    r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})"
    r"T(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})(?:\.(?P<fraction>[0-9]+))?"
    r"(?P<zone>Z|(?P<sign>[+-])(?P<zone_hours>[0-9]{2}):(?P<zone_minutes>[0-9]{2}))?"
)
_MAX_OFFSET = timedelta(hours=14)  # §3.2.7.3: a zone offset lies between -14:00 and +14:00

_TRUE = ("true", "1")
_FALSE = ("false", "0")


class XsValueError(ValueError):
    """A value is not of its XML Schema type. The message is a phrase that follows the field's name
    ("IssueInstant is not an xs:dateTime"); `well_formed` tells a value of the right shape that names no
    real instant (February 30th, an offset past 14:00, a year out of range) from a malformed one."""

    def __init__(self, phrase: str, *, well_formed: bool) -> None:
        super().__init__(phrase)
        self.well_formed = well_formed


def parse_xs_datetime(text: str) -> datetime:
    """An xs:dateTime (§3.2.7) as an aware UTC datetime.

    An offset is converted to UTC; a value without a zone is taken as UTC (SAML times are UTC, saml-core-2.0-os
    §1.3.3). The fraction is kept to the microsecond (truncated, not rounded). Hour 24 and leap seconds (:60)
    are refused, as Python's datetime cannot represent them; so are instants that fall outside years 1-9999
    once converted to UTC.
    """
    match = _DATETIME.fullmatch(text.strip(_XML_WHITESPACE))
    if match is None:
        raise XsValueError("is not an xs:dateTime", well_formed=False)
    offset = timedelta(0)
    if match["sign"] is not None:
        hours, minutes = int(match["zone_hours"]), int(match["zone_minutes"])
        offset = timedelta(hours=hours, minutes=minutes)
        if minutes > 59 or offset > _MAX_OFFSET:
            raise XsValueError("has an invalid time zone offset", well_formed=True)
        if match["sign"] == "-":
            offset = -offset
    micro = int((match["fraction"] or "")[:6].ljust(6, "0"))
    try:
        local = datetime(int(match["year"]), int(match["month"]), int(match["day"]), int(match["hour"]),
                         int(match["minute"]), int(match["second"]), micro, tzinfo=UTC)
        return local - offset
    except (ValueError, OverflowError):
        raise XsValueError("is not a valid date", well_formed=True) from None


def parse_xs_boolean(text: str) -> bool:
    """An xs:boolean (§3.2.2): "true" or "1", "false" or "0", lower case only."""
    value = text.strip(_XML_WHITESPACE)
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise XsValueError("is not a boolean", well_formed=False)
