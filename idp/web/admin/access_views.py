"""Admin console: the access dry run (same policy engine as SSO; issues nothing)."""

from __future__ import annotations

from flask import Response, render_template, request

from idp.flows.access import check_access
from idp.services.accounts import FormErrors
from idp.services.apps import list_apps
from idp.web.admin import bp

EFFECT_WORDS = {"allow": "Allowed", "deny": "Denied", "step_up": "Second factor required",
                "reauth": "Password must be entered again"}


@bp.route("/access", methods=["GET", "POST"])
def access_check() -> Response:
    values = {"username": "", "app": request.args.get("app", "")[:100], "ip": "", "mfa": False}
    decision, errors, status = None, {}, 200
    if request.method == "POST":
        values = {"username": (request.form.get("username") or "").strip()[:150],
                  "app": (request.form.get("app") or "").strip()[:100],
                  "ip": (request.form.get("ip") or "").strip()[:64],
                  "mfa": request.form.get("mfa") == "1"}
        try:
            decision = check_access(str(values["username"]), str(values["app"]), str(values["ip"]),
                                    bool(values["mfa"]))
        except FormErrors as exc:
            errors, status = exc.errors, 422
    html = render_template("admin/access_check.html", section="access", apps=list_apps(), values=values,
                           errors=errors, decision=decision, words=EFFECT_WORDS)
    return Response(html, status=status)
