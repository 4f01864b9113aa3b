"""The unit a client address is counted as (throttling, the anonymous-event limit)."""

from __future__ import annotations

import ipaddress


def client_net(ip: str | None) -> str:
    """The unit an address is throttled as: an IPv4 address, an IPv6 /64 prefix (IPv4-mapped IPv6 as IPv4)."""
    if not ip:
        return "unknown"
    try:
        addr = ipaddress.ip_address(ip.strip())
    except ValueError:
        return ip.strip()[:64] or "unknown"
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)
