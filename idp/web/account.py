"""The signed-in user's own page (/account): password change, second factor, recent sign-ins."""

from __future__ import annotations

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from .. import audit
from ..auth import amr, passkeys, totp, totp_guard
from ..services import accounts
from ..services.admin_queries import recent_sign_ins
from ..services.org import mfa_self_enroll
from ..throttle import (
    LOGIN_ACCOUNT_IP_RULE,
    MFA_RULE,
    login_account_ip_key,
    mfa_key,
    record_failure,
    reset,
    retry_after,
)
from .context import current_client, passwords
from .login_views import complete_login

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
    return Response(render_template("account.html", user=user, mfa_enrolled=totp.is_enrolled(user),
                                    can_enroll=mfa_self_enroll(), sign_ins=recent_sign_ins(user.username),
                                    passkeys=keys, session_mfa=current_user.view.mfa_at is not None,
                                    # CONTRACT(enrol): flows.enrolment.first_factor_gate decides a first factor
                                    can_add_passkey=(current_user.view.mfa_at is not None) if (keys or
                                                    totp.is_enrolled(user)) else mfa_self_enroll(),
                                    **defaults), status=status)


@bp.get("/account")
@login_required
def index() -> Response:
    return _page()


@bp.post("/account/password")
@login_required
def change_password() -> Response:
    user, idp_session = current_user.user, current_user.session
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
    if totp_guard.is_suspended(user):
        return _page(403, mfa_errors={"code": "Your authenticator is suspended after too many wrong codes; "
                                              "ask your administrator."})
    key = mfa_key(user.id)   # shared with the sign-in MFA throttle
    wait = retry_after(key)
    if wait:
        return _page(429, mfa_errors={"code": f"Too many wrong codes. Wait {wait} seconds, then try again."})
    try:
        accounts.reset_own_mfa(user, (request.form.get("code") or "")[:20], keep_session=current_user.session.id)
    except accounts.FormErrors as exc:
        record_failure(key, MFA_RULE)
        client = current_client()
        if totp.is_enrolled(user):  # counts toward the long-window cap like a code at sign-in
            totp_guard.count_wrong_code(user, client.ip, client.user_agent)
        return _page(422, mfa_errors=exc.errors)
    reset(key)
    flash("Your authenticator app was removed and you were signed out everywhere else. Set up a new one below.",
          "success")
    return redirect(url_for("account.index"), code=303)  # type: ignore[return-value]
