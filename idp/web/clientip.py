"""Client IP from the socket peer and exactly N trusted proxy hops of X-Forwarded-For."""

from __future__ import annotations

import ipaddress


def client_ip(remote_addr: str | None, forwarded_for: str | None, trusted_proxies: int) -> str | None:
    """With N trusted proxies, the client is the Nth address from the right of X-Forwarded-For.

    N=0 means the socket peer, whatever the header says. If the header has fewer entries than N
    (a misconfigured or bypassed proxy), the left-most entry is the best available answer. A
    trusted entry that is not an address (after dropping a ":port") gives None, never the
    proxy's own address: IP policies then fail closed instead of trusting the proxy's network.
    """
    if trusted_proxies <= 0:
        return _normal(remote_addr)
    hops = [h.strip() for h in (forwarded_for or "").split(",") if h.strip()]
    if not hops:
        return None
    candidate = hops[-trusted_proxies] if len(hops) >= trusted_proxies else hops[0]
    return _normal(_strip_port(candidate))


def _strip_port(value: str) -> str:
    if value.startswith("[") and "]" in value:        # [2001:db8::1]:443
        return value[1:value.index("]")]
    if value.count(":") == 1:                          # 198.51.100.7:5123
        return value.split(":", 1)[0]
    return value


def _normal(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value.strip().strip("[]")))
    except ValueError:
        return None
