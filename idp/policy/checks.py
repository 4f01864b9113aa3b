"""The access checks, each a pure function: AccessContext → Decision (or None to pass on)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

from ..reasons import Reason
from .authn_context import choose_context
from .model import AccessContext, Decision, Effect, IpPolicy, MfaAction, PermittedUsers

Check = Callable[[AccessContext], Decision | None]
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_cidr(value: str) -> IpNetwork:
    """A CIDR (or single address); host bits set are refused so typos do not silently widen a range."""
    try:
        return ipaddress.ip_network(value.strip(), strict=True)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid IPv4/IPv6 CIDR range ({exc})") from None


def parse_address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1 (dual-stack sockets)
    return addr


def matching_range(ip: str | None, ranges: Iterable[str]) -> str | None:
    addr = parse_address(ip) if ip else None
    if addr is None:
        return None
    for r in ranges:
        net = parse_cidr(r)
        if addr.version == net.version and addr in net:
            return r
    return None


def check_app_enabled(ctx: AccessContext) -> Decision | None:
    if ctx.app_enabled:
        return None
    return Decision(Effect.DENY, "app_enabled", Reason.APP_DISABLED, "the app is disabled")


def check_user_active(ctx: AccessContext) -> Decision | None:
    if not ctx.user_disabled:
        return None
    return Decision(Effect.DENY, "user_active", Reason.USER_DISABLED, f"user {ctx.username} is disabled")


def check_permitted_users(ctx: AccessContext) -> Decision | None:
    p = ctx.policy
    denied = sorted(ctx.user_groups & p.deny_groups)
    inputs: dict[str, object] = {"permitted": p.permitted, "user_groups": sorted(ctx.user_groups)}
    if denied:
        return Decision(Effect.DENY, "permitted_users", Reason.USER_NOT_PERMITTED,
                        f"{ctx.username} is in denied group(s) {', '.join(denied)}",
                        {**inputs, "denied_groups": denied})
    if p.permitted == PermittedUsers.ALL:
        return None
    if ctx.username in p.assigned_users:
        return None
    if ctx.user_groups & p.allow_groups:
        return None
    return Decision(Effect.DENY, "permitted_users", Reason.USER_NOT_PERMITTED,
                    f"{ctx.username} is neither assigned to the app nor in an allowed group "
                    f"({', '.join(sorted(p.allow_groups)) or 'none configured'})",
                    {**inputs, "allow_groups": sorted(p.allow_groups)})


def ip_outside_ranges(ctx: AccessContext) -> tuple[bool, dict[str, object]]:
    """(outside, inputs): outside is False when no range is configured anywhere or the IP matches one."""
    ranges = tuple(ctx.org_ip_ranges) + tuple(ctx.policy.ip_ranges)
    inputs: dict[str, object] = {"client_ip": ctx.client_ip, "ip_policy": ctx.policy.ip_policy,
                                 "ranges": list(ranges)}
    if not ranges:
        return False, inputs
    match = matching_range(ctx.client_ip, ranges)
    inputs["matched_range"] = match
    return match is None, inputs


def check_ip(ctx: AccessContext) -> Decision | None:
    if ctx.policy.ip_policy == IpPolicy.RELAX:
        return None
    outside, inputs = ip_outside_ranges(ctx)
    if not outside:
        return None
    if ctx.policy.ip_policy == IpPolicy.ENFORCE:
        return Decision(Effect.DENY, "ip_range", Reason.IP_NOT_ALLOWED,
                        f"{ctx.client_ip or 'unknown address'} is outside the trusted ranges", inputs)
    return None  # IpPolicy.RELAX_WITH_MFA: handled by check_mfa


def check_session_age(ctx: AccessContext) -> Decision | None:
    limit = ctx.policy.session_timeout_min
    if limit is None or ctx.session_age_s is None:
        return None
    if ctx.session_age_s <= limit * 60:
        return None
    return Decision(Effect.REAUTH, "session_timeout", Reason.SESSION_EXPIRED,
                    f"the session is {int(ctx.session_age_s // 60)} min old; this app allows {limit} min",
                    {"session_age_s": int(ctx.session_age_s), "session_timeout_min": limit})


def mfa_reasons(ctx: AccessContext) -> list[str]:
    """Why this request needs a second factor (empty: it does not)."""
    why: list[str] = []
    if ctx.policy.require_phishing_resistant:
        why.append("the app requires a passkey or security key")
    elif ctx.policy.require_mfa:
        why.append("the app requires high assurance")
    if ctx.policy.ip_policy == IpPolicy.RELAX_WITH_MFA and ip_outside_ranges(ctx)[0]:
        why.append(f"{ctx.client_ip or 'unknown address'} is outside the trusted ranges")
    if ctx.requested_refs:
        without = choose_context(ctx.requested_comparison, ctx.requested_refs, False)
        with_mfa = choose_context(ctx.requested_comparison, ctx.requested_refs, True)
        if without is None and with_mfa is not None:
            why.append("the app requested a multi-factor authentication context")
    return why


def check_mfa(ctx: AccessContext) -> Decision | None:
    why = mfa_reasons(ctx)
    if not why or ctx.mfa_passed:
        return None
    inputs: dict[str, object] = {"why": why, "mfa_enrolled": ctx.mfa_enrolled, "mfa_action": ctx.policy.mfa_action}
    if ctx.policy.requires_mfa and ctx.policy.mfa_action == MfaAction.BLOCK:
        return Decision(Effect.DENY, "mfa", Reason.MFA_REQUIRED,
                        "the session has no second factor and the app blocks instead of prompting", inputs)
    return Decision(Effect.STEP_UP, "mfa", Reason.MFA_REQUIRED, "; ".join(why), inputs)


def check_phishing_resistant(ctx: AccessContext) -> Decision | None:
    """An app that requires phishing-resistant sign-in accepts only a passkey or security key (RFC 8176 hwk/swk):
    a password, a TOTP or a recovery code, however fresh, steps up to a passkey (or is denied when the app blocks)."""
    if not ctx.policy.require_phishing_resistant or ctx.phishing_resistant:
        return None
    inputs: dict[str, object] = {"passkey_required": True, "mfa_passed": ctx.mfa_passed,
                                 "mfa_action": ctx.policy.mfa_action}
    if ctx.policy.mfa_action == MfaAction.BLOCK:
        return Decision(Effect.DENY, "phishing_resistant", Reason.PHISHING_RESISTANT_REQUIRED,
                        "the app requires a passkey or security key, the session used none, and the app blocks "
                        "instead of prompting", inputs)
    return Decision(Effect.STEP_UP, "phishing_resistant", Reason.PHISHING_RESISTANT_REQUIRED,
                    "the app requires a passkey or security key (phishing-resistant); the session used "
                    + ("a second factor that is not one" if ctx.mfa_passed else "no second factor"), inputs)


def check_authn_context(ctx: AccessContext) -> Decision | None:
    cls = choose_context(ctx.requested_comparison, ctx.requested_refs, ctx.mfa_passed)
    if cls is not None:
        return Decision(Effect.ALLOW, "authn_context", Reason.OK, "all checks passed",
                        {"authn_context": cls}, authn_context=cls)
    return Decision(Effect.DENY, "authn_context", Reason.NO_AUTHN_CONTEXT,
                    "the requested authentication context cannot be satisfied",
                    {"comparison": ctx.requested_comparison, "requested": list(ctx.requested_refs)})


# The fixed order: cheap, definitive denials first; prompts (re-auth, MFA) only for users who may get in.
CHECKS: tuple[tuple[str, Check], ...] = (
    ("app_enabled", check_app_enabled),
    ("user_active", check_user_active),
    ("permitted_users", check_permitted_users),
    ("ip_range", check_ip),
    ("session_timeout", check_session_age),
    ("phishing_resistant", check_phishing_resistant),
    ("mfa", check_mfa),
    ("authn_context", check_authn_context),
)


def check_membership(ctx: AccessContext) -> Decision | None:
    """Who may use the app at all, whatever the address, session or factors: an active user the app's permitted
    users admit (everyone, or assigned / in an allowed group, never in a denied group). Outbound provisioning
    keeps exactly these users' accounts at the app; None when permitted, else the denial."""
    return check_user_active(ctx) or check_permitted_users(ctx)
