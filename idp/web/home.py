"""The user's landing page (app launcher): tiles of the apps the policy engine lets this user launch."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import current_user, login_required

from ..flows.access import launchable_apps
from .context import current_client

bp = Blueprint("home", __name__)


@bp.get("/")
@login_required
def index() -> str:
    user = current_user.view.user  # the request's snapshot: no ORM load for the launcher
    return render_template("home.html", apps=launchable_apps(user, current_client().ip), user=user)
