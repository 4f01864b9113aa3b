"""Admin console, connected apps: list, register, detail with SAML settings, OIDC settings (edited in
admin.oidc_views) and access policy, metadata refresh (which also gives an OIDC-only app its SAML settings),
enable/disable and delete. Views read a form, call the apps services (as `idp apps …` does) and render."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select
from werkzeug.wrappers import Response

from idp.attributes.dictionary import NAME_FORMATS
from idp.certs.keystore import KeyStoreError, LoadedKey
from idp.certs.x509 import cert_info
from idp.extensions import db
from idp.flows import pending
from idp.flows.preview import preview
from idp.models import ConnectedApp, SsoEvent
from idp.policy.model import IP_MODES, MFA_ACTIONS, PERMITTED_MODES
from idp.reasons import Outcome
from idp.saml.constants import NAMEID_FORMATS
from idp.saml.sp_metadata import MetadataError, SpMetadata, list_sp_entity_ids
from idp.saml.sp_metadata_builder import ACS_BINDINGS, build_sp_metadata_xml
from idp.services import ServiceError, accounts
from idp.services import apps as apps_svc
from idp.services import fetch as fetch_svc
from idp.services import users as users_svc
from idp.services.app_diff import DiffItem, metadata_diff
from idp.services.apps import (
    ENCRYPTION_ALGORITHMS,
    NAMEID_FIELDS,
    SIGN_MODES,
    SIGNATURE_ALGORITHM_NAMES,
)
from idp.services.apps.oidc_settings import settings_of
from idp.services.apps.release_view import explain_release
from idp.services.apps.validation import OWN_ENTITY_ID_MESSAGE
from idp.web.admin import bp
from idp.web.admin.apps_display import fmt_dt, nameid_short, policy_summary, short_binding
from idp.web.admin.forms.app_settings import PolicyForm, SamlForm
from idp.web.admin.forms.apps import (
    MAX_PICK_RADIOS,
    ApplyRefreshForm,
    AppStatusForm,
    NewAppForm,
    PickAppForm,
    RefreshForm,
)
from idp.web.admin.forms.base import ConfirmForm, refuse
from idp.web.admin.forms.release import ReleaseForm
from idp.web.context import keystore, settings
from idp.web.responses import error_page

# what an app without SAML settings is compared with when its first metadata is previewed
_NO_SP = SpMetadata(entity_id="", acs=(), slo=(), signing_certs=(), encryption_certs=(), nameid_formats=(),
                    authn_requests_signed=False, want_assertions_signed=False, requested_attributes=(),
                    encryption_methods=(), valid_until=None, display_name=None)
PICK_KIND = "admin_new_pick"
_NAME_FORMAT_NAMES = {uri: short for short, uri in NAME_FORMATS.items()}
# the attribute editor shows the service's refusals of formats and friendly names next to its table
RELEASE_FIELDS: dict[str, str | None] = {"attribute_formats": "attributes", "friendly_names": "attributes"}
REFRESH_KIND = "admin_refresh"


def _admin_name() -> str:
    return str(current_user.view.user.username)


def _app_or_404(slug: str) -> ConnectedApp:
    try:
        return apps_svc.get_app(slug[:100])
    except ServiceError:
        abort(404)


def _render(template: str, status: int = 200, **ctx: Any) -> tuple[str, int]:
    return render_template(template, section="apps", fmt_dt=fmt_dt, short_binding=short_binding,
                           nameid_short=nameid_short, **ctx), status


def _last_sso_by_slug(only: str | None = None) -> dict[str, datetime]:
    """Time of each app's last successful SSO: one grouped query over (app_slug, at), not one per app.

    (A read of the event log; it belongs in idp/events.py, which this area may not edit.)
    """
    q = (select(SsoEvent.app_slug, func.max(SsoEvent.at))
         .where(SsoEvent.event_type == "sso", SsoEvent.outcome == str(Outcome.SUCCESS))
         .group_by(SsoEvent.app_slug))
    q = q.where(SsoEvent.app_slug == only) if only else q.where(SsoEvent.app_slug.is_not(None))
    return {slug: at for slug, at in db.session.execute(q) if slug is not None}


def _published_keys() -> tuple[list[LoadedKey], str | None]:
    try:
        return list(keystore().current().published), None
    except KeyStoreError as exc:
        return [], str(exc)


def _is_http_url(value: str | None) -> bool:
    return bool(value) and urlsplit(value or "").scheme in ("http", "https")


def _fetch(url: str) -> bytes:
    s = settings()
    return fetch_svc.fetch_metadata(url, allow_private=s.metadata_fetch_allow_private,
                                    timeout=s.metadata_fetch_timeout_s)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


# ---------------------------------------------------------------- list


@bp.get("/apps")
def apps() -> tuple[str, int]:
    q = (request.args.get("q") or "").strip()[:200]
    rows = apps_svc.list_apps()
    if q:
        needle = q.casefold()
        rows = [a for a in rows if needle in a.name.casefold() or needle in a.slug
                or needle in (a.entity_id or "").casefold() or (a.oidc is not None and q == a.oidc.client_id)]
    last = _last_sso_by_slug()
    items = []
    for a in rows:
        s = apps_svc.AppSettings.from_dict(a.settings)
        items.append({"app": a, "policy": policy_summary(s), "pin": s.signing_key, "last_sso": last.get(a.slug),
                      "protocols": _protocols(a)})
    return _render("admin/apps_list.html", items=items, q=q, total=len(rows))


# ---------------------------------------------------------------- new app


@bp.route("/apps/new", methods=["GET", "POST"])
def app_new() -> tuple[str, int] | Response:
    """Register an app from exactly one source: an uploaded file, pasted XML, a URL, or fields entered by hand.

    Everything goes through services.apps.register_app, so validation is the CLI's; nothing is stored on refusal.
    An aggregate holding several SPs is parked server-side (pending store) while the admin picks one.
    """
    form = NewAppForm()
    if request.method == "GET":
        return _render_new(form)
    if form.pick_token.data:
        return _new_from_pick(PickAppForm())
    if not form.validate():
        return _render_new(form, 422)
    source = str(form.source)
    xml, ref = _read_new_source(form, source)
    if xml is None:
        return _render_new(form, 422)
    if source != "manual" and not form.entity_id_pick.data:
        try:
            ids = list_sp_entity_ids(xml)
        except MetadataError as exc:
            form.add_error(source, str(exc))
            return _render_new(form, 422)
        if len(ids) > 1:
            token = pending.put({"kind": PICK_KIND, "admin": _admin_name(), "source": source, "source_ref": ref,
                                 "xml_b64": base64.b64encode(xml).decode("ascii"), "entity_ids": ids})
            return _render_pick(form, token, ids)
    return _register(form, xml, source, ref)


def _render_new(form: NewAppForm | PickAppForm, status: int = 200) -> tuple[str, int]:
    return _render("admin/app_new.html", status, form=form, bindings=ACS_BINDINGS)


def _read_new_source(form: NewAppForm, source: str) -> tuple[bytes | None, str | None]:
    """The metadata document the form gives, and where it came from (a URL); None with the error on the form."""
    if source == "metadata_file":
        return form.upload, None
    if source == "metadata_xml":
        return form.metadata_xml.data.encode("utf-8"), None
    if source == "metadata_url":
        try:
            return _fetch(form.metadata_url.data), form.metadata_url.data
        except ServiceError as exc:
            refuse(form, exc, {"url": "metadata_url"})
            return None, None
    return build_sp_metadata_xml(form.hand_entered()), None


def _render_pick(form: NewAppForm | PickAppForm, token: str, ids: list[str], status: int = 200) -> tuple[str, int]:
    return _render("admin/app_new.html", status, form=form, bindings=ACS_BINDINGS, pick_token=token, pick_ids=ids,
                   pick_radios=len(ids) <= MAX_PICK_RADIOS)


def _new_from_pick(form: PickAppForm) -> tuple[str, int] | Response:
    token = form.pick_token.data
    data = pending.get(token, PICK_KIND, consume=False)
    if data is None or data.get("admin") != _admin_name():
        return error_page(400, "Upload expired", "The uploaded metadata is no longer held (it is kept for 30 "
                                                 "minutes). Start again from “New app”.")
    ids = list(data.get("entity_ids") or [])
    if not form.validate():
        return _render_pick(form, token, ids, 422)
    xml = base64.b64decode(data["xml_b64"])
    return _register(form, xml, "entity_id_pick", data.get("source_ref"), token=token, ids=ids)


def _register(form: NewAppForm | PickAppForm, xml: bytes, source: str, ref: str | None, *,
              token: str | None = None, ids: list[str] | None = None) -> tuple[str, int] | Response:
    """register_app with the form's choices; a refusal goes next to the field it is about: the document's source
    field (a document entered by hand was checked field by field already), or the SP picked from an aggregate."""
    pick = form.entity_id_pick.data or None
    try:
        app = apps_svc.register_app(xml, name=form.name.data or None, slug=form.slug.data or None, entity_id=pick,
                                    source="admin", source_ref=ref)
    except ServiceError as exc:
        document = None if source == "manual" else source
        refuse(form, exc, {"metadata": document,
                           "entity_id": "entity_id_pick" if pick else "entity_id" if source == "manual" else source})
        if token is not None:
            return _render_pick(form, token, ids or [], 422)
        return _render_new(form, 422)
    if token is not None:
        pending.get(token, PICK_KIND, consume=True)
    flash(f"App “{app.name}” registered as {app.slug}. Review its settings and access policy below.", "success")
    _flash_stale(app)
    return redirect(url_for("admin.app_detail", slug=app.slug), 303)


def _flash_stale(app: ConnectedApp) -> None:
    """Accepted metadata an admin should look at (validUntil past, plain-http endpoints): said once more as the
    page opens (the page lists them too)."""
    for warning in apps_svc.metadata_warnings(app.sp):
        flash(f"Warning: {warning[0].upper()}{warning[1:]}.", "warning")


# ---------------------------------------------------------------- detail and edits


def _idp_values(slug: str, issuer: str | None = None) -> list[tuple[str, str, str]]:
    """(label, id, absolute URL) the SP owner needs; every URL from IDP_BASE_URL, never the Host header. An app
    with a per-app issuer is given that entity ID and its own metadata URL (the IdP's names the IdP's entity ID)."""
    s = settings()
    return [
        ("Entity ID / Issuer" + (" (this app's own)" if issuer else ""), "idp-entity-id", issuer or s.entity_id),
        ("Metadata URL", "idp-metadata-url", s.url(f"/saml/metadata/{slug}" if issuer else "/saml/metadata")),
        ("Metadata for this app (download)", "idp-app-metadata-url",
         s.url("/saml/metadata?" + urlencode({"app": slug, "download": "1"}))),
        ("SSO URL (Redirect and POST)", "idp-sso-url", s.url("/saml/sso")),
        ("SLO URL (Redirect and POST)", "idp-slo-url", s.url("/saml/slo")),
        ("IdP-initiated launch URL", "idp-launch-url", s.url(f"/apps/{slug}/sso")),
        ("Signing certificate (PEM)", "idp-cert-url", s.url("/saml/certificate?" + urlencode({"app": slug}))),
    ]


def _protocols(app: ConnectedApp) -> list[str]:
    return (["SAML"] if app.has_saml else []) + (["OIDC"] if app.has_oidc else [])


def _oidc_view(app: ConnectedApp) -> dict[str, Any] | None:
    """The app's OIDC settings as the page shows them (read-only; never a secret)."""
    if app.oidc is None:
        return None
    s = settings_of(app.oidc)
    return {"s": s, "access_token_lifetime": apps_svc.format_duration(s.access_token_lifetime),
            "id_token_lifetime": apps_svc.format_duration(s.id_token_lifetime),
            "refresh_policy": s.refresh_policy_text, "secrets": apps_svc.secret_status(app),
            "jwks_keys": [k.get("kid") or k.get("kty") for k in (s.jwks or {}).get("keys", [])]}


def _render_detail(app: ConnectedApp, *, saml: SamlForm | None = None, policy: PolicyForm | None = None,
                   status: int = 200, notice: str | None = None, oidc_form: Any = None,
                   add_oidc_form: Any = None, release: ReleaseForm | None = None,
                   provisioning_form: Any = None, provisioning_plan: Any = None,
                   md_form: Any = None) -> tuple[str, int]:
    from idp.web.admin.metadata_refresh_views import metadata_source_context  # automatic metadata refresh
    from idp.web.admin.oidc_views import detail_context  # the OIDC sections (forms, usage) live there
    from idp.web.admin.provisioning_views import provisioning_context  # the Provisioning section
    from idp.web.admin.usage_views import usage_context  # the Usage section (sign-ins from the event log)

    sp = SpMetadata.from_dict(app.sp) if app.has_saml and app.sp is not None else None
    current = apps_svc.AppSettings.from_dict(app.settings)
    keys, key_error = _published_keys()
    signing_key = next((k for k in keys if k.kid == current.signing_key), None) if current.signing_key else \
        next((k for k in keys if k.state == "active"), None)
    last = _last_sso_by_slug(app.slug).get(app.slug)
    released, not_released = explain_release(current, sp)
    return _render(
        "admin/app_detail.html", status, app=app, sp=sp, current=current, oidc=_oidc_view(app),
        metadata_warnings=apps_svc.metadata_warnings(app.sp) if sp else [],
        protocols=_protocols(app), released=released, not_released=not_released, name_formats=_NAME_FORMAT_NAMES,
        saml=saml or SamlForm.from_app(app) if sp else None, policy=policy or PolicyForm.from_app(app),
        release=release or ReleaseForm.from_app(app) if sp is None else None,
        signing_certs=[cert_info(c) for c in sp.signing_certs] if sp else [],
        encryption_certs=[cert_info(c) for c in sp.encryption_certs] if sp else [],
        keys=keys, key_error=key_error, signing_key=signing_key, groups=accounts.group_names(), last_sso=last,
        idp_values=_idp_values(app.slug, current.issuer), summary=policy_summary(current),
        events_url=url_for("admin.events", app=app.slug) if "admin.events" in current_app.view_functions else None,
        choices={"nameid_formats": tuple(NAMEID_FORMATS), "nameid_fields": NAMEID_FIELDS, "sign": SIGN_MODES,
                 "sigalgs": tuple(SIGNATURE_ALGORITHM_NAMES), "encalgs": ENCRYPTION_ALGORITHMS,
                 "permitted": PERMITTED_MODES, "ip_modes": IP_MODES,
                 "mfa_actions": MFA_ACTIONS},
        idp_entity_id=settings().entity_id, app_metadata_url=settings().url(f"/saml/metadata/{app.slug}"),
        notice=notice, now=datetime.now(UTC), **detail_context(app, oidc_form, add_oidc_form),
        **usage_context(app), **provisioning_context(app, provisioning_form, provisioning_plan),
        **metadata_source_context(app, md_form),
    )


@bp.get("/apps/<slug>")
def app_detail(slug: str) -> tuple[str, int]:
    return _render_detail(_app_or_404(slug))


@bp.post("/apps/<slug>/saml")
def app_saml(slug: str) -> tuple[str, int] | Response:
    """SAML settings: the same change_settings/signing_changes call as `idp apps set` (the form holds every value)."""
    app = _app_or_404(slug)
    if not app.has_saml:
        return error_page(409, "No SAML settings", "This app has no SAML settings: add its SAML metadata first.")
    current = apps_svc.AppSettings.from_dict(app.settings)
    keys, _ = _published_keys()
    kids = [k.kid for k in keys]
    form = SamlForm(current_pin=current.signing_key, published_kids=kids)
    if form.add_row.data:
        form.add_blank_row()
        return _render_detail(app, saml=form, notice="Row added. Nothing is saved until you press "
                                                     "“Save SAML settings”.")
    if not form.validate():
        return _render_detail(app, saml=form, status=422)
    pin = form.signing_key_change()
    try:
        signing = apps_svc.signing_changes(
            published_kids=kids if pin not in (None, "active") else None, signing_key=pin,
            signature_algorithm=form.signature_algorithm.data, encrypt_assertion=form.encrypt_assertion.data,
            encryption_algorithm=form.encryption_algorithm.data)
        apps_svc.change_settings(
            app, name=form.name.data, nameid_format=form.nameid_format.data, nameid_field=form.nameid_field.data,
            sign=form.sign.data, require_signed_requests=form.require_signed_requests.data,
            allow_sha1=form.allow_sha1.data, **signing, **form.release_changes(), **form.connected_changes())
    except ServiceError as exc:
        refuse(form, exc, RELEASE_FIELDS)
        return _render_detail(_app_or_404(slug), saml=form, status=422)
    flash("SAML settings saved.", "success")
    return redirect(url_for("admin.app_detail", slug=app.slug, _anchor="saml-settings"), 303)


@bp.post("/apps/<slug>/attributes")
def app_attributes(slug: str) -> tuple[str, int] | Response:
    """Attributes (OIDC claims) of an app without SAML settings: the editor of the SAML settings form on its own
    (a SAML app edits them there), saved with change_settings as `idp apps set --attribute ...`."""
    app = _app_or_404(slug)
    if app.has_saml:
        return error_page(409, "Edit them with the SAML settings", "This app has SAML settings: its attributes are "
                                                                   "edited in the “SAML settings” form.")
    form = ReleaseForm()
    if form.add_row.data:
        form.add_blank_row()
        return _render_detail(app, release=form, notice="Row added. Nothing is saved until you press "
                                                        "“Save attributes”.")
    if not form.validate():
        return _render_detail(app, release=form, status=422)
    try:
        apps_svc.change_settings(app, **form.release_changes())
    except ServiceError as exc:
        refuse(form, exc, RELEASE_FIELDS)
        return _render_detail(_app_or_404(slug), release=form, status=422)
    flash("Attributes saved.", "success")
    return redirect(url_for("admin.app_detail", slug=app.slug, _anchor="attribute-release"), 303)


@bp.get("/apps/<slug>/preview")
def app_preview(slug: str) -> tuple[str, int]:
    """What the app would receive about a user (flows.preview, as `idp apps preview`): the NameID, attributes with
    their sources and what is left out, the assertion as it would be signed, the OIDC claims. Nothing is issued,
    no event written, nothing stored (a pairwise ID it would create is rolled back)."""
    app = _app_or_404(slug)
    username = (request.args.get("user") or "").strip()[:150]

    def page(status: int = 200, **ctx: Any) -> tuple[str, int]:
        return _render("admin/app_preview.html", status, app=app, username=username,
                       name_formats=_NAME_FORMAT_NAMES, **ctx)

    if not username:
        return page(400, error="Enter the username of the user whose sign-in to preview.")
    user = users_svc.find_user(username)
    config = apps_svc.app_config_by_id(app.id)
    if user is None or config is None:
        return page(404, error=f"No user {username!r}: check the username (it is the user's sign-in name).")
    result = preview(config, user, settings())
    claims = None if result.claims is None else json.dumps(result.claims, indent=2, ensure_ascii=False)
    return page(result=result, claims=claims)


@bp.post("/apps/<slug>/policy")
def app_policy(slug: str) -> tuple[str, int] | Response:
    """Access policy: the posted state is the new policy (groups and users it adds must exist, as for
    `idp apps set`)."""
    app = _app_or_404(slug)
    form = PolicyForm()
    if not form.validate():
        return _render_detail(app, policy=form, status=422)
    try:
        current = apps_svc.AppSettings.from_dict(app.settings)
        apps_svc.validate_policy_references(**form.additions(current))
        apps_svc.change_settings(app, **form.changes(current))
    except ServiceError as exc:
        refuse(form, exc)
        return _render_detail(_app_or_404(slug), policy=form, status=422)
    flash("Access policy saved.", "success")
    return redirect(url_for("admin.app_detail", slug=app.slug, _anchor="access-policy"), 303)


@bp.post("/apps/<slug>/status")
def app_status(slug: str) -> tuple[str, int] | Response:
    app = _app_or_404(slug)
    form = AppStatusForm()
    if not form.validate():
        return error_page(400, "Bad request", "The form did not say whether to enable or disable the app.")
    try:
        apps_svc.change_settings(app, enabled=form.enabled.data == "1")
    except ServiceError as exc:
        db.session.rollback()
        return error_page(409, "Not changed", str(exc))
    flash(f"App “{app.name}” {'enabled' if app.enabled else 'disabled'}.", "success")
    return redirect(url_for("admin.app_detail", slug=app.slug), 303)


@bp.route("/apps/<slug>/delete", methods=["GET", "POST"])
def app_delete(slug: str) -> tuple[str, int] | Response:
    app = _app_or_404(slug)
    form = ConfirmForm()
    if not form.validate_on_submit():
        return _render("admin/app_delete.html", app=app, last_sso=_last_sso_by_slug(app.slug).get(app.slug))
    name = app.name
    try:
        apps_svc.remove_app(app.slug)
    except ServiceError as exc:
        db.session.rollback()
        return error_page(409, "Not deleted", str(exc))
    flash(f"App “{name}” deleted.", "success")
    return redirect(url_for("admin.apps"), 303)


# ---------------------------------------------------------------- metadata refresh


@bp.route("/apps/<slug>/refresh", methods=["GET", "POST"])
def app_refresh(slug: str) -> tuple[str, int] | Response:
    """Preview a metadata refresh: fetch (stored or given URL) or take an uploaded/pasted document, diff, park.

    The new document is parked server-side in the pending store (kind "admin_refresh") under an unguessable,
    single-use token bound to this admin and app, together with the SHA-256 of the app's metadata the diff was
    computed against. The approving POST carries only the token: the browser never holds the XML, so it cannot
    alter what gets applied, and the apply is refused when the app's metadata changed since the preview.
    """
    app = _app_or_404(slug)
    stored_url = app.source_ref if _is_http_url(app.source_ref) else None
    adding = not app.has_saml   # an OIDC-only app gets its SAML settings from the document
    form = RefreshForm()

    def page(status: int = 200, **ctx: Any) -> tuple[str, int]:
        return _render("admin/app_refresh.html", status, app=app, stored_url=stored_url, adding=adding,
                       url_value=form.metadata_url.data or stored_url or "", errors=form.messages, **ctx)

    if request.method == "GET":
        return page()
    if not form.validate():
        return page(422)
    source = form.given[0]
    ref = None
    try:
        if source == "metadata_file":
            xml = form.upload or b""
        elif source == "metadata_xml":
            xml = form.metadata_xml.data.encode("utf-8")
        else:
            xml, ref = _fetch(form.metadata_url.data), form.metadata_url.data
        new_sp = apps_svc.parse_app_metadata(xml, app.entity_id)
        if adding:
            apps_svc.check_entity_id_free(new_sp.entity_id)
    except ServiceError as exc:
        if exc.field == "entity_id" and not adding and str(exc) != OWN_ENTITY_ID_MESSAGE:
            exc = ServiceError(f"{exc} (the new metadata must describe this app's entityID {app.entity_id!r})",
                               field=exc.field)
        refuse(form, exc, {"url": source, "metadata": source, "entity_id": source})
        return page(422)
    diff = metadata_diff(SpMetadata.from_dict(app.sp) if app.sp is not None and not adding else _NO_SP, new_sp)
    if adding:
        diff.insert(0, DiffItem("entityID", added=(new_sp.entity_id,)))
    same_text = xml.decode("utf-8", errors="replace") == app.metadata_xml
    token = None
    if diff:
        token = pending.put({"kind": REFRESH_KIND, "admin": _admin_name(), "slug": app.slug, "app_id": app.id,
                             "base_sha256": _sha256(app.metadata_xml or ""), "source_ref": ref,
                             "xml_b64": base64.b64encode(xml).decode("ascii")})
    return page(diff=diff, token=token, previewed=True, same_text=same_text, new_ref=ref)


@bp.post("/apps/<slug>/refresh/apply")
def app_refresh_apply(slug: str) -> tuple[str, int] | Response:
    app = _app_or_404(slug)
    form = ApplyRefreshForm()
    data = pending.get(form.token.data, REFRESH_KIND, consume=True) if form.validate() else None
    if data is None or data.get("admin") != _admin_name() or data.get("slug") != app.slug \
            or data.get("app_id") != app.id:
        return error_page(400, "Preview expired", "This metadata preview is no longer valid (a preview is kept for "
                                                  "30 minutes and applies once). Refresh the metadata again.")
    if data.get("base_sha256") != _sha256(app.metadata_xml or ""):
        return error_page(409, "Metadata changed meanwhile", "The app's metadata changed after this preview was "
                                                             "made; nothing was applied. Refresh it again.")
    try:
        changed = apps_svc.update_metadata(app, base64.b64decode(data["xml_b64"]), source_ref=data.get("source_ref"))
    except ServiceError as exc:
        db.session.rollback()
        return error_page(422, "Metadata refused", str(exc))
    flash("Metadata updated." if changed else "The metadata was already up to date.", "success")
    _flash_stale(app)
    return redirect(url_for("admin.app_detail", slug=app.slug), 303)
