"""The user's landing page (app launcher): tiles of the apps the policy engine lets this user launch."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import current_user, login_required

from ..services.access import launchable_apps
from .context import current_client

bp = Blueprint("home", __name__)


@bp.get("/")
@login_required
def index() -> str:
    apps = launchable_apps(current_user.user, current_client().ip)
    return render_template("home.html", apps=apps, user=current_user.user)
