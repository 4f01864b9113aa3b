"""Admin console blueprint (/admin): server-rendered forms calling services only; an admin with a recent second
factor, from an allowed address, required (flows.admin_gate).

Views live in one module per area (apps_views, users_views, ...), each registering its routes on `bp`.
"""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, abort, current_app, redirect, request, url_for
from flask_login import current_user
from werkzeug.exceptions import HTTPException

from idp import audit
from idp.certs.keystore import EXPIRY_WARNING_DAYS, KeyStoreError, expiry_warning
from idp.flows.admin_gate import ConsoleRefused, NeedsSecondFactor, check_console_access
from idp.web.context import current_client, keystore, settings
from idp.web.responses import error_page

bp = Blueprint("admin", __name__, url_prefix="/admin")


def page_number() -> int:
    """The ?page= of a paged admin list (1-based); 400 for anything else."""
    try:
        page = int(request.args.get("page", "1"))
    except ValueError:
        abort(400)
    if not 1 <= page <= 100_000:
        abort(400)
    return page


@bp.before_request
def require_admin() -> None:
    """Every console page and action: anonymous → login; not an admin → 403; outside the org's admin IP ranges →
    403; no recent second factor → a page sends the admin to step-up (or to enrol) and back, an action is refused
    (403) before anything runs. Refusals are events (flows.admin_gate)."""
    if not current_user.is_authenticated:
        abort(redirect(url_for("auth.login", next=request.full_path.rstrip("?"))))
    outcome = check_console_access(current_user.view, current_client(), method=request.method, path=request.path,
                                   mfa_max_age=timedelta(seconds=settings().admin_mfa_max_age_s))
    if isinstance(outcome, NeedsSecondFactor):
        target = "mfa.enroll" if outcome.enrol else "mfa.verify"
        abort(redirect(url_for(target, next=request.full_path.rstrip("?")), code=303))
    if isinstance(outcome, ConsoleRefused):
        action = None
        if outcome.step_up is not None:
            target = "mfa.enroll" if outcome.step_up.enrol else "mfa.verify"
            action = (url_for(target, next=_page_of(request.path)), "Confirm with your second factor")
        abort(error_page(403, "Forbidden", outcome.message, outcome.event_id, action=action))
    audit.set_actor(f"web:{current_user.view.user.username}")


def _page_of(path: str) -> str:
    """The console page an action at `path` belongs to: the path itself or its nearest parent that answers GET."""
    adapter = current_app.url_map.bind("localhost")
    parts = path.rstrip("/").split("/")  # "", "admin", ...
    while len(parts) > 2:
        candidate = "/".join(parts)
        try:
            adapter.match(candidate, method="GET")
            return candidate
        except HTTPException:
            parts.pop()
    return "/admin/"


# Metadata uploads may be federation documents of several MiB; everything else keeps the small default.
UPLOAD_ENDPOINTS = frozenset({"admin.app_new", "admin.app_refresh"})
MAX_UPLOAD_BYTES = 6 * 1024 * 1024


@bp.before_request
def allow_metadata_uploads() -> None:
    if request.endpoint in UPLOAD_ENDPOINTS:
        request.max_content_length = MAX_UPLOAD_BYTES


NAV = (
    ("admin.apps", "Apps", "apps"),
    ("admin.usage_overview", "Usage", "usage"),
    ("admin.users", "Users", "users"),
    ("admin.groups", "Groups", "groups"),
    ("admin.fields", "User fields", "fields"),
    ("admin.events", "Event log", "events"),
    ("admin.access_check", "Access check", "access"),
    ("admin.certs", "Certificates", "certs"),
    ("admin.org", "Org settings", "org"),
    ("admin.audit", "Audit trail", "audit"),
    ("admin.api_tokens", "API tokens", "api_tokens"),
    ("admin.outbox_page", "Jobs", "outbox"),
    ("admin.notifications", "Notifications", "notifications"),
)


@bp.app_context_processor
def nav_processor() -> dict[str, object]:
    def admin_nav() -> list[tuple[str, str, str]]:
        rules = current_app.view_functions
        return [item for item in NAV if item[0] in rules]

    def key_expiry() -> list[str]:
        """Every published key whose certificate expires within EXPIRY_WARNING_DAYS (a banner on every page)."""
        try:
            published = keystore().current().published    # cached until the key files change
        except KeyStoreError:
            return []
        return [expiry_warning(k.kid, k.state, k.days_left, k.not_after.isoformat())
                for k in published if k.days_left < EXPIRY_WARNING_DAYS]

    return {"admin_nav": admin_nav, "key_expiry": key_expiry}


def register_views() -> None:
    """Import the view modules so their routes attach to `bp` (called once by create_app)."""
    from idp.web.admin import views  # noqa: F401
