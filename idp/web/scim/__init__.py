"""/scim/v2: the inbound SCIM 2.0 service provider (RFC 7643 / 7644).

Flask glue only: the request becomes a scim2-server ScimRequest, its ScimHandler runs the protocol over the SQL
storage (services.scim.storage), and the ScimResponse becomes a Flask response (application/scim+json). Every
change is made in the name of `api:<token name>`; a refused request writes nothing (its unit of work is rolled
back), whatever the library or a service had flushed."""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Blueprint, Response, request
from scim2_models import PayloadTooLargeException, SCIMException
from scim2_server.handler import ScimHandler
from scim2_server.requests import ScimRequest
from scim2_server.responses import ScimResponse
from scim2_server.routing import Operation
from scim2_server.service import ScimService
from werkzeug.exceptions import RequestEntityTooLarge

from ... import audit
from ...extensions import csrf, db
from ...services.field_schema import current_schema
from ...services.scim.schema import ScimSchemas, schemas_for
from ...services.scim.storage import SqlStorage
from ..context import current_client, passwords, settings
from .auth import SCIM_SCOPE, authenticate

bp = Blueprint("scim", __name__, url_prefix="/scim/v2")
csrf.exempt(bp)   # bearer tokens, no browser session

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
_services: dict[int, tuple[ScimSchemas, ScimService]] = {}   # id(schemas) -> the schemas (kept alive) and service
log = logging.getLogger("idp.scim")


def _service(schemas: ScimSchemas) -> ScimService:
    """The scim2-server service of one field schema's provider (built again only when the user fields change)."""
    found = _services.get(id(schemas))
    if found is None or found[0] is not schemas:
        if len(_services) > 16:
            _services.clear()
        found = _services[id(schemas)] = (schemas, ScimService(schemas.provider))
    return found[1]


def _read_body() -> bytes:
    """The body, at most IDP_MAX_REQUEST_BYTES (the server-wide cap); larger: 413 as a SCIM error."""
    limit = settings().max_request_bytes
    too_large = PayloadTooLargeException(detail=f"the request body is larger than {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    try:
        body = request.stream.read(limit + 1)
    except RequestEntityTooLarge:
        raise too_large from None
    if len(body) > limit:
        raise too_large
    return body


def default_active(method: str, path: str, body: bytes) -> bytes:
    """A POST or PUT of a user that leaves out `active` means an active account (the schema marks it required,
    since an account is always one or the other, but RFC 7643 lets clients omit it)."""
    if method not in ("POST", "PUT") or not path.lower().strip("/").startswith("users"):
        return body
    try:
        payload = json.loads(body)
    except ValueError:
        return body   # the library answers invalidSyntax
    if not isinstance(payload, dict) or any(k.lower() == "active" for k in payload):
        return body
    payload["active"] = True
    return json.dumps(payload).encode()


def _to_flask(response: ScimResponse, url: str) -> Response:
    body = "" if response.body is None else json.dumps(response.body)
    headers: dict[str, Any] = dict(response.headers)
    headers.setdefault("Cache-Control", "no-store")
    return Response(body, status=int(response.status), headers=headers)


@bp.route("", defaults={"path": ""}, methods=METHODS)
@bp.route("/<path:path>", methods=METHODS)
def scim(path: str) -> Response:
    schemas = schemas_for(current_schema(fresh=True).custom)
    service = _service(schemas)
    base_url = settings().url("/scim/v2")
    scim_request = ScimRequest(method=request.method, base_url=base_url, path="/" + path.removesuffix(".scim"),
                               query=request.args.to_dict(), headers=list(request.headers.items()))
    client = current_client()
    principal = None
    try:
        scim_request.body = default_active(request.method, path, _read_body())
        with schemas.provider:
            operation = service.match(scim_request).operation
        if operation is not Operation.service_provider_config:
            principal = authenticate(request.headers.get("Authorization"), client.ip, SCIM_SCOPE)
            scim_request.subject = principal
        handler = ScimHandler(service, SqlStorage(schemas, passwords().hash))
        with audit.acting_as(principal.actor if principal else "api:anonymous"):
            response = handler.handle(scim_request)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a SCIM error (a bug: 500, logged)
        if isinstance(exc, SCIMException):
            log.info("scim %s %s: %s %s", request.method, request.path, exc.status, exc)
        else:
            log.exception("scim %s %s failed", request.method, request.path)
        response = service.error_response(exc)
    if response.status >= 400:
        db.session.rollback()   # nothing of a refused request is written
        if principal is not None:
            authenticate(request.headers.get("Authorization"), client.ip, SCIM_SCOPE)  # its last use stays
    return _to_flask(response, scim_request.url)
