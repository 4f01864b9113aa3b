"""Admin console, OpenID Connect / OAuth: edit an app's OIDC settings, add them to a SAML-only app, register a new
OIDC app, rotate the client secret (shown once), and revoke a user's grant from the app's usage section.

Every change goes through services.apps.oidc (validated there, audited without any secret) or
services.oauth_usage (revocation: an event token_revoked and an audit row). A new secret is rendered once in the
POST's own answer (no-store), never put in the flash messages, the session or a redirect.
"""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, url_for
from werkzeug.wrappers import Response

from idp.models import ConnectedApp
from idp.services import ServiceError, oauth_usage
from idp.services import apps as apps_svc
from idp.services.apps.oidc_settings import GRANT_TYPES, IP_REFRESH_MODES, REFRESH_POLICIES, TOKEN_AUTH_METHODS
from idp.web.admin import bp
from idp.web.admin.apps_display import fmt_dt
from idp.web.admin.apps_views import _app_or_404, _render_detail
from idp.web.admin.forms.base import ConfirmForm, refuse
from idp.web.admin.forms.oidc import OVERLAPS, AddOidcForm, NewOidcAppForm, OidcSettingsForm, RotateSecretForm
from idp.web.context import current_client
from idp.web.responses import error_page

CHOICES = {"grant_types": GRANT_TYPES, "token_auth": TOKEN_AUTH_METHODS, "refresh_policies": REFRESH_POLICIES,
           "ip_refresh": IP_REFRESH_MODES, "overlaps": OVERLAPS}


def _secret_page(app: ConnectedApp, secret: str | None, *, title: str, status: int = 200) -> Response:
    """The one page that shows a new client secret; it must not be cached or kept anywhere."""
    html = render_template("admin/oidc_secret.html", section="apps", app=app, secret=secret, title=title,
                           secrets=apps_svc.secret_status(app), fmt_dt=fmt_dt)
    resp = Response(html, status=status)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def usage_rows(app: ConnectedApp) -> list[oauth_usage.GrantRow]:
    return oauth_usage.list_grants(app_id=app.id) if app.oidc is not None else []


@bp.post("/apps/<slug>/oidc")
def app_oidc(slug: str) -> tuple[str, int] | Response:
    """Save the OIDC settings: the form holds every value (services.apps.change_oidc, as `idp apps set`)."""
    app = _app_or_404(slug)
    if app.oidc is None:
        return error_page(409, "No OIDC settings", "This app has no OpenID Connect settings yet: add them first.")
    form = OidcSettingsForm()
    if not form.validate():
        return _render_detail(app, oidc_form=form, status=422)
    try:
        _, secret = apps_svc.change_oidc(app, **form.changes())
    except ServiceError as exc:
        refuse(form, exc)
        return _render_detail(_app_or_404(slug), oidc_form=form, status=422)
    if secret is not None:   # moved to client_secret_* with no valid secret left: a new one, shown once
        return _secret_page(app, secret, title="OIDC settings saved: a new client secret")
    flash("OpenID Connect settings saved.", "success")
    return redirect(url_for("admin.app_detail", slug=app.slug, _anchor="oidc-settings"), 303)


@bp.post("/apps/<slug>/oidc/add")
def app_oidc_add(slug: str) -> tuple[str, int] | Response:
    """Give a SAML-only app OIDC settings (a new client id; a confidential client gets its secret, shown once)."""
    app = _app_or_404(slug)
    form = AddOidcForm()
    if not form.validate():
        return _render_detail(app, add_oidc_form=form, status=422)
    try:
        _, secret = apps_svc.add_oidc(app, form.settings())
    except ServiceError as exc:
        refuse(form, exc)
        return _render_detail(_app_or_404(slug), add_oidc_form=form, status=422)
    return _secret_page(app, secret, title="OpenID Connect settings added")


@bp.route("/apps/new-oidc", methods=["GET", "POST"])
def app_new_oidc() -> tuple[str, int] | Response:
    """Register an app that signs in with OpenID Connect / OAuth only (services.apps.register_oidc_app)."""
    form = NewOidcAppForm()

    def page(status: int = 200) -> tuple[str, int]:
        return render_template("admin/app_new_oidc.html", section="apps", form=form, errors=form.messages), status

    if not form.is_submitted():
        return page()
    if not form.validate():
        return page(422)
    try:
        app, secret = apps_svc.register_oidc_app(name=form.name.data, slug=form.slug.data, settings=form.settings(),
                                                 source="admin")
    except ServiceError as exc:
        refuse(form, exc)
        return page(422)
    return _secret_page(app, secret, title=f"App “{app.name}” registered", status=201)


@bp.route("/apps/<slug>/oidc/secret", methods=["GET", "POST"])
def app_oidc_secret(slug: str) -> tuple[str, int] | Response:
    """Rotate the client secret: a confirmation with the overlap choice, then the new secret once and until when
    the older ones stay valid."""
    app = _app_or_404(slug)
    if app.oidc is None:
        return error_page(409, "No OIDC settings", "This app has no OpenID Connect settings.")
    form = RotateSecretForm()

    def page(status: int = 200) -> tuple[str, int]:
        return render_template("admin/oidc_rotate.html", section="apps", app=app, form=form, errors=form.messages,
                               overlaps=OVERLAPS, secrets=apps_svc.secret_status(app), fmt_dt=fmt_dt), status

    if not form.is_submitted():
        return page()
    if not form.validate():
        return page(422)
    try:
        secret = apps_svc.rotate_secret(app, overlap=form.overlap_seconds)
    except ServiceError as exc:
        refuse(form, exc)
        return page(422)
    return _secret_page(app, secret, title="Client secret rotated")


@bp.route("/apps/<slug>/grants/<int:grant_id>/revoke", methods=["GET", "POST"])
def app_grant_revoke(slug: str, grant_id: int) -> tuple[str, int] | Response:
    """Confirmation, then revoke one user's grant of this app and all its refresh tokens."""
    app = _app_or_404(slug)
    try:
        row = oauth_usage.grant_of(grant_id, app_id=app.id)
    except ServiceError:
        return error_page(404, "No such grant", "This user's authorization of the app was revoked already or never "
                                                "existed.")
    form = ConfirmForm()
    if not form.validate_on_submit():
        return render_template("admin/oidc_revoke.html", section="apps", app=app, row=row, fmt_dt=fmt_dt), 200
    client = current_client()
    oauth_usage.revoke_grants([row], by="admin", client_ip=client.ip, user_agent=client.user_agent)
    flash(f"Revoked {row.username}'s authorization of “{app.name}” and {row.refresh_tokens} refresh token(s).",
          "success")
    return redirect(url_for("admin.app_detail", slug=app.slug, _anchor="oidc-usage"), 303)


def detail_context(app: ConnectedApp, oidc_form: OidcSettingsForm | None,
                   add_oidc_form: AddOidcForm | None) -> dict[str, Any]:
    """What the app page's OIDC sections need (apps_views._render_detail adds it)."""
    from idp.services.apps.oidc_settings import settings_of

    if app.oidc is not None:
        form: Any = oidc_form or OidcSettingsForm.from_settings(settings_of(app.oidc))
    else:
        form = add_oidc_form or AddOidcForm(formdata=None)
    return {"oidc_form": form, "oidc_errors": form.messages, "oidc_choices": CHOICES, "usage": usage_rows(app)}
