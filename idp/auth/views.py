"""Login and logout pages."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, Response, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user

from ..models import utcnow
from ..services.users import find_user
from ..web.context import current_client, passwords, settings
from .sessions import Principal, load_session, start_session

bp = Blueprint("auth", __name__)


def safe_next(target: str | None) -> str:
    """Only same-origin relative paths; anything else (//host, /\\host, scheme:) goes home."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("home.index")
    if any(ord(c) < 32 for c in target):
        return url_for("home.index")
    return target


def load_principal(session_id: str) -> Principal | None:
    s = settings()
    idp_session = load_session(session_id, timedelta(seconds=s.session_lifetime_s),
                               timedelta(seconds=s.session_idle_s))
    return Principal(idp_session, idp_session.user) if idp_session else None


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str:
    next_url = safe_next(request.values.get("next"))
    force = request.values.get("force") == "1"
    if request.method == "GET":
        if current_user.is_authenticated and not force:
            return redirect(next_url)  # type: ignore[return-value]
        prefill = current_user.user.username if current_user.is_authenticated else ""
        return render_template("login.html", next=next_url, force=force, username=prefill, error=None)
    username = (request.form.get("username") or "").strip()[:150]
    password = request.form.get("password") or ""
    user = find_user(username) if username else None
    ok = passwords().verify(user.password_hash if user else None, password[:1024])
    if not ok or user is None or user.disabled:
        return Response(render_template("login.html", next=next_url, force=force, username=username,
                                        error="Invalid username or password."), status=401)
    if user.password_hash and passwords().needs_rehash(user.password_hash):
        user.password_hash = passwords().hash(password)
    previous = current_user.session if current_user.is_authenticated else None
    idp_session = start_session(user, current_client().ip, replaces=previous)
    logout_user()
    session.clear()  # new cookie contents: nothing from before login survives (fixation)
    login_user(Principal(idp_session, user))
    session["login_at"] = utcnow().isoformat()
    return redirect(next_url, code=303)  # type: ignore[return-value]


@bp.get("/logout")
def logout() -> Response:
    return redirect(url_for("slo.idp_logout"), code=303)  # type: ignore[return-value]
