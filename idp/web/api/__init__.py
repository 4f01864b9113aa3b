"""The admin REST API (/api/v1): JSON over bearer tokens (services.api_tokens), one scope per operation, errors as
RFC 9457 problem details, every write through the same services, validation and audit as the console and the CLI.

Request and response bodies are pydantic models declared once (models.py); spectree validates requests against
them and generates the OpenAPI 3.1 document from the routes that use them (docs.py). spectree fits a plain Flask
app with blueprints: it decorates views, needs no application class of its own (apiflask replaces Flask's) and
takes pydantic models as they are (apiflask's are marshmallow schemas by default). Its own documentation pages are
not mounted (they load Swagger UI from a CDN, which the CSP forbids): docs.py renders the reference itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, g, request
from spectree import Response as SpecResponse
from spectree import SpecTree
from werkzeug.exceptions import HTTPException

from idp import audit
from idp.errors import EventContext
from idp.events import record_event
from idp.extensions import db
from idp.reasons import Reason
from idp.services import ServiceError, api_tokens
from idp.services.accounts import FormErrors
from idp.services.api_tokens import ApiAuthError, ApiPrincipal
from idp.web import uow
from idp.web.context import current_client

from .models import Problem
from .problems import MEDIA_TYPE, ApiProblem, problem_response, validation_problem

bp = Blueprint("api", __name__, url_prefix="/api/v1")
PUBLIC_ENDPOINTS = frozenset({"api.openapi_document", "api.reference"})
SCOPE_OF: dict[str, str] = {}         # endpoint -> the scope it needs
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH"})

spec = SpecTree(
    "flask", mode="strict", title="Identity provider admin API", version="1",
    description="Connected apps, users, groups, user fields, signing keys, the event log and the audit trail. "
                "Bearer tokens from `idp tokens api create NAME --scope S`; errors are RFC 9457 problem details.",
    naming_strategy=lambda model: model.__name__, nested_naming_strategy=lambda _parent, child: child,
    validation_error_status=400, validation_error_model=Problem,
    security_schemes=[{"name": "bearerToken", "data": {"type": "http", "scheme": "bearer",
                                                       "description": "An API token (idp_...) with the scope "
                                                                      "each operation names."}}],
)

ERROR_CODES = ("HTTP_400", "HTTP_401", "HTTP_403", "HTTP_404", "HTTP_413", "HTTP_415")


def responses(ok: str, model: Any = None, *, extra: tuple[str, ...] = ()) -> SpecResponse:
    """The documented responses of an operation: its success (with `model`, or none for 204) and the problems."""
    codes: dict[str, Any] = {code: Problem for code in (*ERROR_CODES, *extra)}
    if model is not None:
        codes[ok] = model
        return SpecResponse(**codes)
    return SpecResponse(ok, **codes)


def route(rule: str, *, methods: list[str], scope: str, tag: str, query: Any = None, json: Any = None,
          resp: SpecResponse, operation_id: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register an API operation: its URL rule, the scope a token needs, and the models spectree validates and
    documents."""
    if scope not in api_tokens.SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    def before(req: Any, _resp: Any, error: Exception | None, _instance: Any, _adapter: Any) -> None:
        if error is not None:
            raise validation_problem(error)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.__doc__ = (fn.__doc__ or "").rstrip() + f"\n\nScope: `{scope}`."
        view = spec.validate(query=query, json=json, resp=resp, tags=[tag], security={"bearerToken": [scope]},
                             before=before, operation_id=operation_id or fn.__name__)(fn)
        endpoint = fn.__name__
        bp.add_url_rule(rule, endpoint=endpoint, view_func=view, methods=methods)
        SCOPE_OF[f"api.{endpoint}"] = scope
        if json is not None:
            BODY_ENDPOINTS.add(f"api.{endpoint}")
        return view

    return decorate


BODY_ENDPOINTS: set[str] = set()


def principal() -> ApiPrincipal:
    found: ApiPrincipal = g.api_principal
    return found


_CONTROL = re.compile("[\x00-\x1f\x7f]")


@bp.before_request
def authenticate() -> Response | None:
    """Every operation but the document and its reference page: a bearer token with the operation's scope (never a
    session cookie); the token's name becomes the audit actor. A body must be JSON."""
    endpoint = request.endpoint or ""
    for name, value in [("path", request.path), *request.args.items(multi=True)]:
        if _CONTROL.search(name) or _CONTROL.search(value):   # never handed to a database lookup (PostgreSQL
            return problem_response(400, "Invalid input", "Control characters are not allowed here.",  # refuses NUL)
                                    field=name if name == "path" else name[:100])
    if endpoint in PUBLIC_ENDPOINTS:
        return None
    scope = SCOPE_OF.get(endpoint)
    if scope is None:
        return problem_response(404, "Not found", "There is no such API operation.")
    try:
        found = api_tokens.authenticate(request.headers.get("Authorization"), current_client().ip, scope)
    except ApiAuthError as exc:
        db.session.rollback()
        _record_refusal(exc, endpoint, scope)
        resp = problem_response(exc.status, "Unauthorized" if exc.status == 401 else "Forbidden", exc.description,
                                type_=exc.error or "unauthorized")
        resp.headers["WWW-Authenticate"] = exc.www_authenticate
        return resp
    if api_tokens.touched_recently():
        uow.commit()   # last use survives a request refused later (which rolls its own work back)
    g.api_principal = found
    audit.set_actor(found.actor)
    if endpoint in BODY_ENDPOINTS and request.method in WRITE_METHODS:
        if not request.is_json:
            return problem_response(415, "Unsupported media type", "Send the body as application/json.")
        if request.get_json(silent=True) is None:
            return problem_response(400, "Malformed JSON", "The body is not valid JSON.", field="body")
    return None


def _record_refusal(exc: ApiAuthError, endpoint: str, scope: str) -> None:
    """An API request refused for its credentials is an event (event type "api"; reason invalid_token or
    insufficient_scope), committed on its own: the request did nothing else."""
    client = current_client()
    ctx = EventContext(event_type="api", detail={"endpoint": endpoint, "method": request.method, "scope": scope,
                                                 "why": exc.description})
    record_event(ctx, Reason.INSUFFICIENT_SCOPE if exc.status == 403 else Reason.INVALID_TOKEN,
                 client_ip=client.ip, user_agent=client.user_agent)
    uow.commit()


@bp.errorhandler(ApiProblem)
def _problem(exc: ApiProblem) -> Response:
    db.session.rollback()
    return exc.response()


@bp.errorhandler(ServiceError)
def _refused(exc: ServiceError) -> Response:
    """A service's refusal: nothing of the request is kept (the unit of work rolls back)."""
    db.session.rollback()
    if isinstance(exc, FormErrors):
        first = next(iter(exc.errors), None)
        return problem_response(400, "Invalid input", str(exc), field=first, errors=dict(exc.errors))
    return problem_response(400, "Invalid input", str(exc), field=exc.field)


@bp.errorhandler(HTTPException)
def _http(exc: HTTPException) -> Response:
    db.session.rollback()
    if isinstance(exc.response, Response) and exc.response.mimetype in ("application/json", MEDIA_TYPE):
        return exc.response
    code = exc.code or 500
    return problem_response(code, exc.name, exc.description or exc.name)


def register_views() -> None:
    """Import the operation modules so their routes attach to `bp` (called once by create_app)."""
    from . import docs, views  # noqa: F401
