"""OpenID Connect public documents: the discovery document and the JWKS (registered when IDP_OIDC_ENABLED)."""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Blueprint, Response

from ..certs.keystore import KeyStoreError
from ..oidc.acr import ACR_VALUES_SUPPORTED
from ..oidc.constants import DISCOVERY_PATH, JWKS_PATH
from ..oidc.discovery import DiscoverySpec, build_discovery
from ..oidc.jose import build_jwks, signing_algs
from .context import keystore, settings

bp = Blueprint("oidc", __name__)
log = logging.getLogger("idp")

# An RP refetches the JWKS when it meets an unknown kid; a short max-age bounds how long one that does not
# still misses a key. Rotation publishes the next key before it signs, so no RP has to refetch in a hurry.
JWKS_MAX_AGE_S = 300
DISCOVERY_MAX_AGE_S = 3600


def _json(body: dict[str, Any], max_age: int) -> Response:
    resp = Response(json.dumps(body, indent=None, separators=(",", ":")), mimetype="application/json")
    resp.headers["Cache-Control"] = f"public, max-age={max_age}"
    return resp


def _keys_unavailable(exc: KeyStoreError) -> Response:
    """The key store cannot be read: 503 in OAuth's error shape; the operator's detail goes to the log only."""
    log.error("OIDC documents unavailable: signing keys: %s", exc)
    resp = Response(json.dumps({"error": "temporarily_unavailable",
                                "error_description": "the signing keys are unavailable"}),
                    status=503, mimetype="application/json")
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Retry-After"] = "30"
    return resp


@bp.after_request
def _cors(resp: Response) -> Response:
    """Public documents, fetched by browser-based RPs too (OIDC Discovery is commonly served this way)."""
    resp.headers["Access-Control-Allow-Origin"] = "*"
    return resp


@bp.get(DISCOVERY_PATH)
def discovery() -> Response:
    """OpenID Provider Configuration (OIDC Discovery 1.0 section 4): issuer = IDP_BASE_URL."""
    try:
        algs = signing_algs(keystore().current())
    except KeyStoreError as exc:
        return _keys_unavailable(exc)
    return _json(build_discovery(DiscoverySpec(issuer=settings().base_url, signing_algs=algs,
                                       acr_values=ACR_VALUES_SUPPORTED)), DISCOVERY_MAX_AGE_S)


@bp.get(JWKS_PATH)
def jwks() -> Response:
    """The JWK Set: the active key, the staged next key and the retiring key (public parts only)."""
    try:
        body = build_jwks(keystore().current())
    except KeyStoreError as exc:
        return _keys_unavailable(exc)
    return _json(body, JWKS_MAX_AGE_S)
