"""Admin console, an app's automatic metadata refresh: where its metadata comes from (URL or MDQ service), the
refresh mode, trust anchor and maximum interval; refresh now; approve or reject a held change. Views read a form,
call services.metadata_refresh (as `idp apps set --metadata-url …` / `idp apps refresh` do) and redirect."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, request, url_for
from werkzeug.wrappers import Response

from idp.extensions import db
from idp.models import ConnectedApp
from idp.services import ServiceError
from idp.services import apps as apps_svc
from idp.services import metadata_refresh as refresh_svc
from idp.web.admin import bp
from idp.web.admin.forms.base import AdminForm, ConfirmForm, FlagField, TextField, one_of, refuse
from idp.web.responses import error_page

_FIELDS: dict[str, str | None] = {"metadata_url": "md_url", "refresh": "md_refresh", "trust_anchor": "md_anchor",
                                  "max_interval": "md_max_interval", "held": None}


class MetadataSourceForm(AdminForm):
    """The metadata source of an app: a URL or an MDQ base URL (neither: stop fetching), mode, anchor, interval."""

    md_url = TextField(limit=2048)
    md_mdq = TextField(limit=2048)
    md_refresh = TextField(limit=10, validators=[one_of(refresh_svc.MODES, "refresh mode")])
    md_max_interval = TextField(limit=20)
    md_anchor = TextField(limit=64 * 1024)
    md_clear_anchor = FlagField()

    @classmethod
    def from_app(cls, app: ConnectedApp) -> MetadataSourceForm:
        src = refresh_svc.source_of(app)
        form = cls(formdata=None)
        form.md_url.data = (src.url if src else None) or ""
        form.md_mdq.data = (src.mdq_base if src else None) or ""
        form.md_refresh.data = src.refresh_mode if src else "auto"
        form.md_max_interval.data = apps_svc.format_duration(src.max_interval_s) if src else ""
        return form


def metadata_source_context(app: ConnectedApp, form: MetadataSourceForm | None) -> dict[str, Any]:
    """What the app page's "Automatic metadata refresh" section shows."""
    if not app.has_saml:
        return {"md_source": None, "md_form": None}
    src = refresh_svc.source_of(app)
    return {"md_source": refresh_svc.describe(src) if src else None,
            "md_form": form or MetadataSourceForm.from_app(app), "md_modes": refresh_svc.MODES}


def _app_or_404(slug: str) -> ConnectedApp:
    from idp.web.admin.apps_views import _app_or_404 as find
    return find(slug)


def _detail(app: ConnectedApp, form: MetadataSourceForm, status: int) -> tuple[str, int]:
    from idp.web.admin.apps_views import _render_detail
    return _render_detail(app, md_form=form, status=status)


def _back(slug: str) -> Response:
    return redirect(url_for("admin.app_detail", slug=slug, _anchor="metadata-refresh"), 303)


@bp.post("/apps/<slug>/metadata-source")
def app_metadata_source(slug: str) -> tuple[str, int] | Response:
    app = _app_or_404(slug)
    form = MetadataSourceForm()
    if not form.validate():
        return _detail(app, form, 422)
    try:
        if form.md_url.data and form.md_mdq.data:
            raise ServiceError("give a metadata URL or an MDQ service, not both", field="metadata_url")
        clear = refresh_svc.source_of(app) is not None and not form.md_url.data and not form.md_mdq.data
        anchor: Any = None
        if form.md_clear_anchor.data:
            anchor = apps_svc.CLEAR
        elif form.md_anchor.data:
            anchor = form.md_anchor.data
        interval = apps_svc.parse_duration(form.md_max_interval.data, field="max_interval") \
            if form.md_max_interval.data else None
        refresh_svc.configure(app, url=form.md_url.data or (apps_svc.CLEAR if clear else None),
                              mdq=form.md_mdq.data or (apps_svc.CLEAR if clear else None), mode=form.md_refresh.data,
                              trust_anchor_pem=anchor, max_interval_s=interval)
    except ServiceError as exc:
        refuse(form, exc, {**_FIELDS, "metadata_url": "md_mdq" if form.md_mdq.data else "md_url"})
        return _detail(_app_or_404(slug), form, 422)
    flash("Metadata refresh settings saved. The metadata is fetched at the next refresh (or press “Refresh now”).",
          "success")
    warning = refresh_svc.describe(refresh_svc.source_of(app)).get("warning")
    if warning:
        flash(f"Warning: {warning}", "warning")
    return _back(app.slug)


@bp.post("/apps/<slug>/metadata-source/refresh")
def app_metadata_refresh_now(slug: str) -> tuple[str, int] | Response:
    app = _app_or_404(slug)
    if not ConfirmForm().validate():
        return error_page(400, "Bad request", "The form expired; open the app page again.")
    try:
        result = refresh_svc.refresh(app)
    except ServiceError as exc:
        db.session.rollback()
        return error_page(409, "Not refreshed", str(exc))
    category = {"refused": "error", "held": "warning"}.get(result.outcome, "success")
    flash(f"Metadata refresh: {result.outcome}: {result.message}", category)
    return _back(app.slug)


def _reviewed() -> str | Response:
    """The SHA-256 of the held document the page showed (the Approve / Reject forms carry it, with the CSRF
    token), or the error page when the form is stale or names no document."""
    if not ConfirmForm().validate():
        return error_page(400, "Bad request", "The form expired; open the app page again.")
    value = request.form.get("held_sha256", "").strip().lower()
    if len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value
    return error_page(400, "Bad request", "The form does not name the change you reviewed; open the app page again.")


@bp.post("/apps/<slug>/metadata-source/approve")
def app_metadata_approve(slug: str) -> tuple[str, int] | Response:
    app = _app_or_404(slug)
    reviewed = _reviewed()
    if isinstance(reviewed, Response):
        return reviewed
    try:
        result = refresh_svc.approve_held(app, sha256=reviewed)
    except ServiceError as exc:
        db.session.rollback()
        return error_page(409, "Not approved", str(exc))
    flash(f"Held metadata change: {result.outcome}: {result.message}",
          "error" if result.outcome == "refused" else "success")
    return _back(app.slug)


@bp.post("/apps/<slug>/metadata-source/reject")
def app_metadata_reject(slug: str) -> tuple[str, int] | Response:
    app = _app_or_404(slug)
    reviewed = _reviewed()
    if isinstance(reviewed, Response):
        return reviewed
    try:
        refresh_svc.reject_held(app, sha256=reviewed)
    except ServiceError as exc:
        db.session.rollback()
        return error_page(409, "Not rejected", str(exc))
    flash("Held metadata change rejected: the same document will not be held again.", "success")
    return _back(app.slug)
