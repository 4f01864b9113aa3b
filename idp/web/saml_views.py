"""SAML endpoints: IdP metadata, SingleSignOnService (Redirect + POST), IdP-initiated launch."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from flask import Blueprint, Response, g, redirect, request, url_for
from flask_login import current_user
from lxml import etree

from .. import metrics
from ..auth.sessions import SessionView
from ..certs.keystore import KeyFamily, KeySet, KeyStoreError
from ..errors import EventContext, MalformedRequest, ReplayedRequest, SamlFlowError, ServiceUnavailable
from ..events import record_event
from ..extensions import csrf
from ..flows.artifact import ENDPOINT_PATH as ARTIFACT_PATH
from ..flows.artifact import resolve_artifact
from ..flows.outcomes import Denied, Issued, NeedsReauthentication, NeedsSecondFactor
from ..flows.saml_keys import signing_key_for
from ..flows.sso import (
    PendingSso,
    SsoOutcome,
    error_response,
    load_parked,
    park,
    proceed,
    receive_authn_request,
    start_idp_initiated,
    unpark,
)
from ..reasons import Reason
from ..replay import replayed_key
from ..saml.bindings import BindingError, decode_post, decode_redirect
from ..saml.constants import SIG_ECDSA_SHA256, SIG_RSA_SHA256, BindingName
from ..saml.idp_metadata import IdpMetadataSpec, build_idp_metadata
from ..saml.signing import sign_element
from ..services.apps import app_config_by_entity_id, saml_app_config_by_slug
from ..state.base import RecordedFirstElsewhere
from .context import current_client, keystore, settings
from .params import flag
from .responses import error_page, post_form
from .uow import commit, rollback

bp = Blueprint("saml", __name__)
_TIMED = frozenset({"saml.sso", "saml.resume", "saml.idp_initiated"})


@bp.before_request
def _start_timer() -> None:
    g.sso_started = time.perf_counter()


@bp.after_request
def _observe(resp: Response) -> Response:
    if request.endpoint in _TIMED and "sso_started" in g:
        metrics.observe_latency(time.perf_counter() - g.sso_started)
    return resp


@bp.get("/saml/metadata")
def metadata() -> Response:
    """IdP metadata: every published signing key (rollover), or one app's (?app=slug, as /saml/metadata/<slug>).

    Signed with the active key when ?signed=1 or IDP_METADATA_SIGNED; carries validUntil and cacheDuration.
    """
    return _metadata(request.args.get("app"))


@bp.get("/saml/metadata/<slug>")
def app_metadata(slug: str) -> Response:
    """One app's IdP metadata: the same endpoints, with its per-app entityID (issuer) when it has one and only
    the key it is pinned to when pinned."""
    return _metadata(slug)


def _metadata(slug: str | None) -> Response:
    s = settings()
    try:
        keys = keystore().current()
    except KeyStoreError as exc:
        return error_page(503, "Signing key unavailable", str(exc))
    published = list(keys.published)
    entity_id = s.entity_id
    filename = "idp-metadata.xml"
    if slug is not None:
        app = saml_app_config_by_slug(slug[:100])
        if app is None:
            return error_page(404, "Not found", "There is no SAML app with that slug.")
        try:
            published = [signing_key_for(app, keys)] if app.settings.signing_key else published
        except SamlFlowError as exc:
            return error_page(503, "Signing key unavailable", exc.message)
        filename = f"idp-metadata-{app.slug}.xml"
        entity_id = app.idp_entity_id(s.entity_id)
    spec = IdpMetadataSpec(
        entity_id=entity_id, sso_url=s.url("/saml/sso"), slo_url=s.url("/saml/slo"),
        artifact_url=s.url(ARTIFACT_PATH),
        signing_certs_b64=[k.cert_b64 for k in published],
        want_authn_requests_signed=s.want_authn_requests_signed, now=datetime.now(UTC),
        valid_for=timedelta(days=s.metadata_valid_days),
    )
    root = build_idp_metadata(spec)
    wanted = flag(request.args.get("signed"))
    if wanted is True or (s.metadata_signed and wanted is not False):
        sign_element(root, keys.active.private_key,
                     SIG_ECDSA_SHA256 if keys.active.key_type == KeyFamily.EC else SIG_RSA_SHA256, keys.active.cert_b64)
    xml = etree.tostring(root, xml_declaration=True, encoding="utf-8")
    resp = Response(xml, mimetype="application/samlmetadata+xml")
    resp.headers["Cache-Control"] = "public, max-age=3600"
    if request.args.get("download"):
        resp.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return resp


@bp.get("/saml/certificate")
def certificate() -> Response:
    """PEM download of the active signing certificate, or of a published key (?kid=) or an app's pin (?app=)."""
    try:
        keys = keystore().current()
    except KeyStoreError as exc:
        return error_page(503, "Signing key unavailable", str(exc))
    key = keys.active
    if request.args.get("kid"):
        found = keys.get(request.args["kid"][:64])
        if found is None:
            return error_page(404, "Not found", "No published signing key has that id.")
        key = found
    elif request.args.get("app"):
        app = saml_app_config_by_slug(request.args["app"][:100])
        if app is None:
            return error_page(404, "Not found", "There is no SAML app with that slug.")
        try:
            key = signing_key_for(app, keys)
        except SamlFlowError as exc:
            return error_page(503, "Signing key unavailable", exc.message)
    resp = Response(key.cert_pem, mimetype="application/x-pem-file")
    resp.headers["Content-Disposition"] = f'attachment; filename="idp-signing-{key.kid}.crt"'
    return resp


def _session() -> SessionView | None:
    return current_user.view if current_user.is_authenticated else None


def _keys() -> KeySet:
    try:
        return keystore().current()
    except KeyStoreError as exc:
        raise ServiceUnavailable(f"signing key unavailable: {exc}") from None


def _proceed(pending: PendingSso, token: str | None = None) -> Response:
    return render_outcome(proceed(pending, token, _session(), settings(), _keys, current_client()))


def render_outcome(outcome: SsoOutcome) -> Response:
    """The one place an SSO outcome becomes HTTP: a POST form, a redirect to sign in, or an error."""
    if isinstance(outcome, Issued):
        commit()  # the event and session-participant rows are durable before the assertion leaves
        return post_form(outcome.result)
    if isinstance(outcome, Denied):
        return render_denied(outcome.error)
    resume_url = url_for("saml.resume", token=outcome.token)
    if isinstance(outcome, NeedsSecondFactor):
        target = url_for("mfa.verify", next=resume_url, request=outcome.token)
    else:
        force = "1" if isinstance(outcome, NeedsReauthentication) else None
        target = url_for("auth.login", next=resume_url, request=outcome.token, force=force)
    commit()
    return redirect(target, code=303)  # type: ignore[return-value]


@bp.route("/saml/sso", methods=["GET", "POST"])
@csrf.exempt
def sso() -> Response:
    s = settings()
    try:
        if request.method == "GET":
            msg = decode_redirect(request.query_string, "SAMLRequest", s.max_inflated_bytes)
            raw_query: bytes | None = request.query_string
        else:
            msg = decode_post(request.form.get("SAMLRequest"), request.form.get("RelayState"), s.max_inflated_bytes)
            raw_query = None
    except BindingError as exc:
        err = MalformedRequest(f"the SAML request could not be decoded: {exc}")
        err.context = EventContext(initiated_by="sp", binding=_binding_name())
        return render_denied(err)
    received = receive_authn_request(msg, raw_query, s)
    if isinstance(received, Denied):
        return render_denied(received.error)
    _app, pending = received
    if msg.binding == "post" and _session() is None:
        # A cross-site POST carries no SameSite=Lax cookie: park it and continue with a same-site GET.
        token = park(pending)
        commit()
        return redirect(url_for("saml.resume", token=token), code=303)  # type: ignore[return-value]
    return _proceed(pending)


@bp.errorhandler(RecordedFirstElsewhere)
def replayed_at_commit(exc: RecordedFirstElsewhere) -> Response:
    """Two requests with one AuthnRequest ID passed the replay check together; the slower one's commit found the
    ID recorded (its replay-cache row is written by the commit, see DbState.remember_at_commit). Nothing of it was
    written and its Response never leaves: it is refused as the replay it is."""
    rollback()
    issuer, request_id = replayed_key(exc.key)
    err = ReplayedRequest(f"AuthnRequest {request_id[:100]!r} from this app was already used (by a concurrent "
                          "request)")
    ctx = EventContext(initiated_by="sp", binding=_binding_name(), sp_entity_id=issuer, request_id=request_id)
    app = app_config_by_entity_id(issuer)
    ctx.app_slug = app.slug if app is not None else None
    err.context = ctx
    return render_denied(err)


@bp.post(ARTIFACT_PATH)
@csrf.exempt
def artifact_resolution() -> Response:
    """ArtifactResolutionService (SOAP binding, saml-bindings §3.2, §3.6.5): a signed ArtifactResolve in, the
    ArtifactResponse (with the Response, once) out."""
    answer = resolve_artifact(request.get_data(cache=False), settings(), _keys, current_client())
    commit()   # the event, the consumed artifact and the replay-cache row together
    resp = Response(answer.body, status=answer.status, mimetype="text/xml")
    resp.headers["Cache-Control"] = "no-cache, no-store"
    resp.headers["Pragma"] = "no-cache"
    return resp


@bp.get("/saml/continue/<token>")
def resume(token: str) -> Response:
    found = load_parked(token)
    if found is None:
        err = MalformedRequest("this sign-in request is unknown or has expired; start again from the application",
                               http_status=400)
        err.context = EventContext()
        return render_denied(err)
    app, pending = found
    if app is None:
        unpark(token, consume=True)
        err = MalformedRequest("the application was removed", http_status=404)
        err.context = pending.event_context(None)
        return render_denied(err)
    return _proceed(pending, token)


@bp.get("/apps/<slug>/sso")
def idp_initiated(slug: str) -> Response:
    started = start_idp_initiated(slug, request.args.get("RelayState"))
    if isinstance(started, Denied):
        return render_denied(started.error)
    return _proceed(started[1])


def _binding_name() -> str:
    return BindingName.REDIRECT if request.method == "GET" else BindingName.POST


def render_denied(exc: SamlFlowError) -> Response:
    """The one place a stopped flow becomes an event plus a response (SAML error to the ACS, or a 4xx page)."""
    ctx = exc.context or EventContext()
    if ctx.username is None and current_user.is_authenticated:
        ctx.username = current_user.view.user.username
    ctx.detail.setdefault("message", exc.message)
    issued = None
    if exc.reply_to is not None and exc.saml_status is not None:
        try:
            issued = error_response(exc, settings(), keystore().current())
        except KeyStoreError:
            issued = None
    client = current_client()
    event = record_event(ctx, exc.reason, client_ip=client.ip, user_agent=client.user_agent)
    commit()
    if issued is not None:
        return post_form(issued)
    title, message = _user_facing(exc, logout=ctx.event_type == "logout")
    return error_page(exc.http_status, title, message, event.id)


handle_flow_error = render_denied  # registered for SamlFlowError raised by the logout views


# What the user reads, per reason: fixed text only. The exception's message often quotes the request
# (an unknown SP's Issuer, a Destination, a binding error), and text an attacker chose must never appear
# on the IdP's own page with the IdP's authority; it goes to the event detail for admins instead.
_USER_MESSAGES: dict[Reason, tuple[str, str]] = {
    Reason.UNKNOWN_SP: ("Sign-in failed",
                        "This sign-in request came from an application this identity provider does not know."),
    Reason.UNKNOWN_APP: ("Sign-in failed", "There is no such application on this identity provider."),
    Reason.APP_DISABLED: ("Sign-in failed", "This application is currently disabled on this identity provider."),
    Reason.METADATA_EXPIRED: ("Sign-in failed", "This application's configuration has expired and must be renewed "
                                                "by an administrator. Try again later."),
    Reason.IDP_INITIATED_DISABLED: ("Sign-in failed", "This application cannot be started from this identity "
                                                      "provider. Open the application and sign in from there."),
    Reason.RELAY_STATE_NOT_ALLOWED: ("Sign-in failed", "The link asked to open a page this application is not set "
                                                       "up to open. Start again from your app launcher."),
    Reason.ACS_NOT_REGISTERED: ("Sign-in failed",
                                "The application asked for the answer at an address it has not registered."),
    Reason.BAD_SIGNATURE: ("Sign-in failed", "The sign-in request's signature could not be verified."),
    Reason.REQUEST_EXPIRED: ("Sign-in failed",
                             "The sign-in request is too old or from the future. Start again from the application."),
    Reason.REPLAYED_REQUEST: ("Sign-in failed",
                              "This sign-in request was already used. Start again from the application."),
    Reason.WRONG_DESTINATION: ("Sign-in failed", "The sign-in request was addressed to another server."),
    Reason.MALFORMED_REQUEST: ("Sign-in failed", "The sign-in request could not be read."),
    Reason.UNSUPPORTED_BINDING: ("Sign-in failed", "The sign-in request used a way of sending it that is not "
                                                   "supported here."),
    Reason.UNSUPPORTED_NAMEID_FORMAT: ("Sign-in failed",
                                       "The application asked for a user identifier this application is not "
                                       "set up to release."),
    Reason.NO_PASSIVE: ("Sign-in failed", "The application asked for a sign-in without a prompt, which is not "
                                          "possible now."),
    Reason.NO_AUTHN_CONTEXT: ("Sign-in failed", "The application asked for a kind of sign-in this identity "
                                                "provider cannot provide."),
    Reason.MISSING_ATTRIBUTE: ("Sign-in failed", "Your account lacks information this application needs. "
                                                 "Contact your administrator."),
    Reason.NO_ENCRYPTION_CERT: ("Sign-in failed", "This application is not set up correctly. "
                                                  "Contact your administrator."),
    Reason.ATTRIBUTE_UNAVAILABLE: ("Sign-in failed", "Your account lacks information this application needs. "
                                                     "Contact your administrator."),
    Reason.RELEASE_MISCONFIGURED: ("Sign-in failed", "This application is not set up correctly. "
                                                     "Contact your administrator."),
    Reason.SESSION_EXPIRED: ("Sign-in failed", "Your session has expired. Sign in again."),
    Reason.UNKNOWN_SESSION: ("Sign-out", "There was no session to end."),
    Reason.LOGOUT_NOT_BOUND: ("Sign-out failed", "This sign-out step belongs to a sign-out started in another "
                                                 "browser, so it was not continued here."),
}
_GENERIC = ("Sign-in failed", "The request could not be completed. Contact your administrator with the event id.")
_DENIED = ("Access denied", "You are not allowed to sign in to this application. Contact your administrator.")
_UNAVAILABLE = ("Temporarily unavailable", "Sign-in is temporarily unavailable. Please try again in a minute.")


def _user_facing(exc: SamlFlowError, *, logout: bool = False) -> tuple[str, str]:
    """A fixed title and message for the reason; never the exception's message (see _USER_MESSAGES)."""
    if exc.http_status == 403 and exc.reason in {Reason.USER_NOT_PERMITTED, Reason.IP_NOT_ALLOWED,
                                                 Reason.MFA_REQUIRED, Reason.USER_DISABLED}:
        return _DENIED
    if exc.http_status == 503:
        return _UNAVAILABLE
    title, message = _USER_MESSAGES.get(exc.reason, _GENERIC)
    if logout:  # the same fixed texts, worded for a logout message
        title = title.replace("Sign-in", "Sign-out")
        message = message.replace("sign-in request", "sign-out request").replace("Sign-in", "Sign-out")
    return title, message
