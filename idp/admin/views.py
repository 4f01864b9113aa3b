"""Admin console views: imports every area module so their routes attach to the blueprint."""

from __future__ import annotations

from flask import redirect, url_for
from werkzeug.wrappers import Response

from . import bp


@bp.get("/")
def index() -> Response:
    return redirect(url_for("admin.apps"))
