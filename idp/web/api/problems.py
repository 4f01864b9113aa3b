"""RFC 9457 problem details: every API error is `application/problem+json` with type, title, status, detail and, when
one input is to blame, `field` (a service's ServiceError.field, or the path of the value that failed validation)."""

from __future__ import annotations

import json
from typing import Any

from flask import Response

PROBLEM_TYPE_BASE = "urn:idp:problem:"   # + a short code; about:blank would say nothing more than the status
MEDIA_TYPE = "application/problem+json"


def problem_body(status: int, title: str, detail: str, *, field: str | None = None, type_: str | None = None,
                 errors: dict[str, str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"type": PROBLEM_TYPE_BASE + (type_ or _CODES.get(status, "error")), "title": title,
                            "status": status, "detail": detail}
    if field is not None:
        body["field"] = field
    if errors:
        body["errors"] = errors
    return body


def problem_response(status: int, title: str, detail: str, *, field: str | None = None, type_: str | None = None,
                     errors: dict[str, str] | None = None) -> Response:
    body = problem_body(status, title, detail, field=field, type_=type_, errors=errors)
    resp = Response(json.dumps(body, ensure_ascii=False), status=status, mimetype=MEDIA_TYPE)
    resp.headers["Cache-Control"] = "no-store"
    return resp


_CODES = {400: "invalid_input", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
          409: "conflict", 413: "too_large", 415: "unsupported_media_type", 500: "internal_error",
          503: "unavailable"}


class ApiProblem(Exception):
    """Raised by an API view: answered as a problem document (and the request's unit of work rolls back)."""

    def __init__(self, status: int, title: str, detail: str, *, field: str | None = None,
                 type_: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.field, self.type_ = status, title, detail, field, type_

    def response(self) -> Response:
        return problem_response(self.status, self.title, self.detail, field=self.field, type_=self.type_)


def not_found(what: str, field: str) -> ApiProblem:
    return ApiProblem(404, "Not found", f"no {what}", field=field)


def validation_problem(error: Exception) -> ApiProblem:
    """A pydantic ValidationError of a request (body or query) as one problem naming the first failing value."""
    errors: list[dict[str, Any]] = getattr(error, "errors", lambda: [])()
    if not errors:
        return ApiProblem(400, "Invalid input", "the request does not match the schema")
    first = errors[0]
    field = ".".join(str(part) for part in first.get("loc", ()) if part != "__root__") or None
    message = str(first.get("msg", "invalid value"))
    return ApiProblem(400, "Invalid input", f"{field}: {message}" if field else message, field=field)
