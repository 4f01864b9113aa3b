"""Admin console blueprint (/admin): server-rendered forms calling services only; admin role required.

Views live in one module per area (apps_views, users_views, ...), each registering its routes on `bp`.
"""

from __future__ import annotations

from flask import Blueprint, abort
from flask_login import current_user

from idp import audit

bp = Blueprint("admin", __name__, url_prefix="/admin")


def page_number() -> int:
    """The ?page= of a paged admin list (1-based); 400 for anything else."""
    from flask import request

    try:
        page = int(request.args.get("page", "1"))
    except ValueError:
        abort(400)
    if not 1 <= page <= 100_000:
        abort(400)
    return page


@bp.before_request
def require_admin() -> None:
    """Anonymous → login; signed in but not admin → 403 (and nothing changes)."""
    if not current_user.is_authenticated:
        from flask import redirect, request, url_for
        abort(redirect(url_for("auth.login", next=request.full_path.rstrip("?"))))
    if not current_user.is_admin:
        abort(403)
    audit.set_actor(f"web:{current_user.view.user.username}")


# Metadata uploads may be federation documents of several MiB; everything else keeps the small default.
UPLOAD_ENDPOINTS = frozenset({"admin.app_new", "admin.app_refresh"})
MAX_UPLOAD_BYTES = 6 * 1024 * 1024


@bp.before_request
def allow_metadata_uploads() -> None:
    from flask import request
    if request.endpoint in UPLOAD_ENDPOINTS:
        request.max_content_length = MAX_UPLOAD_BYTES


NAV = (
    ("admin.apps", "Apps", "apps"),
    ("admin.users", "Users", "users"),
    ("admin.groups", "Groups", "groups"),
    ("admin.events", "Event log", "events"),
    ("admin.access_check", "Access check", "access"),
    ("admin.certs", "Certificates", "certs"),
    ("admin.org", "Org settings", "org"),
    ("admin.audit", "Audit trail", "audit"),
)


@bp.app_context_processor
def nav_processor() -> dict[str, object]:
    from flask import current_app

    def admin_nav() -> list[tuple[str, str, str]]:
        rules = current_app.view_functions
        return [item for item in NAV if item[0] in rules]

    return {"admin_nav": admin_nav}


def register_views() -> None:
    """Import the view modules so their routes attach to `bp` (called once by create_app)."""
    from idp.web.admin import views  # noqa: F401
