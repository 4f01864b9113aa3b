"""Admin console views: imports every area module so their routes attach to the blueprint."""

from __future__ import annotations

from flask import redirect, url_for
from werkzeug.wrappers import Response

from idp.web.admin import bp


@bp.get("/")
def index() -> Response:
    return redirect(url_for("admin.apps"))


from idp.web.admin import users_views  # noqa: F401,E402,I001
from idp.web.admin import events_views  # noqa: F401,E402,I001
from idp.web.admin import access_views  # noqa: F401,E402,I001
from idp.web.admin import certs_views  # noqa: F401,E402,I001
from idp.web.admin import org_views  # noqa: F401,E402,I001
from idp.web.admin import audit_views  # noqa: F401,E402,I001
from idp.web.admin import apps_views  # noqa: F401,E402
from idp.web.admin import oidc_views  # noqa: F401,E402,I001
from idp.web.admin import fields_views  # noqa: F401,E402,I001
from idp.web.admin import usage_views  # noqa: F401,E402,I001
from idp.web.admin import api_tokens_views  # noqa: F401,E402,I001
from idp.web.admin import outbox_views  # noqa: F401,E402,I001
from idp.web.admin import provisioning_views  # noqa: F401,E402,I001
from idp.web.admin import email_views  # noqa: F401,E402,I001
from idp.web.admin import notifications_views  # noqa: F401,E402,I001
from idp.web.admin import metadata_refresh_views  # noqa: F401,E402,I001
