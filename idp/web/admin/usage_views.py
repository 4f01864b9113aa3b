"""Admin console, app usage from the event log: the app page's Usage section (sign-ins per day as an inline SVG
chart, users, denials and errors) and the Usage overview of every app (/admin/usage). The period is ?days=
(7, 30 or 90 offered; 1 to 366 accepted, as `idp apps usage --days`)."""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, render_template, request

from idp.models import ConnectedApp
from idp.services import ServiceError, app_usage
from idp.web.admin import bp
from idp.web.admin.apps_display import fmt_dt
from idp.web.admin.events_views import bar_class
from idp.web.admin.usage_chart import bar_chart
from idp.web.responses import error_page

PERIODS = (7, 30, 90)
TOP_USERS = 25


def _days() -> int:
    """?days= of a GET page: DEFAULT_DAYS when absent; a 400 page naming the problem otherwise."""
    try:
        return app_usage.parse_days(request.args.get("days"))
    except ServiceError as exc:
        abort(error_page(400, "Invalid period", f"{str(exc).capitalize()}."))


def _links() -> dict[str, bool]:
    views = current_app.view_functions
    return {"events": "admin.events" in views, "users": "admin.user_edit" in views}


def usage_context(app: ConnectedApp) -> dict[str, Any]:
    """What the app page's Usage section needs (apps_views._render_detail adds it). A form's error page (a POST)
    shows the default period."""
    days = _days() if request.method == "GET" else app_usage.DEFAULT_DAYS
    u = app_usage.usage(app.slug, days, top=TOP_USERS)
    return {"app_usage": u, "usage_chart": bar_chart(u.per_day), "usage_periods": PERIODS,
            "usage_links": _links()}


@bp.get("/usage")
def usage_overview() -> tuple[str, int]:
    o = app_usage.overview(_days())
    used = [a for a in o.apps if not a.dormant]
    return render_template("admin/usage.html", section="usage", overview=o, used=used,
                           dormant=[a for a in o.apps if a.dormant], periods=PERIODS, fmt_dt=fmt_dt,
                           bar_class=bar_class, peak=max((a.sign_ins for a in used), default=0)), 200
