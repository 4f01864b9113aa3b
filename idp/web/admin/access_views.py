"""Admin console: the access dry run (same policy engine as SSO; issues nothing)."""

from __future__ import annotations

from flask import Response, render_template, request

from idp.flows.access import check_access
from idp.policy.model import Decision
from idp.services import ServiceError
from idp.services.apps import list_apps
from idp.web.admin import bp
from idp.web.admin.forms.access import AccessCheckForm
from idp.web.admin.forms.base import refuse

EFFECT_WORDS = {"allow": "Allowed", "deny": "Denied", "step_up": "Second factor required",
                "step_up_passkey": "Passkey or security key required",
                "reauth": "Password must be entered again"}


@bp.route("/access", methods=["GET", "POST"])
def access_check() -> Response:
    decision: Decision | None = None
    status = 200
    if request.method == "GET":   # ?app= preselects an app (the app pages link here)
        form = AccessCheckForm(formdata=None, data={"app": request.args.get("app", "")})
    else:
        form = AccessCheckForm()
        try:
            if form.validate():
                decision = check_access(form.username.data, form.app.data, form.ip.data, bool(form.mfa.data),
                                        bool(form.passkey.data))
        except ServiceError as exc:   # FormErrors, or a user or app gone since (the dry run's own refusal)
            refuse(form, exc, {"slug": "app"})
        if form.messages:
            status = 422
    values = {"username": form.username.data, "app": form.app.data, "ip": form.ip.data, "mfa": form.mfa.data,
              "passkey": form.passkey.data}
    word = None
    if decision is not None:
        word = str(decision.effect)
        if word == "step_up" and decision.reason == "phishing_resistant_required":
            word = "step_up_passkey"
    html = render_template("admin/access_check.html", section="access", apps=list_apps(), values=values,
                           errors=form.messages, decision=decision, words=EFFECT_WORDS, word=word)
    return Response(html, status=status)
