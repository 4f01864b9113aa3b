"""Attempt throttling with growing lock-outs, shared by every process and instance.

After `free` failures inside `window`, each further failure locks the key for base * 2^(n-free)
seconds (capped), so online guessing of passwords and TOTP codes stays far below useful rates
while a user who mistypes a few times is not locked out.
"""

from __future__ import annotations

from datetime import timedelta

from .state import shared
from .state.base import ThrottleRule

MFA_RULE = ThrottleRule(free=5, window=timedelta(minutes=10), base_lock_s=30)
LOGIN_ACCOUNT_RULE = ThrottleRule(free=5, window=timedelta(minutes=15), base_lock_s=2)
LOGIN_IP_RULE = ThrottleRule(free=30, window=timedelta(minutes=15), base_lock_s=2)

__all__ = ["LOGIN_ACCOUNT_RULE", "LOGIN_IP_RULE", "MFA_RULE", "ThrottleRule", "login_account_key", "login_ip_key",
           "mfa_key", "record_failure", "reset", "retry_after"]


# One spelling of each key: every place that checks a password or a code counts against the same one.
def login_account_key(username: str) -> str:
    return f"login:user:{username.lower()}"


def login_ip_key(ip: str) -> str:
    return f"login:ip:{ip}"


def mfa_key(user_id: int) -> str:
    return f"mfa:user:{user_id}"


def retry_after(key: str) -> int:
    return shared().retry_after(key)


def record_failure(key: str, rule: ThrottleRule) -> int:
    return shared().record_failure(key, rule)


def reset(key: str) -> None:
    shared().reset_failures(key)
