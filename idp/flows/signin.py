"""Sign-in steps: the password, the second factor, and what the request being signed into requires.

Each step returns an outcome (throttled, bad credentials, accepted, …) that the web layer renders;
the parked request arrives as its token (flows.pending), nothing here parses a URL or touches the
browser's cookie. Opening the IdP session is the web layer's last step (it owns the cookie).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..auth import recovery_codes, totp, totp_guard
from ..auth.passwords import Passwords
from ..errors import EventContext
from ..events import record_event
from ..extensions import db
from ..models import User
from ..notifications import bus
from ..reasons import Reason
from ..services.apps import AppConfig, app_config_by_id
from ..services.known_devices import record_signin_device
from ..services.users import find_user
from ..throttle import (
    LOGIN_ACCOUNT_IP_RULE,
    LOGIN_ACCOUNT_RULE,
    LOGIN_IP_RULE,
    MFA_RULE,
    login_account_ip_key,
    login_account_key,
    login_ip_key,
    record_failure,
    recovery_code_key,
    reset,
    retry_after,
    totp_code_key,
)
from . import pending as pending_store
from .authorize import AuthzRequest, Client, passkey_required, second_factor_needed


def _parked(token: str | None) -> tuple[AuthzRequest, AppConfig | None] | None:
    """The parked request behind `token` (any protocol) and its app (None when removed meanwhile)."""
    found = pending_store.authz_request(token)
    if found is None:
        return None
    req = found[1]
    return req, app_config_by_id(req.app_id)


def needs_second_factor(token: str | None, user: User, client_ip: str | None) -> bool:
    """After the password: whether the parked request needs a second factor (then no session opens yet)."""
    parked = _parked(token)
    if parked is None or parked[1] is None:
        return False
    return second_factor_needed(parked[0], parked[1], user, client_ip)


def passkey_required_for(token: str | None) -> bool:
    """Whether the parked request's second factor must be a passkey or security key (its app requires
    phishing-resistant sign-in): then no TOTP or recovery code is offered nor accepted for it."""
    parked = _parked(token)
    return parked is not None and parked[1] is not None and passkey_required(parked[0], parked[1])


def record_passkey_required(token: str | None, user: User, client: Client, why: str) -> int:
    """A `phishing_resistant_required` event: the app accepts only a passkey, and the user has none (or offered
    a code instead); returns the event id."""
    return record_signin_failure(Reason.PHISHING_RESISTANT_REQUIRED, user.username, token, client, why,
                                 authenticated=True)


def record_second_factor_failure(token: str | None, user: User, client: Client, why: str) -> int | None:
    """An `mfa_failed` event (with the parked request's app, if any); returns the event id. The password was
    verified: the event is authenticated (never dropped by the anonymous-event limit)."""
    return record_signin_failure(Reason.MFA_FAILED, user.username, token, client, why, authenticated=True)


# ------------------------------------------------------------------ failed sign-ins in the event log

SIGNIN_EVENT = "signin"   # event_type of a failed sign-in step (password or second factor)
ACCOUNT_EVENT = "account"  # event_type of the security events a user sees on /account (factor changes, uses)
USERNAME_MAX = 150        # the event column (and the longest username)


def signin_event_context(username: str, token: str | None, why: str, *, authenticated: bool = False) -> EventContext:
    """Who tried (the name as typed, known or not) and, when a request is parked, for which app. `authenticated`:
    the password was verified for this (real) account, so the event is never dropped by the anonymous limit."""
    ctx = EventContext(event_type=SIGNIN_EVENT, username=username.strip()[:USERNAME_MAX] or None,
                       detail={"message": why}, authenticated=authenticated)
    parked = _parked(token)
    if parked is not None:
        req, app = parked
        ctx.app_slug, ctx.sp_entity_id = (app.slug, app.entity_id) if app else (None, None)
        ctx.initiated_by, ctx.binding, ctx.request_id = req.initiated_by, req.binding, req.request_id
    return ctx


def record_signin_failure(reason: Reason, username: str, token: str | None, client: Client, why: str, *,
                          authenticated: bool = False, always_stored: bool = False) -> int:
    """One `signin` event per failed step, with the client's IP and user agent; returns the event id.

    Never the password or the code: only the name as typed, so "who is guessing alice's password"
    is one filter. The same row is written for known and unknown names (the page does not differ
    either)."""
    ctx = signin_event_context(username, token, why, authenticated=authenticated)
    ctx.always_stored = always_stored
    return record_event(ctx, reason, client_ip=client.ip, user_agent=client.user_agent).id


def record_password_failure(outcome: Throttled | BadCredentials, username: str, token: str | None,
                            client: Client) -> int:
    if isinstance(outcome, Throttled):
        return record_signin_failure(Reason.THROTTLED, username, token, client,
                                     f"password not checked: too many failures (retry after {outcome.retry_after_s} s)")
    # a wrong password naming an existing account is evidence of guessing: stored whatever the junk from the same
    # address used up (the throttle bounds these per address); unknown names and throttled tries share the budget
    return record_signin_failure(Reason.BAD_CREDENTIALS, username, token, client,
                                 "wrong username or password, or the account is disabled",
                                 always_stored=outcome.account_exists)


# ------------------------------------------------------------------ password step

@dataclass(frozen=True, slots=True)
class Throttled:
    """Too many failures for this account or address: nothing was checked. Same answer whether or not
    the account exists."""

    retry_after_s: int


@dataclass(frozen=True, slots=True)
class BadCredentials:
    """Wrong password, unknown or disabled account (one answer for all). `account_exists` is for the event log
    only (never shown)."""

    account_exists: bool = False


@dataclass(frozen=True, slots=True)
class PasswordAccepted:
    """The password is right. `second_factor`: the request being signed into needs a second factor
    before any session may open (only a "pending user" is kept until then)."""

    user: User
    second_factor: bool


PasswordOutcome = Throttled | BadCredentials | PasswordAccepted


def check_password(username: str, password: str, token: str | None, client: Client,
                   passwords: Passwords) -> PasswordOutcome:
    """The password step of a sign-in; a failure (wrong, throttled) is an event in the log."""
    outcome = verify_password_step(username, password, token, client, passwords)
    if not isinstance(outcome, PasswordAccepted):
        record_password_failure(outcome, username, token, client)
    return outcome


def verify_password_step(username: str, password: str, token: str | None, client: Client,
                         passwords: Passwords) -> PasswordOutcome:
    """The password step of a sign-in: throttle, verify (constant work for unknown users), re-hash."""
    username = username.strip()[:150]
    # (account, address) locks with growing lock-outs; the address (IPv6: its /64) locks across accounts;
    # the account across all addresses only slows (a few seconds at most): see idp.throttle
    pair_key, ip_key = login_account_ip_key(username, client.ip), login_ip_key(client.ip)
    account_key = login_account_key(username)
    wait = max(retry_after(pair_key), retry_after(ip_key), retry_after(account_key))
    if wait:
        return Throttled(wait)
    user = find_user(username) if username else None
    ok = passwords.verify(user.password_hash if user else None, password[:1024])
    if not ok or user is None or user.disabled:
        record_failure(pair_key, LOGIN_ACCOUNT_IP_RULE)
        record_failure(ip_key, LOGIN_IP_RULE)
        record_failure(account_key, LOGIN_ACCOUNT_RULE)
        return BadCredentials(account_exists=user is not None)
    reset(pair_key)  # the account-wide counter is left to expire: a success must not reopen it for a guesser
    if user.password_hash and passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash(password)
    return PasswordAccepted(user, needs_second_factor(token, user, client.ip))


# ------------------------------------------------------------------ second-factor step

@dataclass(frozen=True, slots=True)
class WrongCode:
    event_id: int | None      # the mfa_failed event (with the parked request's app, if any)


@dataclass(frozen=True, slots=True)
class CodeAccepted:
    pass


@dataclass(frozen=True, slots=True)
class FactorSuspended:
    """Too many consecutive wrong codes (idp.throttle.TOTP_MAX_CONSECUTIVE_FAILURES): the TOTP factor refuses
    every code, the right one too, until an admin clears it (`idp users mfa-unsuspend`, the console)."""


CodeOutcome = Throttled | WrongCode | CodeAccepted | FactorSuspended


def check_totp_code(user: User, code: str, token: str | None, client: Client) -> CodeOutcome:
    """The TOTP step; a wrong code is an `mfa_failed` event, a throttled one a `throttled` event."""
    outcome = verify_totp_step(user, code, token, client)
    if isinstance(outcome, Throttled):
        record_signin_failure(Reason.THROTTLED, user.username, token, client, "second factor not checked: too many "
                              f"wrong codes (retry after {outcome.retry_after_s} s)", authenticated=True)
    return outcome


def verify_totp_step(user: User, code: str, token: str | None, client: Client) -> CodeOutcome:
    """The TOTP step: throttled per (user, client address) (an attacker's wrong codes lock only the attacker's
    address out), a used code refused, a failure logged (with the parked request); a factor suspended after too
    many consecutive wrong codes, from anywhere, refuses every code."""
    if totp_guard.is_suspended(user):
        return FactorSuspended()
    key = totp_code_key(user.id, client.ip)
    wait = retry_after(key)
    if wait:
        return Throttled(wait)
    if not totp.verify_and_consume(user, code[:20]):
        record_failure(key, MFA_RULE)
        wrong = WrongCode(record_second_factor_failure(token, user, client,
                                                       "wrong, expired or already used TOTP code"))
        return FactorSuspended() if totp_guard.count_wrong_code(user, client.ip, client.user_agent) else wrong
    totp_guard.count_right_code(user)
    reset(key)
    return CodeAccepted()


def confirm_totp_enrolment(user: User, code: str, client: Client) -> CodeOutcome:
    """The first code from a new authenticator confirms its enrolment (throttled like any code)."""
    key = totp_code_key(user.id, client.ip)
    wait = retry_after(key)
    if wait:
        return Throttled(wait)
    if not totp.confirm_enrolment(user, code[:20]):
        record_failure(key, MFA_RULE)
        return WrongCode(None)
    reset(key)
    return CodeAccepted()


# ------------------------------------------------------------------ a recovery code in place of the second factor

@dataclass(frozen=True, slots=True)
class RecoveryCodeAccepted:
    remaining: int
    unsuspended: bool      # the code also cleared a TOTP suspension (the user should set the factor up again)


RecoveryOutcome = Throttled | WrongCode | RecoveryCodeAccepted


def check_recovery_code(user: User, code: str, token: str | None, client: Client) -> RecoveryOutcome:
    """A recovery code instead of the second factor: throttled per (user, client address) on a key of its own
    (wrong TOTP codes or passkeys never block it), a wrong one an `mfa_failed` event, a right one spent and a
    `recovery_code_used` event with the count left. Accepted while the TOTP factor is suspended, and clears the
    suspension."""
    key = recovery_code_key(user.id, client.ip)
    wait = retry_after(key)
    if wait:
        record_signin_failure(Reason.THROTTLED, user.username, token, client, "recovery code not checked: too many "
                              f"wrong codes (retry after {wait} s)", authenticated=True)
        return Throttled(wait)
    if not recovery_codes.consume(user, code):
        record_failure(key, MFA_RULE)
        return WrongCode(record_second_factor_failure(token, user, client, "wrong or already used recovery code"))
    reset(key)
    unsuspended = totp_guard.unsuspend(user)
    left = recovery_codes.remaining(user)
    ctx = signin_event_context(user.username, token, f"recovery code used, {left} left", authenticated=True)
    ctx.event_type = ACCOUNT_EVENT
    ctx.detail.update(remaining=left, totp_unsuspended=unsuspended)
    record_event(ctx, Reason.RECOVERY_CODE_USED, client_ip=client.ip, user_agent=client.user_agent)
    return RecoveryCodeAccepted(left, unsuspended)


NEW_DEVICE = "signin.new_device"


def note_signin_device(user: User, client: Client) -> bool:
    """A successful sign-in to the IdP: remember its (IP, user agent) for the user and, when the pair is new
    and not the user's first, publish a `signin.new_device` notice (emailed to the user by services.notify_email).
    Returns whether the notice was published."""
    seen = record_signin_device(user.id, client.ip, client.user_agent)
    if not seen.notify:
        return False
    data = {"username": user.username, "client_ip": client.ip, "user_agent": client.user_agent,
            "at": seen.at.isoformat().replace("+00:00", "Z")}
    bus.publish(NEW_DEVICE, None, lambda: bus.Notice(type=NEW_DEVICE, time=seen.at, subject=user.username,
                                                     app_slug=None, outcome="success", reason="new_device",
                                                     data=data, source="system"), db.session)
    return True
