"""Admin console: org-wide settings (trusted IP ranges, MFA self-enrolment, first-factor enrolment mode, the
console's own IP ranges)."""

from __future__ import annotations

from flask import Response, abort, flash, redirect, render_template, request, url_for

from idp.services import ServiceError, org
from idp.web.admin import bp
from idp.web.admin.forms.base import refuse
from idp.web.admin.forms.org import AdminRangeForm, EnrolmentModeForm, SelfEnrollForm, TrustedRangeForm
from idp.web.context import current_client


def _enrolment_form() -> EnrolmentModeForm:
    mode = org.mfa_enrolment()
    days = org.grace_days(mode)
    return EnrolmentModeForm(formdata=None, data={"mfa_enrolment": "grace-days" if days else mode,
                                                  "grace_days": str(days or 30),
                                                  "enrolment_help": org.mfa_enrolment_help()})


def _org_page(status: int = 200, form: TrustedRangeForm | None = None, admin_form: AdminRangeForm | None = None,
              enrolment_form: EnrolmentModeForm | None = None, **kw: object) -> Response:
    return Response(render_template("admin/org.html", section="org", ranges=org.trusted_ranges(),
                                    self_enroll=org.mfa_self_enroll(), form=form or TrustedRangeForm(formdata=None),
                                    admin_ranges=org.admin_ip_ranges(), client_ip=current_client().ip,
                                    admin_form=admin_form or AdminRangeForm(formdata=None),
                                    enrolment_mode=org.mfa_enrolment(),
                                    enrolment_form=enrolment_form or _enrolment_form(), **kw), status=status)


@bp.get("/org", endpoint="org")  # the NAV names it `admin.org`
def org_settings() -> Response:
    return _org_page()


@bp.post("/org/ranges")
def org_add_range() -> Response:
    form = TrustedRangeForm()
    try:
        value = org.add_trusted_range(form.cidr.data) if form.validate() else None
    except ServiceError as exc:
        refuse(form, exc)
        value = None
    if value is None:
        return _org_page(422, form)
    flash(f"Trusted range {value} added.", "success")
    return redirect(url_for("admin.org"), code=303)  # type: ignore[return-value]


@bp.route("/org/ranges/remove", methods=["GET", "POST"])
def org_remove_range() -> Response:
    form = TrustedRangeForm(formdata=request.values)
    cidr = form.cidr.data
    if cidr not in org.trusted_ranges():
        abort(404)
    if request.method == "GET":
        return _org_page(confirm_remove=cidr)
    org.remove_trusted_range(cidr)
    flash(f"Trusted range {cidr} removed.", "success")
    return redirect(url_for("admin.org"), code=303)  # type: ignore[return-value]


@bp.post("/org/mfa")
def org_mfa() -> Response:
    form = SelfEnrollForm()
    if not form.validate():
        abort(400)
    org.set_mfa_self_enroll(form.self_enroll.data == "1")
    flash("MFA self-enrolment is now " + ("on." if form.self_enroll.data == "1" else "off."), "success")
    return redirect(url_for("admin.org"), code=303)  # type: ignore[return-value]


@bp.post("/org/admin-ranges")
def org_add_admin_range() -> Response:
    form = AdminRangeForm()
    own = current_client().ip or ""  # a list leaving out the admin's own address is refused: no self lock-out
    try:
        value = org.add_admin_ip_range(form.cidr.data, keep_ip=own) if form.validate() else None
    except ServiceError as exc:
        refuse(form, exc)
        value = None
    if value is None:
        return _org_page(422, admin_form=form)
    flash(f"Admin range {value} added: the console now answers only inside the admin ranges.", "success")
    return redirect(url_for("admin.org"), code=303)  # type: ignore[return-value]


@bp.route("/org/admin-ranges/remove", methods=["GET", "POST"])
def org_remove_admin_range() -> Response:
    form = AdminRangeForm(formdata=request.values)
    cidr = form.cidr.data
    if cidr not in org.admin_ip_ranges():
        abort(404)
    if request.method == "GET":
        return _org_page(confirm_remove_admin=cidr)
    if not form.validate():
        abort(400)
    try:
        org.remove_admin_ip_range(cidr, keep_ip=current_client().ip or "")
    except ServiceError as exc:
        refuse(form, exc)
        return _org_page(422, admin_form=form)
    flash(f"Admin range {cidr} removed.", "success")
    return redirect(url_for("admin.org"), code=303)  # type: ignore[return-value]


@bp.post("/org/enrolment")
def org_enrolment() -> Response:
    form = EnrolmentModeForm()
    mode = ""
    try:
        if form.validate():
            mode = org.set_mfa_enrolment(form.mode())
            if form.enrolment_help.data != org.mfa_enrolment_help():
                org.set_mfa_enrolment_help(form.enrolment_help.data)
    except ServiceError as exc:
        target = "grace_days" if form.mfa_enrolment.data == "grace-days" and exc.field == "mfa_enrolment" else None
        refuse(form, exc, {"mfa_enrolment": target or "mfa_enrolment", "mfa_enrolment_help": "enrolment_help"})
    if form.messages:
        return _org_page(422, enrolment_form=form)
    flash(f"Second-factor enrolment mode is now {mode}.", "success")
    return redirect(url_for("admin.org"), code=303)  # type: ignore[return-value]
