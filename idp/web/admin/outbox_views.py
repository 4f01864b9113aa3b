"""Admin console: the outbox's dead jobs (retry one or all) and the app page's provisioning section."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, url_for
from werkzeug.wrappers import Response

from idp.events import EventFilter, query_events
from idp.models import ConnectedApp
from idp.services import ServiceError, outbox
from idp.services import provisioning as prov
from idp.web.admin import bp

PROVISIONING_LOG = 20


def provisioning_context(app: ConnectedApp) -> dict[str, Any]:
    """What the app page's Provisioning section shows: the settings (never the secret), the accounts by state,
    the latest provisioning events of the app."""
    cfg = prov.get_config(app.id)
    return {"provisioning": prov.show_config(cfg) if cfg is not None else None,
            "provisioning_accounts": prov.account_counts(app.id) if cfg is not None else {},
            "provisioning_log": query_events(EventFilter(app_slug=app.slug, event_type="provision"),
                                             limit=PROVISIONING_LOG)}


@bp.get("/outbox")
def outbox_page() -> tuple[str, int]:
    return render_template("admin/outbox.html", section="outbox", dead=outbox.list_jobs(state="dead", limit=500),
                           counts=outbox.counts()), 200


@bp.post("/outbox/<int:job_id>/retry")
def outbox_retry(job_id: int) -> Response:
    try:
        outbox.retry(job_id)
        flash(f"Job {job_id} will run again.", "success")
    except ServiceError as exc:
        flash(str(exc).capitalize() + ".", "error")
    return redirect(url_for("admin.outbox_page"), code=303)


@bp.post("/outbox/retry-dead")
def outbox_retry_all() -> Response:
    ids = outbox.retry_all_dead()
    flash(f"{len(ids)} dead job(s) will run again.", "success")
    return redirect(url_for("admin.outbox_page"), code=303)
