"""Attempt throttling with growing lock-outs, shared by every process and instance.

After `free` failures inside `window`, each further failure locks the key for base * 2^(n-free)
seconds (capped at `max_lock_s`). Throttled attempts are refused before anything is checked and
are not counted, so a locked key stays locked only as long as its last lock.

Password attempts count against three keys, so that a guesser cannot turn the throttle against
the account it guesses (anyone could lock anyone out when the account alone was the key):

- (account, client address), LOGIN_ACCOUNT_IP_RULE: 5 free failures in 15 min, then 2 s, 4 s, …
  up to 15 min. This is the lock-out a mistyping user or a single guesser meets; it locks only
  that address out of that account.
- client address, LOGIN_IP_RULE: 30 free failures in 15 min across all accounts, then the same
  growth. An IPv6 client counts per /64 prefix (one subscriber or host usually gets a whole /64,
  so per-address keys would be free to rotate).
- account across all addresses, LOGIN_ACCOUNT_RULE: 50 free failures in 15 min, then each failure
  makes the account wait 1 s, 2 s, 4 s, never more than 5 s. This only *slows*: a guesser spread
  over many addresses gets at most one guess per few seconds for the account, and the real user
  from another address gets in after a wait of a few seconds at most — never minutes.

Passkeys: a failed passwordless sign-in counts against the client address (passkey_ip_key, LOGIN_IP_RULE);
a failed passkey used as the second factor counts against the user like a wrong code (mfa_key, MFA_RULE).

The second factor: MFA_RULE throttles codes per user for a short while (5 free in 10 min, then
30 s doubling), and on top of it a long-window cap (NIST SP 800-63B §5.2.2: at most 100
consecutive failed attempts) suspends the TOTP factor after TOTP_MAX_CONSECUTIVE_FAILURES wrong
codes in a row (idp.auth.totp_guard; the count lives on the user row so it survives restarts and
every instance sees it, whatever the shared-state backend).
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta

from .state import shared
from .state.base import ThrottleRule

MFA_RULE = ThrottleRule(free=5, window=timedelta(minutes=10), base_lock_s=30)
LOGIN_ACCOUNT_IP_RULE = ThrottleRule(free=5, window=timedelta(minutes=15), base_lock_s=2)
LOGIN_IP_RULE = ThrottleRule(free=30, window=timedelta(minutes=15), base_lock_s=2)
LOGIN_ACCOUNT_RULE = ThrottleRule(free=50, window=timedelta(minutes=15), base_lock_s=1, max_lock_s=5)
TOTP_MAX_CONSECUTIVE_FAILURES = 100

__all__ = ["LOGIN_ACCOUNT_IP_RULE", "LOGIN_ACCOUNT_RULE", "LOGIN_IP_RULE", "MFA_RULE",
           "TOTP_MAX_CONSECUTIVE_FAILURES", "ThrottleRule", "client_net", "login_account_ip_key",
           "login_account_key", "login_ip_key", "mfa_key", "passkey_ip_key", "record_failure", "reset", "retry_after"]


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


# One spelling of each key: every place that checks a password or a code counts against the same one.
def login_account_key(username: str) -> str:
    return f"login:user:{username.lower()}"


def login_account_ip_key(username: str, ip: str | None) -> str:
    return f"login:user-ip:{client_net(ip)}:{username.lower()}"


def login_ip_key(ip: str | None) -> str:
    return f"login:ip:{client_net(ip)}"


def mfa_key(user_id: int) -> str:
    return f"mfa:user:{user_id}"


def passkey_ip_key(ip: str | None) -> str:
    """Failed passwordless passkey sign-ins, per client address (LOGIN_IP_RULE): the account is not known
    before the signature is verified, and a failure must not lock the passkey's owner out."""
    return f"passkey:ip:{client_net(ip)}"


def retry_after(key: str) -> int:
    return shared().retry_after(key)


def record_failure(key: str, rule: ThrottleRule) -> int:
    return shared().record_failure(key, rule)


def reset(key: str) -> None:
    shared().reset_failures(key)
