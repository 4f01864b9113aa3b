"""Login and logout pages."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from flask import Blueprint, Response, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user

from idp.auth.amr import PASSWORD_ONLY
from idp.auth.sessions import load_session, start_session
from idp.flows.signin import BadCredentials, Throttled, check_password, note_signin_device
from idp.models import IdpSession, User, utcnow
from idp.web.context import current_client, passwords, settings
from idp.web.params import flag
from idp.web.principal import Principal

bp = Blueprint("auth", __name__)


def safe_next(target: str | None) -> str:
    """Only same-origin relative paths; anything else (//host, /\\host, scheme:) goes home."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("home.index")
    if any(ord(c) < 32 for c in target):
        return url_for("home.index")
    return target


def parked_token() -> str | None:
    """The parked sign-in request this page continues (the `request` form field or query parameter)."""
    token = request.values.get("request") or None
    return token if token is None or (len(token) <= 64 and token.isascii() and token.isprintable()) else None


def load_principal(session_id: str) -> Principal | None:
    s = settings()
    idp_session = load_session(session_id, timedelta(seconds=s.session_lifetime_s),
                               timedelta(seconds=s.session_idle_s))
    return Principal(idp_session) if idp_session else None


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str:
    next_url = safe_next(request.values.get("next"))
    token = parked_token()
    force = flag(request.values.get("force")) is True
    if request.method == "GET":
        if current_user.is_authenticated and not force:
            return redirect(next_url)  # type: ignore[return-value]
        # an OIDC login_hint (OIDC Core 3.1.2.1) prefills the name; only a prefill, it decides nothing
        hint = "".join(c for c in (request.args.get("login_hint") or "")[:150] if c.isprintable())
        prefill = current_user.view.user.username if current_user.is_authenticated else hint
        return render_template("login.html", next=next_url, request_token=token, force=force, username=prefill,
                               error=None)
    username = (request.form.get("username") or "").strip()[:150]
    outcome = check_password(username, request.form.get("password") or "", token, current_client(), passwords())
    if isinstance(outcome, Throttled):
        resp = Response(render_template("login.html", next=next_url, request_token=token, force=force,
                                        username=username, error=f"Too many failed sign-ins. Try again in "
                                                                 f"{outcome.retry_after_s} seconds."), status=429)
        resp.headers["Retry-After"] = str(outcome.retry_after_s)
        return resp
    if isinstance(outcome, BadCredentials):
        return Response(render_template("login.html", next=next_url, request_token=token, force=force,
                                        username=username, error="Invalid username or password."), status=401)
    user = outcome.user
    previous = current_user.session if current_user.is_authenticated else None
    if outcome.second_factor:
        # Only a "pending user" lives in the cookie until the second factor passes: no IdP session yet.
        logout_user()
        session.clear()
        session[PENDING_USER] = {"user_id": user.id, "at": utcnow().isoformat(),
                                 "replaces": previous.id if previous is not None else None}
        return redirect(url_for("mfa.verify", next=next_url, request=token), code=303)  # type: ignore[return-value]
    complete_login(user, previous, mfa=False, amr=PASSWORD_ONLY)
    return redirect(next_url, code=303)  # type: ignore[return-value]


PENDING_USER = "pending_user"
PENDING_USER_TTL_S = 600


def complete_login(user: User, previous: IdpSession | None, *, mfa: bool,
                   amr: Sequence[str] | None = None, step_up: bool = False) -> IdpSession:
    """Open a fresh IdP session and a fresh cookie (nothing from before survives: no fixation).

    `amr`: the RFC 8176 methods proved in this sign-in (idp.auth.amr); None: the password, plus a TOTP
    code when `mfa`. `step_up`: the signed-in session `previous` proved a second factor (its authentication
    instant is kept: auth.sessions.start_session)."""
    client = current_client()
    idp_session = start_session(user, client.ip, replaces=previous, mfa=mfa, amr=amr, step_up=step_up,
                                user_agent=client.user_agent)
    if not step_up:   # a sign-in (a step-up adds a factor to a session already signed in from this device)
        note_signin_device(user, client)
    logout_user()
    session.clear()
    login_user(Principal.of(idp_session))
    return idp_session


@bp.get("/logout")
def logout() -> Response:
    """The IdP-initiated logout (answered here, not by a redirect: the browser's Sec-Fetch-Site of
    this very request decides whether it signs out at once or asks first)."""
    from idp.web.slo_views import idp_logout

    return idp_logout()
