"""Org-wide settings: trusted login IP ranges, MFA self-enrolment and the first-factor enrolment mode."""

from __future__ import annotations

import time
from typing import Any

from .. import audit
from ..extensions import db
from ..models import OrgSetting
from ..policy.checks import parse_cidr
from . import ServiceError

TRUSTED_RANGES = "trusted_ip_ranges"
MFA_SELF_ENROLL = "mfa_self_enroll"
MFA_ENROLMENT = "mfa_enrolment"
MFA_ENROLMENT_HELP = "mfa_enrolment_help"

# Who may enrol a FIRST second factor without an admin-issued enrolment link (a link is always accepted):
TRUSTED_RANGES_MODE = "trusted-ranges"   # only from the org's trusted IP ranges (the default)
LINK_ONLY_MODE = "link-only"             # only with an enrolment link
GRACE_PREFIX = "grace-days:"             # grace-days:N, within N days (1..365) of the account's creation
DEFAULT_ENROLMENT = TRUSTED_RANGES_MODE
MAX_GRACE_DAYS = 365
HELP_MAX = 500


# Org settings are read on every SSO; a value is trusted this long before it is read again
# (changes from this process apply at once, from other processes within the TTL).
TTL_S = 1.0
_cache: dict[str, tuple[float, Any]] = {}


def _get(key: str, default: Any) -> Any:
    hit = _cache.get(key)
    now = time.monotonic()
    if hit is not None and now - hit[0] < TTL_S:
        return default if hit[1] is _MISSING else hit[1]
    row = db.session.get(OrgSetting, key)
    _cache[key] = (now, _MISSING if row is None else row.value)
    return default if row is None else row.value


_MISSING = object()


def _for_change(key: str, default: Any) -> Any:
    """The stored value, read now and locked until the change commits (not the cached copy: a
    change built on a value another instance has since replaced would undo that change)."""
    row = db.session.get(OrgSetting, key, with_for_update=True, populate_existing=True)
    return default if row is None else row.value


def _set(key: str, value: Any) -> None:
    row = db.session.get(OrgSetting, key)
    audit.record("org.setting", "org", key, before=None if row is None else row.value, after=value)
    if row is None:
        db.session.add(OrgSetting(key=key, value=value))
    else:
        row.value = value
    db.session.flush()
    _cache.clear()  # the read cache is per process and lives 1 s: re-read after the caller's commit


def trusted_ranges() -> tuple[str, ...]:
    return tuple(_get(TRUSTED_RANGES, []))


def normalise_cidr(value: str) -> str:
    try:
        return str(parse_cidr(value))
    except ValueError as exc:
        raise ServiceError(str(exc), field="cidr") from None


def add_trusted_range(cidr: str) -> str:
    value = normalise_cidr(cidr)
    ranges = list(_for_change(TRUSTED_RANGES, []))
    if value in ranges:
        raise ServiceError(f"{value} is already a trusted range", field="cidr")
    _set(TRUSTED_RANGES, ranges + [value])
    return value


def remove_trusted_range(cidr: str) -> str:
    value = normalise_cidr(cidr)
    ranges = list(_for_change(TRUSTED_RANGES, []))
    if value not in ranges:
        raise ServiceError(f"{value} is not a trusted range", field="cidr")
    ranges.remove(value)
    _set(TRUSTED_RANGES, ranges)
    return value


def mfa_self_enroll() -> bool:
    """Whether users may enrol a second factor themselves when a policy first asks for one."""
    return bool(_get(MFA_SELF_ENROLL, True))


def set_mfa_self_enroll(enabled: bool) -> None:
    _set(MFA_SELF_ENROLL, bool(enabled))


# ---------------------------------------------------------------- first-factor enrolment mode

def parse_enrolment_mode(value: str) -> str:
    """The normalised mode (`trusted-ranges`, `link-only` or `grace-days:N`), or a ServiceError."""
    text = value.strip().lower()
    if text in (TRUSTED_RANGES_MODE, LINK_ONLY_MODE):
        return text
    if text.startswith(GRACE_PREFIX):
        days = text[len(GRACE_PREFIX):]
        if days.isascii() and days.isdigit() and 1 <= int(days) <= MAX_GRACE_DAYS:
            return f"{GRACE_PREFIX}{int(days)}"
        raise ServiceError(f"grace-days needs a number of days from 1 to {MAX_GRACE_DAYS}", field="mfa_enrolment")
    raise ServiceError(f"unknown enrolment mode {value!r}: use {TRUSTED_RANGES_MODE}, {LINK_ONLY_MODE} or "
                       f"{GRACE_PREFIX}N", field="mfa_enrolment")


def grace_days(mode: str) -> int | None:
    return int(mode[len(GRACE_PREFIX):]) if mode.startswith(GRACE_PREFIX) else None


def mfa_enrolment() -> str:
    """The first-factor enrolment mode (a stored value that no longer parses falls back to the safe default)."""
    stored = _get(MFA_ENROLMENT, DEFAULT_ENROLMENT)
    try:
        return parse_enrolment_mode(str(stored))
    except ServiceError:
        return DEFAULT_ENROLMENT


def set_mfa_enrolment(value: str) -> str:
    mode = parse_enrolment_mode(value)
    if _for_change(MFA_ENROLMENT, DEFAULT_ENROLMENT) != mode:
        _set(MFA_ENROLMENT, mode)
    return mode


def mfa_enrolment_help() -> str:
    """The org's text on the "you cannot set up a second factor here" page (whom to ask), or ""."""
    return str(_get(MFA_ENROLMENT_HELP, "") or "")


def set_mfa_enrolment_help(text: str) -> str:
    value = text.strip()
    if len(value) > HELP_MAX or any(ord(c) < 32 and c not in "\n" for c in value):
        raise ServiceError(f"the help text takes at most {HELP_MAX} characters, no control characters",
                           field="mfa_enrolment_help")
    _set(MFA_ENROLMENT_HELP, value)
    return value


def all_settings() -> dict[str, object]:
    """Every org setting with its effective value (for `idp org show` and the console)."""
    return {TRUSTED_RANGES: list(trusted_ranges()), MFA_SELF_ENROLL: mfa_self_enroll(),
            MFA_ENROLMENT: mfa_enrolment(), MFA_ENROLMENT_HELP: mfa_enrolment_help()}
