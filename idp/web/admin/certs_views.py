"""Admin console: the signing key store (state, expiry, pins) and the rotation steps, as `idp certs …` does them."""

from __future__ import annotations

from flask import Response, abort, flash, redirect, render_template, request, url_for

from idp.certs.keystore import KeyStoreError
from idp.services.accounts import FormErrors
from idp.services.admin_queries import KEY_TYPES, activate_keys, key_table, retire_keys, rotate_keys, validate_rotation
from idp.web.admin import bp
from idp.web.admin.forms.base import refuse
from idp.web.admin.forms.certs import RotateKeyForm
from idp.web.context import keystore, settings

STEPS = ("rotate", "activate", "retire")


@bp.get("/certs")
def certs() -> Response:
    try:
        rows, warnings = key_table(keystore())
        error = None
    except KeyStoreError as exc:
        rows, warnings, error = [], [], str(exc)
    html = render_template("admin/certs.html", section="certs", rows=rows, warnings=warnings, error=error)
    return Response(html, status=200)


def _confirm_page(step: str, status: int = 200, form: RotateKeyForm | None = None,
                  refused: str | None = None) -> Response:
    try:
        rows, _ = key_table(keystore())
    except KeyStoreError:
        rows = []
    by_state = {str(r.status.get("state")): r for r in rows}
    form = form or RotateKeyForm(formdata=None, data={"key_type": KEY_TYPES[0], "days": "730"})
    html = render_template("admin/certs.html", section="certs", confirm=step, by_state=by_state,
                           key_types=KEY_TYPES, form=form, refused=refused)
    return Response(html, status=status)


@bp.route("/certs/<step>", methods=["GET", "POST"])
def certs_step(step: str) -> Response:
    if step not in STEPS:
        abort(404)
    form = RotateKeyForm()
    if request.method == "GET" or not form.validate():
        return _confirm_page(step)
    store = keystore()
    try:
        if step == "rotate":
            days = validate_rotation(form.key_type.data, form.days.data)
            kid = rotate_keys(store, settings().entity_id, form.key_type.data, days)
            message = f"Staged the next signing key {kid}. The metadata now publishes it next to the active key; " \
                      "tell SP owners to refresh it, then activate."
        elif step == "activate":
            new, old = activate_keys(store)
            message = f"Key {new} now signs." + (f" {old} is retiring (still published)." if old else "")
        else:
            kid = retire_keys(store)
            message = f"Key {kid} retired: it left the metadata and its files moved to the archive."
    except FormErrors as exc:
        refuse(form, exc)
        return _confirm_page(step, 422, form)
    except (KeyStoreError, OSError) as exc:   # OSError: the key folder cannot be written
        if not form.days.data:
            form.days.data = "730"
        return _confirm_page(step, 409, form, refused=str(exc))
    flash(message, "success")
    return redirect(url_for("admin.certs"), code=303)  # type: ignore[return-value]
