"""Admin console: API and SCIM bearer tokens — list (never the secret), create (the secret shown once, on the
response to the POST, never stored or redirected to), revoke."""

from __future__ import annotations

from flask import Response, abort, flash, redirect, render_template, url_for

from idp.extensions import db
from idp.services import ServiceError
from idp.services import api_tokens as tokens_svc
from idp.web.admin import bp
from idp.web.admin.forms.api_tokens import NewApiTokenForm
from idp.web.admin.forms.base import ConfirmForm, refuse


def _page(status: int = 200, form: NewApiTokenForm | None = None, created: tuple[str, str] | None = None) -> Response:
    rows = [tokens_svc.token_dict(t) for t in tokens_svc.list_tokens()]
    resp = Response(render_template("admin/api_tokens.html", section="api_tokens", tokens=rows,
                                    scopes=tokens_svc.SCOPES, form=form or NewApiTokenForm(formdata=None),
                                    created=created), status=status)
    if created is not None:
        resp.headers["Cache-Control"] = "no-store"   # the page holds a secret
    return resp


@bp.get("/api-tokens")
def api_tokens() -> Response:
    return _page()


@bp.post("/api-tokens/new")
def api_token_new() -> Response:
    form = NewApiTokenForm()
    if not form.validate():
        return _page(422, form)
    expires = form.expires.data or ""
    try:
        if expires and not expires.isdigit():
            raise ServiceError("expiry is a number of days (or empty: never)", field="expires")
        row, secret = tokens_svc.create_token(form.name.data or "", list(form.scopes.data or ()),
                                              expires_days=int(expires) if expires else None)
    except ServiceError as exc:
        refuse(form, exc)
        return _page(422, form)
    return _page(201, created=(row.name, secret))


@bp.route("/api-tokens/<name>/revoke", methods=["GET", "POST"])
def api_token_revoke(name: str) -> Response:
    row = tokens_svc.find_token(name)
    if row is None:
        abort(404)
    if not ConfirmForm().validate_on_submit():
        return Response(render_template("admin/api_token_revoke.html", section="api_tokens",
                                        token=tokens_svc.token_dict(row)))
    try:
        tokens_svc.revoke_token(name)
    except ServiceError as exc:
        db.session.rollback()
        flash(f"Not revoked: {exc}.", "error")
        return redirect(url_for("admin.api_tokens"), code=303)  # type: ignore[return-value]
    flash(f"API token {name} revoked: its clients get 401 from now on.", "success")
    return redirect(url_for("admin.api_tokens"), code=303)  # type: ignore[return-value]
