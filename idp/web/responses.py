"""Rendering helpers shared by the views: the POST-binding form and the error page."""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Response, current_app, make_response, render_template, request

from ..flows.sso import IssuedResponse


def post_form(issued: IssuedResponse) -> Response:
    """HTTP-POST binding (saml-bindings §3.5.4): an auto-submitting form, with a button for no-script browsers.

    An artifact (HTTP-Artifact, saml-bindings §3.6.3) goes by redirect (SAMLart and RelayState in the ACS URL's
    query), or with IDP_ARTIFACT_DELIVERY=post in the same form as a SAMLart field; the Response itself waits at the
    IdP for the SP to resolve it.
    """
    if issued.artifact is not None and current_app.extensions["idp.settings"].artifact_delivery == "post":
        return post_binding_page(issued.acs_url, "SAMLart", issued.artifact, issued.relay_state)
    if issued.artifact is not None:
        params = [("SAMLart", issued.artifact)]
        if issued.relay_state is not None:
            params.append(("RelayState", issued.relay_state))
        sep = "&" if "?" in issued.acs_url else "?"
        resp = Response(status=302)
        resp.headers["Location"] = f"{issued.acs_url}{sep}{urlencode(params)}"
        resp.headers["Cache-Control"] = "no-cache, no-store"
        resp.headers["Pragma"] = "no-cache"
        return resp
    return post_binding_page(issued.acs_url, "SAMLResponse", issued.saml_response, issued.relay_state)


def post_binding_page(action: str, field: str, value: str, relay_state: str | None) -> Response:
    """The auto-submitting form page (SSO responses, logout messages).

    Rendered straight from the Jinja environment: the page needs none of the context processors
    (session, current user, CSRF, admin navigation), and this runs on every SSO. Jinja's
    autoescaping still applies to every value.
    """
    # static files sit under the app's mount point (a proxy may mount it below a path prefix)
    static = f"{request.script_root}{current_app.static_url_path}/"
    html = current_app.jinja_env.get_template("post_binding.html").render(
        action=action, field=field, value=value, relay_state=relay_state, static=static)
    resp = Response(html, mimetype="text/html")
    resp.headers["Cache-Control"] = "no-cache, no-store"
    resp.headers["Pragma"] = "no-cache"
    return resp


def error_page(status: int, title: str, message: str, event_id: int | None = None,
               action: tuple[str, str] | None = None) -> Response:
    """The error page; `action`: an (URL, label) link to what the user can do next."""
    resp = make_response(render_template("error.html", title=title, message=message, event_id=event_id,
                                         action=action), status)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def plain_error_page(status: int, title: str, message: str) -> Response:
    """An error page that needs nothing but the template: no session, no database (used when they fail)."""
    # Rendered straight from the Jinja environment: context processors (flask-login's loads the
    # user from the database) must not run when the database is what failed.
    html = current_app.jinja_env.get_template("plain_error.html").render(title=title, message=message)
    resp = make_response(html, status)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def unavailable_page(message: str = "Sign-in is temporarily unavailable. Please try again in a minute.",
                     retry_after_s: int = 5) -> Response:
    """503 with Retry-After on the plain page: a database, Redis or key problem, never the user's."""
    resp = plain_error_page(503, "Temporarily unavailable", message)
    resp.headers["Retry-After"] = str(retry_after_s)
    return resp
