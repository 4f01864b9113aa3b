"""Inputs and results of the policy engine: plain frozen dataclasses, no Flask, no database."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from ..reasons import Reason
from ..saml.constants import AuthnContextComparison


class PermittedUsers(StrEnum):
    """Who may use an app: everyone, or only assigned users and members of allowed groups."""

    ALL = "all"
    ADMIN_APPROVED = "admin-approved"


class IpPolicy(StrEnum):
    """What a client address outside the trusted ranges (org-wide and the app's) means."""

    ENFORCE = "enforce"                 # denied
    RELAX_WITH_MFA = "relax-with-mfa"   # a second factor is needed
    RELAX = "relax"                     # no effect


class MfaAction(StrEnum):
    """What happens when an app requires MFA and the session has no second factor."""

    STEP_UP = "step-up"                 # prompt for it
    BLOCK = "block"                     # deny


# The plain strings, in the order offered: for CLI `click.Choice` and form choices (a Choice of enum members
# would match by member name).
PERMITTED_MODES = tuple(m.value for m in PermittedUsers)
IP_MODES = tuple(m.value for m in IpPolicy)
MFA_ACTIONS = tuple(m.value for m in MfaAction)


class Effect(StrEnum):
    ALLOW = "allow"
    STEP_UP = "step_up"      # a second factor is needed, then the request continues
    REAUTH = "reauth"        # the password must be entered again (session too old for this app)
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class AppPolicy:
    permitted: PermittedUsers = PermittedUsers.ALL
    allow_groups: frozenset[str] = frozenset()
    deny_groups: frozenset[str] = frozenset()
    assigned_users: frozenset[str] = frozenset()
    ip_policy: IpPolicy = IpPolicy.RELAX
    ip_ranges: tuple[str, ...] = ()
    require_mfa: bool = False
    mfa_action: MfaAction = MfaAction.STEP_UP
    session_timeout_min: int | None = None
    require_phishing_resistant: bool = False      # only a passkey / security key; implies require_mfa

    @property
    def requires_mfa(self) -> bool:
        return self.require_mfa or self.require_phishing_resistant


@dataclass(frozen=True, slots=True)
class AccessContext:
    app_slug: str
    app_enabled: bool
    policy: AppPolicy
    username: str
    user_disabled: bool
    user_groups: frozenset[str]
    client_ip: str | None
    org_ip_ranges: tuple[str, ...] = ()
    session_age_s: float | None = None            # seconds since the password was checked; None: no session
    mfa_passed: bool = False
    mfa_enrolled: bool = False
    phishing_resistant: bool = False              # the session used a passkey or security key (amr hwk / swk)
    requested_comparison: AuthnContextComparison | None = None   # None: no RequestedAuthnContext
    requested_refs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    effect: Effect
    check: str                                    # which check decided
    reason: Reason                                # ok for allow
    explanation: str                              # admin-facing
    inputs: dict[str, object] = field(default_factory=dict)   # JSON-serialisable, for the event log
    authn_context: str | None = None              # the class to assert when allowed
    error: bool = False                           # a check crashed (fail closed)

    @property
    def allowed(self) -> bool:
        return self.effect is Effect.ALLOW

    def to_detail(self) -> dict[str, object]:
        return {"check": self.check, "effect": str(self.effect), "explanation": self.explanation,
                "inputs": self.inputs}
