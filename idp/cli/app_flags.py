"""`idp apps set` options as settings changes: add/remove flags merged into the app's current values."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from idp.services import ServiceError
from idp.services.apps import CLEAR, AppSettings, validate_policy_references
from idp.services.org import normalise_cidr


def policy_changes(current: AppSettings, *, permitted: str | None = None, allow_groups: Iterable[str] = (),
                   deny_groups: Iterable[str] = (), remove_allow_groups: Iterable[str] = (),
                   remove_deny_groups: Iterable[str] = (), assign_users: Iterable[str] = (),
                   unassign_users: Iterable[str] = (), ip_policy: str | None = None, ip_ranges: Iterable[str] = (),
                   clear_ip_ranges: bool = False, require_mfa: bool | None = None, mfa_action: str | None = None,
                   session_timeout: int | None = None,
                   require_phishing_resistant: bool | None = None) -> dict[str, Any]:
    """Turn add/remove options into new setting values (change_settings arguments); unknown groups and users
    are refused, and the added groups stay locked until the change commits."""
    allow_groups, deny_groups, assign_users = list(allow_groups), list(deny_groups), list(assign_users)
    validate_policy_references(allow_groups=allow_groups, deny_groups=deny_groups, assigned_users=assign_users)

    def merged(existing: tuple[str, ...], add: Iterable[str], remove: Iterable[str]) -> tuple[str, ...] | None:
        add, remove = list(add), list(remove)
        if not add and not remove:
            return None
        out = [x for x in existing if x not in remove]
        out += [x for x in add if x not in out]
        return tuple(out)

    ranges = None
    new_ranges = [normalise_cidr(r) for r in ip_ranges]
    if clear_ip_ranges or new_ranges:
        base = () if clear_ip_ranges else current.ip_ranges
        ranges = tuple(dict.fromkeys([*base, *new_ranges]))
    changes: dict[str, Any] = {
        "permitted": permitted, "ip_policy": ip_policy, "require_mfa": require_mfa, "mfa_action": mfa_action,
        "require_phishing_resistant": require_phishing_resistant,
        "allow_groups": merged(current.allow_groups, allow_groups, remove_allow_groups),
        "deny_groups": merged(current.deny_groups, deny_groups, remove_deny_groups),
        "assigned_users": merged(current.assigned_users, assign_users, unassign_users),
        "ip_ranges": ranges,
    }
    if session_timeout is not None:
        changes["session_timeout"] = session_timeout or CLEAR
    return changes


def parse_attribute_option(values: list[str]) -> dict[str, str]:
    """--attribute NAME=FIELD (repeated) as an attribute map; the name may itself hold "=" (the last one splits)."""
    out: dict[str, str] = {}
    for item in values:
        name, sep, field_name = item.rpartition("=")
        if not sep or not name:
            raise ServiceError(f"--attribute expects NAME=FIELD, got {item!r}", field="attributes")
        out[name] = field_name
    return out
