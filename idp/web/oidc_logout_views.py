"""RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): GET|POST /oauth2/logout and its confirmation.

The IdP session ends through the same chain as SAML single logout (flows.slo.start_logout_chain): the SAML SPs of
the session get their front-channel LogoutRequests, the OIDC RPs their back-channel logout tokens, and at the end
the browser goes to the RP's registered post-logout URI (with `state`) or sees the signed-out page.

Logout CSRF: an RP-initiated logout signs out at once only with a valid id_token_hint naming the signed-in user;
otherwise the user confirms on an IdP page whose POST carries a CSRF token (a foreign page cannot sign them out).
"""

from __future__ import annotations

from flask import Blueprint, Response, render_template, request
from flask_login import current_user

from ..certs.keystore import KeySet, KeyStoreError
from ..events import record_event
from ..extensions import csrf
from ..flows import pending
from ..flows.oidc_logout import (
    LogoutRefused,
    RpLogout,
    RpLogoutParams,
    check_rp_logout,
    logout_context,
)
from ..flows.oidc_subject import subject_for
from ..flows.slo import Outgoing, start_logout_chain
from ..oidc.constants import LOGOUT_PATH
from ..reasons import Reason
from ..services.apps import app_config_by_id
from .context import current_client, keystore, settings
from .responses import error_page
from .slo_views import _forget_browser_session, _go
from .uow import commit

bp = Blueprint("oidc_logout", __name__)

CONFIRM_KIND = "oidc_logout"


def _keys() -> KeySet | None:
    try:
        return keystore().current()
    except KeyStoreError:
        return None


def _param(name: str) -> str | None:
    source = request.args if request.method == "GET" else request.form
    values = source.getlist(name)
    if len(values) > 1:  # OAuth 2.0 section 3.1: parameters must not be repeated
        raise LogoutRefused(Reason.INVALID_REQUEST, f"{name} is repeated")
    return values[0] if values and values[0] != "" else None


def _signed_out_page(decision: RpLogout | None) -> Response:
    if decision is not None and decision.redirect_to:
        return _go(Outgoing(binding="redirect", url=decision.redirect_to))
    return _go(Outgoing(binding="page", url=""))


@bp.route(LOGOUT_PATH, methods=["GET", "POST"])
@csrf.exempt  # an RP's page may POST here (section 2); the request alone never signs anyone out (see module doc)
def rp_logout() -> Response:
    keys = _keys()
    if keys is None:
        return error_page(503, "Sign-out unavailable", "Sign-out is temporarily unavailable. Please try again in a "
                                                       "minute.")
    client = current_client()
    try:
        params = RpLogoutParams(id_token_hint=_param("id_token_hint"), client_id=_param("client_id"),
                                post_logout_redirect_uri=_param("post_logout_redirect_uri"), state=_param("state"))
        decision = check_rp_logout(params, settings(), keys, client)
    except LogoutRefused as exc:
        if exc.event_id is None:
            exc.event_id = record_event(logout_context(RpLogout(None, None, None, None, detail={
                "error_description": str(exc)})), exc.reason, client_ip=client.ip, user_agent=client.user_agent).id
        return error_page(400, "Sign-out request refused", f"The application's sign-out request is invalid: {exc}. "
                                                           "You are still signed in.", exc.event_id)
    if not current_user.is_authenticated:
        # Nothing to end here; a registered post-logout URI of a verified client is safe to return to.
        return _signed_out_page(decision)
    user = current_user.view.user
    if decision.hint_sub is not None and decision.hint_sub == subject_for(user) and not decision.uri_refused:
        return _end(decision)
    token = pending.put({"kind": CONFIRM_KIND, "session_id": current_user.view.id,
                         "app_id": decision.app.id if decision.app else None, "redirect_to": decision.redirect_to,
                         "detail": decision.detail})
    resp = Response(render_template("oidc_logout_confirm.html", username=user.username, token=token,
                                    app_name=decision.app.name if decision.app else None,
                                    uri_refused=decision.uri_refused))
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.post(LOGOUT_PATH + "/confirm")
def rp_logout_confirm() -> Response:
    """The user's "Sign out" on the confirmation page (CSRF-checked by flask-wtf's CSRFProtect)."""
    data = pending.get(request.form.get("request"), CONFIRM_KIND, consume=True)
    if not current_user.is_authenticated:
        return _signed_out_page(None)
    if data is None or data.get("session_id") != current_user.view.id:
        return error_page(400, "Sign-out request expired", "This sign-out request is no longer valid. You are still "
                                                           "signed in; sign out from the identity provider's pages.")
    app = app_config_by_id(data["app_id"]) if data.get("app_id") is not None else None
    decision = RpLogout(app=app, hint_sub=None, hint_sid=None, redirect_to=data.get("redirect_to"),
                        detail={**(data.get("detail") or {}), "confirmed": True})
    return _end(decision)


def _end(decision: RpLogout) -> Response:
    keys = _keys()
    if keys is None:
        return error_page(503, "Sign-out unavailable", "Sign-out is temporarily unavailable. Please try again in a "
                                                       "minute.")
    idp_session = current_user.session
    _forget_browser_session()
    return _go(start_logout_chain(idp_session, decision.origin(), settings(), keys, logout_context(decision),
                                  current_client(), checkpoint=commit))
