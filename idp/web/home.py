"""The user's landing page (app launcher)."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import current_user, login_required
from sqlalchemy import select

from ..extensions import db
from ..models import ConnectedApp

bp = Blueprint("home", __name__)


@bp.get("/")
@login_required
def index() -> str:
    apps = db.session.scalars(select(ConnectedApp).where(ConnectedApp.enabled.is_(True))
                              .order_by(ConnectedApp.name)).all()
    return render_template("home.html", apps=apps, user=current_user.user)
