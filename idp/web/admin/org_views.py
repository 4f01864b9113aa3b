"""Admin console: org-wide settings (trusted IP ranges, MFA self-enrolment)."""

from __future__ import annotations

from flask import Response, abort, flash, redirect, render_template, request, url_for

from idp.services import ServiceError, org
from idp.web.admin import bp


def _org_page(status: int = 200, **kw: object) -> Response:
    defaults: dict[str, object] = {"cidr": "", "errors": {}}
    defaults.update(kw)
    return Response(render_template("admin/org.html", section="org", ranges=org.trusted_ranges(),
                                    self_enroll=org.mfa_self_enroll(), **defaults), status=status)


@bp.get("/org", endpoint="org")  # the NAV names it `admin.org`
def org_settings() -> Response:
    return _org_page()


@bp.post("/org/ranges")
def org_add_range() -> Response:
    cidr = (request.form.get("cidr") or "").strip()[:100]
    if not cidr:
        return _org_page(422, cidr=cidr, errors={"cidr": "Enter a range such as 10.0.0.0/8 or 2001:db8::/32."})
    try:
        value = org.add_trusted_range(cidr)
    except ServiceError as exc:
        return _org_page(422, cidr=cidr, errors={"cidr": str(exc)})
    flash(f"Trusted range {value} added.", "success")
    return redirect(url_for("admin.org"), code=303)  # type: ignore[return-value]


@bp.route("/org/ranges/remove", methods=["GET", "POST"])
def org_remove_range() -> Response | str:
    cidr = (request.values.get("cidr") or "").strip()[:100]
    if cidr not in org.trusted_ranges():
        abort(404)
    if request.method == "GET":
        return render_template("admin/org.html", section="org", confirm_remove=cidr, ranges=org.trusted_ranges(),
                               self_enroll=org.mfa_self_enroll(), cidr="", errors={})
    org.remove_trusted_range(cidr)
    flash(f"Trusted range {cidr} removed.", "success")
    return redirect(url_for("admin.org"), code=303)  # type: ignore[return-value]


@bp.post("/org/mfa")
def org_mfa() -> Response:
    value = request.form.get("self_enroll")
    if value not in ("0", "1"):
        abort(400)
    org.set_mfa_self_enroll(value == "1")
    flash("MFA self-enrolment is now " + ("on." if value == "1" else "off."), "success")
    return redirect(url_for("admin.org"), code=303)  # type: ignore[return-value]
