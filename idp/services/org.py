"""Org-wide settings: trusted login IP ranges and MFA self-enrolment."""

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
