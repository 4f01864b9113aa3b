"""Consent: when the user must be asked, and how each scope reads on the consent page."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Plain-language descriptions of the standard scopes (OIDC Core 5.4; `groups` is this IdP's own).
SCOPE_TEXT = {
    "openid": "Sign you in and know who you are (an identifier for your account, not your password)",
    "profile": "Your name and username",
    "email": "Your email address",
    "groups": "The names of the groups you belong to",
    "offline_access": "Keep access while you are not signed in, until you revoke it from your account page",
}


@dataclass(frozen=True, slots=True)
class ScopeLine:
    scope: str
    text: str


def describe_scopes(scopes: Iterable[str]) -> list[ScopeLine]:
    """One line per scope for the consent page; a custom scope is named as the app registered it."""
    return [ScopeLine(s, SCOPE_TEXT.get(s, f"Application-specific permission “{s}”")) for s in scopes]


def consent_needed(requested: Sequence[str], consented: Sequence[str] | None, *, prompt_consent: bool) -> bool:
    """A self-authorize app asks when nothing live was consented to, when the request goes beyond what was, or
    when the RP insists (prompt=consent)."""
    if prompt_consent or consented is None:
        return True
    return not set(requested) <= set(consented)
