"""Webhook delivery: the bus subscriber that enqueues one outbox job per matching endpoint, the CloudEvents
payload, the signed POST, the delivery log, and the automatic disabling of an endpoint that keeps failing.

A notice becomes a CloudEvents 1.0 structured JSON event when it is enqueued (it says what happened then); the job
(kind "webhook.deliver", key "webhook:<endpoint id>:<subject>", so one subject's deliveries to one endpoint run in
order) POSTs it, signed, through the SSRF guard of services.fetch, following no redirect. A 2xx answer is
delivered; 410 Gone disables the endpoint at once; anything else (another status, a timeout, a refused
connection) is retried with the outbox's backoff and is dead after the worker's last attempt. Every attempt is a
row of the delivery log: a success in the job's own transaction, a failure in the failure hook's (the job's was
rolled back).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, func, insert, select, update

from ... import audit
from ...extensions import component, db
from ...models import OutboxJob, WebhookDelivery, WebhookEndpoint, utcnow
from ...notifications import bus, catalog
from ...prepared import Prepared
from .. import ServiceError, outbox
from ..fetch import http_request
from .endpoints import SWITCH, get_endpoint, masked_url, routes, routes_changed, secrets_of
from .signing import signed_headers

log = logging.getLogger("idp.webhooks")

KIND = "webhook.deliver"
SPECVERSION = "1.0"
DATASCHEMA = "urn:idp:webhook:1"
USER_AGENT = "idp-webhooks/1"
MAX_ANSWER = 1024 * 1024
MAX_ERROR = 500
LOG_KEEP_DAYS = 30
# the circuit breaker: once an endpoint failed this many attempts in a row, its deliveries are not sent but
# deferred to its next probe time (BREAKER_BASE_S after its last attempt, doubling with each failed probe, at most
# BREAKER_MAX_S); one delivery at a time goes through as the probe, and a success closes the breaker
BREAKER_FAILURES = 3
BREAKER_BASE_S = 30.0
BREAKER_MAX_S = 3600.0
PRUNE_BATCH = 5000


def _settings() -> Any:
    return component("idp.settings")


# ------------------------------------------------------------------ payload

def rfc3339(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def build_event(notice: bus.Notice, source: str) -> dict[str, Any]:
    """The CloudEvents 1.0 structured-mode event of a notice (the data: the event log row's fields, or the
    audit row's)."""
    event: dict[str, Any] = {"specversion": SPECVERSION, "id": notice.id, "source": source, "type": notice.type}
    if notice.subject:
        event["subject"] = notice.subject
    event.update({"time": rfc3339(notice.time), "datacontenttype": "application/json", "dataschema": DATASCHEMA,
                  "data": json.loads(json.dumps(notice.data, default=str))})
    return event


def body_of(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def job_key(endpoint_id: int, notice: bus.Notice) -> str:
    return f"webhook:{endpoint_id}:{notice.subject or notice.type}"


# ------------------------------------------------------------------ the bus subscriber

_INSERT_JOB = Prepared(insert(OutboxJob), column_keys=("kind", "key", "payload", "state", "attempts", "run_after",
                                                       "created_at"))

class WebhookSubscriber:
    """Asked about every event and audited change: a lookup in the cached subscriptions (no query, except one
    reload every few seconds); enqueues one job per endpoint whose filters accept the notice."""

    name = "webhooks"

    def wants(self, type_: str, app_slug: str | None) -> bool:
        return any(r.matches(type_, app_slug) for r in routes().current().get(type_, ()))

    def deliver(self, notice: bus.Notice, session: bus.AnySession) -> None:
        source = _settings().base_url
        skip = notice.data.get("endpoint_id") if notice.type == "webhook.disabled" else None
        event: dict[str, Any] | None = None
        rows = []
        for route in routes().current().get(notice.type, ()):
            if not route.matches(notice.type, notice.app_slug) or not route.accepts(notice.outcome, notice.reason):
                continue
            if route.endpoint_id == skip:   # the endpoint just disabled is not told about itself
                continue
            event = event or build_event(notice, source)
            now = utcnow()
            rows.append({"kind": KIND, "key": job_key(route.endpoint_id, notice)[:outbox.MAX_KEY],
                         "payload": {"endpoint_id": route.endpoint_id, "event": event}, "state": "pending",
                         "attempts": 0, "run_after": now, "created_at": now})
        if session is db.session:   # sign-in's path: a prepared INSERT (an ORM insert costs ~4x the row)
            for row in rows:
                _INSERT_JOB.run(row)
        elif rows:
            session.execute(insert(OutboxJob), rows)


SUBSCRIBER = WebhookSubscriber()
bus.subscribe(SUBSCRIBER)


# ------------------------------------------------------------------ sending

@dataclass(frozen=True, slots=True)
class Attempt:
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    def summary(self) -> str:
        if self.ok:
            return f"HTTP {self.status_code}"
        if self.status_code is not None:   # a 3xx says why it is a failure: redirects are not followed
            return f"the endpoint answered HTTP {self.status_code}" + (f": {self.error}" if self.error else "")
        return self.error or "failed"


def send(url: str, signing_secrets: list[str], event: dict[str, Any]) -> Attempt:
    """One signed POST of `event` to `url`: the SSRF guard (private and loopback addresses, and http://, only
    with IDP_WEBHOOK_ALLOW_PRIVATE), no redirect followed, IDP_WEBHOOK_TIMEOUT for the whole exchange."""
    s = _settings()
    body = body_of(event)
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               **signed_headers(signing_secrets, str(event["id"]), body)}
    started = time.monotonic()
    if urlsplit(url).scheme != "https" and not s.webhook_allow_private:
        return Attempt(None, f"refused: http:// webhook URLs need {SWITCH}=true", 0)
    try:
        answer = http_request("POST", url, body=body, headers=headers, allow_private=bool(s.webhook_allow_private),
                              timeout=float(s.webhook_timeout_s), max_bytes=MAX_ANSWER, what="webhook endpoint",
                              switch=SWITCH)
    except ServiceError as exc:
        return Attempt(None, str(exc)[:MAX_ERROR], int((time.monotonic() - started) * 1000))
    elapsed = int((time.monotonic() - started) * 1000)
    if 300 <= answer.status < 400:
        return Attempt(answer.status, "redirects are not followed: point the endpoint at the final URL", elapsed)
    return Attempt(answer.status, None, elapsed)


def _log(endpoint_id: int, event: dict[str, Any], attempt_no: int, result: Attempt | None, *,
         error: str | None = None, job_id: int | None = None) -> WebhookDelivery:
    row = WebhookDelivery(endpoint_id=endpoint_id, notice_id=str(event.get("id", ""))[:64],
                          notice_type=str(event.get("type", ""))[:40], attempt=attempt_no, at=utcnow(),
                          ok=bool(result and result.ok), status_code=result.status_code if result else None,
                          error=(error or (result.error if result else None) or None),
                          duration_ms=result.duration_ms if result else None, job_id=job_id)
    if row.error:
        row.error = row.error[:MAX_ERROR]
    db.session.add(row)
    return row


class DeliveryFailed(Exception):
    """An attempt failed; retried with the outbox's backoff."""


class EndpointGone(outbox.PermanentFailure):
    """The endpoint answered 410 Gone: it is disabled, the job is dead."""


class EndpointDisabled(outbox.PermanentFailure):
    """The endpoint is disabled: the job is dead (not sent), so admins retry the backlog after enabling it."""


DISABLED_ERROR = "endpoint disabled"


# the failed attempt of the job in hand, for the failure hook (it runs next, in this process, in a new
# transaction): (endpoint id, notice id) -> (attempt number, result)
_FAILED: dict[tuple[int, str], tuple[int, Attempt]] = {}


def _deliver_job(payload: dict[str, Any]) -> None:
    _FAILED.clear()   # an earlier job's entry whose hook never ran (its lease was lost meanwhile)
    endpoint_id, event = int(payload["endpoint_id"]), dict(payload["event"])
    ep = db.session.get(WebhookEndpoint, endpoint_id)
    if ep is None:
        log.info("webhook %s to endpoint %s dropped: the endpoint was removed", event.get("id"), endpoint_id)
        return
    attempt_no = outbox.current_attempt()   # the job's own count: no scan of the endpoint's delivery log
    if not ep.enabled:
        # dead, not done: after an (automatic) disable the backlog waits for an admin to retry it
        raise EndpointDisabled(DISABLED_ERROR)
    breaker_open = _check_breaker(ep)
    result = send(ep.url, secrets_of(ep).signing(), event)
    if result.ok:
        _log(endpoint_id, event, attempt_no, result)
        ep.failure_streak, ep.failing_since, ep.last_success_at = 0, None, utcnow()
        if breaker_open:   # the probe went through: the deliveries deferred behind it are due now
            db.session.execute(update(OutboxJob).where(
                OutboxJob.kind == KIND, OutboxJob.state == "pending",
                OutboxJob.key.like(f"webhook:{endpoint_id}:%")).values(run_after=utcnow())
                .execution_options(synchronize_session=False))
        return
    _FAILED[(endpoint_id, str(event["id"]))] = (attempt_no, result)
    if result.status_code == 410:
        raise EndpointGone("the endpoint answered HTTP 410 Gone: disabled")
    raise DeliveryFailed(result.summary())


def next_probe(ep: WebhookEndpoint) -> datetime | None:
    """When the endpoint's open circuit breaker lets the next delivery through; None while it is closed (fewer
    than BREAKER_FAILURES failed attempts in a row). The last attempt is the newest row of its delivery log (an
    index seek on (endpoint_id, at))."""
    streak = ep.failure_streak or 0
    if streak < BREAKER_FAILURES or ep.failing_since is None:
        return None
    last = db.session.scalar(select(func.max(WebhookDelivery.at)).where(WebhookDelivery.endpoint_id == ep.id))
    wait = min(BREAKER_MAX_S, BREAKER_BASE_S * 2 ** min(streak - BREAKER_FAILURES, 20))
    return (last or ep.failing_since) + timedelta(seconds=wait)


def _check_breaker(ep: WebhookEndpoint) -> bool:
    """Raise outbox.Defer while the endpoint's breaker is open and its probe time has not come, or another
    worker is sending the probe (it holds the endpoint's row lock until its attempt is recorded); True when this
    delivery is the probe."""
    probe_at = next_probe(ep)
    if probe_at is None:
        return False
    now = utcnow()
    if now < probe_at:
        raise outbox.Defer(probe_at, f"webhook endpoint {ep.id} is failing: deferred to its next probe")
    # one probe at a time: this transaction holds the endpoint's row until the attempt ends (PostgreSQL; SQLite
    # serialises writers anyway)
    held = db.session.scalar(select(WebhookEndpoint.id).where(WebhookEndpoint.id == ep.id)
                             .with_for_update(skip_locked=True))
    if held is None:
        raise outbox.Defer(now + timedelta(seconds=float(_settings().webhook_timeout_s) + 1),
                           f"webhook endpoint {ep.id} is being probed by another worker")
    return True


def _on_failure(payload: dict[str, Any], error: str, dead: bool) -> None:
    """In the failure's own transaction: the attempt's log row, the failure streak, disabling."""
    endpoint_id, event = int(payload["endpoint_id"]), dict(payload["event"])
    attempt_no, result = _FAILED.pop((endpoint_id, str(event.get("id"))), (0, None))
    # row-locked: workers failing deliveries to one endpoint at once count every failure in its streak
    ep = db.session.get(WebhookEndpoint, endpoint_id, with_for_update=True)
    if ep is None:
        return
    attempt_no = attempt_no or outbox.current_attempt()
    if result is None and error == DISABLED_ERROR:   # not sent: no failure of the endpoint's to count
        _log(endpoint_id, event, attempt_no, None,
             error="skipped: the endpoint is disabled (the job is dead: retry it once the endpoint is enabled)")
        return
    text = (result.summary() if result else error)
    if dead and not (result and result.status_code == 410):
        text += " (no more retries: dead)"
    _log(endpoint_id, event, attempt_no, result, error=text)
    if result is not None and result.status_code == 410:
        disable_failing(ep, "the endpoint answered HTTP 410 Gone")
        return
    count_failure(ep)


def count_failure(ep: WebhookEndpoint, *, now: datetime | None = None) -> None:
    """One more failed attempt in a row; the endpoint is disabled once the streak reaches
    IDP_WEBHOOK_DISABLE_FAILURES and it has been failing for IDP_WEBHOOK_DISABLE_HOURS."""
    s = _settings()
    now = now or utcnow()
    ep.failure_streak = (ep.failure_streak or 0) + 1
    ep.failing_since = ep.failing_since or now
    if (ep.enabled and ep.failure_streak >= s.webhook_disable_failures
            and now - ep.failing_since >= timedelta(hours=float(s.webhook_disable_hours))):
        disable_failing(ep, f"{ep.failure_streak} failed deliveries in a row since "
                            f"{rfc3339(ep.failing_since)[:16].replace('T', ' ')} UTC")


def disable_failing(ep: WebhookEndpoint, reason: str) -> None:
    """Disable an endpoint that keeps failing: audited, and a `webhook.disabled` notice (other endpoints
    subscribed to it and the admins' email get it)."""
    if not ep.enabled:
        return
    now = utcnow()
    ep.enabled, ep.disabled_at, ep.disabled_reason = False, now, reason[:MAX_ERROR]
    audit.record("webhook.auto_disable", "webhook", str(ep.id), before={"enabled": True},
                 after={"enabled": False, "disabled_reason": ep.disabled_reason, "failure_streak": ep.failure_streak})
    routes_changed()
    bus.publish_notice(bus.Notice(type="webhook.disabled", time=now, subject=f"webhook:{ep.id}", app_slug=None,
                                  outcome="error", reason=None, source="system",
                                  data={"endpoint_id": ep.id, "url": masked_url(ep.url), "description": ep.description,
                                        "disabled_reason": ep.disabled_reason, "failure_streak": ep.failure_streak,
                                        "failing_since": rfc3339(ep.failing_since) if ep.failing_since else None}),
                       db.session)
    log.warning("webhook endpoint %s disabled: %s", ep.id, reason)


outbox.handler(KIND, on_failure=_on_failure)(_deliver_job)


def retry_dead_deliveries(endpoint_id: int) -> list[int]:
    """The endpoint's dead delivery jobs pending again (audited, as `idp outbox retry`): after enabling it."""
    get_endpoint(endpoint_id)
    return outbox.retry_dead_of(KIND, f"webhook:{endpoint_id}:")


# ------------------------------------------------------------------ the test button

def send_test(endpoint_id: int) -> tuple[WebhookDelivery, Attempt]:
    """Send a `webhook.test` event to one endpoint now (enabled or not) with the same signing, SSRF guard and
    timeout as deliveries; the attempt is logged. The caller's unit of work commits the log row."""
    ep = get_endpoint(endpoint_id)
    notice = bus.Notice(type=catalog.TEST_TYPE, time=utcnow(), subject=f"webhook:{ep.id}", app_slug=None,
                        outcome="success", reason=None, source="system",
                        data={"endpoint_id": ep.id, "message": "a test delivery asked for by "
                              + audit.current_actor()})
    event = build_event(notice, _settings().base_url)
    result = send(ep.url, secrets_of(ep).signing(), event)
    row = _log(ep.id, event, 1, result, error=None if result.ok else result.summary())
    audit.record("webhook.test", "webhook", str(ep.id), after={"status_code": result.status_code, "ok": result.ok})
    return row, result


# ------------------------------------------------------------------ the delivery log's retention

@outbox.periodic
def prune_deliveries() -> None:
    """Delivery log rows older than LOG_KEEP_DAYS go, a batch at a time (short transactions)."""
    cutoff = utcnow() - timedelta(days=LOG_KEEP_DAYS)
    ids = select(WebhookDelivery.id).where(WebhookDelivery.at < cutoff).limit(PRUNE_BATCH).scalar_subquery()
    db.session.execute(delete(WebhookDelivery).where(WebhookDelivery.id.in_(ids))
                       .execution_options(synchronize_session=False))
