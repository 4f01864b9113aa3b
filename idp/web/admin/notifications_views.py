"""Admin console: Notifications — webhook endpoints (list, add with the secret shown once, test, enable, disable,
remove) and each endpoint's delivery log. Other channels add their sections to the page's template."""

from __future__ import annotations

from flask import Response, abort, flash, redirect, render_template, url_for

from idp.extensions import db
from idp.models import WebhookEndpoint
from idp.notifications import catalog
from idp.reasons import Outcome
from idp.services import ServiceError, mailer
from idp.services import apps as apps_svc
from idp.services import webhooks as wh
from idp.web.admin import bp
from idp.web.admin.forms.base import ConfirmForm, refuse
from idp.web.admin.forms.webhooks import NewWebhookForm


def _types() -> dict[str, str]:
    return {t: what for t, what in catalog.TYPES.items() if t != catalog.TEST_TYPE}


def _page(status: int = 200, form: NewWebhookForm | None = None,
          created: tuple[int, str] | None = None) -> Response:
    rows = wh.list_endpoints()
    last = wh.last_deliveries([r.id for r in rows])
    endpoints = [{**wh.endpoint_dict(r), "last": wh.delivery_dict(last[r.id]) if r.id in last else None}
                 for r in rows]
    resp = Response(render_template(
        "admin/notifications.html", section="notifications", endpoints=endpoints, types=_types(),
        apps=[a.slug for a in apps_svc.list_apps()], outcomes=[o.value for o in Outcome],
        form=form or NewWebhookForm(formdata=None), created=created, email_configured=mailer.is_configured()),
        status=status)
    if created is not None:
        resp.headers["Cache-Control"] = "no-store"   # the page holds a secret
    return resp


@bp.get("/notifications")
def notifications() -> Response:
    return _page()


@bp.post("/notifications/webhooks/new")
def webhook_new() -> Response:
    form = NewWebhookForm()
    if not form.validate():
        return _page(422, form)
    reasons = [r for r in (form.reasons.data or "").replace(",", " ").split() if r]
    try:
        row, secret = wh.add_endpoint(form.url.data or "", list(form.events.data or ()),
                                      app_slug=form.app.data or None, outcomes=list(form.outcomes.data or ()),
                                      reasons=reasons, description=form.description.data or "")
    except ServiceError as exc:
        refuse(form, exc, {"app": "app", "events": "events", "outcomes": "outcomes", "reasons": "reasons",
                           "secret": None, "id": None})
        return _page(422, form)
    return _page(201, created=(row.id, secret))


def _endpoint_or_404(endpoint_id: int) -> WebhookEndpoint:
    try:
        return wh.get_endpoint(endpoint_id)
    except ServiceError:
        abort(404)


@bp.get("/notifications/webhooks/<int:endpoint_id>")
def webhook_detail(endpoint_id: int) -> Response:
    row = _endpoint_or_404(endpoint_id)
    return Response(render_template("admin/webhook_detail.html", section="notifications",
                                    ep=wh.endpoint_dict(row), types=_types(),
                                    deliveries=[wh.delivery_dict(d) for d in wh.list_deliveries(row.id, limit=200)]))


@bp.post("/notifications/webhooks/<int:endpoint_id>/test")
def webhook_test(endpoint_id: int) -> Response:
    _endpoint_or_404(endpoint_id)
    _, result = wh.send_test(endpoint_id)
    if result.ok:
        flash(f"Test delivered: HTTP {result.status_code} in {result.duration_ms} ms.", "success")
    else:
        flash(f"Test failed: {result.summary()}.", "error")
    return redirect(url_for("admin.webhook_detail", endpoint_id=endpoint_id), code=303)  # type: ignore[return-value]


@bp.post("/notifications/webhooks/<int:endpoint_id>/enable")
def webhook_enable(endpoint_id: int) -> Response:
    _endpoint_or_404(endpoint_id)
    wh.set_enabled(endpoint_id, True)
    flash(f"Webhook endpoint {endpoint_id} enabled.", "success")
    return redirect(url_for("admin.webhook_detail", endpoint_id=endpoint_id), code=303)  # type: ignore[return-value]


@bp.post("/notifications/webhooks/<int:endpoint_id>/disable")
def webhook_disable(endpoint_id: int) -> Response:
    _endpoint_or_404(endpoint_id)
    wh.set_enabled(endpoint_id, False)
    flash(f"Webhook endpoint {endpoint_id} disabled: nothing is sent to it.", "success")
    return redirect(url_for("admin.webhook_detail", endpoint_id=endpoint_id), code=303)  # type: ignore[return-value]


@bp.route("/notifications/webhooks/<int:endpoint_id>/remove", methods=["GET", "POST"])
def webhook_remove(endpoint_id: int) -> Response:
    row = _endpoint_or_404(endpoint_id)
    if not ConfirmForm().validate_on_submit():
        return Response(render_template("admin/webhook_remove.html", section="notifications",
                                        ep=wh.endpoint_dict(row)))
    try:
        wh.remove_endpoint(endpoint_id)
    except ServiceError as exc:
        db.session.rollback()
        flash(f"Not removed: {exc}.", "error")
        return redirect(url_for("admin.notifications"), code=303)  # type: ignore[return-value]
    flash(f"Webhook endpoint {endpoint_id} removed.", "success")
    return redirect(url_for("admin.notifications"), code=303)  # type: ignore[return-value]
