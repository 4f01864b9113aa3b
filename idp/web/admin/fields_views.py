"""Admin console: user fields (list, add, remove refused while an app uses the field) and a user's field values."""

from __future__ import annotations

from flask import Response, abort, flash, redirect, render_template, request, url_for

from idp.attributes.schema import CUSTOM_FIELD_TYPES
from idp.extensions import db
from idp.services import ServiceError
from idp.services import user_fields as fields_svc
from idp.services.accounts import FormErrors
from idp.services.users import find_user
from idp.web.admin import bp
from idp.web.admin.forms.base import ConfirmForm, refuse
from idp.web.admin.forms.fields import VALUE_PREFIX, FieldValuesForm, NewFieldForm
from idp.web.admin.users_views import _edit_page as edit_page


def _fields_page(status: int = 200, form: NewFieldForm | None = None) -> Response:
    rows = [(f, fields_svc.apps_using_field(f.name)) for f in fields_svc.list_fields()]
    return Response(render_template("admin/fields_list.html", section="fields", fields=rows,
                                    types=[str(t) for t in CUSTOM_FIELD_TYPES],
                                    form=form or NewFieldForm(formdata=None)), status=status)


@bp.get("/fields")
def fields() -> Response:
    return _fields_page()


@bp.post("/fields/new")
def fields_new() -> Response:
    form = NewFieldForm()
    try:
        row = (fields_svc.add_field(form.name.data, form.type.data, unique=bool(form.unique.data),
                                    label=form.label.data) if form.validate() else None)
    except ServiceError as exc:
        refuse(form, exc)
        row = None
    if row is None:
        return _fields_page(422, form)
    flash(f"Field {row.name} added.", "success")
    return redirect(url_for("admin.fields"), code=303)  # type: ignore[return-value]


@bp.route("/fields/<name>/remove", methods=["GET", "POST"])
def field_remove(name: str) -> Response:
    """Confirmation page, then remove. Refused (409) while an app's attributes or NameID value use the field."""
    row = fields_svc.find_field(name)
    if row is None:
        abort(404)
    if not ConfirmForm().validate_on_submit():
        return Response(render_template("admin/field_remove.html", section="fields", field=row,
                                        used=fields_svc.apps_using_field(row.name)))
    try:
        holders = fields_svc.remove_field(row.name)
    except ServiceError as exc:
        db.session.rollback()
        flash(f"Not removed: {exc}.", "error")
        row = fields_svc.find_field(name)
        if row is None:
            abort(404)
        return Response(render_template("admin/field_remove.html", section="fields", field=row,
                                        used=fields_svc.apps_using_field(row.name)), status=409)
    flash(f"Field {name} removed ({holders} user value{'' if holders == 1 else 's'} deleted).", "success")
    return redirect(url_for("admin.fields"), code=303)  # type: ignore[return-value]


@bp.post("/users/<username>/fields")
def user_fields(username: str) -> Response:
    user = find_user(username)
    if user is None:
        abort(404)
    form = FieldValuesForm()
    if not form.validate():
        abort(400)
    defined = fields_svc.list_fields()
    posted = {f.name: str(request.form.get(VALUE_PREFIX + f.name, ""))[:8192] for f in defined}
    try:
        changed = fields_svc.set_user_fields(user, FieldValuesForm.changes(request.form, defined,
                                                                           user.custom_fields or {}))
    except FormErrors as exc:
        db.session.rollback()
        errors = {VALUE_PREFIX + name: message for name, message in exc.errors.items()}
        again = find_user(username)
        if again is None:
            abort(404)
        return edit_page(again, 422, field_errors=errors, field_values=posted)
    flash(f"User fields of {username} saved." if changed else f"No user field of {username} changed.", "success")
    return redirect(url_for("admin.user_edit", username=username), code=303)  # type: ignore[return-value]
