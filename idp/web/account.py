"""The signed-in user's own page (/account): password change, second factor, recovery codes, recent security
events (sign-ins, enrolments, resets, recovery-code uses)."""

from __future__ import annotations

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from .. import audit
from ..auth import amr, passkeys, recovery_codes, totp, totp_guard
from ..certs.keystore import KeyStoreError
from ..flows.enrolment import (
    EnrolmentAllowed,
    first_factor_gate,
    record_enrolled,
    record_own_reset_failure,
    record_recovery_code_used,
    record_reset,
)
from ..flows.session_end import end_remotely
from ..services import ServiceError, accounts, oauth_usage, user_sessions
from ..services.admin_queries import recent_security_events
from ..throttle import (
    LOGIN_ACCOUNT_IP_RULE,
    MFA_RULE,
    login_account_ip_key,
    record_failure,
    reset,
    retry_after,
    totp_code_key,
)
from .context import current_client, keystore, passwords, recent_second_factor, record_step_up_refusal, settings
from .login_views import complete_login
from .uow import commit

bp = Blueprint("account", __name__)


@bp.before_request
def name_actor() -> None:
    if current_user.is_authenticated:
        audit.set_actor(f"web:{current_user.user.username}")


def _page(status: int = 200, **kw: object) -> Response:
    user = current_user.user
    defaults: dict[str, object] = {"pw_errors": {}, "mfa_errors": {}, "passkey_error": None}
    defaults.update(kw)
    keys = passkeys.passkeys_of(user)
    enrolled = totp.is_enrolled(user)
    session_mfa = recent_second_factor()   # within IDP_STEP_UP_MAX_AGE: what every security change needs
    # a FIRST factor follows the org's enrolment rules; more factors need a session that passed the second factor
    first_ok = not (enrolled or keys) and isinstance(first_factor_gate(user, current_client().ip), EnrolmentAllowed)
    return Response(render_template("account.html", user=user, mfa_enrolled=enrolled,
                                    mfa_suspended=totp_guard.is_suspended(user),
                                    can_enroll=not enrolled and (first_ok or (bool(keys) and session_mfa)),
                                    recovery_left=recovery_codes.remaining(user), mfa_session=session_mfa,
                                    passkeys=keys, session_mfa=session_mfa,
                                    can_add_passkey=session_mfa if (keys or enrolled) else first_ok,
                                    password_step_up=user.mfa_enrolled and not session_mfa,
                                    step_up_minutes=settings().step_up_max_age_s // 60,
                                    events=recent_security_events(user.username),
                                    authorized=oauth_usage.list_grants(user_id=user.id),
                                    sessions=user_sessions.live_sessions(user),
                                    this_session=user_sessions.handle_of(current_user.session.id), **defaults),
                    status=status)


@bp.get("/account")
@login_required
def index() -> Response:
    return _page()


@bp.post("/account/password")
@login_required
def change_password() -> Response:
    """Needs the current password and, for a user who has a second factor, a session that passed it recently:
    a stolen password alone must not replace the password and lock the user out."""
    user, idp_session = current_user.user, current_user.session
    if user.mfa_enrolled and not recent_second_factor():
        event_id = record_step_up_refusal("password")
        return _page(403, pw_errors={"step_up": "Confirm it is you with your second factor first, then change "
                                                f"the password. Nothing was changed (event {event_id})."})
    # the login throttle's (account, address) key: no faster guessing from a live session
    key = login_account_ip_key(user.username, current_client().ip)
    wait = retry_after(key)
    if wait:
        return _page(429, pw_errors={"current_password": f"Too many wrong passwords. Try again in {wait} seconds."})
    try:
        accounts.change_own_password(user, request.form.get("current_password") or "",
                                     request.form.get("new_password") or "",
                                     request.form.get("new_password_confirm") or "", passwords(),
                                     keep_session=idp_session.id)
    except accounts.FormErrors as exc:
        if "current_password" in exc.errors:
            record_failure(key, LOGIN_ACCOUNT_IP_RULE)
        return _page(422, pw_errors=exc.errors)
    reset(key)
    # a fresh session id; only the password was proved now
    complete_login(user, idp_session, mfa=False, amr=amr.PASSWORD_ONLY)
    flash("Your password was changed. You were signed out everywhere else.", "success")
    return redirect(url_for("account.index"), code=303)  # type: ignore[return-value]


@bp.post("/account/mfa/reset")
@login_required
def reset_mfa() -> Response:
    user = current_user.user
    key = totp_code_key(user.id, current_client().ip)   # shared with the sign-in TOTP throttle
    wait = retry_after(key)
    if wait:
        record_own_reset_failure(user, current_client(), wait)
        return _page(429, mfa_errors={"code": f"Too many wrong codes. Wait {wait} seconds, then try again."})
    try:
        done = accounts.reset_own_mfa(user, (request.form.get("code") or "")[:20],
                                      keep_session=current_user.session.id)
    except accounts.FormErrors as exc:
        record_failure(key, MFA_RULE)
        client = current_client()
        if totp.is_enrolled(user):
            record_own_reset_failure(user, client)
            if not totp_guard.is_suspended(user):  # toward the long-window cap, as at sign-in
                totp_guard.count_wrong_code(user, client.ip, client.user_agent)
        return _page(422, mfa_errors=exc.errors)
    reset(key)
    if done.by_recovery_code:
        record_recovery_code_used(user, current_client(), "factor reset")
    record_reset(user, current_client(), {"by": "user", "kind": "totp"})
    removed = "Your authenticator app was removed" if done.codes_kept else \
        "Your authenticator app and recovery codes were removed"
    flash(f"{removed} and you were signed out everywhere else.", "success")
    return redirect(url_for("account.index"), code=303)  # type: ignore[return-value]


@bp.post("/account/recovery-codes")
@login_required
def regenerate_recovery_codes() -> Response:
    """Ten new recovery codes (the old ones stop working), shown once; needs a session that passed the second
    factor recently (otherwise a stolen password, or a session left open, could mint codes)."""
    user = current_user.user
    if not user.mfa_enrolled:
        return _page(409, mfa_errors={"recovery": "Set up a second factor first; recovery codes come with it."})
    if not recent_second_factor():
        event_id = record_step_up_refusal("recovery_codes")
        return _page(403, mfa_errors={"recovery": "Confirm with your second factor first, then try again "
                                                  f"(event {event_id})."})
    codes = recovery_codes.issue(user)
    record_enrolled(user, "recovery_codes", current_client(), {"count": len(codes), "regenerated": True})
    return Response(render_template("account_recovery_codes.html", codes=codes), status=200)


@bp.post("/account/apps/<int:grant_id>/revoke")
@login_required
def revoke_app(grant_id: int) -> Response:
    """Revoke the signed-in user's own authorization of an app (its refresh tokens with it); CSRF-checked. A grant
    of someone else is answered as an unknown one."""
    user = current_user.user
    try:
        row = oauth_usage.grant_of(grant_id, user_id=user.id)
    except ServiceError:
        flash("That app authorization no longer exists.", "error")
        return redirect(url_for("account.index"), code=303)  # type: ignore[return-value]
    client = current_client()
    oauth_usage.revoke_grants([row], by="user", client_ip=client.ip, user_agent=client.user_agent)
    flash(f"“{row.app_name}” no longer has access to your account.", "success")
    return redirect(url_for("account.index", _anchor="authorized-apps"), code=303)  # type: ignore[return-value]


@bp.post("/account/sessions/<handle>/end")
@login_required
def end_session(handle: str) -> Response:
    """Sign out one of the user's other sessions (another browser or device); CSRF-checked. This browser's own
    session goes through /logout (the front-channel chain tells its apps)."""
    user = current_user.user
    if handle == user_sessions.handle_of(current_user.session.id):
        return redirect(url_for("slo.idp_logout"), code=307)  # type: ignore[return-value]
    try:
        target = user_sessions.find_live_session(user, handle)
        keys = keystore().current()
    except ServiceError:
        flash("That session has already ended.", "error")
        return redirect(url_for("account.index", _anchor="sessions"), code=303)  # type: ignore[return-value]
    except KeyStoreError:
        flash("Signing out other devices is unavailable right now; try again in a minute.", "error")
        return redirect(url_for("account.index", _anchor="sessions"), code=303)  # type: ignore[return-value]
    end_remotely([target], settings(), keys, current_client(), initiated_by="user", checkpoint=commit)
    flash("That device was signed out.", "success")
    return redirect(url_for("account.index", _anchor="sessions"), code=303)  # type: ignore[return-value]
