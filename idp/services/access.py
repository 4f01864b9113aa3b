"""Access questions answered with the same engine as SSO: the dry run and the launcher's app list."""

from __future__ import annotations

from ..auth.sessions import UserView
from ..flows.sso import access_context
from ..models import User, utcnow
from ..policy.checks import parse_address
from ..policy.engine import evaluate
from ..policy.model import Decision, Effect
from . import ServiceError
from .apps import AppConfig, app_config_by_slug, list_apps
from .org import trusted_ranges
from .users import find_user


def dry_run(username: str, slug: str, ip: str | None, mfa: bool) -> Decision:
    """Would `username` get into `slug` from `ip` with a fresh session (with or without MFA)? Issues nothing."""
    user = find_user(username)
    if user is None:
        raise ServiceError(f"no user {username!r}", field="username")
    app = app_config_by_slug(slug)
    if app is None:
        raise ServiceError(f"no app with slug {slug!r}", field="slug")
    if ip is not None and parse_address(ip) is None:
        raise ServiceError(f"{ip!r} is not an IP address", field="ip")
    now = utcnow()
    return evaluate(access_context(app, user, None, ip, authn_at=now, mfa_passed=mfa, now=now))


def launchable_apps(user: User | UserView, client_ip: str | None) -> list[AppConfig]:
    """Apps to show on the user's launcher: those the policy would not deny (step-up still shows)."""
    now = utcnow()
    ranges = trusted_ranges()
    out = []
    for row in list_apps():
        if not row.enabled:
            continue
        app = app_config_by_slug(row.slug)
        if app is None:
            continue
        decision = evaluate(access_context(app, user, None, client_ip, authn_at=now, mfa_passed=True, now=now,
                                           org_ranges=ranges))
        if decision.effect is not Effect.DENY:
            out.append(app)
    return sorted(out, key=lambda a: a.name.lower())
