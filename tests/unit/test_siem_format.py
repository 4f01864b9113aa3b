"""idp.siem message format (RFC 5424) and URL parsing; the anonymous-event limiter's window (idp.events)."""

from __future__ import annotations

import pytest

from idp.events import AnonEventLimiter
from idp.siem import SyslogConfigError, Target, audit_message, event_message, format_message, parse_url


def test_header_and_structured_data() -> None:
    raw = format_message(severity=3, at="2026-12-05T10:00:00.5Z", msgid="sso", msg="{}", hostname="h", procid=7,
                         params={"a": 'x"y', "b": None, "c": "", "d": "back\\slash]"})
    assert raw == b'<131>1 2026-12-05T10:00:00.500000Z h idp 7 sso [idp@32473 a="x\\"y" d="back\\\\slash\\]"] {}'


def test_header_fields_are_printable_ascii_or_nil() -> None:
    raw = format_message(severity=6, at=None, msgid="s s\u00e9" + "x" * 40, msg="m", hostname="\u00e9", procid=1,
                         params={})
    head = raw.decode().split(" ")
    assert head[2] == "-" and head[5] == "ss" + "x" * 30 and head[6] == "[idp@32473]"


def test_severity_by_outcome_and_audit() -> None:
    def pri(outcome: str) -> bytes:
        return event_message({"outcome": outcome, "event_type": "sso", "at": "2026-12-05T10:00:00Z"}, "{}")[:5]

    assert (pri("success"), pri("denied"), pri("error")) == (b"<134>", b"<132>", b"<131>")
    msg = audit_message({"id": 3, "action": "user.add", "at": "2026-12-05T10:00:00Z"}, "{}")
    assert msg.startswith(b"<133>1 ") and b" audit [idp@32473 id=\"3\" action=\"user.add\"] {}" in msg


@pytest.mark.parametrize(("url", "target"), [
    ("udp://collector", Target("udp", "collector", 514)),
    ("tcp://collector:1601", Target("tcp", "collector", 1601)),
    ("TLS://[2001:db8::1]", Target("tls", "2001:db8::1", 6514)),
])
def test_parse_url(url: str, target: Target) -> None:
    assert parse_url(url) == target


@pytest.mark.parametrize("url", ["http://c", "udp://", "tcp://c/x", "tcp://u@c", "tcp://c:70000", "tcp://c?x=1"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(SyslogConfigError):
        parse_url(url)


def test_limiter_window_per_address_and_prefix() -> None:
    lim = AnonEventLimiter(3)
    assert [lim.allow("192.0.2.1", now=0.0) for _ in range(4)] == [True, True, True, False]
    assert lim.allow("192.0.2.2", now=1.0)                      # another address
    assert lim.allow("2001:db8::1", now=1.0) and lim.allow("2001:db8::2", now=1.0)
    assert lim.allow("2001:db8::3", now=1.0) and not lim.allow("2001:db8::4", now=1.0)   # one /64
    assert not lim.allow("192.0.2.1", now=59.9)
    assert lim.allow("192.0.2.1", now=60.0)                     # a new window
