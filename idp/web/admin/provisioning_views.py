"""Admin console: the app page's Provisioning section (outbound SCIM): the settings form (saved through
services.provisioning.configure, as `idp apps provisioning`), "Reconcile now" and "Dry run", accounts and the
provisioning log."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, url_for
from werkzeug.wrappers import Response

from idp.events import EventFilter, query_events
from idp.models import ConnectedApp
from idp.services import ServiceError
from idp.services import provisioning as prov
from idp.web.admin import bp
from idp.web.admin.apps_views import _app_or_404, _render_detail
from idp.web.admin.forms.base import refuse
from idp.web.admin.forms.provisioning import AUTH_KINDS, ProvisioningForm, ReconcileForm

PROVISIONING_LOG = 20


def provisioning_context(app: ConnectedApp, form: ProvisioningForm | None = None,
                         plan: list[prov.PlanItem] | None = None) -> dict[str, Any]:
    """What the app page's Provisioning section shows: the settings (never the secret) and their form, the
    accounts by state, a dry run's planned changes, the latest provisioning events of the app."""
    cfg = prov.get_config(app.id)
    form = form or ProvisioningForm.from_config(cfg)
    return {"provisioning": prov.show_config(cfg) if cfg is not None else None,
            "provisioning_accounts": prov.account_counts(app.id) if cfg is not None else {},
            "provisioning_form": form, "provisioning_errors": form.errors_by_field,
            "provisioning_choices": {"operations": prov.OPERATIONS, "deprovision": prov.DEPROVISION_MODES,
                                     "auth": AUTH_KINDS},
            "provisioning_plan": plan,
            "provisioning_log": query_events(EventFilter(app_slug=app.slug, event_type="provision"),
                                             limit=PROVISIONING_LOG)}


@bp.post("/apps/<slug>/provisioning")
def app_provisioning(slug: str) -> tuple[str, int] | Response:
    """Save the provisioning settings (configure validates the whole; nothing is stored on an error)."""
    app = _app_or_404(slug)
    form = ProvisioningForm()
    valid = form.validate()
    rows_ok = form.validate_rows()
    cfg = prov.get_config(app.id)
    changes = form.changes(cfg) if valid and rows_ok else None
    if changes is None:
        return _render_detail(app, provisioning_form=form, status=422)
    try:
        prov.configure(app, **changes)
    except ServiceError as exc:
        refuse(form, exc, {exc.field or "": form.field_for(exc)} if exc.field else None)
        return _render_detail(_app_or_404(slug), provisioning_form=form, status=422)
    flash("Provisioning settings saved.", "success")
    return redirect(url_for("admin.app_detail", slug=app.slug, _anchor="provisioning"), 303)


@bp.post("/apps/<slug>/provisioning/reconcile")
def app_provisioning_reconcile(slug: str) -> tuple[str, int] | Response:
    """"Dry run" shows what reconciliation would change (writes nothing); "Reconcile now" enqueues it."""
    app = _app_or_404(slug)
    form = ReconcileForm()
    if not form.validate():
        return _render_detail(app, status=400)
    try:
        if form.dry_run.data:
            plan = prov.reconcile_plan(app.id)
            return _render_detail(app, provisioning_plan=plan)
        plan = prov.reconcile_now(app)
    except (prov.RemoteError, prov.RemoteRefused) as exc:
        flash(f"Could not compare with the app: {exc}", "error")
        return redirect(url_for("admin.app_detail", slug=app.slug, _anchor="provisioning"), 303)
    except ServiceError as exc:
        flash(str(exc).capitalize() + ".", "error")
        return redirect(url_for("admin.app_detail", slug=app.slug, _anchor="provisioning"), 303)
    flash(f"Reconciliation: {len(plan)} change(s) enqueued.", "success")
    return redirect(url_for("admin.app_detail", slug=app.slug, _anchor="provisioning"), 303)

