"""Org-wide settings: trusted login IP ranges, MFA self-enrolment, the first-factor enrolment mode and the admin
console's IP ranges."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from .. import audit
from ..extensions import db
from ..models import OrgSetting
from ..policy.checks import matching_range, parse_cidr
from . import ServiceError

TRUSTED_RANGES = "trusted_ip_ranges"
MFA_SELF_ENROLL = "mfa_self_enroll"
ADMIN_RANGES = "admin_ip_ranges"
MFA_ENROLMENT = "mfa_enrolment"
MFA_ENROLMENT_HELP = "mfa_enrolment_help"
SCIM_DELETE = "scim_delete"
SCIM_DELETE_MODES = ("deactivate", "delete")   # what a SCIM DELETE of a user does; deactivate is the default

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


def _set(key: str, value: Any, *, shown: Callable[[Any], Any] | None = None) -> None:
    """Store `value` under `key`, audited; `shown` turns a stored value into what the audit row may hold (a
    sealed secret becomes its masked form)."""
    row = db.session.get(OrgSetting, key)
    show = shown or (lambda v: v)
    audit.record("org.setting", "org", key, before=None if row is None else show(row.value), after=show(value))
    if row is None:
        db.session.add(OrgSetting(key=key, value=value))
    else:
        row.value = value
    db.session.flush()
    _cache.clear()  # the read cache is per process and lives 1 s: re-read after the caller's commit


def _clear(key: str, *, shown: Callable[[Any], Any] | None = None) -> bool:
    """Remove the setting stored under `key` (the default applies again), audited; False when none was stored."""
    row = db.session.get(OrgSetting, key, with_for_update=True)
    if row is None:
        return False
    audit.record("org.setting", "org", key, before=(shown or (lambda v: v))(row.value), after=None)
    db.session.delete(row)
    db.session.flush()
    _cache.clear()
    return True


def trusted_ranges() -> tuple[str, ...]:
    return tuple(_get(TRUSTED_RANGES, []))


def normalise_cidr(value: str) -> str:
    try:
        return str(parse_cidr(value))
    except ValueError as exc:
        raise ServiceError(str(exc), field="cidr") from None


def _change_ranges(key: str, cidr: str, *, add: bool, label: str,
                   check: Callable[[list[str]], None] | None = None) -> str:
    """Add `cidr` to (or remove it from) the range list stored under `key`; `check` may refuse the new list."""
    value = normalise_cidr(cidr)
    ranges = list(_for_change(key, []))
    if add and value in ranges:
        raise ServiceError(f"{value} is already {label}", field="cidr")
    if not add and value not in ranges:
        raise ServiceError(f"{value} is not {label}", field="cidr")
    if add:
        ranges.append(value)
    else:
        ranges.remove(value)
    if check is not None:
        check(ranges)
    _set(key, ranges)
    return value


def add_trusted_range(cidr: str) -> str:
    return _change_ranges(TRUSTED_RANGES, cidr, add=True, label="a trusted range")


def remove_trusted_range(cidr: str) -> str:
    return _change_ranges(TRUSTED_RANGES, cidr, add=False, label="a trusted range")


def mfa_self_enroll() -> bool:
    """Whether users may enrol a second factor themselves when a policy first asks for one."""
    return bool(_get(MFA_SELF_ENROLL, True))


def set_mfa_self_enroll(enabled: bool) -> None:
    _set(MFA_SELF_ENROLL, bool(enabled))


# ------------------------------------------------------------------ admin console IP ranges

def admin_ip_ranges() -> tuple[str, ...]:
    """Where the admin console may be used from (IPv4/IPv6 CIDRs); empty: from anywhere."""
    return tuple(_get(ADMIN_RANGES, []))


def admin_ip_allowed(ip: str | None) -> bool:
    """Whether `ip` may use the admin console; an unknown address is outside every range (fails closed)."""
    ranges = admin_ip_ranges()
    return not ranges or matching_range(ip, ranges) is not None


def _check_keeps(ranges: list[str], keep_ip: str | None) -> None:
    """Refuse a non-empty list that leaves out `keep_ip` (the address of the admin making the change; "" when
    the IdP cannot tell it): saving it would lock them out of the console they are using. The CLI passes None
    and can set anything."""
    if keep_ip is None or not ranges or matching_range(keep_ip, ranges) is not None:
        return
    if not keep_ip:
        raise ServiceError("The IdP cannot tell your address (check IDP_TRUSTED_PROXIES), so any admin IP range "
                           "would lock you out of the console. Use `idp org set --admin-ip-range` on the server.",
                           field="cidr")
    raise ServiceError(f"Your own address {keep_ip} would be outside the admin IP ranges and you would lock "
                       f"yourself out of the console. Add a range that holds {keep_ip} first (the command "
                       "`idp org set --admin-ip-range` can change the list from the server).", field="cidr")


def set_admin_ip_ranges(cidrs: Iterable[str], *, keep_ip: str | None = None) -> tuple[str, ...]:
    """Replace the admin console's IP ranges (an empty list lifts the restriction); returns the stored list."""
    ranges = list(dict.fromkeys(normalise_cidr(c) for c in cidrs))
    _check_keeps(ranges, keep_ip)
    if ranges != list(_for_change(ADMIN_RANGES, [])):
        _set(ADMIN_RANGES, ranges)
    return tuple(ranges)


def add_admin_ip_range(cidr: str, *, keep_ip: str | None = None) -> str:
    return _change_ranges(ADMIN_RANGES, cidr, add=True, label="an admin IP range",
                          check=lambda ranges: _check_keeps(ranges, keep_ip))


def remove_admin_ip_range(cidr: str, *, keep_ip: str | None = None) -> str:
    return _change_ranges(ADMIN_RANGES, cidr, add=False, label="an admin IP range",
                          check=lambda ranges: _check_keeps(ranges, keep_ip))


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


# ---------------------------------------------------------------- SCIM

def scim_delete() -> str:
    """What a SCIM DELETE of a user does: `deactivate` (the default: the account stays, disabled, with its audit
    trail; the client still finds it, active=false) or `delete` (the row goes)."""
    stored = _get(SCIM_DELETE, SCIM_DELETE_MODES[0])
    return stored if stored in SCIM_DELETE_MODES else SCIM_DELETE_MODES[0]


def set_scim_delete(value: str) -> str:
    mode = value.strip().lower()
    if mode not in SCIM_DELETE_MODES:
        raise ServiceError(f"scim delete must be one of {', '.join(SCIM_DELETE_MODES)}", field="scim_delete")
    if _for_change(SCIM_DELETE, SCIM_DELETE_MODES[0]) != mode:
        _set(SCIM_DELETE, mode)
    return mode


def all_settings() -> dict[str, object]:
    """Every org setting with its effective value (for `idp org show` and the console)."""
    return {TRUSTED_RANGES: list(trusted_ranges()), MFA_SELF_ENROLL: mfa_self_enroll(),
            MFA_ENROLMENT: mfa_enrolment(), MFA_ENROLMENT_HELP: mfa_enrolment_help(),
            ADMIN_RANGES: list(admin_ip_ranges()), SCIM_DELETE: scim_delete()}
