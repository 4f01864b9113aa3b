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

The second factor is throttled so that an attacker who knows the password cannot lock the user's
other factors, or the user at another address, out with wrong codes:

- TOTP codes (sign-in, step-up, confirming a new authenticator, /account/mfa/reset), per (user, client
  address), MFA_RULE: 5 free in 10 min, then 30 s doubling. The attacker's address is locked out of the
  account's codes; the user elsewhere is not. On top of it a per-user long-window cap (NIST SP 800-63B
  §5.2.2: at most 100 consecutive failed attempts) suspends the TOTP factor after
  TOTP_MAX_CONSECUTIVE_FAILURES wrong codes in a row from anywhere (idp.auth.totp_guard; the count lives
  on the user row so it survives restarts and every instance sees it, whatever the shared-state backend).
- Recovery codes, per (user, client address), MFA_RULE, a key of their own: wrong TOTP codes never block
  them (they are the way back in) and they are ~49 bits, out of reach of online guessing.
- Passkey assertions, passwordless or as the second factor, per client address only (passkey_ip_key,
  LOGIN_IP_RULE): a signature cannot be guessed, and the account is not known before it verifies, so a
  failure must never lock the passkey's owner out.
- Passkey registration failures, per (user, client address), MFA_RULE.
- Passkey sign-in options (/passkeys/login/options, anonymous, each one stores a challenge), per client
  address, PASSKEY_OPTIONS_RULE: a generous 120 in 10 min (one per sign-in attempt), then 1 s doubling
  to 1 min; every request counts, not only failures.
"""

from __future__ import annotations

from datetime import timedelta

from .clientnet import client_net
from .state import shared
from .state.base import ThrottleRule

MFA_RULE = ThrottleRule(free=5, window=timedelta(minutes=10), base_lock_s=30)
LOGIN_ACCOUNT_IP_RULE = ThrottleRule(free=5, window=timedelta(minutes=15), base_lock_s=2)
LOGIN_IP_RULE = ThrottleRule(free=30, window=timedelta(minutes=15), base_lock_s=2)
LOGIN_ACCOUNT_RULE = ThrottleRule(free=50, window=timedelta(minutes=15), base_lock_s=1, max_lock_s=5)
PASSKEY_OPTIONS_RULE = ThrottleRule(free=120, window=timedelta(minutes=10), base_lock_s=1, max_lock_s=60)
TOTP_MAX_CONSECUTIVE_FAILURES = 100

__all__ = ["LOGIN_ACCOUNT_IP_RULE", "LOGIN_ACCOUNT_RULE", "LOGIN_IP_RULE", "MFA_RULE", "PASSKEY_OPTIONS_RULE",
           "TOTP_MAX_CONSECUTIVE_FAILURES", "ThrottleRule", "client_net", "login_account_ip_key",
           "login_account_key", "login_ip_key", "passkey_ip_key", "passkey_options_key", "passkey_register_key",
           "record_failure", "recovery_code_key", "reset", "retry_after", "totp_code_key"]


# One spelling of each key: every place that checks a password or a code counts against the same one.
def login_account_key(username: str) -> str:
    return f"login:user:{username.lower()}"


def login_account_ip_key(username: str, ip: str | None) -> str:
    return f"login:user-ip:{client_net(ip)}:{username.lower()}"


def login_ip_key(ip: str | None) -> str:
    return f"login:ip:{client_net(ip)}"


def totp_code_key(user_id: int, ip: str | None) -> str:
    """Wrong TOTP codes of one user from one client address (MFA_RULE)."""
    return f"mfa:totp:{client_net(ip)}:{user_id}"


def recovery_code_key(user_id: int, ip: str | None) -> str:
    """Wrong recovery codes of one user from one client address (MFA_RULE); apart from the TOTP key."""
    return f"mfa:recovery:{client_net(ip)}:{user_id}"


def passkey_ip_key(ip: str | None) -> str:
    """Failed passkey assertions (passwordless and second factor), per client address (LOGIN_IP_RULE): the
    account is not known before the signature is verified, and a failure must not lock the passkey's owner out."""
    return f"passkey:ip:{client_net(ip)}"


def passkey_register_key(user_id: int, ip: str | None) -> str:
    """Failed passkey registrations of one user from one client address (MFA_RULE)."""
    return f"passkey:register:{client_net(ip)}:{user_id}"


def passkey_options_key(ip: str | None) -> str:
    """Every passkey sign-in options request of one client address (PASSKEY_OPTIONS_RULE)."""
    return f"passkey:options:{client_net(ip)}"


def retry_after(key: str) -> int:
    return shared().retry_after(key)


def record_failure(key: str, rule: ThrottleRule) -> int:
    return shared().record_failure(key, rule)


def reset(key: str) -> None:
    shared().reset_failures(key)
