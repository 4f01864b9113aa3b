"""OAuth 2.0 back-channel endpoints: POST /oauth2/token, GET|POST /oauth2/userinfo, POST /oauth2/revoke,
POST /oauth2/introspect (registered when IDP_OIDC_ENABLED).

HTTP glue only: read the form strictly (application/x-www-form-urlencoded, bounded, every parameter at most once:
RFC 6749 3.2 "Request and response parameters MUST NOT be included more than once"), call one flow, answer
JSON with `Cache-Control: no-store` (RFC 6749 5.1). An OAuthError becomes its JSON error body (RFC 6749 5.2,
RFC 6750 3 for the Bearer endpoints); the flows have recorded the event.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from flask import Blueprint, Response, request
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge

from ..extensions import csrf
from ..flows.oidc_access import introspect, revoke, userinfo
from ..flows.oidc_client_auth import FetchPolicy
from ..flows.oidc_token import TokenContext, record_malformed, token_request
from ..models import utcnow
from ..oidc.constants import INTROSPECT_PATH, REVOKE_PATH, TOKEN_PATH, USERINFO_PATH
from ..oidc.errors import InvalidRequest, InvalidToken, OAuthError
from .context import current_client, keystore, settings

bp = Blueprint("oidc_token", __name__)
csrf.exempt(bp)   # back-channel endpoints: the client authenticates itself, no browser session is involved

MAX_BODY_BYTES = 32 * 1024      # a token request is well under 1 KiB (a client assertion up to 8 KiB)
MAX_PARAMS = 20
MAX_VALUE_BYTES = 16 * 1024
FORM_TYPE = "application/x-www-form-urlencoded"


def _json(body: dict[str, Any], status: int = 200) -> Response:
    resp = Response(json.dumps(body, separators=(",", ":")), status=status, mimetype="application/json")
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Pragma"] = "no-cache"
    return resp


def _error(err: OAuthError, *, bearer: bool = False) -> Response:
    body = {"error": err.error, "error_description": err.description}
    resp = _json(body, err.status)
    auth = request.headers.get("Authorization", "")
    if err.status == 401 and not bearer and auth[:6].lower() == "basic ":
        resp.headers["WWW-Authenticate"] = 'Basic realm="oauth2", charset="UTF-8"'
    if bearer and err.status in (401, 403):
        desc = err.description.replace('"', "'")
        if err.status == 401 and not auth and "access_token" not in request.form:
            resp.headers["WWW-Authenticate"] = 'Bearer realm="oauth2"'   # no token at all: no error code (6750 3)
        else:
            extra = ', scope="openid"' if err.status == 403 else ""
            resp.headers["WWW-Authenticate"] = (f'Bearer realm="oauth2", error="{err.error}", '
                                                f'error_description="{desc}"{extra}')
    if err.status == 503:
        resp.headers["Retry-After"] = "30"
    return resp


def _form(endpoint: str) -> dict[str, str]:
    """The body parameters, each at most once; InvalidRequest for anything else (never a 500 nor an HTML page),
    recorded as an event."""
    try:
        return _read_form()
    except InvalidRequest as err:
        record_malformed(endpoint, err.description, current_client())
        raise


def _read_form() -> dict[str, str]:
    """The urlencoded body by the standard library's parser (a quarter of werkzeug's form machinery's cost on the
    token endpoint's hot path; the same decoding: UTF-8, undecodable bytes replaced)."""
    req = request._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup, not one per access
    if req.content_length is not None and req.content_length > MAX_BODY_BYTES:
        raise InvalidRequest("the request body is too large")
    if req.mimetype != FORM_TYPE:
        raise InvalidRequest(f"the request body must be {FORM_TYPE}")
    if req.args:
        raise InvalidRequest("parameters go in the request body, not the query string")
    raw = req.get_data(cache=True)
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidRequest("the request body is too large")
    try:
        pairs = parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True, max_num_fields=MAX_PARAMS)
    except ValueError:
        raise InvalidRequest("too many parameters") from None
    out: dict[str, str] = {}
    for name, value in pairs:
        if name in out:
            raise InvalidRequest(f"parameter {name[:40]!r} is repeated")
        if len(value) > MAX_VALUE_BYTES or "\x00" in value or "\x00" in name:
            raise InvalidRequest(f"parameter {name[:40]!r} is too long or malformed")
        out[name] = value
    return out


def _ctx() -> TokenContext:
    s = settings()
    return TokenContext(issuer=s.base_url, keys_loader=keystore().current, client=current_client(), now=utcnow(),
                        fetch=FetchPolicy(allow_private=s.metadata_fetch_allow_private,
                                          timeout_s=min(5.0, float(s.metadata_fetch_timeout_s))))


def _authorization() -> str | None:
    value = request.headers.get("Authorization")
    return value if value is not None and value.strip() else None


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(_exc: Exception) -> Response:
    record_malformed(request.path, "the request body is too large", current_client())
    return _error(InvalidRequest("the request body is too large"))


@bp.errorhandler(BadRequest)
def _bad_request(_exc: Exception) -> Response:
    record_malformed(request.path, "the request could not be read", current_client())
    return _error(InvalidRequest("the request could not be read"))


@bp.post(TOKEN_PATH)
def token() -> Response:
    try:
        return _json(token_request(_form("token"), _authorization(), _ctx()))
    except OAuthError as err:
        return _error(err)


@bp.route(USERINFO_PATH, methods=["GET", "POST"])
def userinfo_endpoint() -> Response:
    try:
        if "access_token" in request.args:
            raise InvalidRequest("the access token must not be sent in the query string (RFC 6750 2.3 is not "
                                 "offered)")
        header = _authorization()
        form = _form("userinfo") if request.method == "POST" and request.content_length else {}
        token: str | None = None
        if header is not None:
            scheme, _, value = header.strip().partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise InvalidToken("the Authorization header must be Bearer")
            token = value.strip()
        if "access_token" in form:
            if token is not None:
                raise InvalidRequest("one access token, in one place (RFC 6750 2)")
            token = form["access_token"]
        body = userinfo(token, _ctx())
    except OAuthError as err:
        return _error(err, bearer=True)
    return _json(body)


@bp.post(REVOKE_PATH)
def revoke_endpoint() -> Response:
    try:
        revoke(_form("revocation"), _authorization(), _ctx())
    except OAuthError as err:
        return _error(err)
    return _json({})


@bp.post(INTROSPECT_PATH)
def introspect_endpoint() -> Response:
    try:
        return _json(introspect(_form("introspection"), _authorization(), _ctx()))
    except OAuthError as err:
        return _error(err)
