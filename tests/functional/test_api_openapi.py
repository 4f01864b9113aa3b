"""The API's OpenAPI 3.1 document: valid (openapi-spec-validator), generated from the code (every operation and
scope is in it), rendered for admins without scripts; and a property-based run of schemathesis over it against the
app (WSGI) with a token holding every scope: no 500, every answer matches the document (status code, media type,
body schema), for valid inputs and for invalid ones."""

from __future__ import annotations

import contextvars
import time
from typing import Any

import pytest
import schemathesis
from flask import Flask
from flask.globals import _cv_app
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from idp.extensions import db
from idp.services import api_tokens
from idp.web.api import SCOPE_OF

from .test_cli import ok

EXAMPLES = 4          # per operation and mode: 27 operations x 2 modes stay well under a minute
KNOWN = {"slug": "crm", "username": "carol", "name": "staff"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_document_is_valid_openapi_3_1(client: FlaskClient) -> None:
    resp = client.get("/api/v1/openapi.json")
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    doc = resp.get_json()
    assert doc["openapi"].startswith("3.1")
    validate(doc)   # raises OpenAPIValidationError on any problem
    operations = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    assert len(operations) == len(SCOPE_OF) == 27
    for item in doc["paths"].values():
        for op in item.values():
            (scope,) = op["security"][0]["bearerToken"]
            assert scope in api_tokens.SCOPES
            assert "application/problem+json" in op["responses"]["401"]["content"]
    assert doc["components"]["securitySchemes"]["bearerToken"]["scheme"] == "bearer"
    assert doc["servers"] == [{"url": "http://localhost"}]


def test_reference_page_renders_from_the_document(client: FlaskClient) -> None:
    resp = client.get("/api/v1/docs")
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    html = resp.get_data(as_text=True)
    assert "<script" not in html and "https://" not in html.split("</head>")[0]
    for needle in ("/api/v1/users/{username}", "users:write", "application/problem+json", 'id="schema-UserOut"',
                   "Problem"):
        assert needle in html, needle
    assert "default-src 'self'" in resp.headers["Content-Security-Policy"]


@pytest.fixture
def all_scopes(app: Flask) -> str:
    ok(app, "groups", "add", "staff")
    ok(app, "users", "add", "carol", "--email", "carol@example.com", "--group", "staff")
    ok(app, "fields", "add", "department", "--type", "string")
    ok(app, "apps", "add", "--oidc", "--name", "CRM", "--slug", "crm", "--redirect-uri", "https://crm.example/cb")
    _, secret = api_tokens.create_token("fuzz", [s for s in api_tokens.SCOPES if s != "scim"])
    db.session.commit()
    return secret


def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(app: Flask, all_scopes: str) -> None:
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    headers = {"Authorization": f"Bearer {all_scopes}"}
    started = time.monotonic()
    ran: list[str] = []
    statuses: dict[str, set[int]] = {}

    def isolated(fn: Any) -> Any:
        """Each request in its own app context, as in production (the test holds one open)."""
        def run() -> Any:
            _cv_app.set(None)  # type: ignore[arg-type]
            return fn()
        return contextvars.copy_context().run(run)

    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            # valid input names things that exist (random names would only ever meet 404s)
            known = {k: v for k, v in KNOWN.items() if "{" + k + "}" in operation.path}
            strategy = operation.as_strategy(generation_mode=mode, path_parameters=known or None) \
                if mode == schemathesis.GenerationMode.POSITIVE else operation.as_strategy(generation_mode=mode)

            @given(case=strategy)
            @settings(max_examples=EXAMPLES, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            def check(case: Any) -> None:
                db.session.commit()
                case.headers = {**(case.headers or {}), **headers}
                response = isolated(lambda: case.call_and_validate(checks=CHECKS))
                statuses.setdefault(case.operation.label, set()).add(response.status_code)

            check()
            ran.append(f"{mode.value} {operation.label}")
    assert len(ran) == 2 * len(SCOPE_OF)
    # the token was taken (never a 401/403) and every read answered valid input
    assert not any(code in (401, 403) for codes in statuses.values() for code in codes), statuses
    reads = {label: codes for label, codes in statuses.items() if label.startswith("GET ")}
    assert all(200 in codes for codes in reads.values()), reads
    assert time.monotonic() - started < 60
