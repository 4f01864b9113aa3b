"""Admin console: the SSO event log (filters, keyset pages, 24 h overview) and its CSV / JSON export."""

from __future__ import annotations

from flask import Response, render_template, request

from idp.models import utcnow
from idp.services import ServiceError
from idp.services.admin_queries import EXPORT_CAP, Cursor, event_apps, event_page, export_events, overview
from idp.web.admin import bp
from idp.web.admin.forms.events import OUTCOMES, REASONS, EventFilterForm
from idp.web.responses import error_page


def bar_class(n: int, top: int) -> str:
    """A width class in 5 % steps (the CSP allows no inline styles)."""
    if top <= 0 or n <= 0:
        return "w0"
    return f"w{max(5, min(100, -(-n * 20 // top) * 5))}"


@bp.get("/events")
def events() -> Response:
    form = EventFilterForm(request.args)
    valid = form.validate()
    errors = form.messages
    cursors: dict[str, Cursor | None] = {"before": None, "after": None}
    for key in cursors:   # page positions: links the page makes, not filter input
        if request.args.get(key):
            try:
                cursors[key] = Cursor.decode(request.args[key])
            except ServiceError as exc:
                errors["page"] = str(exc).capitalize() + "."
    status = 200 if valid and not errors else 400
    page = None if status != 200 else event_page(form.filter, before=cursors["before"], after=cursors["after"])
    summary = overview()
    html = render_template("admin/events.html", section="events", form=form, errors=errors, page=page,
                           overview=summary, apps=event_apps(), outcomes=OUTCOMES, reasons=REASONS,
                           bar_class=bar_class, export_cap=EXPORT_CAP, now=utcnow())
    return Response(html, status=status)


def _export(kind: str) -> Response:
    form = EventFilterForm(request.args)
    if not form.validate():
        return error_page(400, "Invalid filter", " ".join(f"{k}: {v}" for k, v in form.messages.items()))
    export = export_events(form.filter, kind, cap=EXPORT_CAP)
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    body = "".join(export.chunks)   # built chunk by chunk: only the finished text is held (~8 MB CSV per 100k)
    resp = Response(body, mimetype="text/csv" if kind == "csv" else "application/json")
    resp.headers["Content-Disposition"] = f'attachment; filename="events-{stamp}.{kind}"'
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Export-Row-Cap"] = str(EXPORT_CAP)
    resp.headers["X-Export-Truncated"] = "true" if export.truncated else "false"
    return resp


@bp.get("/events/export.csv")
def events_export_csv() -> Response:
    return _export("csv")


@bp.get("/events/export.json")
def events_export_json() -> Response:
    return _export("json")
