"""Table-driven tests of every policy check and their combination in the engine."""

from __future__ import annotations

from dataclasses import replace

import pytest

from idp.policy import checks
from idp.policy.engine import evaluate
from idp.policy.model import AccessContext, AppPolicy, Effect, IpPolicy, PermittedUsers
from idp.reasons import Reason
from idp.saml.constants import AC_PASSWORD_PROTECTED, AC_REFEDS_MFA


def ctx(**kw) -> AccessContext:  # type: ignore[no-untyped-def]
    policy = kw.pop("policy", AppPolicy())
    base = dict(app_slug="app", app_enabled=True, policy=policy, username="alice", user_disabled=False,
                user_groups=frozenset({"eng"}), client_ip="203.0.113.7", session_age_s=10.0)
    base.update(kw)
    return AccessContext(**base)  # type: ignore[arg-type]


def P(**kw) -> AppPolicy:  # type: ignore[no-untyped-def]
    for k in ("allow_groups", "deny_groups", "assigned_users"):
        if k in kw:
            kw[k] = frozenset(kw[k])
    if "ip_ranges" in kw:
        kw["ip_ranges"] = tuple(kw["ip_ranges"])
    return AppPolicy(**kw)


@pytest.mark.parametrize("case,context,effect,reason,check", [
    ("defaults allow", ctx(), Effect.ALLOW, Reason.OK, "authn_context"),
    ("disabled app", ctx(app_enabled=False), Effect.DENY, Reason.APP_DISABLED, "app_enabled"),
    ("disabled user", ctx(user_disabled=True), Effect.DENY, Reason.USER_DISABLED, "user_active"),
    # permitted users
    ("admin-approved, no group", ctx(policy=P(permitted="admin-approved")), Effect.DENY,
     Reason.USER_NOT_PERMITTED, "permitted_users"),
    ("admin-approved, allowed group", ctx(policy=P(permitted="admin-approved", allow_groups={"eng"})),
     Effect.ALLOW, Reason.OK, "authn_context"),
    ("admin-approved, other group", ctx(policy=P(permitted="admin-approved", allow_groups={"sales"})),
     Effect.DENY, Reason.USER_NOT_PERMITTED, "permitted_users"),
    ("admin-approved, assigned user", ctx(policy=P(permitted="admin-approved", assigned_users={"alice"})),
     Effect.ALLOW, Reason.OK, "authn_context"),
    ("deny group beats all", ctx(policy=P(deny_groups={"eng"})), Effect.DENY, Reason.USER_NOT_PERMITTED,
     "permitted_users"),
    ("deny group beats allow", ctx(policy=P(permitted="admin-approved", allow_groups={"eng"},
                                            deny_groups={"eng"})), Effect.DENY, Reason.USER_NOT_PERMITTED,
     "permitted_users"),
    ("deny group beats assignment", ctx(policy=P(permitted="admin-approved", assigned_users={"alice"},
                                                 deny_groups={"eng"})), Effect.DENY, Reason.USER_NOT_PERMITTED,
     "permitted_users"),
    # IP
    ("enforce, no ranges anywhere", ctx(policy=P(ip_policy="enforce")), Effect.ALLOW, Reason.OK, "authn_context"),
    ("enforce, inside app range", ctx(policy=P(ip_policy="enforce", ip_ranges=["203.0.113.0/24"])),
     Effect.ALLOW, Reason.OK, "authn_context"),
    ("enforce, outside app range", ctx(policy=P(ip_policy="enforce", ip_ranges=["198.51.100.0/24"])),
     Effect.DENY, Reason.IP_NOT_ALLOWED, "ip_range"),
    ("enforce, inside org range", ctx(policy=P(ip_policy="enforce"), org_ip_ranges=("203.0.113.0/24",)),
     Effect.ALLOW, Reason.OK, "authn_context"),
    ("enforce, outside org range", ctx(policy=P(ip_policy="enforce"), org_ip_ranges=("10.0.0.0/8",)),
     Effect.DENY, Reason.IP_NOT_ALLOWED, "ip_range"),
    ("enforce, unknown client ip", ctx(policy=P(ip_policy="enforce", ip_ranges=["10.0.0.0/8"]), client_ip=None),
     Effect.DENY, Reason.IP_NOT_ALLOWED, "ip_range"),
    ("relax ignores ranges", ctx(policy=P(ip_policy="relax", ip_ranges=["10.0.0.0/8"])), Effect.ALLOW,
     Reason.OK, "authn_context"),
    ("relax-with-mfa outside → step-up", ctx(policy=P(ip_policy="relax-with-mfa", ip_ranges=["10.0.0.0/8"])),
     Effect.STEP_UP, Reason.MFA_REQUIRED, "mfa"),
    ("relax-with-mfa outside with mfa", ctx(policy=P(ip_policy="relax-with-mfa", ip_ranges=["10.0.0.0/8"]),
                                            mfa_passed=True), Effect.ALLOW, Reason.OK, "authn_context"),
    ("relax-with-mfa inside", ctx(policy=P(ip_policy="relax-with-mfa", ip_ranges=["203.0.113.0/24"])),
     Effect.ALLOW, Reason.OK, "authn_context"),
    ("IPv6 inside", ctx(policy=P(ip_policy="enforce", ip_ranges=["2001:db8::/32"]), client_ip="2001:db8::1"),
     Effect.ALLOW, Reason.OK, "authn_context"),
    ("IPv6 outside", ctx(policy=P(ip_policy="enforce", ip_ranges=["2001:db8::/32"]), client_ip="2001:db9::1"),
     Effect.DENY, Reason.IP_NOT_ALLOWED, "ip_range"),
    ("IPv4-mapped IPv6 matches IPv4 range", ctx(policy=P(ip_policy="enforce", ip_ranges=["10.0.0.0/8"]),
                                                client_ip="::ffff:10.1.2.3"), Effect.ALLOW, Reason.OK,
     "authn_context"),
    ("IPv4 client vs IPv6-only ranges", ctx(policy=P(ip_policy="enforce", ip_ranges=["2001:db8::/32"]),
                                           client_ip="10.1.2.3"), Effect.DENY, Reason.IP_NOT_ALLOWED, "ip_range"),
    # session timeout
    ("timeout not reached", ctx(policy=P(session_timeout_min=5), session_age_s=299), Effect.ALLOW, Reason.OK,
     "authn_context"),
    ("timeout exceeded", ctx(policy=P(session_timeout_min=5), session_age_s=301), Effect.REAUTH,
     Reason.SESSION_EXPIRED, "session_timeout"),
    # MFA
    ("require mfa → step-up", ctx(policy=P(require_mfa=True)), Effect.STEP_UP, Reason.MFA_REQUIRED, "mfa"),
    ("require mfa, block", ctx(policy=P(require_mfa=True, mfa_action="block")), Effect.DENY, Reason.MFA_REQUIRED,
     "mfa"),
    ("require mfa, passed", ctx(policy=P(require_mfa=True), mfa_passed=True), Effect.ALLOW, Reason.OK,
     "authn_context"),
    ("block with mfa passed", ctx(policy=P(require_mfa=True, mfa_action="block"), mfa_passed=True), Effect.ALLOW,
     Reason.OK, "authn_context"),
    # ordering: denial before prompts
    ("not permitted beats mfa prompt", ctx(policy=P(permitted="admin-approved", require_mfa=True)), Effect.DENY,
     Reason.USER_NOT_PERMITTED, "permitted_users"),
    ("ip deny beats timeout", ctx(policy=P(ip_policy="enforce", ip_ranges=["10.0.0.0/8"], session_timeout_min=1),
                                  session_age_s=9999), Effect.DENY, Reason.IP_NOT_ALLOWED, "ip_range"),
    # requested authentication context
    ("exact PPT", ctx(requested_comparison="exact", requested_refs=(AC_PASSWORD_PROTECTED,)), Effect.ALLOW,
     Reason.OK, "authn_context"),
    ("exact MFA without mfa → step-up", ctx(requested_comparison="exact", requested_refs=(AC_REFEDS_MFA,)),
     Effect.STEP_UP, Reason.MFA_REQUIRED, "mfa"),
    ("minimum MFA with mfa", ctx(requested_comparison="minimum", requested_refs=(AC_REFEDS_MFA,), mfa_passed=True),
     Effect.ALLOW, Reason.OK, "authn_context"),
    ("unknown class", ctx(requested_comparison="exact", requested_refs=("urn:x:unknown",)), Effect.DENY,
     Reason.NO_AUTHN_CONTEXT, "authn_context"),
    ("better than MFA impossible", ctx(requested_comparison="better", requested_refs=(AC_REFEDS_MFA,),
                                       mfa_passed=True), Effect.DENY, Reason.NO_AUTHN_CONTEXT, "authn_context"),
])
def test_engine_table(case, context, effect, reason, check):
    d = evaluate(context)
    assert (d.effect, d.reason, d.check) == (effect, reason, check), case


def test_allow_asserts_the_class_achieved():
    assert evaluate(ctx()).authn_context == AC_PASSWORD_PROTECTED
    assert evaluate(ctx(mfa_passed=True)).authn_context == AC_REFEDS_MFA


def test_denials_explain_inputs():
    d = evaluate(ctx(policy=P(ip_policy="enforce", ip_ranges=["10.0.0.0/8"])))
    assert d.inputs["client_ip"] == "203.0.113.7" and d.inputs["ranges"] == ["10.0.0.0/8"]
    assert d.inputs["matched_range"] is None
    d = evaluate(ctx(policy=P(permitted="admin-approved", allow_groups={"sales"})))
    assert d.inputs["user_groups"] == ["eng"] and d.inputs["allow_groups"] == ["sales"]


def test_a_crashing_check_denies(monkeypatch):
    def boom(_ctx):  # type: ignore[no-untyped-def]
        raise RuntimeError("broken")
    monkeypatch.setattr(checks, "CHECKS", (("ip_range", boom),) + checks.CHECKS)
    import idp.policy.engine as engine
    monkeypatch.setattr(engine, "CHECKS", checks.CHECKS)
    d = evaluate(ctx())
    assert d.effect is Effect.DENY and d.error and d.reason is Reason.POLICY_ERROR and d.check == "ip_range"


def test_malformed_range_in_stored_policy_fails_closed():
    d = evaluate(ctx(policy=replace(P(ip_policy="enforce"), ip_ranges=("not-a-cidr",))))
    assert d.effect is Effect.DENY and d.error


@pytest.mark.parametrize("value,ok", [("10.0.0.0/8", True), ("10.0.0.1/8", False), ("2001:db8::/32", True),
                                      ("10.0.0.1", True), ("300.0.0.0/8", False), ("", False), ("abc", False)])
def test_parse_cidr(value, ok):
    if ok:
        checks.parse_cidr(value)
    else:
        with pytest.raises(ValueError):
            checks.parse_cidr(value)


@pytest.mark.parametrize(("policy", "user", "expected"), [
    (AppPolicy(), {}, None),
    (AppPolicy(), {"user_disabled": True}, Reason.USER_DISABLED),
    (AppPolicy(permitted=PermittedUsers.ADMIN_APPROVED), {}, Reason.USER_NOT_PERMITTED),
    (AppPolicy(permitted=PermittedUsers.ADMIN_APPROVED, allow_groups=frozenset({"eng"})),
     {"user_groups": frozenset({"eng"})}, None),
    (AppPolicy(permitted=PermittedUsers.ADMIN_APPROVED, assigned_users=frozenset({"alice"})), {}, None),
    (AppPolicy(deny_groups=frozenset({"contractors"})), {"user_groups": frozenset({"contractors"})},
     Reason.USER_NOT_PERMITTED),
    # membership ignores the address, the session and the factors: provisioning has none of them
    (AppPolicy(ip_policy=IpPolicy.ENFORCE, ip_ranges=("10.0.0.0/8",), require_mfa=True), {"client_ip": None}, None),
])
def test_check_membership_is_who_may_use_the_app_at_all(policy: AppPolicy, user: dict[str, object],
                                                        expected: Reason | None) -> None:
    decision = checks.check_membership(ctx(policy=policy, **user))
    assert (decision.reason if decision else None) == expected
