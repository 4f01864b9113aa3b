"""Authentication method references (RFC 8176) of an IdP session: which values, in which order, what they mean.

A session records how the user signed in *this time*, as space-separated values in a fixed order:
"pwd" (password), "pwd otp mfa" (password + TOTP or a recovery code), "pwd hwk mfa" (password + a device-bound
passkey), "swk mfa" (a synced passkey alone, with user verification). "mfa" is present exactly when the
session passed more than one factor (a passkey with user verification counts as multi-factor on its own).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

PWD = "pwd"     # password  # noqa: S105 - a method name, not a password
OTP = "otp"     # one-time code: TOTP, or a recovery code
HWK = "hwk"     # proof of possession of a hardware-bound key: a device-bound passkey / security key
SWK = "swk"     # proof of possession of a software-secured key: a synced passkey
MFA = "mfa"     # multiple factors

ORDER = (PWD, OTP, HWK, SWK, MFA)     # the fixed order values are stored and released in
MAX_LENGTH = 64                       # the column (every value once: 19 characters)
PASSWORD_ONLY: tuple[str, ...] = (PWD,)
PASSWORD_AND_OTP: tuple[str, ...] = (PWD, OTP, MFA)
PHISHING_RESISTANT = frozenset({HWK, SWK})


def normalise(values: Iterable[str]) -> tuple[str, ...]:
    """The values in the fixed order, each once; an unknown value is refused (ValueError), never stored."""
    given = set(values)
    unknown = given - set(ORDER)
    if unknown:
        raise ValueError(f"unknown authentication method(s): {', '.join(sorted(unknown))}")
    if not given:
        raise ValueError("a session needs at least one authentication method")
    return tuple(v for v in ORDER if v in given)


def compose(*, password: bool = False, otp: bool = False, passkey: str | None = None,
            user_verified: bool = False) -> tuple[str, ...]:
    """What this sign-in proved: the password, a one-time code, a passkey ("hwk" device-bound or "swk" synced).

    "mfa" is added for two factors (password + code or passkey) or for a passkey with user verification.
    """
    if passkey is not None and passkey not in PHISHING_RESISTANT:
        raise ValueError(f"a passkey is {HWK!r} or {SWK!r}, not {passkey!r}")
    values = [v for v, on in ((PWD, password), (OTP, otp)) if on]
    if passkey:
        values.append(passkey)
    factors = len(values)
    if factors > 1 or (passkey and user_verified):
        values.append(MFA)
    return normalise(values)


def passkey_kind(backup_eligible: bool) -> str:
    """RFC 8176 value of a passkey: synced ("swk") when the credential may be backed up, else device-bound."""
    return SWK if backup_eligible else HWK


def to_column(values: Sequence[str]) -> str:
    return " ".join(normalise(values))


def from_column(stored: str | None, mfa_at: datetime | None) -> tuple[str, ...]:
    """The stored values; a row from before the column: TOTP was then the only second factor."""
    if not stored:
        return PASSWORD_AND_OTP if mfa_at is not None else PASSWORD_ONLY
    return tuple(v for v in ORDER if v in stored.split())


def is_multi_factor(values: Iterable[str]) -> bool:
    return MFA in set(values)


def is_phishing_resistant(values: Iterable[str]) -> bool:
    """A passkey or security key was used (origin-bound: a phishing site cannot relay it)."""
    return not PHISHING_RESISTANT.isdisjoint(values)


def first_factor_only(values: Sequence[str]) -> tuple[str, ...]:
    """What a session still claims when it loses its multi-factor assurance (a factor was reset): the first
    factor it was opened with, without "otp" and "mfa" (the password; or the passkey of a passwordless sign-in)."""
    if PWD in values:
        return PASSWORD_ONLY
    kept = tuple(v for v in values if v in PHISHING_RESISTANT)
    return kept or PASSWORD_ONLY


def with_second_factor(first: Sequence[str], method: str) -> tuple[str, ...]:
    """The methods of a session that proved `method` ("otp", "hwk" or "swk") as a second factor on top of `first`:
    the password of a pending sign-in, or what a signed-in session stepping up had proved (only its first factor
    is kept: first_factor_only). A passwordless passkey session stepping up with TOTP is "otp swk mfa", never
    "pwd …"."""
    if method not in (OTP, *PHISHING_RESISTANT):
        raise ValueError(f"a second factor is {OTP!r}, {HWK!r} or {SWK!r}, not {method!r}")
    return normalise((*first_factor_only(first), method, MFA))
