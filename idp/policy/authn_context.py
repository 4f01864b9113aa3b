"""RequestedAuthnContext evaluation (saml-core-2.0-os §3.3.2.2.1) against what the user achieved."""

from __future__ import annotations

from collections.abc import Sequence

from ..saml.constants import (
    AC_MOBILE_TWO_FACTOR,
    AC_PASSWORD,
    AC_PASSWORD_PROTECTED,
    AC_REFEDS_MFA,
    AC_TIME_SYNC_TOKEN,
    AC_UNSPECIFIED,
    AuthnContextComparison,
)

# Strength order of the classes this IdP can assert; higher is stronger.
STRENGTH = {
    AC_UNSPECIFIED: 0,
    AC_PASSWORD: 1,
    AC_PASSWORD_PROTECTED: 2,
    AC_MOBILE_TWO_FACTOR: 3,
    AC_TIME_SYNC_TOKEN: 3,
    AC_REFEDS_MFA: 3,
}


def achieved_classes(mfa: bool) -> list[str]:
    """Classes the session satisfies, strongest first; the first is what the assertion states."""
    if mfa:
        return [AC_REFEDS_MFA, AC_MOBILE_TWO_FACTOR, AC_PASSWORD_PROTECTED, AC_PASSWORD, AC_UNSPECIFIED]
    return [AC_PASSWORD_PROTECTED, AC_PASSWORD, AC_UNSPECIFIED]


def choose_context(comparison: AuthnContextComparison | None, requested: Sequence[str], mfa: bool) -> str | None:
    """The class to assert, or None when the request cannot be satisfied (→ NoAuthnContext).

    exact: one of the requested classes exactly; minimum: at least as strong as one requested;
    better: stronger than all requested; maximum: no stronger than some requested.
    Unknown requested classes only match exactly.
    """
    have = achieved_classes(mfa)
    if not requested:
        return have[0]
    comparison = comparison or AuthnContextComparison.EXACT
    if comparison == AuthnContextComparison.EXACT:
        for cls in have:
            if cls in requested:
                return cls
        return None
    known = [STRENGTH[r] for r in requested if r in STRENGTH]
    if not known:
        return None
    for cls in have:
        s = STRENGTH[cls]
        if comparison == AuthnContextComparison.MINIMUM and s >= min(known):
            return cls
        if comparison == AuthnContextComparison.BETTER and s > max(known):
            return cls
        if comparison == AuthnContextComparison.MAXIMUM and s <= max(known):
            return cls
    return None
