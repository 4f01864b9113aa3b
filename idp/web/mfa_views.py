"""Second factor pages: /mfa (verify a TOTP code), /mfa/recovery (a recovery code instead), /mfa/enroll (first
enrolment, under the org's enrolment rules) and /mfa/enroll/link/<token> (enrolment with an admin-issued link)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import Blueprint, Response, redirect, render_template, request, session, url_for
from flask_login import current_user, logout_user

from idp import audit
from idp.auth import amr, enrolment_links, passkeys, recovery_codes, totp, totp_guard
from idp.auth.enrolment_links import LinkState
from idp.extensions import db
from idp.flows.enrolment import (
    EnrolmentAllowed,
    EnrolmentRefused,
    finish_first_enrolment,
    finish_more_enrolment,
    first_factor_gate,
    has_factor,
    record_link_problem,
    record_refusal,
)
from idp.flows.signin import (
    CodeAccepted,
    FactorSuspended,
    RecoveryCodeAccepted,
    Throttled,
    WrongCode,
    check_recovery_code,
    check_totp_code,
    confirm_totp_enrolment,
    passkey_required_for,
    record_passkey_required,
)
from idp.models import IdpSession, User, utcnow
from idp.services.org import mfa_enrolment_help
from idp.web.context import current_client, recent_second_factor, record_step_up_refusal
from idp.web.login_views import PENDING_USER, PENDING_USER_TTL_S, complete_login, parked_token, safe_next

bp = Blueprint("mfa", __name__)


@dataclass(frozen=True, slots=True)
class Subject:
    """Who is proving a second factor. A pending sign-in (`step_up` False): the user who just entered the
    password; `previous` is the session it will replace, if any. A step-up (`step_up` True): the signed-in
    session `previous` proves a second factor on top of what it had (its first factor; its authentication
    instant is kept)."""

    user: User
    previous: IdpSession | None
    step_up: bool
    first_factor: tuple[str, ...] = amr.PASSWORD_ONLY   # what was proved before the second factor

    def complete(self, method: str) -> IdpSession:
        """Open the session after the second factor `method` ("otp", "hwk", "swk"): a fresh id and cookie."""
        return complete_login(self.user, self.previous, mfa=True,
                              amr=amr.with_second_factor(self.first_factor, method), step_up=self.step_up)


def second_factor_subject() -> Subject | None:
    """The password-verified pending user, or the signed-in user stepping up; None: sign in first."""
    data = session.get(PENDING_USER)
    if data:
        age = (utcnow() - datetime.fromisoformat(data["at"])).total_seconds()
        user = db.session.get(User, data["user_id"])
        if age <= PENDING_USER_TTL_S and user is not None and not user.disabled:
            previous = db.session.get(IdpSession, data["replaces"]) if data.get("replaces") else None
            audit.set_actor(f"web:{user.username}")
            return Subject(user, previous, step_up=False)   # the password was entered just now
        session.pop(PENDING_USER, None)
        return None
    if current_user.is_authenticated:
        audit.set_actor(f"web:{current_user.user.username}")
        return Subject(current_user.user, current_user.session, step_up=True,
                       first_factor=amr.first_factor_only(current_user.view.amr))
    return None


def _render(template: str, status: int = 200, **kw: object) -> Response:
    return Response(render_template(template, **kw), status=status)  # no-store: see _security_headers


def _refused(user: User, refused: EnrolmentRefused, token: str | None) -> Response:
    """403: this user cannot set up a first factor here; whom to ask; the event id."""
    event_id = record_refusal(user, refused, current_client(), token)
    return _render("enrolment_refused.html", 403, refusal=refused.reason, help_text=mfa_enrolment_help(),
                   event_id=event_id)


@bp.route("/mfa", methods=["GET", "POST"])
def verify() -> Response:
    next_url = safe_next(request.values.get("next"))
    token = parked_token()
    subject = second_factor_subject()
    if subject is None:
        return redirect(url_for("auth.login", next=next_url, request=token), code=303)  # type: ignore[return-value]
    user = subject.user
    if passkey_required_for(token):
        return _passkey_only(user, next_url, token)
    if not has_factor(user):  # neither TOTP nor a passkey
        gate = first_factor_gate(user, current_client().ip)
        if isinstance(gate, EnrolmentRefused):
            return _refused(user, gate, token)
        return _render("mfa_not_enrolled.html", next=next_url, request_token=token, can_enroll=True)
    # a passkey (static/passkeys.js -> /passkeys/login) works beside TOTP, and while TOTP is suspended
    factors = {"totp_enrolled": totp.is_enrolled(user) and not totp_guard.is_suspended(user),
               "has_passkey": passkeys.has_passkey(user), "has_codes": recovery_codes.remaining(user) > 0}
    if totp_guard.is_suspended(user) and not factors["has_passkey"]:
        return _render("mfa_suspended.html", 403, next=next_url, request_token=token, **factors)
    if request.method == "GET":
        return _render("mfa.html", next=next_url, request_token=token, error=None, **factors)
    if not factors["totp_enrolled"]:
        return _render("mfa.html", 400, next=next_url, request_token=token, **factors,
                       error="Use your passkey (or a recovery code): no authenticator app is set up.")
    outcome = check_totp_code(user, request.form.get("code", ""), token, current_client())
    if isinstance(outcome, FactorSuspended):
        return _render("mfa_suspended.html", 403, next=next_url, request_token=token, **factors)
    if isinstance(outcome, Throttled):
        return _render("mfa.html", 429, next=next_url, request_token=token, **factors,
                       error=f"Too many wrong codes. Wait {outcome.retry_after_s} seconds, then try again.")
    if isinstance(outcome, WrongCode):
        return _render("mfa.html", 401, next=next_url, request_token=token, **factors,
                       error="That code is not valid. Enter the current code from your authenticator app.")
    subject.complete(amr.OTP)  # renews the session id
    return redirect(next_url, code=303)  # type: ignore[return-value]


def _passkey_only(user: User, next_url: str, token: str | None) -> Response:
    """The parked request's app requires a passkey or security key: no TOTP or recovery code is offered or
    accepted, only the passkey sign-in of mfa.html."""
    client = current_client()
    if not passkeys.has_passkey(user):
        event_id = record_passkey_required(token, user, client, "the app requires a passkey or security key and "
                                                                "the user has none registered")
        return _render("mfa_passkey_missing.html", 403, event_id=event_id)
    if request.method == "POST":   # a code posted anyway is not even checked
        record_passkey_required(token, user, client, "a code was offered where the app requires a passkey")
        return _render("mfa.html", 403, next=next_url, request_token=token, passkey_required=True,
                       has_passkey=True, error="This app accepts only a passkey or security key; a code is not "
                                               "accepted.")
    return _render("mfa.html", next=next_url, request_token=token, passkey_required=True, has_passkey=True,
                   error=None)


@bp.route("/mfa/recovery", methods=["GET", "POST"])
def recovery() -> Response:
    """A recovery code in place of the second factor (also while the TOTP factor is suspended)."""
    next_url = safe_next(request.values.get("next"))
    token = parked_token()
    subject = second_factor_subject()
    if subject is None:
        return redirect(url_for("auth.login", next=next_url, request=token), code=303)  # type: ignore[return-value]
    user = subject.user
    if not has_factor(user) or passkey_required_for(token):  # a passkey-only app takes no recovery code
        return redirect(url_for("mfa.verify", next=next_url, request=token), code=303)  # type: ignore[return-value]
    if request.method == "GET":
        return _render("mfa_recovery.html", next=next_url, request_token=token, error=None)
    outcome = check_recovery_code(user, request.form.get("code", ""), token, current_client())
    if isinstance(outcome, Throttled):
        return _render("mfa_recovery.html", 429, next=next_url, request_token=token,
                       error=f"Too many wrong codes. Wait {outcome.retry_after_s} seconds, then try again.")
    if not isinstance(outcome, RecoveryCodeAccepted):
        return _render("mfa_recovery.html", 401, next=next_url, request_token=token,
                       error="That recovery code is not valid or was used before.")
    subject.complete(amr.OTP)  # a recovery code is a one-time code: "otp"
    return _render("mfa_recovery_used.html", next=next_url, remaining=outcome.remaining,
                   unsuspended=outcome.unsuspended)


@bp.route("/mfa/enroll", methods=["GET", "POST"])
def enroll() -> Response:
    next_url = safe_next(request.values.get("next"))
    token = parked_token()
    subject = second_factor_subject()
    if subject is None:
        return redirect(url_for("auth.login", next=url_for("mfa.enroll", next=next_url, request=token),  # type: ignore[return-value]
                                request=token), code=303)
    user = subject.user
    if has_factor(user):
        if totp.is_enrolled(user) or not subject.step_up:
            return redirect(url_for("mfa.verify", next=next_url, request=token), code=303)  # type: ignore[return-value]
        if not _session_passed_mfa():
            # a passkey user adds an authenticator app from a session that passed the second factor recently:
            # step up first, then come back here
            if request.method == "POST":
                record_step_up_refusal("totp_add")
            return redirect(url_for("mfa.verify", next=url_for("mfa.enroll", next=next_url)),  # type: ignore[return-value]
                            code=303)
        return _enrol_totp(user, None, next_url, token, None, url_for("mfa.enroll"))
    gate = first_factor_gate(user, current_client().ip)
    if isinstance(gate, EnrolmentRefused):
        return _refused(user, gate, token)
    return _enrol_totp(user, gate, next_url, token, None, url_for("mfa.enroll"))


@bp.route("/mfa/enroll/link/<link_token>", methods=["GET", "POST"])
def enroll_with_link(link_token: str) -> Response:
    """An admin-issued enrolment link: sign in with the password if needed (the link is the `next` page), then
    enrol a first factor whatever the org's enrolment mode. Spent when the enrolment succeeds."""
    here = url_for("mfa.enroll_with_link", link_token=link_token)
    found = enrolment_links.check(link_token)
    if found.state is not LinkState.VALID:
        event_id = record_link_problem(found, current_client(), None)
        return _render("enrolment_link_invalid.html", 404 if found.state is LinkState.UNKNOWN else 410,
                       state=str(found.state), event_id=event_id)
    subject = second_factor_subject()
    if subject is None:
        return redirect(url_for("auth.login", next=here), code=303)  # type: ignore[return-value]
    user = subject.user
    if found.user_id != user.id:
        event_id = record_link_problem(found, current_client(), user.username)
        return _render("enrolment_link_invalid.html", 403, state="other_user", event_id=event_id)
    next_url = safe_next(request.values.get("next") or url_for("account.index"))
    if has_factor(user):
        return _render("enrolment_link_invalid.html", 409, state="factor_exists", event_id=None)
    gate = first_factor_gate(user, current_client().ip, link_token)
    if isinstance(gate, EnrolmentRefused):  # cannot happen for a valid link of a user without a factor
        return _refused(user, gate, None)
    return _enrol_totp(user, gate, next_url, None, link_token, here)


def _session_passed_mfa() -> bool:
    """A signed-in session (not a password-only pending sign-in) that passed a second factor recently
    (IDP_STEP_UP_MAX_AGE: flows.step_up)."""
    return PENDING_USER not in session and recent_second_factor()


def _enrol_totp(user: User, gate: EnrolmentAllowed | None, next_url: str, token: str | None,
                link_token: str | None, action: str) -> Response:
    """The TOTP enrolment page and its confirmation. A confirmed FIRST factor (`gate` given) ends every session
    of the user (this one too) and asks them to sign in again: the enrolment itself never satisfies a
    second-factor step. An additional factor (`gate` None: a session that passed the second factor) ends the
    user's other sessions."""
    error = None
    status = 200
    if request.method == "POST":
        outcome = confirm_totp_enrolment(user, request.form.get("code", ""), current_client())
        if isinstance(outcome, Throttled):
            error, status = f"Too many wrong codes. Wait {outcome.retry_after_s} seconds, then try again.", 429
        elif isinstance(outcome, CodeAccepted) and gate is None:
            finish_more_enrolment(user, "totp", current_client(), current_user.session.id)
            return redirect(next_url, code=303)  # type: ignore[return-value]
        elif isinstance(outcome, CodeAccepted) and gate is not None:
            done = finish_first_enrolment(user, "totp", current_client(), gate.via, link_token)
            logout_user()
            session.clear()
            login_url = url_for("auth.login", next=next_url, request=token)
            return _render("mfa_enrolled.html", codes=done.recovery_codes, login_url=login_url,
                           username=user.username)
        else:
            error, status = "That code does not match. Scan the QR code again and enter the current code.", 401
    if not user.totp_secret or request.method == "GET":
        totp.start_enrolment(user)
    secret = totp.secret_of(user)  # stored sealed
    assert secret is not None
    uri = totp.provisioning_uri(user, secret)
    # a passkey instead, from a signed-in session (the passkey routes need one): the link's page and /account
    passkey_link = link_token if link_token and PENDING_USER not in session and current_user.is_authenticated else None
    return _render("mfa_enroll.html", status, next=next_url, request_token=token, secret=secret,
                   qr=totp.qr_svg(uri), uri=uri, error=error, action=action, passkey_link=passkey_link)
