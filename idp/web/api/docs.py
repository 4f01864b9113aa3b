"""The OpenAPI 3.1 document of the API, generated from the routes and their models (spectree), and a reference page
for admins rendered on the server from that document (no script, no CDN: the CSP allows neither)."""

from __future__ import annotations

import copy
import json
from typing import Any

from flask import Response, current_app, render_template

from idp.services.api_tokens import SCOPES
from idp.web.context import settings

from . import bp, spec
from .problems import MEDIA_TYPE

_CACHE_KEY = "idp.openapi"


def build_document() -> dict[str, Any]:
    """The document for the app in context (built once per app): spectree's, with problem responses under their
    media type, the server from IDP_BASE_URL and the scopes listed."""
    cached = current_app.extensions.get(_CACHE_KEY)
    if cached is not None:
        return dict(cached)
    doc = copy.deepcopy(spec._generate_spec())
    doc["servers"] = [{"url": settings().base_url}]
    doc["info"]["description"] += "\n\nScopes: " + "; ".join(f"`{name}`: {what}" for name, what in SCOPES.items())
    doc["tags"] = [t for t in doc.get("tags", [])]
    for path_item in doc["paths"].values():
        for operation in path_item.values():
            for code, answer in operation.get("responses", {}).items():
                content = answer.get("content")
                if code.startswith(("4", "5")) and content and "application/json" in content:
                    answer["content"] = {MEDIA_TYPE: content.pop("application/json")}
                if code == "204":
                    answer.pop("content", None)
    doc["security"] = []
    current_app.extensions[_CACHE_KEY] = doc
    return dict(doc)


@bp.get("/openapi.json")
def openapi_document() -> Response:
    return Response(json.dumps(build_document(), indent=1), mimetype="application/json")


def _operations(doc: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            scopes = [s for req in op.get("security", []) for values in req.values() for s in values]
            body = (op.get("requestBody") or {}).get("content", {}).get("application/json", {}).get("schema", {})
            ok = [(code, _ref_name(a)) for code, a in op.get("responses", {}).items() if code.startswith("2")]
            out.append({"method": method.upper(), "path": path, "summary": op.get("summary", ""),
                        "description": op.get("description", ""), "tag": (op.get("tags") or ["other"])[0],
                        "scope": ", ".join(scopes), "id": op.get("operationId", ""),
                        "parameters": op.get("parameters", []), "body": _ref(body), "responses": ok})
    return sorted(out, key=lambda o: (o["tag"], o["path"], o["method"]))


def _ref(schema: dict[str, Any]) -> str | None:
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None


def _ref_name(answer: dict[str, Any]) -> str | None:
    for media in (answer.get("content") or {}).values():
        return _ref(media.get("schema", {}))
    return None


@bp.get("/docs")
def reference() -> str:
    doc = build_document()
    ops = _operations(doc)
    tags = sorted({o["tag"] for o in ops})
    return render_template("api_reference.html", doc=doc, ops=ops, tags=tags, scopes=SCOPES,
                           schemas=doc["components"]["schemas"])
