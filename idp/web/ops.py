"""Operations endpoints: /healthz (process alive), /readyz (dependencies usable), /metrics (Prometheus)."""

from __future__ import annotations

import hmac
import ipaddress

from flask import Blueprint, Response, jsonify, request

from .. import metrics
from ..certs.keystore import KeyStoreError
from ..extensions import db
from .context import current_client, keystore, settings

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return Response("ok\n", mimetype="text/plain")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Ready when the database answers, Redis answers (when configured) and a signing key is usable."""
    from sqlalchemy import text

    checks: dict[str, str] = {}
    try:
        db.session.execute(text("SELECT 1"))
        db.session.rollback()
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        db.session.rollback()
        checks["database"] = f"error: {exc.__class__.__name__}"
    if settings().redis_url:
        from ..state import shared
        try:
            shared().ping()
            checks["redis"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["redis"] = f"error: {exc.__class__.__name__}"
    try:
        keystore().current()
        checks["signing_key"] = "ok"
    except KeyStoreError as exc:
        checks["signing_key"] = f"error: {exc}"
    ready = all(v == "ok" for v in checks.values())
    return jsonify({"ready": ready, "checks": checks}), 200 if ready else 503


def _metrics_allowed() -> bool:
    s = settings()
    if s.metrics_token:
        supplied = request.headers.get("Authorization", "")
        if hmac.compare_digest(supplied.encode(), f"Bearer {s.metrics_token}".encode()):
            return True
    ip = current_client().ip
    if ip is None:
        return False
    addr = ipaddress.ip_address(ip)
    for cidr in s.metrics_allow:
        try:
            if addr in ipaddress.ip_network(cidr, strict=False):
                return True
        except ValueError:
            continue
    return False


@bp.get("/metrics")
def metrics_endpoint() -> Response:
    if not _metrics_allowed():
        return Response("forbidden\n", status=403, mimetype="text/plain")
    try:
        keys = [(k.kid, k.state, k.days_left, k.not_after.timestamp()) for k in keystore().current().published]
    except KeyStoreError:
        keys = []
    try:
        text = metrics.render(keys)
    except metrics.SpoolError as exc:
        # a failed scrape is a gap in the graphs; totals that went backwards would be false resets
        return Response(f"metrics unavailable: {exc}\n", status=503, mimetype="text/plain")
    return Response(text, mimetype="text/plain; version=0.0.4")
