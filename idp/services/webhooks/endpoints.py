"""Webhook endpoints: add, list, enable / disable, remove, rotate the secret; and the per-process cache of their
subscriptions that the bus subscriber asks on every event.

The cache holds the enabled endpoints' (types, app, outcome and reason filters). It is reloaded (one query) at
most every ROUTES_TTL_S seconds per process, and dropped at once in the process that changes an endpoint (when
its unit of work commits). Another process (the CLI adding an endpoint while `idp serve` runs, a second
instance) sees the change within ROUTES_TTL_S.
"""

from __future__ import annotations

import hashlib
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from urllib.parse import urlsplit

from sqlalchemy import event as sa_event
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ... import audit
from ...auth.datakeys import DataKeys
from ...extensions import component, db
from ...models import ConnectedApp, WebhookDelivery, WebhookEndpoint, utcnow
from ...notifications import catalog
from ...reasons import Outcome, Reason
from .. import ServiceError
from ..fetch import _pinned_connection
from .signing import SecretSet, new_secret, secret_key

SECRET_PURPOSE = "webhook_endpoints.secret"  # noqa: S105 - the sealing purpose, not a secret
ROUTES_TTL_S = 5.0
MAX_URL = 2048
MAX_DESCRIPTION = 200
SWITCH = "IDP_WEBHOOK_ALLOW_PRIVATE"
DEFAULT_OVERLAP_HOURS = 24


def _settings() -> Any:
    return component("idp.settings")


def data_keys() -> DataKeys:
    return cast(DataKeys, component("idp.datakeys"))


# ------------------------------------------------------------------ validation

def validate_url(url: str, *, resolve: bool = True) -> str:
    """An absolute https:// URL (http:// only with IDP_WEBHOOK_ALLOW_PRIVATE, for a local receiver) whose host
    resolves to public addresses only (unless the same setting allows private ones)."""
    url = (url or "").strip()
    allow_private = bool(_settings().webhook_allow_private)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ServiceError("the webhook URL must be an absolute https:// URL", field="url")
    if parts.scheme == "http" and not allow_private:
        raise ServiceError("the webhook URL must be https:// (http:// only with "
                           f"{SWITCH}=true, for a receiver on a private network)", field="url")
    if parts.username or parts.password or parts.fragment:
        raise ServiceError("the webhook URL must not contain credentials or a fragment", field="url")
    if len(url) > MAX_URL:
        raise ServiceError(f"the webhook URL is longer than {MAX_URL} characters", field="url")
    if resolve:   # the SSRF guard of services.fetch: refuse a private / loopback target now, not at delivery
        conn, _, _ = _pinned_connection(url, allow_private, time.monotonic() + 5, 0.2, "the webhook URL",
                                        "webhook URL", SWITCH)
        conn.close()
    return url


def validate_types(types: list[str] | tuple[str, ...]) -> list[str]:
    wanted = list(dict.fromkeys(t.strip() for t in types if t.strip()))
    if not wanted:
        raise ServiceError("subscribe to at least one event type (`idp webhooks types` lists them)", field="events")
    unknown = [t for t in wanted if not catalog.is_known(t) or t == catalog.TEST_TYPE]
    if unknown:
        raise ServiceError(f"unknown event type(s): {', '.join(unknown)} (`idp webhooks types` lists them)",
                           field="events")
    return wanted


def validate_outcomes(outcomes: list[str] | tuple[str, ...]) -> list[str]:
    values = list(dict.fromkeys(o.strip() for o in outcomes if o.strip()))
    known = {o.value for o in Outcome}
    bad = [o for o in values if o not in known]
    if bad:
        raise ServiceError(f"unknown outcome(s): {', '.join(bad)} (one of {', '.join(sorted(known))})",
                           field="outcomes")
    return values


def validate_reasons(reasons: list[str] | tuple[str, ...]) -> list[str]:
    values = list(dict.fromkeys(r.strip() for r in reasons if r.strip()))
    known = {r.value for r in Reason}
    bad = [r for r in values if r not in known]
    if bad:
        raise ServiceError(f"unknown reason code(s): {', '.join(bad)[:300]}", field="reasons")
    return values


def _app_id(app_slug: str | None) -> int | None:
    if not app_slug:
        return None
    app = db.session.scalar(select(ConnectedApp).where(ConnectedApp.slug == app_slug.strip()))
    if app is None:
        raise ServiceError(f"no app with slug {app_slug.strip()!r}", field="app")
    return app.id


# ------------------------------------------------------------------ endpoints

def add_endpoint(url: str, event_types: list[str] | tuple[str, ...], *, app_slug: str | None = None,
                 outcomes: list[str] | tuple[str, ...] = (), reasons: list[str] | tuple[str, ...] = (),
                 description: str = "", secret: str | None = None) -> tuple[WebhookEndpoint, str]:
    """A new enabled endpoint and its secret (generated unless given; the caller shows it once: it is stored
    sealed). Audited without the secret."""
    types = validate_types(event_types)
    app_id = _app_id(app_slug)
    outs, reas = validate_outcomes(outcomes), validate_reasons(reasons)
    description = (description or "").strip()
    if len(description) > MAX_DESCRIPTION:
        raise ServiceError(f"the description is longer than {MAX_DESCRIPTION} characters", field="description")
    if secret is not None:
        secret = secret.strip()
        secret_key(secret)
    else:
        secret = new_secret()
    url = validate_url(url)
    row = WebhookEndpoint(url=url, description=description, event_types=types, app_id=app_id, outcomes=outs,
                          reasons=reas, enabled=True, failure_streak=0, created_by=audit.current_actor(),
                          secret_sealed=data_keys().seal(SecretSet(secret).dump(), SECRET_PURPOSE))
    db.session.add(row)
    db.session.flush()
    audit.record("webhook.add", "webhook", str(row.id), after=_audit_view(row))
    routes_changed()
    return row, secret


def masked_url(url: str) -> str:
    """The URL as shown outside the endpoint's own page: scheme and host, the path and query (where Slack / Teams
    style URLs carry their token) replaced by "…" and a short fingerprint (two masked URLs are the same endpoint
    when their fingerprints match). For audit rows, notices to other endpoints, syslog, the webhook.disabled
    notice and email."""
    parts = urlsplit(url or "")
    if not parts.scheme or not parts.netloc:
        return "…"
    host = parts.netloc.rsplit("@", 1)[-1]
    rest = (parts.path or "") + (f"?{parts.query}" if parts.query else "")
    if rest in ("", "/"):
        return f"{parts.scheme}://{host}/"
    fingerprint = hashlib.sha256(url.encode("utf-8")).hexdigest()[:8]
    return f"{parts.scheme}://{host}/…#{fingerprint}"


def _audit_view(row: WebhookEndpoint) -> dict[str, Any]:
    return {"url": masked_url(row.url), "events": list(row.event_types), "app": app_slug_of(row),
            "outcomes": list(row.outcomes), "reasons": list(row.reasons), "description": row.description,
            "enabled": row.enabled}


def app_slug_of(row: WebhookEndpoint) -> str | None:
    if row.app_id is None:
        return None
    app = db.session.get(ConnectedApp, row.app_id)
    return app.slug if app is not None else None


def get_endpoint(endpoint_id: int) -> WebhookEndpoint:
    row = db.session.get(WebhookEndpoint, endpoint_id)
    if row is None:
        raise ServiceError(f"no webhook endpoint {endpoint_id}", field="id")
    return row


def list_endpoints() -> list[WebhookEndpoint]:
    return list(db.session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)))


def remove_endpoint(endpoint_id: int) -> WebhookEndpoint:
    """Delete the endpoint and its delivery log; its pending jobs finish without sending."""
    row = get_endpoint(endpoint_id)
    audit.record("webhook.remove", "webhook", str(row.id), before=_audit_view(row))
    db.session.execute(WebhookDelivery.__table__.delete().where(WebhookDelivery.endpoint_id == row.id))
    db.session.delete(row)
    routes_changed()
    return row


def set_enabled(endpoint_id: int, enabled: bool, *, reason: str | None = None) -> WebhookEndpoint:
    """Enable (the failure streak starts again from zero) or disable an endpoint by hand."""
    row = get_endpoint(endpoint_id)
    before = {"enabled": row.enabled, "disabled_reason": row.disabled_reason}
    if enabled:
        row.enabled, row.disabled_at, row.disabled_reason = True, None, None
        row.failure_streak, row.failing_since = 0, None
    elif row.enabled:
        row.enabled, row.disabled_at = False, utcnow()
        row.disabled_reason = reason or f"disabled by {audit.current_actor()}"
    audit.record("webhook.enable" if enabled else "webhook.disable", "webhook", str(row.id), before=before,
                 after={"enabled": row.enabled, "disabled_reason": row.disabled_reason})
    routes_changed()
    return row


def secrets_of(row: WebhookEndpoint) -> SecretSet:
    return SecretSet.load(data_keys().open(row.secret_sealed, SECRET_PURPOSE))


def rotate_secret(endpoint_id: int, *, overlap_hours: float = DEFAULT_OVERLAP_HOURS,
                  secret: str | None = None) -> tuple[WebhookEndpoint, str]:
    """A new secret; for `overlap_hours` deliveries carry signatures under both (the receiver switches to the
    new secret meanwhile). Returns the new secret (shown once)."""
    if not 0 <= overlap_hours <= 24 * 30:
        raise ServiceError("the overlap is 0 to 720 hours", field="overlap_hours")
    row = get_endpoint(endpoint_id)
    if secret is not None:
        secret = secret.strip()
        secret_key(secret)
    new = secret or new_secret()
    old = secrets_of(row)
    until = int(time.time() + overlap_hours * 3600) if overlap_hours > 0 else None
    kept = SecretSet(new, old.current, until) if until else SecretSet(new)
    row.secret_sealed = data_keys().seal(kept.dump(), SECRET_PURPOSE)
    audit.record("webhook.rotate_secret", "webhook", str(row.id),
                 after={"overlap_hours": overlap_hours})
    return row, new


def list_deliveries(endpoint_id: int, *, limit: int = 100) -> list[WebhookDelivery]:
    get_endpoint(endpoint_id)
    return list(db.session.scalars(select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
                                   .order_by(WebhookDelivery.id.desc()).limit(max(1, min(limit, 10_000)))))


def last_deliveries(endpoint_ids: list[int]) -> dict[int, WebhookDelivery]:
    out: dict[int, WebhookDelivery] = {}
    for ep_id in endpoint_ids:
        found = db.session.scalar(select(WebhookDelivery).where(WebhookDelivery.endpoint_id == ep_id)
                                  .order_by(WebhookDelivery.id.desc()).limit(1))
        if found is not None:
            out[ep_id] = found
    return out


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def endpoint_dict(row: WebhookEndpoint) -> dict[str, Any]:
    return {"id": row.id, "url": row.url, "description": row.description, "events": list(row.event_types),
            "app": app_slug_of(row), "outcomes": list(row.outcomes), "reasons": list(row.reasons),
            "enabled": row.enabled, "disabled_at": _iso(row.disabled_at), "disabled_reason": row.disabled_reason,
            "failure_streak": row.failure_streak, "failing_since": _iso(row.failing_since),
            "last_success_at": _iso(row.last_success_at), "created_at": _iso(row.created_at),
            "created_by": row.created_by}


def delivery_dict(d: WebhookDelivery) -> dict[str, Any]:
    return {"id": d.id, "endpoint_id": d.endpoint_id, "notice_id": d.notice_id, "type": d.notice_type,
            "attempt": d.attempt, "at": _iso(d.at), "ok": d.ok, "status_code": d.status_code, "error": d.error,
            "duration_ms": d.duration_ms}


# ------------------------------------------------------------------ the subscription cache

@dataclass(frozen=True, slots=True)
class Route:
    endpoint_id: int
    types: frozenset[str]
    app_slug: str | None
    outcomes: frozenset[str]
    reasons: frozenset[str]

    def matches(self, type_: str, app_slug: str | None) -> bool:
        return type_ in self.types and (self.app_slug is None or self.app_slug == app_slug)

    def accepts(self, outcome: str | None, reason: str | None) -> bool:
        return ((not self.outcomes or outcome in self.outcomes)
                and (not self.reasons or reason in self.reasons))


class Routes:
    """The enabled endpoints' subscriptions of one database (one per engine, so each app of a test run and each
    instance has its own), by type."""

    def __init__(self) -> None:
        self.loaded_at = -1e9
        self.by_type: dict[str, list[Route]] = {}
        self.lock = threading.Lock()

    def stale(self) -> None:
        self.loaded_at = -1e9

    def current(self) -> dict[str, list[Route]]:
        if time.monotonic() - self.loaded_at < ROUTES_TTL_S:
            return self.by_type
        with self.lock:
            if time.monotonic() - self.loaded_at >= ROUTES_TTL_S:
                self.by_type = self._load()
                self.loaded_at = time.monotonic()
        return self.by_type

    @staticmethod
    def _load() -> dict[str, list[Route]]:
        with db.session.no_autoflush:
            rows = db.session.execute(
                select(WebhookEndpoint.id, WebhookEndpoint.event_types, ConnectedApp.slug, WebhookEndpoint.outcomes,
                       WebhookEndpoint.reasons, WebhookEndpoint.app_id)
                .outerjoin(ConnectedApp, ConnectedApp.id == WebhookEndpoint.app_id)
                .where(WebhookEndpoint.enabled.is_(True))).all()
        by_type: dict[str, list[Route]] = {}
        for ep_id, types, slug, outs, reas, app_id in rows:
            if app_id is not None and slug is None:
                continue
            route = Route(ep_id, frozenset(types or ()), slug, frozenset(outs or ()), frozenset(reas or ()))
            for t in route.types:
                by_type.setdefault(t, []).append(route)
        return by_type


_ROUTES: weakref.WeakKeyDictionary[Engine, Routes] = weakref.WeakKeyDictionary()
_ROUTES_LOCK = threading.Lock()
_CHANGED = "idp.webhooks.changed"


def routes() -> Routes:
    engine = db.engine
    found = _ROUTES.get(engine)
    if found is None:
        with _ROUTES_LOCK:
            found = _ROUTES.setdefault(engine, Routes())
    return found


def routes_changed() -> None:
    """This process drops its cached subscriptions now and again when the change commits (or rolls back)."""
    routes().stale()
    db.session.info[_CHANGED] = True


def _after_end(session: Session) -> None:
    if session.info.pop(_CHANGED, False):
        for r in list(_ROUTES.values()):
            r.stale()


sa_event.listen(Session, "after_commit", _after_end)
sa_event.listen(Session, "after_soft_rollback", lambda session, previous: _after_end(session))
