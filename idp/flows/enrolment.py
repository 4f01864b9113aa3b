"""First-factor enrolment: who may enrol a first second factor now, and what a successful enrolment does.

A stolen password must not be enough to put the attacker's authenticator on the account (issue 13, hole 1), so
enrolling a FIRST factor (TOTP or passkey) is allowed only
- with a valid admin-issued enrolment link for this user (always, whatever the org's settings), or
- for an ADMIN account: never otherwise (a stolen admin password must not reach the console through a self-enrolled
  factor, not even inside the trusted ranges or the grace days): another admin's link, or `idp users mfa-enroll`
  / `idp users enrolment-link` on the server, or
- when self-enrolment is on (`mfa_self_enroll`, default on) and the org's enrolment mode (`mfa_enrolment`) allows:
  `trusted-ranges` (default) from an address in the org's trusted IP ranges (no range configured: nobody),
  `link-only` never, `grace-days:N` within N days of the account's creation.
Self-enrolment off means "links only", whatever the mode.

Only one first enrolment of a user can win: the finishing step locks the user's row (PostgreSQL), refuses when a
concurrent one finished first (its recovery codes exist) or when the link was spent meanwhile, and ends every
other open link of the user; the caller rolls its unit of work back on that refusal.

And a first enrolment never satisfies the requirement it was needed for: it ends every session of the user
(the current one too) and the user signs in again with the password and the new factor. Users who already have
a factor add more only from a session that passed a second factor (`mfa_at` set); that is the caller's check.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from .. import audit
from ..auth import enrolment_links, recovery_codes
from ..auth.enrolment_links import LinkCheck, LinkState
from ..errors import EventContext
from ..events import record_event
from ..extensions import db
from ..models import User, utcnow
from ..policy.checks import matching_range
from ..reasons import Reason
from ..services import accounts, org
from .authorize import Client
from .signin import (
    ACCOUNT_EVENT,
    CodeOutcome,
    Throttled,
    WrongCode,
    confirm_totp_enrolment,
    record_signin_failure,
    signin_event_context,
)


@dataclass(frozen=True, slots=True)
class EnrolmentAllowed:
    via: str            # link | trusted-ranges | grace-days


@dataclass(frozen=True, slots=True)
class EnrolmentRefused:
    reason: str         # factor_exists | admin_needs_link | link_required | outside_trusted_ranges | grace_expired
                        # | self_enrol_off; when finishing: link_spent | enrolled_meanwhile
    message: str        # for the event log (the page shows a fixed text)


EnrolmentGate = EnrolmentAllowed | EnrolmentRefused


def has_factor(user: User) -> bool:
    """Whether the user has any second factor: a confirmed TOTP authenticator or a passkey."""
    return bool(user.mfa_enrolled)


def first_factor_gate(user: User, client_ip: str | None, link_token: str | None = None) -> EnrolmentGate:
    """May `user` enrol a FIRST factor now, from `client_ip` (with an enrolment link, when one is presented)?"""
    if has_factor(user):
        return EnrolmentRefused("factor_exists", "a second factor is already enrolled; adding another needs a "
                                                 "session that passed it")
    if link_token is not None and enrolment_links.valid_for(link_token, user):
        return EnrolmentAllowed("link")
    if user.is_admin:
        return EnrolmentRefused("admin_needs_link", "an admin's first factor needs an enrolment link (or `idp users "
                                                    "mfa-enroll` on the server), whatever the enrolment mode")
    if not org.mfa_self_enroll():
        return EnrolmentRefused("self_enrol_off", "self-enrolment is off: only an enrolment link allows it")
    mode = org.mfa_enrolment()
    if mode == org.LINK_ONLY_MODE:
        return EnrolmentRefused("link_required", "enrolment mode link-only: only an enrolment link allows it")
    days = org.grace_days(mode)
    if days is not None:
        if utcnow() - user.created_at <= timedelta(days=days):
            return EnrolmentAllowed("grace-days")
        return EnrolmentRefused("grace_expired", f"enrolment mode {mode}: the account is older than {days} days")
    ranges = org.trusted_ranges()
    if matching_range(client_ip, ranges) is not None:
        return EnrolmentAllowed("trusted-ranges")
    return EnrolmentRefused("outside_trusted_ranges",
                            "enrolment mode trusted-ranges: the address is outside the org's trusted ranges"
                            if ranges else "enrolment mode trusted-ranges: no trusted range is configured")


# ------------------------------------------------------------------ events and audit

def _account_event(user: User, reason: Reason, client: Client, detail: dict[str, Any],
                   token: str | None = None) -> int:
    # the user is signed in or passed the password step: never dropped by the anonymous-event limit
    ctx = signin_event_context(user.username, token, str(detail.get("message", "")), authenticated=True)
    ctx.event_type = ACCOUNT_EVENT
    ctx.detail = {**ctx.detail, **detail}
    return record_event(ctx, reason, client_ip=client.ip, user_agent=client.user_agent).id


def record_refusal(user: User, refused: EnrolmentRefused, client: Client, token: str | None = None) -> int:
    """An `enrolment_refused` event (with the parked request's app, if any); returns its id for the page."""
    return _account_event(user, Reason.ENROLMENT_REFUSED, client,
                          {"message": refused.message, "refusal": refused.reason,
                           "mode": org.mfa_enrolment(), "self_enroll": org.mfa_self_enroll()}, token)


def record_link_problem(found: LinkCheck, client: Client, username: str | None) -> int:
    """An `enrolment_link_invalid` event: unknown, expired (or replaced), used, or another user's link."""
    why = {LinkState.UNKNOWN: "unknown enrolment link", LinkState.EXPIRED: "expired or replaced enrolment link",
           LinkState.USED: "enrolment link already used", LinkState.VALID: "enrolment link of another user"}
    ctx = EventContext(event_type=ACCOUNT_EVENT, username=username,
                       detail={"message": why[found.state], "link_state": str(found.state),
                               "link_id": found.link.id if found.link else None})
    return record_event(ctx, Reason.ENROLMENT_LINK_INVALID, client_ip=client.ip, user_agent=client.user_agent).id


def record_enrolled(user: User, kind: str, client: Client, detail: dict[str, Any] | None = None) -> None:
    """A factor was enrolled: `mfa.enrolled` in the audit trail and an event the user sees on /account.
    kind: totp | passkey | recovery_codes."""
    extra = dict(detail or {})
    audit.record("mfa.enrolled", "user", user.username, after={"kind": kind, **extra})
    _account_event(user, Reason.MFA_ENROLLED, client, {"message": f"{kind} enrolled", "kind": kind, **extra})


def record_reset(user: User, client: Client, detail: dict[str, Any] | None = None) -> None:
    """The user's factors were removed (the audit row is written by the reset itself)."""
    _account_event(user, Reason.MFA_RESET, client, {"message": "second factor removed", **(detail or {})})


def record_factor_removed(user: User, client: Client, kind: str, name: str, by: str) -> None:
    """One factor (a passkey) was removed: an `mfa_removed` event the user sees on /account (by: user | admin)."""
    _account_event(user, Reason.MFA_REMOVED, client, {"message": f"{kind} {name!r} removed", "kind": kind,
                                                      "by": by})


def record_unsuspended(user: User, client: Client, by: str) -> None:
    """A suspended TOTP factor works again (the audit row is written by totp_guard.unsuspend): an
    `mfa_unsuspended` event the user sees on /account."""
    _account_event(user, Reason.MFA_UNSUSPENDED, client, {"message": "authenticator app restored", "by": by})


def check_new_authenticator_code(user: User, code: str, client: Client, token: str | None = None) -> CodeOutcome:
    """The first code from an authenticator being set up (flows.signin.confirm_totp_enrolment); a wrong code is
    an `mfa_failed` event, a throttled one a `throttled` event (with the parked request's app, if any)."""
    outcome = confirm_totp_enrolment(user, code, client)
    if isinstance(outcome, Throttled):
        record_signin_failure(Reason.THROTTLED, user.username, token, client, "code of a new authenticator not "
                              f"checked: too many wrong codes (retry after {outcome.retry_after_s} s)",
                              authenticated=True)
    elif isinstance(outcome, WrongCode):
        return WrongCode(record_signin_failure(Reason.MFA_FAILED, user.username, token, client,
                                               "wrong code while confirming a new authenticator app",
                                               authenticated=True))
    return outcome


def record_own_reset_failure(user: User, client: Client, retry_after_s: int | None = None) -> int:
    """The user's own factor reset (/account/mfa/reset) refused: a wrong code (`mfa_failed`) or too many
    (`throttled`). Returns the event id."""
    if retry_after_s is not None:
        return _account_event(user, Reason.THROTTLED, client, {
            "message": f"factor reset: code not checked, too many wrong codes (retry after {retry_after_s} s)"})
    return _account_event(user, Reason.MFA_FAILED, client, {
        "message": "factor reset: wrong, expired or already used code (authenticator or recovery code)"})


def record_recovery_code_used(user: User, client: Client, purpose: str) -> None:
    """A recovery code was spent outside the sign-in (purpose: e.g. "factor reset"): a `recovery_code_used`
    event with the count left."""
    left = recovery_codes.remaining(user)
    _account_event(user, Reason.RECOVERY_CODE_USED, client, {"message": f"recovery code used ({purpose}), "
                                                                        f"{left} left",
                                                             "remaining": left, "purpose": purpose})


# ------------------------------------------------------------------ after a successful first enrolment

@dataclass(frozen=True, slots=True)
class FirstFactorEnrolled:
    recovery_codes: list[str]     # shown once
    sessions_ended: int


def finish_first_enrolment(user: User, kind: str, client: Client, via: str,
                           link_token: str | None = None) -> FirstFactorEnrolled | EnrolmentRefused:
    """The first factor is confirmed: spend the link, end the user's other open links, issue recovery codes,
    record it, and end EVERY session of the user (the current one too): the new factor is proved at the next
    sign-in, never by this enrolment.

    Refused (`link_spent`, `enrolled_meanwhile`) when a concurrent first enrolment of the same user won: the
    caller must roll back its unit of work (the factor it stored too) and show the refusal (`record_refusal`)."""
    lock_user(user)
    if recovery_codes.issued_at(user) is not None:
        return EnrolmentRefused("enrolled_meanwhile", "another first enrolment of this user finished first")
    if link_token is not None and via == "link" and not enrolment_links.consume(link_token, user):
        return EnrolmentRefused("link_spent", "the enrolment link was used or ended while this enrolment ran")
    enrolment_links.revoke_open(user, "first factor enrolled")
    codes = recovery_codes.issue(user)
    record_enrolled(user, kind, client, {"via": via})
    record_enrolled(user, "recovery_codes", client, {"count": len(codes)})
    ended = accounts.end_sessions(user)
    return FirstFactorEnrolled(codes, ended)


def lock_user(user: User) -> None:
    """Serialise concurrent first enrolments of one user (a row lock on PostgreSQL; SQLite has one writer)."""
    db.session.execute(select(User.id).where(User.id == user.id).with_for_update())


def finish_more_enrolment(user: User, kind: str, client: Client, keep_session: str | None,
                          detail: dict[str, Any] | None = None) -> int:
    """A further factor was added from a session that passed the second factor: record it; the user's other
    sessions end (a factor change), this one keeps what it proved. Returns the number of sessions ended."""
    record_enrolled(user, kind, client, detail)
    return accounts.end_sessions(user, except_id=keep_session)
