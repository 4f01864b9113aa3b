"""Client IP from the socket peer and exactly N trusted proxy hops of X-Forwarded-For."""

from __future__ import annotations

import ipaddress


def client_ip(remote_addr: str | None, forwarded_for: str | None, trusted_proxies: int) -> str | None:
    """With N trusted proxies, the client is the Nth address from the right of X-Forwarded-For.

    N=0 means the socket peer, whatever the header says. If the header has fewer entries than N
    (a misconfigured or bypassed proxy), the left-most entry is the best available answer.
    Anything that is not an IP address falls back to the socket peer.
    """
    if trusted_proxies <= 0 or not forwarded_for:
        return _normal(remote_addr)
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    if not hops:
        return _normal(remote_addr)
    candidate = hops[-trusted_proxies] if len(hops) >= trusted_proxies else hops[0]
    return _normal(candidate) or _normal(remote_addr)


def _normal(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value.strip().strip("[]")))
    except ValueError:
        return None
