"""Admin console: the SSO event log (filters, keyset pages, 24 h overview) and its CSV / JSON export."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from flask import Response, render_template, request
from werkzeug.datastructures import MultiDict

from idp.events import EventFilter
from idp.models import utcnow
from idp.reasons import Outcome, Reason
from idp.services import ServiceError
from idp.services.admin_queries import EXPORT_CAP, Cursor, event_apps, event_page, export_events, overview
from idp.web.admin import bp
from idp.web.responses import error_page

FILTER_FIELDS = ("app", "user", "outcome", "reason", "since", "until")
OUTCOMES = tuple(o.value for o in Outcome)
REASONS = tuple(sorted(r.value for r in Reason))


@dataclass
class FilterForm:
    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    shown: dict[str, str] = field(default_factory=dict)    # since/until as datetime-local values
    filter: EventFilter = field(default_factory=EventFilter)

    @property
    def active(self) -> dict[str, str]:
        """The non-empty filter values, for links that keep the filter (pages, exports)."""
        return {k: v for k, v in self.values.items() if v}


def parse_time(text: str, *, end: bool) -> datetime:
    """HTML date (YYYY-MM-DD) or datetime-local (YYYY-MM-DDTHH:MM[:SS]) as UTC; a date `until` includes that day."""
    try:
        value = datetime.fromisoformat(text)
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if end and ":" not in text:   # a whole day
            value += timedelta(days=1)
    except (ValueError, OverflowError):
        raise ServiceError("Use a date like 2026-11-28 or 2026-11-28T14:30 (UTC).") from None
    return value


def parse_filter(args: MultiDict[str, str]) -> FilterForm:
    form = FilterForm(values={k: (args.get(k) or "").strip()[:150] for k in FILTER_FIELDS})
    v, errors = form.values, form.errors
    if v["outcome"] and v["outcome"] not in OUTCOMES:
        errors["outcome"] = f"Choose one of {', '.join(OUTCOMES)}."
    if v["reason"] and v["reason"] not in REASONS:
        errors["reason"] = "Choose a reason from the list."
    times: dict[str, datetime | None] = {"since": None, "until": None}
    for key in times:
        if v[key]:
            try:
                parsed = times[key] = parse_time(v[key], end=key == "until")
                form.shown[key] = parsed.strftime("%Y-%m-%dT%H:%M" + (":%S" if parsed.second else ""))
            except ServiceError as exc:
                errors[key] = str(exc)
    since, until = times["since"], times["until"]
    if since and until and until <= since:
        errors["until"] = "“To” must be after “From”."
    if not errors:
        form.filter = EventFilter(app_slug=v["app"] or None, username=v["user"] or None, outcome=v["outcome"] or None,
                                  reason=v["reason"] or None, since=since, until=until)
    return form


def bar_class(n: int, top: int) -> str:
    """A width class in 5 % steps (the CSP allows no inline styles)."""
    if top <= 0 or n <= 0:
        return "w0"
    return f"w{max(5, min(100, -(-n * 20 // top) * 5))}"


@bp.get("/events")
def events() -> Response:
    form = parse_filter(request.args)
    cursors: dict[str, Cursor | None] = {"before": None, "after": None}
    for key in cursors:
        if request.args.get(key):
            try:
                cursors[key] = Cursor.decode(request.args[key])
            except ServiceError as exc:
                form.errors["page"] = str(exc).capitalize() + "."
    status = 400 if form.errors else 200
    page = None if form.errors else event_page(form.filter, before=cursors["before"], after=cursors["after"])
    summary = overview()
    html = render_template("admin/events.html", section="events", form=form, page=page, overview=summary,
                           apps=event_apps(), outcomes=OUTCOMES, reasons=REASONS, bar_class=bar_class,
                           export_cap=EXPORT_CAP, now=utcnow())
    return Response(html, status=status)


def _export(kind: str) -> Response:
    form = parse_filter(request.args)
    if form.errors:
        return error_page(400, "Invalid filter", " ".join(f"{k}: {v}" for k, v in form.errors.items()))
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
