"""The OIDC / OAuth 2.0 authorization endpoint (GET|POST /oauth2/authorize), its login-detour resume and the
consent form: HTTP glue only; flows.oidc_authorize decides."""

from __future__ import annotations

from flask import Blueprint, Response, redirect, render_template, request, url_for
from flask_login import current_user

from ..auth.sessions import SessionView
from ..certs.keystore import KeySet
from ..extensions import csrf
from ..flows.oidc_authorize import (
    AuthorizeOutcome,
    ErrorPage,
    NeedsConsent,
    PendingAuthorization,
    RedirectToClient,
    answer_consent,
    load_parked,
    park,
    proceed,
    receive,
)
from ..flows.outcomes import NeedsReauthentication, NeedsSecondFactor
from ..oidc.constants import AUTHORIZE_PATH
from ..reasons import Reason
from .context import current_client, keystore, settings
from .login_views import parked_token
from .responses import error_page
from .uow import commit

bp = Blueprint("oidc_authz", __name__)


def _session() -> SessionView | None:
    return current_user.view if current_user.is_authenticated else None


def _keys() -> KeySet:
    return keystore().current()


@bp.route(AUTHORIZE_PATH, methods=["GET", "POST"])
@csrf.exempt          # an RP's form post (OIDC Core 3.1.2.1 allows POST); it changes nothing by itself
def authorize() -> Response:
    pairs = list(request.form.items(multi=True) if request.method == "POST" else request.args.items(multi=True))
    received = receive(pairs, settings(), current_client(), _session())
    if not isinstance(received, PendingAuthorization):
        return render_outcome(received)
    if request.method == "POST" and _session() is None:
        # A cross-site POST carries no SameSite=Lax cookie: park it and continue with a same-site GET.
        token = park(received)
        commit()
        return redirect(url_for("oidc_authz.resume", token=token), code=303)  # type: ignore[return-value]
    return render_outcome(proceed(received, None, _session(), settings(), _keys, current_client()), received)


@bp.get(AUTHORIZE_PATH + "/continue/<token>")
def resume(token: str) -> Response:
    """Where the login and second-factor pages send the browser back to (the `next` URL)."""
    pending = load_parked(token)
    if pending is None:
        return _expired()
    return render_outcome(proceed(pending, token, _session(), settings(), _keys, current_client()), pending)


@bp.post(AUTHORIZE_PATH + "/consent")
def consent() -> Response:
    """The consent page's Allow / Deny (CSRF-protected by the app-wide CSRFProtect)."""
    decision = request.form.get("decision")
    token = parked_token()
    if decision not in ("allow", "deny"):
        return error_page(400, "Sign-in failed", "The answer to the consent question could not be read.")
    outcome = answer_consent(token, decision == "allow", _session(), settings(), _keys, current_client())
    if outcome is None:
        return _expired()
    return render_outcome(outcome, load_parked(token))


def _expired() -> Response:
    return error_page(400, "Sign-in failed", "This sign-in request is unknown or has expired. Start again from "
                                             "the application.")


def render_outcome(outcome: AuthorizeOutcome, pending: PendingAuthorization | None = None) -> Response:
    """The one place an authorization outcome becomes HTTP."""
    commit()   # the event, grant, participant and code record are durable before the browser moves on
    if isinstance(outcome, RedirectToClient):
        resp = redirect(outcome.url, code=303 if request.method == "POST" else 302)
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["Referrer-Policy"] = "no-referrer"
        return resp  # type: ignore[return-value]
    if isinstance(outcome, ErrorPage):
        title, message = _USER_MESSAGES.get(outcome.reason, _GENERIC)
        return error_page(outcome.status, title, message, outcome.event_id)
    if isinstance(outcome, NeedsConsent):
        resp = Response(render_template("oidc_consent.html", app_name=outcome.app_name, username=outcome.username,
                                        scopes=outcome.scopes, resources=outcome.resources,
                                        request_token=outcome.token))
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["X-Frame-Options"] = "DENY"   # no clickjacking of the Allow button
        return resp
    resume_url = url_for("oidc_authz.resume", token=outcome.token)
    if isinstance(outcome, NeedsSecondFactor):
        target = url_for("mfa.verify", next=resume_url, request=outcome.token)
    else:
        force = "1" if isinstance(outcome, NeedsReauthentication) else None
        hint = pending.request.login_hint if pending is not None else None
        target = url_for("auth.login", next=resume_url, request=outcome.token, force=force, login_hint=hint)
    return redirect(target, code=303)  # type: ignore[return-value]


# Fixed texts: never the request's own words (an unknown client_id or redirect_uri is attacker-chosen text).
_USER_MESSAGES: dict[Reason, tuple[str, str]] = {
    Reason.INVALID_CLIENT: ("Sign-in failed",
                            "This sign-in request came from an application this identity provider does not know."),
    Reason.APP_DISABLED: ("Sign-in failed", "This application is currently disabled on this identity provider."),
    Reason.REDIRECT_URI_MISMATCH: ("Sign-in failed",
                                   "The application asked for the answer at an address it has not registered."),
    Reason.INVALID_REQUEST: ("Sign-in failed", "The sign-in request could not be read."),
}
_GENERIC = ("Sign-in failed", "The request could not be completed. Contact your administrator with the event id.")
