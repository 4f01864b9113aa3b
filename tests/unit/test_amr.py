"""Authentication methods of a session (RFC 8176): composition, storage form, and the phishing-resistant check."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from idp.auth import amr
from idp.auth.sessions import session_amr
from idp.policy.engine import evaluate
from idp.policy.model import AccessContext, AppPolicy, Effect, MfaAction
from idp.reasons import Reason
from idp.saml.constants import AC_PASSWORD_PROTECTED, AC_REFEDS_MFA


@pytest.mark.parametrize("case,kw,expected", [
    ("password", {"password": True}, ("pwd",)),
    ("password + TOTP", {"password": True, "otp": True}, ("pwd", "otp", "mfa")),
    ("password + recovery code", {"password": True, "otp": True}, ("pwd", "otp", "mfa")),
    ("password + device-bound passkey", {"password": True, "passkey": "hwk", "user_verified": True},
     ("pwd", "hwk", "mfa")),
    ("password + security key without UV", {"password": True, "passkey": "hwk"}, ("pwd", "hwk", "mfa")),
    ("synced passkey, passwordless", {"passkey": "swk", "user_verified": True}, ("swk", "mfa")),
    ("device-bound passkey, passwordless", {"passkey": "hwk", "user_verified": True}, ("hwk", "mfa")),
    ("passkey without user verification alone is one factor", {"passkey": "hwk"}, ("hwk",)),
    ("TOTP alone is one factor", {"otp": True}, ("otp",)),
])
def test_compose(case: str, kw: dict[str, object], expected: tuple[str, ...]) -> None:
    assert amr.compose(**kw) == expected, case  # type: ignore[arg-type]


def test_compose_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        amr.compose()
    with pytest.raises(ValueError):
        amr.compose(password=True, passkey="otp")


def test_passkey_kind_follows_the_backup_eligible_flag() -> None:
    assert amr.passkey_kind(backup_eligible=True) == "swk"
    assert amr.passkey_kind(backup_eligible=False) == "hwk"


def test_normalise_orders_deduplicates_and_refuses_unknown_values() -> None:
    assert amr.normalise(["mfa", "otp", "pwd", "otp"]) == ("pwd", "otp", "mfa")
    assert amr.to_column(["mfa", "swk"]) == "swk mfa"
    for bad in (["pwd", "sms"], [], ["pwd mfa"]):
        with pytest.raises(ValueError):
            amr.normalise(bad)
    assert len(amr.to_column(amr.ORDER)) <= amr.MAX_LENGTH


def test_from_column_reads_rows_from_before_the_column() -> None:
    now = datetime.now(UTC)
    assert amr.from_column("pwd otp mfa", None) == ("pwd", "otp", "mfa")
    assert amr.from_column(None, None) == ("pwd",)
    assert amr.from_column(None, now) == ("pwd", "otp", "mfa")     # TOTP was the only second factor then
    assert amr.from_column("", None) == ("pwd",)


def test_predicates_and_downgrade() -> None:
    assert amr.is_multi_factor(("pwd", "otp", "mfa")) and not amr.is_multi_factor(("pwd",))
    assert amr.is_phishing_resistant(("swk", "mfa")) and amr.is_phishing_resistant(("pwd", "hwk", "mfa"))
    assert not amr.is_phishing_resistant(("pwd", "otp", "mfa"))
    assert amr.first_factor_only(("pwd", "hwk", "mfa")) == ("pwd",)
    assert amr.first_factor_only(("swk", "mfa")) == ("swk",)


@pytest.mark.parametrize("before,method,expected", [
    (("pwd",), "otp", ("pwd", "otp", "mfa")),                 # a pending sign-in: the password, then a code
    (("pwd",), "hwk", ("pwd", "hwk", "mfa")),
    (("swk", "mfa"), "otp", ("otp", "swk", "mfa")),           # a passwordless session stepping up: no "pwd"
    (("hwk", "mfa"), "otp", ("otp", "hwk", "mfa")),
    (("pwd", "otp", "mfa"), "swk", ("pwd", "swk", "mfa")),    # an old second factor is not carried over
    (("hwk", "mfa"), "swk", ("hwk", "swk", "mfa")),
])
def test_with_second_factor_keeps_only_the_first_factor(before: tuple[str, ...], method: str,
                                                        expected: tuple[str, ...]) -> None:
    assert amr.with_second_factor(before, method) == expected


def test_with_second_factor_refuses_a_password_as_second_factor() -> None:
    with pytest.raises(ValueError, match="second factor"):
        amr.with_second_factor(("swk",), "pwd")


@pytest.mark.parametrize("mfa,given,expected", [
    (False, None, ("pwd",)),
    (True, None, ("pwd", "otp", "mfa")),            # the contract's default: TOTP after the password
    (False, ("pwd",), ("pwd",)),
    (False, ("mfa", "swk"), ("swk", "mfa")),         # mfa_at follows "mfa" in amr
    (True, ("pwd", "hwk", "mfa"), ("pwd", "hwk", "mfa")),
])
def test_session_amr(mfa: bool, given: tuple[str, ...] | None, expected: tuple[str, ...]) -> None:
    assert session_amr(mfa=mfa, amr=given) == expected


def test_session_amr_refuses_mfa_without_a_second_factor() -> None:
    with pytest.raises(ValueError):
        session_amr(mfa=True, amr=("pwd",))


# ---------------------------------------------------------------- the phishing-resistant policy check

def ctx(policy: AppPolicy, **kw: object) -> AccessContext:
    return AccessContext(app_slug="app", app_enabled=True, policy=policy, username="alice", user_disabled=False,
                         user_groups=frozenset(), client_ip="203.0.113.7", session_age_s=5.0,
                         **kw)  # type: ignore[arg-type]


PR = AppPolicy(require_mfa=True, require_phishing_resistant=True)


@pytest.mark.parametrize("case,context,effect,reason,check,authn_context", [
    ("password only", ctx(PR), Effect.STEP_UP, Reason.PHISHING_RESISTANT_REQUIRED, "phishing_resistant", None),
    ("password + TOTP", ctx(PR, mfa_passed=True), Effect.STEP_UP, Reason.PHISHING_RESISTANT_REQUIRED,
     "phishing_resistant", None),
    ("passkey", ctx(PR, mfa_passed=True, phishing_resistant=True), Effect.ALLOW, Reason.OK, "authn_context",
     AC_REFEDS_MFA),
    ("passkey that lost its MFA (factor reset)", ctx(PR, phishing_resistant=True), Effect.STEP_UP,
     Reason.MFA_REQUIRED, "mfa", None),
    ("blocking app, TOTP", ctx(AppPolicy(require_mfa=True, require_phishing_resistant=True,
                                         mfa_action=MfaAction.BLOCK), mfa_passed=True),
     Effect.DENY, Reason.PHISHING_RESISTANT_REQUIRED, "phishing_resistant", None),
    ("implies MFA even without require_mfa", ctx(AppPolicy(require_phishing_resistant=True), phishing_resistant=True),
     Effect.STEP_UP, Reason.MFA_REQUIRED, "mfa", None),
    ("plain app, passkey session: MFA context", ctx(AppPolicy(), mfa_passed=True, phishing_resistant=True),
     Effect.ALLOW, Reason.OK, "authn_context", AC_REFEDS_MFA),
    ("plain app, password: PPT", ctx(AppPolicy()), Effect.ALLOW, Reason.OK, "authn_context", AC_PASSWORD_PROTECTED),
])
def test_phishing_resistant_check(case: str, context: AccessContext, effect: Effect, reason: Reason, check: str,
                                  authn_context: str | None) -> None:
    d = evaluate(context)
    assert (d.effect, d.reason, d.check) == (effect, reason, check), case
    assert d.authn_context == authn_context, case
    if reason is Reason.PHISHING_RESISTANT_REQUIRED:
        assert d.inputs["passkey_required"] is True and "passkey or security key" in d.explanation
