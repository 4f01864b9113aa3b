"""Admin console, federation feeds (under Apps): the feeds with their URL, trust anchor fingerprint, selection,
last sync, counts and last error, and "Sync now" (services.feeds.sync, as `idp feeds sync NAME` does)."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from werkzeug.wrappers import Response

from idp.extensions import db
from idp.models import Feed
from idp.services import ServiceError
from idp.services import feeds as feeds_svc
from idp.web import uow
from idp.web.admin import bp
from idp.web.admin.forms.base import ConfirmForm
from idp.web.responses import error_page


@bp.get("/apps/feeds")
def feeds() -> tuple[str, int]:
    rows = [feeds_svc.describe(f) for f in feeds_svc.list_feeds()]
    return render_template("admin/feeds.html", feeds=rows), 200


@bp.post("/apps/feeds/<int:feed_id>/sync")
def feed_sync_now(feed_id: int) -> tuple[str, int] | Response:
    feed = db.session.get(Feed, feed_id)
    if feed is None:
        return error_page(404, "Not found", "There is no such feed.")
    if not ConfirmForm().validate():
        return error_page(400, "Bad request", "The form expired; open the feeds page again.")
    name = feed.name
    try:   # a commit per batch of entities, as the CLI and the worker do
        result = feeds_svc.sync(feed, commit=uow.commit)
    except ServiceError as exc:
        db.session.rollback()
        return error_page(409, "Not synced", str(exc))
    category = {"refused": "error"}.get(result.outcome, "warning" if result.counts.get("held") else "success")
    held = " Changes that remove every ACS or signing certificate are held: apply them with " \
           f"`idp feeds sync {name} --yes`." if result.counts.get("held") else ""
    flash(f"Feed {name}: {result.outcome}: {result.message}.{held}", category)
    return redirect(url_for("admin.feeds", _anchor=f"feed-{feed_id}"), 303)
