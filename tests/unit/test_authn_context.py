"""Unit tests for idp.policy.authn_context: RequestedAuthnContext comparison (saml-core §3.3.2.2.1)."""

from __future__ import annotations

import pytest

from idp.policy.authn_context import STRENGTH, achieved_classes, choose_context
from idp.saml.constants import AC_PASSWORD, AC_PASSWORD_PROTECTED, AC_REFEDS_MFA, AC_UNSPECIFIED

PPT = AC_PASSWORD_PROTECTED
PWD = AC_PASSWORD
MFA = AC_REFEDS_MFA
UNSPEC = AC_UNSPECIFIED
MOBILE = "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract"
TOKEN = "urn:oasis:names:tc:SAML:2.0:ac:classes:TimeSyncToken"
KERBEROS = "urn:oasis:names:tc:SAML:2.0:ac:classes:Kerberos"  # unknown to this IdP
DECL = "decl:urn:example:decl"  # an AuthnContextDeclRef, as the request parser passes it on


@pytest.mark.parametrize(
    ("comparison", "requested", "without_mfa", "with_mfa"),
    [
        # nothing requested: the strongest achieved class
        (None, [], PPT, MFA),
        ("exact", [], PPT, MFA),
        ("minimum", [], PPT, MFA),
        # exact (also the default when Comparison is absent)
        (None, [PPT], PPT, PPT),
        ("exact", [PPT], PPT, PPT),
        ("exact", [PWD], PWD, PWD),
        ("exact", [UNSPEC], UNSPEC, UNSPEC),
        ("exact", [MFA], None, MFA),
        ("exact", [MOBILE], None, MOBILE),
        ("exact", [TOKEN], None, None),  # known strength, but not a class this IdP achieves
        ("exact", [PWD, MFA], PWD, MFA),
        ("exact", [MFA, PWD], PWD, MFA),  # order of the request does not matter: strongest achieved wins
        ("exact", [KERBEROS], None, None),
        ("exact", [KERBEROS, PPT], PPT, PPT),
        ("exact", [DECL], None, None),
        # minimum: at least as strong as one requested
        ("minimum", [UNSPEC], PPT, MFA),
        ("minimum", [PWD], PPT, MFA),
        ("minimum", [PPT], PPT, MFA),
        ("minimum", [MFA], None, MFA),
        ("minimum", [TOKEN], None, MFA),
        ("minimum", [MFA, PWD], PPT, MFA),
        ("minimum", [KERBEROS], None, None),
        ("minimum", [KERBEROS, PWD], PPT, MFA),
        ("minimum", [DECL], None, None),
        # better: stronger than every requested class
        ("better", [UNSPEC], PPT, MFA),
        ("better", [PWD], PPT, MFA),
        ("better", [PPT], None, MFA),
        ("better", [MFA], None, None),
        ("better", [PWD, PPT], None, MFA),
        ("better", [KERBEROS], None, None),
        ("better", [KERBEROS, PWD], PPT, MFA),
        # maximum: as strong as possible without exceeding the strongest requested
        ("maximum", [UNSPEC], UNSPEC, UNSPEC),
        ("maximum", [PWD], PWD, PWD),
        ("maximum", [PPT], PPT, PPT),
        ("maximum", [MFA], PPT, MFA),
        ("maximum", [PWD, MFA], PPT, MFA),
        ("maximum", [KERBEROS], None, None),
        ("maximum", [KERBEROS, PWD], PWD, PWD),
        # a comparison the parser would have refused never matches
        ("atleast", [PWD], None, None),
    ],
)
@pytest.mark.parametrize("mfa", [False, True], ids=["password", "mfa"])
def test_choose_context(comparison: str | None, requested: list[str], without_mfa: str | None,
                        with_mfa: str | None, mfa: bool) -> None:
    expected = with_mfa if mfa else without_mfa
    assert choose_context(comparison, requested, mfa) == expected


@pytest.mark.parametrize("mfa", [False, True])
@pytest.mark.parametrize("comparison", [None, "exact", "minimum", "better", "maximum"])
@pytest.mark.parametrize("requested", [[PWD], [PPT], [MFA], [PWD, MFA], [KERBEROS]])
def test_chosen_class_is_achieved_and_satisfies_the_request(comparison: str | None, requested: list[str],
                                                            mfa: bool) -> None:
    chosen = choose_context(comparison, requested, mfa)
    if chosen is None:
        return
    assert chosen in achieved_classes(mfa)
    known = [STRENGTH[r] for r in requested if r in STRENGTH]
    rule = {
        None: lambda: chosen in requested,
        "exact": lambda: chosen in requested,
        "minimum": lambda: STRENGTH[chosen] >= min(known),
        "better": lambda: STRENGTH[chosen] > max(known),
        "maximum": lambda: STRENGTH[chosen] <= max(known),
    }[comparison]
    assert rule()


@pytest.mark.parametrize(
    ("mfa", "expected"),
    [
        (False, [PPT, PWD, UNSPEC]),
        (True, [MFA, MOBILE, PPT, PWD, UNSPEC]),
    ],
)
def test_achieved_classes(mfa: bool, expected: list[str]) -> None:
    achieved = achieved_classes(mfa)
    assert achieved == expected
    strengths = [STRENGTH[c] for c in achieved]
    assert strengths == sorted(strengths, reverse=True)


def test_password_session_never_claims_a_second_factor() -> None:
    for comparison in (None, "exact", "minimum", "better", "maximum"):
        for requested in ([], [MFA], [MOBILE], [TOKEN], [PWD], [PPT], [UNSPEC]):
            chosen = choose_context(comparison, requested, False)
            assert chosen is None or STRENGTH[chosen] <= STRENGTH[PPT]
