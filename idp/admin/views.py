"""Admin console views: imports every area module so their routes attach to the blueprint."""

from __future__ import annotations

from flask import redirect, url_for
from werkzeug.wrappers import Response

from . import bp


@bp.get("/")
def index() -> Response:
    return redirect(url_for("admin.apps"))


from . import users_views  # noqa: F401,E402,I001
from . import events_views  # noqa: F401,E402,I001
from . import access_views  # noqa: F401,E402,I001
from . import certs_views  # noqa: F401,E402,I001
from . import org_views  # noqa: F401,E402,I001
from . import audit_views  # noqa: F401,E402,I001
from . import apps_views  # noqa: F401,E402
