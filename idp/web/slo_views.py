"""SingleLogoutService (Redirect + POST) and the IdP-initiated logout page."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, redirect, render_template, request, session, url_for
from flask_login import current_user, logout_user

from ..certs.keystore import KeySet, KeyStoreError
from ..errors import EventContext, MalformedRequest, ServiceUnavailable, UnknownSession
from ..extensions import csrf, db
from ..flows import pending as pending_store
from ..flows.slo import (
    BROWSER_COOKIE,
    Outgoing,
    answer_unknown_session,
    next_step,
    origin_for,
    receive_logout_request,
    receive_logout_response,
    start_logout_chain,
)
from ..models import IdpSession
from ..saml.bindings import BindingError, DecodedMessage, decode_post, decode_redirect
from ..saml.constants import BindingName
from .context import current_client, keystore, settings
from .responses import post_binding_page
from .uow import commit

bp = Blueprint("slo", __name__)


def _keys() -> KeySet:
    try:
        return keystore().current()
    except KeyStoreError as exc:
        raise ServiceUnavailable(f"signing key unavailable: {exc}") from None


def _go(out: Outgoing) -> Response:
    if out.binding == "redirect":
        resp = redirect(out.url, code=303)
    elif out.binding == "post":
        resp = post_binding_page(out.url, out.field or "SAMLRequest", out.value or "", out.relay_state)
    else:
        resp = Response(render_template("logged_out.html"))
    resp.headers["Cache-Control"] = "no-cache, no-store"
    if out.bind_browser:
        _bind_browser(resp, out.bind_browser)  # type: ignore[arg-type]
    return resp  # type: ignore[return-value]


def _bind_browser(resp: Response, value: str) -> None:
    """The logout chain's cookie (flows.slo): sent back only to /saml/slo. Over HTTPS it is SameSite=None, so an
    SP's auto-posted LogoutResponse (a cross-site POST) carries it; over plain HTTP (development) browsers refuse
    SameSite=None without Secure, so it is Lax and POST-binding answers then end the chain early."""
    https = settings().is_https
    resp.set_cookie(BROWSER_COOKIE, value, max_age=30 * 60, path="/saml/slo", secure=https, httponly=True,
                    samesite="None" if https else "Lax")


def _forget_browser_session() -> None:
    logout_user()
    session.clear()


@bp.route("/saml/slo", methods=["GET", "POST"])
@csrf.exempt
def slo() -> Response:
    s = settings()
    source = request.args if request.method == "GET" else request.form
    param = "SAMLRequest" if "SAMLRequest" in source else "SAMLResponse" if "SAMLResponse" in source else None
    try:
        if param is None:
            raise BindingError("no SAMLRequest or SAMLResponse")
        if request.method == "GET":
            msg: DecodedMessage = decode_redirect(request.query_string, param, s.max_inflated_bytes)
        else:
            msg = decode_post(request.form.get(param), request.form.get("RelayState"), s.max_inflated_bytes)
    except BindingError as exc:
        err = MalformedRequest(f"the logout message could not be decoded: {exc}")
        binding = BindingName.REDIRECT if request.method == "GET" else BindingName.POST
        err.context = EventContext(event_type="logout", binding=binding)
        raise err from None
    raw_query = request.query_string if request.method == "GET" else None
    if param == "SAMLResponse":
        token = receive_logout_response(msg, raw_query, request.cookies.get(BROWSER_COOKIE), s, current_client())
        return _go(next_step(token, s, _keys()))
    client = current_client()
    app, req, idp_session = receive_logout_request(msg, raw_query, s, client)
    keys = _keys()
    origin = origin_for(app, req, msg)
    if idp_session is None:
        return _go(answer_unknown_session(origin, s, keys, _request_context(app.slug, app.entity_id, msg.binding,
                                                                            req.id), client))
    if not _is_session_browser(idp_session.id) and request.method == "POST" and not _has_session_cookie():
        # a cross-site POST carries no SameSite=Lax cookie: the browser may well be the session's; one same-origin
        # auto-submitted form brings the cookie along (flows.slo: the chain runs only in the session's browser)
        token = pending_store.park(BOUNCE_KIND, {"session_id": idp_session.id, "origin": origin,
                                                 "app": [app.slug, app.entity_id], "binding": str(msg.binding),
                                                 "request_id": req.id, "exclude": app.id})
        return post_binding_page(url_for("slo.slo_resume"), "resume", token, None)
    return _run_chain(idp_session, origin, _request_context(app.slug, app.entity_id, msg.binding, req.id), keys,
                      exclude_app_id=app.id)


BOUNCE_KIND = "slo_bounce"


@bp.post("/saml/slo/resume")
@csrf.exempt   # the form is the IdP's own auto-submitted page; the one-time token is what it proves
def slo_resume() -> Response:
    """The same-origin second leg of a POST-binding LogoutRequest (see slo): now with the browser's cookies."""
    parked = pending_store.get(request.form.get("resume"), BOUNCE_KIND, consume=True)
    if parked is None:
        err = UnknownSession("this sign-out step expired or was already used")
        err.context = EventContext(event_type="logout", binding=BindingName.POST)
        raise err
    idp_session = db.session.get(IdpSession, parked["session_id"])
    slug, entity_id = parked["app"]
    ctx = _request_context(slug, entity_id, parked["binding"], parked["request_id"])
    keys = _keys()
    if idp_session is None or idp_session.ended_at is not None:   # ended meanwhile: answer as for no session
        return _go(answer_unknown_session(parked["origin"], settings(), keys, ctx, current_client()))
    return _run_chain(idp_session, parked["origin"], ctx, keys, exclude_app_id=parked["exclude"])


def _request_context(slug: str, entity_id: str | None, binding: str, request_id: str) -> EventContext:
    return EventContext(event_type="logout", app_slug=slug, sp_entity_id=entity_id, initiated_by="sp",
                        binding=binding, request_id=request_id)


def _is_session_browser(session_id: str) -> bool:
    return bool(current_user.is_authenticated and current_user.session.id == session_id)


def _has_session_cookie() -> bool:
    return current_app.config.get("SESSION_COOKIE_NAME", "session") in request.cookies


def _run_chain(idp_session: IdpSession, origin: dict[str, object], ctx: EventContext, keys: KeySet, *,
               exclude_app_id: int) -> Response:
    """End the session the (verified) LogoutRequest names. Only in that session's own browser does the front-channel
    chain run (another app's LogoutRequest, with its NameID and SessionIndex, goes only to the user's browser);
    from any other client the session ends with the back channel alone and the answer says PartialLogout."""
    own = _is_session_browser(idp_session.id)
    if own:
        _forget_browser_session()
    return _go(start_logout_chain(idp_session, origin, settings(), keys, ctx, current_client(),
                                  exclude_app_id=exclude_app_id, front_channel=own, checkpoint=commit))


# Sec-Fetch-Site values that show the request did not come from another site's page: the IdP's own
# pages ("same-origin") or the user's own action, such as a typed URL or a bookmark ("none").
_OWN_FETCH = frozenset({"same-origin", "none"})


@bp.route("/logout/saml", methods=["GET", "POST"])
def idp_logout() -> Response:
    """Sign out of the IdP and every app that registered an SLO endpoint.

    The IdP's own "Sign out" is a POST with a CSRF token. A GET signs out at once only when the
    browser says it was not started by another site; otherwise (a link or image on another site,
    or a browser that sends no Sec-Fetch-Site) it shows a confirmation form, whose POST carries a
    CSRF token: a foreign page cannot sign people out of everything (logout CSRF).
    """
    own = request.method == "POST" or request.headers.get("Sec-Fetch-Site", "").lower() in _OWN_FETCH
    if not current_user.is_authenticated:
        if own:  # a foreign page must not wipe a half-finished login either
            _forget_browser_session()
        return _go(Outgoing(binding="page", url=""))
    if not own:
        resp = Response(render_template("logout_confirm.html", username=current_user.view.user.username))
        resp.headers["Cache-Control"] = "no-store"
        return resp
    idp_session = current_user.session
    client = current_client()
    ctx = EventContext(event_type="logout", initiated_by="idp")
    _forget_browser_session()
    return _go(start_logout_chain(idp_session, None, settings(), _keys(), ctx, client, checkpoint=commit))
