"""Passkey endpoints: JSON for the WebAuthn ceremonies (static/passkeys.js drives them), forms to rename and
remove on /account.

- POST /passkeys/register/options, /passkeys/register: add a passkey from /account (signed in).
- POST /passkeys/login/options, /passkeys/login: `{"purpose": "login"}` passwordless from /login (keeps the parked
  `request` token and `next`, so SP-initiated SSO continues); `{"purpose": "mfa"}` the second factor on /mfa (the
  password-verified pending user, or the signed-in user stepping up).

The ceremony token (naming the challenge in the shared state) lives in the signed session cookie, so a
challenge is only answered from the browser that asked for it. CSRF: the X-CSRFToken header (flask-wtf).
Refusals are 4xx JSON `{"error": message}`; the flow has written the event.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, flash, jsonify, redirect, request, session, url_for
from flask_login import current_user, logout_user

from ..flows import passkeys as flow
from ..flows.enrolment import record_refusal
from ..flows.passkeys import Ceremony, PasskeyRefused, Registered
from .context import current_client, recent_second_factor
from .login_views import PENDING_USER, complete_login, parked_token, safe_next
from .uow import rollback

bp = Blueprint("passkeys", __name__)

REGISTER_TOKEN, LOGIN_TOKEN = "passkey_register", "passkey_login"
MAX_CREDENTIAL_JSON = 64 * 1024


def _json_error(message: str, status: int, retry_after: int | None = None) -> Response:
    resp = jsonify(error=message)
    resp.status_code = status
    if retry_after:
        resp.headers["Retry-After"] = str(retry_after)
    return resp


def _refused(r: PasskeyRefused) -> Response:
    return _json_error(r.message, r.status, r.retry_after_s)


def _body() -> dict[str, Any]:
    if (request.content_length or 0) > MAX_CREDENTIAL_JSON:
        return {}
    data = request.get_json(silent=True)
    return data if isinstance(data, dict) else {}


def _credential(body: dict[str, Any]) -> dict[str, Any] | None:
    cred = body.get("credential")
    return cred if isinstance(cred, dict) else None


def _options(c: Ceremony, key: str) -> Response:
    session[key] = c.token
    resp = Response(c.options_json, mimetype="application/json")
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _signed_in() -> bool:
    return bool(current_user.is_authenticated)


def _session_mfa() -> bool:
    """A signed-in session that passed a second factor recently (IDP_STEP_UP_MAX_AGE): what adding, renaming and
    removing a passkey need (flows.step_up)."""
    return _signed_in() and recent_second_factor()


# ------------------------------------------------------------------ registration

def _link_token(body: dict[str, Any]) -> str | None:
    """An enrolment link's token, when the registration comes from /mfa/enroll/link/<token>."""
    link = body.get("link")
    return link if isinstance(link, str) and 0 < len(link) <= 128 else None


@bp.post("/passkeys/register/options")
def register_options() -> Response:
    if not _signed_in():
        return _json_error("Sign in first.", 401)
    outcome = flow.begin_registration(current_user.user, _session_mfa(), current_client(), _link_token(_body()))
    if isinstance(outcome, PasskeyRefused):
        return _refused(outcome)
    return _options(outcome, REGISTER_TOKEN)


@bp.post("/passkeys/register")
def register() -> Response:
    if not _signed_in():
        return _json_error("Sign in first.", 401)
    body = _body()
    token = session.pop(REGISTER_TOKEN, None)
    credential = _credential(body)   # None (missing, malformed, too large): refused by the flow, challenge spent
    name = body.get("name") if isinstance(body.get("name"), str) else None
    outcome = flow.finish_registration(current_user.user, _session_mfa(), token, credential, name,
                                       current_client(), keep_session=current_user.session.id,
                                       link_token=_link_token(body))
    if isinstance(outcome, PasskeyRefused):
        if outcome.lost is not None:   # a concurrent first enrolment won: nothing of this one stays
            rollback()
            record_refusal(current_user.user, outcome.lost, current_client())
        return _refused(outcome)
    assert isinstance(outcome, Registered)
    if outcome.recovery_codes:
        # the first factor: every session ended (this one too); the codes are shown once by the page's script
        logout_user()
        session.clear()
        resp = jsonify(ok=True, name=outcome.passkey.name, recovery_codes=outcome.recovery_codes,
                       login_url=url_for("auth.login"))
        resp.headers["Cache-Control"] = "no-store"
        resp.status_code = 201
        return resp
    flash(f"Passkey “{outcome.passkey.name}” added. Your other sessions were signed out.", "success")
    resp = jsonify(ok=True, name=outcome.passkey.name, redirect=url_for("account.index"))
    resp.status_code = 201
    return resp


# ------------------------------------------------------------------ sign-in

def _mfa_subject() -> Any:
    from .mfa_views import second_factor_subject  # the pending (password-verified) user, or a step-up
    return second_factor_subject()


@bp.post("/passkeys/login/options")
def login_options() -> Response:
    body = _body()
    if body.get("purpose") == "mfa":
        subject = _mfa_subject()
        if subject is None:
            return _json_error("Your sign-in expired. Sign in again.", 401)
        outcome = flow.begin_sign_in(subject.user, current_client())
    else:
        outcome = flow.begin_sign_in(None, current_client())
    if isinstance(outcome, PasskeyRefused):
        return _refused(outcome)
    return _options(outcome, LOGIN_TOKEN)


@bp.post("/passkeys/login")
def login() -> Response:
    body = _body()
    token = session.pop(LOGIN_TOKEN, None)
    credential = _credential(body)   # None (missing, malformed, too large): refused by the flow, challenge spent
    next_url = safe_next(body.get("next") if isinstance(body.get("next"), str) else None)
    req = body.get("request")
    parked = parked_token() if not isinstance(req, str) else (
        req if len(req) <= 64 and req.isascii() and req.isprintable() else None)
    client = current_client()
    if body.get("purpose") == "mfa":
        subject = _mfa_subject()
        if subject is None:
            return _json_error("Your sign-in expired. Sign in again.", 401)
        previous, step_up = subject.previous, subject.step_up
        outcome = flow.finish_sign_in(token, credential, user=subject.user, parked_token=parked, client=client,
                                      first_factor=subject.first_factor)
    else:   # passwordless: a whole new sign-in (a new authentication instant), whoever was signed in
        previous, step_up = (current_user.session if _signed_in() else None), False
        outcome = flow.finish_sign_in(token, credential, user=None, parked_token=parked, client=client)
    if isinstance(outcome, PasskeyRefused):
        return _refused(outcome)
    session.pop(PENDING_USER, None)
    complete_login(outcome.user, previous, mfa=True, amr=outcome.amr, step_up=step_up)  # renews the session id
    return jsonify(ok=True, redirect=next_url)


# ------------------------------------------------------------------ /account: rename, remove

@bp.post("/account/passkeys/<int:passkey_id>/remove")
def remove(passkey_id: int) -> Response:
    if not _signed_in():
        return redirect(url_for("auth.login", next=url_for("account.index")), code=303)  # type: ignore[return-value]
    outcome = flow.remove_own(current_user.user, passkey_id, _session_mfa(), current_client(),
                              keep_session=current_user.session.id)
    if isinstance(outcome, PasskeyRefused):
        from .account import _page
        return _page(outcome.status, passkey_error=outcome.message)
    flash(f"Passkey “{outcome.name}” removed. Your other sessions were signed out.", "success")
    return redirect(url_for("account.index"), code=303)  # type: ignore[return-value]


@bp.post("/account/passkeys/<int:passkey_id>/rename")
def rename(passkey_id: int) -> Response:
    if not _signed_in():
        return redirect(url_for("auth.login", next=url_for("account.index")), code=303)  # type: ignore[return-value]
    outcome = flow.rename_own(current_user.user, passkey_id, (request.form.get("name") or "")[:200],
                              _session_mfa(), current_client())
    if isinstance(outcome, PasskeyRefused):
        from .account import _page
        return _page(outcome.status, passkey_error=outcome.message)
    flash(f"Passkey renamed to “{outcome.name}”.", "success")
    return redirect(url_for("account.index"), code=303)  # type: ignore[return-value]
