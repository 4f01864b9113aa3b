"""Unit tests for idp.web.clientip: the client address behind exactly N trusted proxies."""

from __future__ import annotations

import ipaddress

import pytest

from idp.web.clientip import client_ip

PEER = "10.0.0.1"  # the socket peer: the nearest proxy when there is one


@pytest.mark.parametrize(
    ("remote_addr", "forwarded_for", "trusted", "expected"),
    [
        # N=0: the socket peer, whatever the header says
        (PEER, None, 0, PEER),
        (PEER, "", 0, PEER),
        (PEER, "203.0.113.7", 0, PEER),
        (PEER, "203.0.113.7, 198.51.100.2", 0, PEER),
        ("203.0.113.7", "127.0.0.1", 0, "203.0.113.7"),
        (PEER, "203.0.113.7", -1, PEER),
        # N=1: the right-most entry, written by our proxy
        (PEER, "203.0.113.7", 1, "203.0.113.7"),
        (PEER, "  203.0.113.7  ", 1, "203.0.113.7"),
        (PEER, "127.0.0.1, 203.0.113.7", 1, "203.0.113.7"),  # spoofed entry on the left is ignored
        (PEER, "1.1.1.1, 2.2.2.2, 127.0.0.1, 203.0.113.7", 1, "203.0.113.7"),
        # no usable header behind a trusted proxy: None (fail closed), never the proxy's own address
        (PEER, None, 1, None),
        (PEER, "", 1, None),
        (PEER, " , ,", 1, None),
        (PEER, None, 2, None),
        # N=2: second from the right
        (PEER, "203.0.113.7, 198.51.100.2", 2, "203.0.113.7"),
        (PEER, "127.0.0.1, 203.0.113.7, 198.51.100.2", 2, "203.0.113.7"),
        (PEER, "6.6.6.6,203.0.113.7,198.51.100.2", 2, "203.0.113.7"),
        (PEER, "203.0.113.7,, 198.51.100.2", 2, "203.0.113.7"),  # empty items are skipped
        # fewer entries than N: the left-most entry is the best available answer
        (PEER, "203.0.113.7", 2, "203.0.113.7"),
        (PEER, "203.0.113.7, 198.51.100.2", 5, "203.0.113.7"),
        # garbage where the trusted address should be: None (fail closed), never the socket peer
        (PEER, "unknown", 1, None),
        (PEER, "203.0.113.7, unknown", 1, None),
        (PEER, "unknown, 203.0.113.7", 2, None),
        (PEER, "unknown, 203.0.113.7", 1, "203.0.113.7"),  # garbage left of the trusted entry is ignored
        (PEER, "<script>", 1, None),
        (PEER, "999.1.1.1", 1, None),
        (PEER, "203.0.113.7/24", 1, None),
        (PEER, "01.2.3.4", 1, None),
        (PEER, "999.1.1.1:4711", 1, None),  # dropping the port does not make garbage an address
        (PEER, "unknown:4711", 1, None),
        # "ip:port" entries: the port is dropped
        (PEER, "203.0.113.7:4711", 1, "203.0.113.7"),
        (PEER, "203.0.113.7:4711, 198.51.100.2:80", 2, "203.0.113.7"),
        ("not-an-ip", None, 0, None),
        ("not-an-ip", "junk", 1, None),
        (None, None, 0, None),
        ("", None, 0, None),
        # IPv6: normalised, brackets stripped
        ("2001:db8::1", None, 0, "2001:db8::1"),
        ("2001:0DB8:0000::0001", None, 0, "2001:db8::1"),
        ("[2001:db8::1]", None, 0, "2001:db8::1"),
        ("[::1]", "203.0.113.7", 0, "::1"),
        (PEER, "[2001:db8::7]", 1, "2001:db8::7"),
        (PEER, "2001:db8::7, 2001:db8::8", 2, "2001:db8::7"),
        (PEER, "[2001:db8::7]:443", 1, "2001:db8::7"),  # "[v6]:port": brackets and port dropped
        (PEER, "[2001:0DB8::0007]:443", 1, "2001:db8::7"),
        (PEER, "[not-an-ip]:443", 1, None),
        ("[::1", None, 0, "::1"),  # a stray bracket is tolerated, the address is still exact
    ],
)
def test_client_ip(remote_addr: str | None, forwarded_for: str | None, trusted: int, expected: str | None) -> None:
    assert client_ip(remote_addr, forwarded_for, trusted) == expected


@pytest.mark.parametrize(
    ("remote_addr", "forwarded_for", "trusted"),
    [
        ("::ffff:203.0.113.7", None, 0),
        ("[::ffff:203.0.113.7]", None, 0),
        (PEER, "::ffff:203.0.113.7", 1),
    ],
)
def test_ipv4_mapped_ipv6(remote_addr: str, forwarded_for: str | None, trusted: int) -> None:
    """An IPv4-mapped address stays the same address (the policy unmaps it); only its spelling may change."""
    got = client_ip(remote_addr, forwarded_for, trusted)
    assert got is not None
    addr = ipaddress.ip_address(got)
    assert isinstance(addr, ipaddress.IPv6Address)
    assert addr.ipv4_mapped == ipaddress.IPv4Address("203.0.113.7")


def test_result_is_always_an_ip_or_none() -> None:
    for header in ["a, b, c", "1.2.3.4, x", "::1, ::2", "%00", "\u0661.2.3.4"]:
        for n in range(4):
            got = client_ip(PEER, header, n)
            assert got is None or ipaddress.ip_address(got)
