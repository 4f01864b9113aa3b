"""How the app pages show stored values: times, NameID formats, bindings and a policy in a few words."""

from __future__ import annotations

from datetime import datetime

from idp.saml.constants import NAMEID_FORMATS
from idp.services.app_diff import short_binding
from idp.services.apps import AppSettings

__all__ = ["fmt_dt", "nameid_short", "policy_summary", "short_binding"]


def fmt_dt(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "never"


def nameid_short(uri: str) -> str:
    for short, full in NAMEID_FORMATS.items():
        if full == uri:
            return short
    return uri


def policy_summary(s: AppSettings) -> dict[str, str]:
    """Short words for the app list: who may use the app, the IP mode, the second-factor rule."""
    if s.permitted == "all":
        who = "All users"
    else:
        parts = []
        if s.allow_groups:
            parts.append("groups " + ", ".join(s.allow_groups))
        if s.assigned_users:
            parts.append(f"{len(s.assigned_users)} assigned user{'s' if len(s.assigned_users) != 1 else ''}")
        who = "Admin-approved" + (f" ({'; '.join(parts)})" if parts else " (nobody yet)")
    if s.deny_groups:
        who += "; denied: " + ", ".join(s.deny_groups)
    ip = s.ip_policy + (f" ({len(s.ip_ranges)} range{'s' if len(s.ip_ranges) != 1 else ''})" if s.ip_ranges else "")
    if s.require_phishing_resistant:
        mfa = f"required: passkey or security key ({s.mfa_action})"
    else:
        mfa = f"required ({s.mfa_action})" if s.require_mfa else "not required"
    return {"who": who, "ip": ip, "mfa": mfa}
