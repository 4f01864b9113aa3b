"""The user's landing page (app launcher): tiles of the apps the policy engine lets this user launch."""

from __future__ import annotations

from flask import Blueprint, render_template, url_for
from flask_login import current_user, login_required

from ..flows.access import initiate_login_url, launchable_apps
from .context import current_client, settings

bp = Blueprint("home", __name__)


@bp.get("/")
@login_required
def index() -> str:
    user = current_user.view.user  # the request's snapshot: no ORM load for the launcher
    issuer = settings().base_url
    tiles = [(a, url_for("saml.idp_initiated", slug=a.slug) if a.saml_launchable else initiate_login_url(a, issuer))
             for a in launchable_apps(user, current_client().ip)]
    return render_template("home.html", tiles=tiles, user=user)
