"""Admin console: the outbox's dead jobs (retry one or all)."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from werkzeug.wrappers import Response

from idp.services import ServiceError, outbox
from idp.web.admin import bp


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
