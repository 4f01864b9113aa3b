"""`acr_values` (OIDC Core 3.1.2.1) read as the authentication context classes the policy engine understands.

The policy engine (policy.authn_context) ranks SAML authentication context classes; an RP asks in OIDC terms.
The values below are understood; the first one understood, in the RP's order of preference, becomes a "minimum"
requested class, so asking for multi-factor steps the session up exactly like an app's --require-mfa. Values not
understood are ignored: acr_values is a voluntary request (OIDC Core 5.5.1.1), and refusing an unknown one would
lock clients out for asking politely.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..saml.constants import (
    AC_MOBILE_TWO_FACTOR,
    AC_PASSWORD,
    AC_PASSWORD_PROTECTED,
    AC_REFEDS_MFA,
    AC_TIME_SYNC_TOKEN,
    AuthnContextComparison,
)

ACR_MFA = AC_REFEDS_MFA                            # "https://refeds.org/profile/mfa"
PAPE_MULTI_FACTOR = "http://schemas.openid.net/pape/policies/2007/06/multi-factor"

# OIDC acr value -> the class the policy engine evaluates.
ACR_CLASSES: dict[str, str] = {
    AC_REFEDS_MFA: AC_REFEDS_MFA,
    PAPE_MULTI_FACTOR: AC_REFEDS_MFA,
    AC_MOBILE_TWO_FACTOR: AC_MOBILE_TWO_FACTOR,
    AC_TIME_SYNC_TOKEN: AC_TIME_SYNC_TOKEN,
    AC_PASSWORD_PROTECTED: AC_PASSWORD_PROTECTED,
    AC_PASSWORD: AC_PASSWORD,
}
ACR_VALUES_SUPPORTED = (AC_REFEDS_MFA, PAPE_MULTI_FACTOR, AC_PASSWORD_PROTECTED)
COMPARISON = AuthnContextComparison.MINIMUM.value


def requested_classes(acr_values: Sequence[str]) -> tuple[str, ...]:
    """The class to require: the RP's most preferred value that is understood (empty: none understood)."""
    for value in acr_values:
        if value in ACR_CLASSES:
            return (ACR_CLASSES[value],)
    return ()


def acr_claim(achieved_class: str | None, acr_values: Sequence[str]) -> str | None:
    """The `acr` to state: the RP's own spelling of the class achieved when it asked for it, else the class."""
    for value in acr_values:
        if ACR_CLASSES.get(value) == achieved_class:
            return value
    return achieved_class
