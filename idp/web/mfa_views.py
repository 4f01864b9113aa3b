"""Second factor pages: /mfa (verify a TOTP code) and /mfa/enroll (first enrolment)."""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, Response, redirect, render_template, request, session, url_for
from flask_login import current_user

from idp.auth import passkeys, totp, totp_guard
from idp.auth.amr import PASSWORD_AND_OTP
from idp.extensions import db
from idp.flows.signin import (
    CodeAccepted,
    FactorSuspended,
    Throttled,
    WrongCode,
    check_totp_code,
    confirm_totp_enrolment,
    has_passkey,
    passkey_required_for,
    record_passkey_required,
)
from idp.models import IdpSession, User, utcnow
from idp.services import accounts
from idp.services.org import mfa_self_enroll
from idp.web.context import current_client
from idp.web.login_views import PENDING_USER, PENDING_USER_TTL_S, complete_login, parked_token, safe_next

bp = Blueprint("mfa", __name__)


def _subject() -> tuple[User, IdpSession | None] | None:
    """Who is proving a second factor: the password-verified pending user, or the signed-in user (step-up)."""
    data = session.get(PENDING_USER)
    if data:
        age = (utcnow() - datetime.fromisoformat(data["at"])).total_seconds()
        user = db.session.get(User, data["user_id"])
        if age <= PENDING_USER_TTL_S and user is not None and not user.disabled:
            previous = db.session.get(IdpSession, data["replaces"]) if data.get("replaces") else None
            return user, previous
        session.pop(PENDING_USER, None)
        return None
    if current_user.is_authenticated:
        return current_user.user, current_user.session
    return None


def _render(template: str, status: int = 200, **kw: object) -> Response:
    return Response(render_template(template, **kw), status=status)  # no-store: see _security_headers


@bp.route("/mfa", methods=["GET", "POST"])
def verify() -> Response:
    next_url = safe_next(request.values.get("next"))
    token = parked_token()
    subject = _subject()
    if subject is None:
        return redirect(url_for("auth.login", next=next_url, request=token), code=303)  # type: ignore[return-value]
    user, previous = subject
    if passkey_required_for(token):
        return _passkey_only(user, next_url, token)
    if not user.mfa_enrolled:  # neither TOTP nor a passkey
        return _render("mfa_not_enrolled.html", next=next_url, request_token=token, can_enroll=mfa_self_enroll())
    # a passkey (static/passkeys.js -> /passkeys/login) works beside TOTP, and when TOTP is suspended
    factors = {"totp_enrolled": totp.is_enrolled(user) and not totp_guard.is_suspended(user),
               "has_passkey": passkeys.has_passkey(user)}
    if totp_guard.is_suspended(user) and not factors["has_passkey"]:
        return _render("mfa_suspended.html", 403)
    if request.method == "GET":
        return _render("mfa.html", next=next_url, request_token=token, error=None, **factors)
    outcome = check_totp_code(user, request.form.get("code", ""), token, current_client())
    if isinstance(outcome, FactorSuspended):
        return _render("mfa_suspended.html", 403)
    if isinstance(outcome, Throttled):
        return _render("mfa.html", 429, next=next_url, request_token=token,
                       error=f"Too many wrong codes. Wait {outcome.retry_after_s} seconds, then try again.", **factors)
    if isinstance(outcome, WrongCode):
        return _render("mfa.html", 401, next=next_url, request_token=token,
                       error="That code is not valid. Enter the current code from your authenticator app.", **factors)
    complete_login(user, previous, mfa=True, amr=PASSWORD_AND_OTP)  # renews the session id
    return redirect(next_url, code=303)  # type: ignore[return-value]


def _passkey_only(user: User, next_url: str, token: str | None) -> Response:
    """The parked request's app requires a passkey or security key: no TOTP or recovery code is offered or accepted.
    The passkey sign-in on this page (the `passkey_required` block of mfa.html) comes with the passkey routes."""
    client = current_client()
    if not has_passkey(user):
        event_id = record_passkey_required(token, user, client, "the app requires a passkey or security key and "
                                                                "the user has none registered")
        return _render("mfa_passkey_missing.html", 403, event_id=event_id)
    if request.method == "POST":   # a code posted anyway is not even checked
        record_passkey_required(token, user, client, "a code was offered where the app requires a passkey")
        return _render("mfa.html", 403, next=next_url, request_token=token, passkey_required=True,
                       error="This app accepts only a passkey or security key; a code is not accepted.")
    return _render("mfa.html", next=next_url, request_token=token, passkey_required=True, error=None)


@bp.route("/mfa/enroll", methods=["GET", "POST"])
def enroll() -> Response:
    next_url = safe_next(request.values.get("next"))
    token = parked_token()
    subject = _subject()
    if subject is None:
        return redirect(url_for("auth.login", next=url_for("mfa.enroll", next=next_url, request=token),  # type: ignore[return-value]
                                request=token), code=303)
    user, previous = subject
    # A factor exists: prove it rather than enrol past it. A passkey user adds TOTP only from a session that
    # passed the second factor (CONTRACT(enrol): flows.enrolment.first_factor_gate owns this rule at merge).
    passed_mfa = PENDING_USER not in session and current_user.is_authenticated and current_user.view.mfa_at is not None
    if totp.is_enrolled(user) or (user.mfa_enrolled and not passed_mfa):
        return redirect(url_for("mfa.verify", next=next_url, request=token), code=303)  # type: ignore[return-value]
    if not mfa_self_enroll():
        return _render("mfa_not_enrolled.html", next=next_url, request_token=token, can_enroll=False)
    error = None
    status = 200
    if request.method == "POST":
        outcome = confirm_totp_enrolment(user, request.form.get("code", ""))
        if isinstance(outcome, Throttled):
            error, status = f"Too many wrong codes. Wait {outcome.retry_after_s} seconds, then try again.", 429
        elif isinstance(outcome, CodeAccepted):
            kept = complete_login(user, previous, mfa=True, amr=PASSWORD_AND_OTP)
            accounts.end_sessions(user, except_id=kept.id)  # a new factor: the user's other sessions end
            return redirect(next_url, code=303)  # type: ignore[return-value]
        else:
            error, status = "That code does not match. Scan the QR code again and enter the current code.", 401
    if not user.totp_secret or request.method == "GET":
        totp.start_enrolment(user)
    secret = totp.secret_of(user)  # stored sealed
    assert secret is not None
    uri = totp.provisioning_uri(user, secret)
    return _render("mfa_enroll.html", status, next=next_url, request_token=token, secret=secret,
                   qr=totp.qr_svg(uri), uri=uri, error=error)
