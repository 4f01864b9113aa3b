"""The protocol-neutral gate every sign-in request passes: authenticate → check policy → (issue).

A protocol core (SAML today, OpenID Connect next) parses its request into an `AuthzRequest`; this
module decides, for the browser's session (or none), whether the request may be answered now or
what the user must do first. It returns a `Gate` value and never raises for control flow: the
protocol flow turns the gate into its own outcome (a signed Response, a redirect to log in, an
OAuth error, …). Nothing here knows about Flask or about a protocol's wire format.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..auth.sessions import SessionView, UserView
from ..models import User, utcnow
from ..policy.engine import evaluate
from ..policy.model import AccessContext, Decision, Effect
from ..reasons import Reason
from ..saml.constants import AuthnContextComparison
from ..services.apps import AppConfig
from ..services.org import trusted_ranges


@dataclass(frozen=True, slots=True)
class Client:
    """Who is asking: the client address (after the trusted proxies) and user agent, for policy and events."""

    ip: str | None
    user_agent: str | None


@dataclass(frozen=True, slots=True)
class AuthzRequest:
    """What the gate needs to know about a pending sign-in request, whatever its protocol."""

    app_id: int
    received_at: datetime
    force_authn: bool = False                  # SAML ForceAuthn; OIDC prompt=login / max_age exceeded
    is_passive: bool = False                   # SAML IsPassive; OIDC prompt=none
    requested_comparison: str | None = None    # RequestedAuthnContext Comparison
    requested_refs: tuple[str, ...] = ()       # requested authentication context classes (acr values)
    # for the event log: how the request arrived
    initiated_by: str | None = None            # sp | idp (SAML); rp (OIDC)
    binding: str | None = None
    request_id: str | None = None


# ------------------------------------------------------------------ gate results

@dataclass(frozen=True, slots=True)
class Allowed:
    decision: Decision


@dataclass(frozen=True, slots=True)
class LoginRequired:
    """No session fits: sign in. `reauth`: a session exists but the password must be entered again
    (ForceAuthn, or the app's session timeout has passed)."""

    reauth: bool
    decision: Decision | None = None


@dataclass(frozen=True, slots=True)
class SecondFactorRequired:
    """A step-up: the session must pass a second factor. `passkey_required`: only a passkey or security key will
    do (the app requires phishing-resistant sign-in; a TOTP or recovery code is not offered nor accepted)."""

    decision: Decision

    @property
    def passkey_required(self) -> bool:
        return self.decision.reason is Reason.PHISHING_RESISTANT_REQUIRED


@dataclass(frozen=True, slots=True)
class PassiveRefused:
    """Interaction would be needed but the request forbids it (IsPassive, prompt=none)."""

    needed: str        # login | reauth | mfa


@dataclass(frozen=True, slots=True)
class Refused:
    decision: Decision


Gate = Allowed | LoginRequired | SecondFactorRequired | PassiveRefused | Refused


# ------------------------------------------------------------------ policy input

def access_context(app: AppConfig, user: User | UserView, req: AuthzRequest | None, client_ip: str | None, *,
                   authn_at: datetime | None, mfa_passed: bool, now: datetime,
                   org_ranges: tuple[str, ...] | None = None, phishing_resistant: bool = False) -> AccessContext:
    """The policy engine's input for this user, app and (optional) request."""
    return AccessContext(
        app_slug=app.slug, app_enabled=app.enabled, policy=app.settings.policy,
        username=user.username, user_disabled=user.disabled, user_groups=frozenset(user.group_names),
        client_ip=client_ip, org_ip_ranges=trusted_ranges() if org_ranges is None else org_ranges,
        session_age_s=(now - authn_at).total_seconds() if authn_at else None,
        mfa_passed=mfa_passed, mfa_enrolled=user.mfa_enrolled, phishing_resistant=phishing_resistant,
        requested_comparison=AuthnContextComparison(req.requested_comparison)
        if req and req.requested_comparison else None,
        requested_refs=req.requested_refs if req else (),
    )


def decide(req: AuthzRequest | None, app: AppConfig, user: User | UserView, client_ip: str | None, *,
           authn_at: datetime | None, mfa_passed: bool, now: datetime | None = None,
           phishing_resistant: bool = False) -> Decision:
    now = now or utcnow()
    return evaluate(access_context(app, user, req, client_ip, authn_at=authn_at, mfa_passed=mfa_passed, now=now,
                                   phishing_resistant=phishing_resistant))


# ------------------------------------------------------------------ the gate

def authorize(req: AuthzRequest, app: AppConfig, session: SessionView | None, client_ip: str | None,
              now: datetime | None = None) -> Gate:
    """May `req` be answered for this browser session now, and if not, what must happen first?"""
    now = now or utcnow()
    if session is None:
        return PassiveRefused("login") if req.is_passive else LoginRequired(reauth=False)
    if req.force_authn and session.authn_at < req.received_at:
        # ForceAuthn (saml-core §3.4.1): the user must authenticate after the request arrived
        return PassiveRefused("reauth") if req.is_passive else LoginRequired(reauth=True)
    decision = decide(req, app, session.user, client_ip, authn_at=session.authn_at,
                      mfa_passed=session.mfa_at is not None, now=now,
                      phishing_resistant=session.phishing_resistant)
    if decision.effect is Effect.ALLOW:
        return Allowed(decision)
    if decision.effect is Effect.STEP_UP:
        return PassiveRefused("mfa") if req.is_passive else SecondFactorRequired(decision)
    if decision.effect is Effect.REAUTH:
        return PassiveRefused("reauth") if req.is_passive else LoginRequired(reauth=True, decision=decision)
    return Refused(decision)


def second_factor_needed(req: AuthzRequest, app: AppConfig, user: User | UserView, client_ip: str | None) -> bool:
    """Right after the password: does this request need a second factor before a session may open?"""
    now = utcnow()
    decision = decide(req, app, user, client_ip, authn_at=now, mfa_passed=False, now=now)
    return decision.effect is Effect.STEP_UP


def passkey_required(req: AuthzRequest, app: AppConfig) -> bool:
    """Whether the second factor for this request must be a passkey or security key (the app requires
    phishing-resistant sign-in): the second-factor page then neither offers nor accepts a TOTP or recovery code."""
    return app.settings.policy.require_phishing_resistant
