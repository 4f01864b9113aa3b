"""Inputs and results of the policy engine: plain frozen dataclasses, no Flask, no database."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..reasons import Reason

PERMITTED_MODES = ("all", "admin-approved")
IP_MODES = ("enforce", "relax-with-mfa", "relax")
MFA_ACTIONS = ("step-up", "block")


class Effect(StrEnum):
    ALLOW = "allow"
    STEP_UP = "step_up"      # a second factor is needed, then the request continues
    REAUTH = "reauth"        # the password must be entered again (session too old for this app)
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class AppPolicy:
    permitted: str = "all"                        # all | admin-approved
    allow_groups: frozenset[str] = frozenset()
    deny_groups: frozenset[str] = frozenset()
    assigned_users: frozenset[str] = frozenset()
    ip_policy: str = "relax"                      # enforce | relax-with-mfa | relax
    ip_ranges: tuple[str, ...] = ()
    require_mfa: bool = False
    mfa_action: str = "step-up"                   # step-up | block
    session_timeout_min: int | None = None


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
    requested_comparison: str | None = None
    requested_refs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    effect: Effect
    check: str                                    # which check decided
    reason: Reason                                # ok for allow
    explanation: str                              # admin-facing
    inputs: dict[str, Any] = field(default_factory=dict)
    authn_context: str | None = None              # the class to assert when allowed
    error: bool = False                           # a check crashed (fail closed)

    @property
    def allowed(self) -> bool:
        return self.effect is Effect.ALLOW

    def to_detail(self) -> dict[str, Any]:
        return {"check": self.check, "effect": str(self.effect), "explanation": self.explanation,
                "inputs": self.inputs}
