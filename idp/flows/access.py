"""Access questions answered with the same engine as SSO: the dry run and the launcher's app list."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..auth.sessions import UserView
from ..models import User, utcnow
from ..policy.checks import parse_address
from ..policy.engine import evaluate
from ..policy.model import Decision, Effect
from ..services import ServiceError
from ..services.accounts import FormErrors
from ..services.apps import AppConfig, app_config_by_slug, list_apps
from ..services.org import trusted_ranges
from ..services.users import find_user
from .authorize import access_context


def dry_run(username: str, slug: str, ip: str | None, mfa: bool, passkey: bool = False) -> Decision:
    """Would `username` get into `slug` from `ip` with a fresh session (with or without MFA; `passkey`: the
    session signed in with a passkey, which is multi-factor and phishing-resistant)? Issues nothing."""
    user = find_user(username)
    if user is None:
        raise ServiceError(f"no user {username!r}", field="username")
    app = app_config_by_slug(slug)
    if app is None:
        raise ServiceError(f"no app with slug {slug!r}", field="slug")
    if ip is not None and parse_address(ip) is None:
        raise ServiceError(f"{ip!r} is not an IP address", field="ip")
    now = utcnow()
    return evaluate(access_context(app, user, None, ip, authn_at=now, mfa_passed=mfa or passkey, now=now,
                                   phishing_resistant=passkey))


def is_launchable(app: AppConfig) -> bool:
    """An app the launcher can start: SAML (IdP-initiated SSO) or OIDC with an initiate-login URI (OpenID
    Connect Core §4, third-party initiated login); an OIDC app without one cannot be started from here."""
    return app.saml_launchable or (app.oidc is not None and app.oidc.initiate_login_uri is not None)


def initiate_login_url(app: AppConfig, issuer: str) -> str | None:
    """The app's initiate-login URI with `iss` (OpenID Connect Core §4); None without one."""
    if app.oidc is None or app.oidc.initiate_login_uri is None:
        return None
    parts = urlsplit(app.oidc.initiate_login_uri)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "iss"] + [("iss", issuer)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def launchable_apps(user: User | UserView, client_ip: str | None) -> list[AppConfig]:
    """Apps to show on the user's launcher: those it can start (is_launchable) that the policy would not deny
    (step-up still shows)."""
    now = utcnow()
    ranges = trusted_ranges()
    out = []
    for row in list_apps():
        if not row.enabled:
            continue
        app = app_config_by_slug(row.slug)
        if app is None or not is_launchable(app):
            continue
        decision = evaluate(access_context(app, user, None, client_ip, authn_at=now, mfa_passed=True, now=now,
                                           org_ranges=ranges, phishing_resistant=True))
        if decision.effect is not Effect.DENY:
            out.append(app)
    return sorted(out, key=lambda a: a.name.lower())


def check_access(username: str, slug: str, ip: str, mfa: bool, passkey: bool = False) -> Decision:
    """The dry run with field-level errors (same engine as SSO; issues nothing)."""
    errors: dict[str, str] = {}
    if not username:
        errors["username"] = "Enter a username."
    elif find_user(username) is None:
        errors["username"] = f"No user named {username!r}."
    if not slug:
        errors["app"] = "Choose an app."
    elif app_config_by_slug(slug) is None:
        errors["app"] = f"No app with slug {slug!r}."
    if ip and parse_address(ip) is None:
        errors["ip"] = f"{ip!r} is not an IPv4 or IPv6 address."
    if errors:
        raise FormErrors(errors)
    return dry_run(username, slug, ip or None, mfa, passkey)
