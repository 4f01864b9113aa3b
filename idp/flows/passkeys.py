"""Passkey use cases: register one from the account page, sign in with one (passwordless, or as the second
factor after the password), remove one. Each step returns an outcome the web layer renders as JSON.

Every refusal is an event (`signin` for sign-in steps, `account` for registration) with the client's address,
user agent and the parked request's app, and counts against a throttle (idp.throttle): failed assertions,
passwordless or as the second factor, per client address only (a signature cannot be guessed, the account is
unknown until it verifies, and a failure must not lock the owner out); failed registrations per (user, address);
sign-in options requests (each stores a challenge) per address, generously. A passwordless sign-in with user
verification is multi-factor on its own (something you have + a PIN or biometric): amr "hwk"/"swk" + "mfa".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..auth import amr as amr_values
from ..auth import passkeys
from ..auth.passkeys import PasskeyError
from ..errors import EventContext
from ..events import record_event
from ..extensions import db
from ..models import Passkey, User
from ..reasons import Outcome, Reason
from ..services import accounts
from ..throttle import (
    LOGIN_IP_RULE,
    MFA_RULE,
    PASSKEY_OPTIONS_RULE,
    passkey_ip_key,
    passkey_options_key,
    passkey_register_key,
    record_failure,
    reset,
    retry_after,
)
from .authorize import Client
from .enrolment import EnrolmentAllowed, EnrolmentRefused, finish_first_enrolment, first_factor_gate, record_enrolled
from .enrolment import record_refusal as record_enrolment_refusal
from .signin import ACCOUNT_EVENT, record_signin_failure
from .step_up import record_step_up_required


@dataclass(frozen=True, slots=True)
class Ceremony:
    """Options for navigator.credentials.create()/get() (JSON) and the token naming the stored challenge."""

    options_json: str
    token: str


@dataclass(frozen=True, slots=True)
class PasskeyRefused:
    message: str                       # safe to show the user
    status: int                        # HTTP status the web layer answers with
    event_id: int | None = None
    retry_after_s: int | None = None
    lost: EnrolmentRefused | None = None   # a concurrent first enrolment won: roll back, then record_refusal


@dataclass(frozen=True, slots=True)
class Registered:
    """The passkey is stored. `recovery_codes`: it was the user's FIRST factor, so every session ended (this one
    too: the user signs in again with it) and these codes are shown once; empty for a further factor."""

    passkey: Passkey
    recovery_codes: list[str]


@dataclass(frozen=True, slots=True)
class PasskeySignedIn:
    user: User
    passkey: Passkey
    amr: tuple[str, ...]


_STATUS = {"challenge": 400, "invalid": 400, "unknown_credential": 401, "wrong_user": 403, "counter": 403,
           "backup_eligible": 403, "duplicate": 409, "limit": 409}


# ------------------------------------------------------------------ registration (from /account)

def registration_gate(user: User, session_mfa: bool, client: Client,
                      link_token: str | None = None) -> EnrolmentAllowed | None | PasskeyRefused:
    """May this session add a passkey now? A user who has a factor adds another only from a session that passed
    the second factor recently (`session_mfa`: flows.step_up; None: allowed as a further factor); a FIRST factor
    follows the org's enrolment rules (flows.enrolment.first_factor_gate: trusted ranges, grace days or an
    enrolment link), so a stolen password alone never puts the attacker's passkey on the account."""
    if user.mfa_enrolled:
        if not session_mfa:
            event_id = record_step_up_required(user, "passkey_add", client)
            return PasskeyRefused("Confirm it is you with your current second factor first (Verify now), then add "
                                  "the passkey.", 403, event_id)
        return None
    gate = first_factor_gate(user, client.ip, link_token)
    if isinstance(gate, EnrolmentRefused):
        event_id = record_enrolment_refusal(user, gate, client)
        if gate.reason == "admin_needs_link":
            return PasskeyRefused("An administrator account sets up its first factor only with an enrolment link: "
                                  "ask another administrator for one, or run `idp users enrolment-link` on the "
                                  "server.", 403, event_id)
        return PasskeyRefused("You cannot set up a second factor from here. Ask your administrator for an "
                              "enrolment link.", 403, event_id)
    return gate


def begin_registration(user: User, session_mfa: bool, client: Client,
                       link_token: str | None = None) -> Ceremony | PasskeyRefused:
    gate = registration_gate(user, session_mfa, client, link_token)
    if isinstance(gate, PasskeyRefused):
        return gate
    try:
        options, token = passkeys.registration_options(user)
    except PasskeyError as exc:
        return PasskeyRefused(exc.message, _STATUS.get(exc.code, 400))
    return Ceremony(options, token)


def finish_registration(user: User, session_mfa: bool, token: str | None,
                        credential: dict[str, Any] | str | None, name: str | None, client: Client,
                        keep_session: str | None, link_token: str | None = None) -> Registered | PasskeyRefused:
    """Verify and store the new passkey; audit `mfa.enrolled` and an event the user sees. A further factor: the
    user's other sessions end, this one keeps what it had proved. A first factor: see Registered."""
    gate = registration_gate(user, session_mfa, client, link_token)
    if isinstance(gate, PasskeyRefused):
        return gate
    key = passkey_register_key(user.id, client.ip)
    wait = retry_after(key)
    if wait:
        return PasskeyRefused(f"Too many failed attempts. Wait {wait} seconds, then try again.", 429,
                              retry_after_s=wait)
    try:
        row = passkeys.register(user, token, credential, name)
    except PasskeyError as exc:
        record_failure(key, MFA_RULE)
        event = record_event(EventContext(event_type=ACCOUNT_EVENT, username=user.username,
                                          detail={"message": f"passkey registration refused ({exc.code}): "
                                                             f"{exc.detail}"}),
                             Reason.PASSKEY_FAILED, client_ip=client.ip, user_agent=client.user_agent)
        return PasskeyRefused(exc.message, _STATUS.get(exc.code, 400), event.id)
    reset(key)
    detail = {"name": row.name, "backup_eligible": row.backup_eligible, "aaguid": row.aaguid}
    if gate is not None:   # the first factor: never satisfies anything in this session
        done = finish_first_enrolment(user, "passkey", client, gate.via, link_token)
        if isinstance(done, EnrolmentRefused):
            return PasskeyRefused("A second factor was set up for your account meanwhile (or the enrolment link "
                                  "was used): this passkey was not saved. Sign in again.", 409, lost=done)
        return Registered(row, done.recovery_codes)
    record_enrolled(user, "passkey", client, detail)
    accounts.end_sessions(user, except_id=keep_session)
    return Registered(row, [])


def remove_own(user: User, passkey_id: int, session_mfa: bool, client: Client,
               keep_session: str | None) -> Passkey | PasskeyRefused:
    """The user removes one of their passkeys: only from a session that passed the second factor recently
    (`session_mfa`: flows.step_up; a stolen password must not strip the account's factors); the other sessions
    end, this one is no longer multi-factor."""
    if not session_mfa:
        event_id = record_step_up_required(user, "passkey_remove", client)
        return PasskeyRefused("Confirm it is you with your second factor first (Verify now), then remove the "
                              "passkey. Lost it? Ask your administrator.", 403, event_id)
    try:
        row = accounts.remove_passkey(user, passkey_id, keep_session=keep_session)
    except accounts.ServiceError:
        return PasskeyRefused("No such passkey.", 404)
    record_event(EventContext(event_type=ACCOUNT_EVENT, username=user.username,
                              detail={"message": f"passkey {row.name!r} removed", "kind": "passkey"}),
                 Reason.MFA_REMOVED, client_ip=client.ip, user_agent=client.user_agent, outcome=Outcome.SUCCESS)
    return row


def rename_own(user: User, passkey_id: int, name: str, session_mfa: bool,
               client: Client) -> Passkey | PasskeyRefused:
    """The user renames one of their passkeys: like removal, only from a session that passed the second factor
    recently (the names are what the user trusts when they pick one to keep or remove)."""
    if not session_mfa:
        event_id = record_step_up_required(user, "passkey_rename", client)
        return PasskeyRefused("Confirm it is you with your second factor first (Verify now), then rename the "
                              "passkey.", 403, event_id)
    try:
        return accounts.rename_passkey(user, passkey_id, name)
    except accounts.ServiceError:
        return PasskeyRefused("No such passkey.", 404)


# ------------------------------------------------------------------ sign-in

def begin_sign_in(user: User | None, client: Client, parked_token: str | None = None) -> Ceremony | PasskeyRefused:
    """Options for a passwordless sign-in (user None) or for the second factor of `user`. Every request counts
    against the client address (PASSKEY_OPTIONS_RULE: each one stores a challenge); beyond it, 429 and a
    `throttled` event."""
    options_key = passkey_options_key(client.ip)
    wait = retry_after(options_key)
    if wait:
        event_id = record_signin_failure(Reason.THROTTLED, user.username if user else "", parked_token, client,
                                         f"passkey options refused: too many requests from this address "
                                         f"(retry after {wait} s)", authenticated=user is not None)
        return PasskeyRefused(f"Too many requests. Wait {wait} seconds, then try again.", 429, event_id,
                              retry_after_s=wait)
    record_failure(options_key, PASSKEY_OPTIONS_RULE)
    wait = retry_after(passkey_ip_key(client.ip))
    if wait:
        return PasskeyRefused(f"Too many failed attempts. Wait {wait} seconds, then try again.", 429,
                              retry_after_s=wait)
    if user is not None and not passkeys.has_passkey(user):
        return PasskeyRefused("You have no passkey. Use another second factor.", 400)
    options, token = passkeys.authentication_options(user)
    return Ceremony(options, token)


def finish_sign_in(token: str | None, credential: dict[str, Any] | str | None, *, user: User | None,
                   parked_token: str | None, client: Client,
                   first_factor: Sequence[str] = amr_values.PASSWORD_ONLY) -> PasskeySignedIn | PasskeyRefused:
    """Verify the assertion. `user`: the password-verified (or signed-in, stepping up) user whose passkey it must
    be; None for passwordless. `first_factor`: what the user proved before this second factor (the password of a
    pending sign-in; for a step-up, the first factor of the signed-in session: auth.amr.first_factor_only), never
    assumed. The web layer opens the session (it owns the cookie)."""
    key, rule = passkey_ip_key(client.ip), LOGIN_IP_RULE   # never per user: see idp.throttle
    wait = retry_after(key)
    if wait:
        event_id = record_signin_failure(Reason.THROTTLED, user.username if user else "", parked_token, client,
                                         f"passkey not checked: too many failures (retry after {wait} s)",
                                         authenticated=user is not None)
        return PasskeyRefused(f"Too many failed attempts. Wait {wait} seconds, then try again.", 429, event_id,
                              retry_after_s=wait)
    try:
        row = passkeys.authenticate(token, credential, user=user)
    except PasskeyError as exc:
        record_failure(key, rule)
        owner = user.username if user is not None else (_owner_name(exc.passkey) or "")
        reason = Reason.PASSKEY_CLONED if exc.code == "counter" else Reason.PASSKEY_FAILED
        why = f"{'second factor' if user is not None else 'passwordless'} passkey refused ({exc.code}): {exc.detail}"
        # a second factor (user: password verified) is authenticated; a passwordless try is not
        event_id = record_signin_failure(reason, owner, parked_token, client, why, authenticated=user is not None)
        return PasskeyRefused(exc.message, _STATUS.get(exc.code, 400), event_id)
    owner_user = user if user is not None else row_user(row)
    if owner_user is None or owner_user.disabled:
        record_failure(key, rule)
        event_id = record_signin_failure(Reason.PASSKEY_FAILED, owner_user.username if owner_user else "",
                                         parked_token, client, "passkey of a disabled account")
        return PasskeyRefused("This account cannot sign in. Ask your administrator.", 403, event_id)
    reset(key)
    method = passkeys.amr_value(row)
    amr = amr_values.with_second_factor(first_factor, method) if user is not None else (method, amr_values.MFA)
    return PasskeySignedIn(owner_user, row, amr)


def row_user(row: Passkey) -> User | None:
    return db.session.get(User, row.user_id)


def _owner_name(row: Passkey | None) -> str | None:
    if row is None:
        return None
    owner = row_user(row)
    return owner.username if owner else None
