"""Webhooks end to end: endpoints added with the CLI, notices delivered by the outbox worker to a real HTTP
receiver on loopback that verifies the Standard Webhooks signatures with the reference library; CloudEvents
payloads, ordering per subject, retries after 500s and timeouts, 410 Gone, automatic disabling with its notice,
filters, per-app subscriptions, the SSRF guard, the test button, secret rotation, and SSO not waiting for a hung
endpoint."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from idp import audit
from idp.cli.worker import Worker
from idp.config import Settings
from idp.errors import EventContext
from idp.events import record_event
from idp.extensions import db
from idp.models import AdminAudit, OutboxJob, WebhookDelivery, WebhookEndpoint, utcnow
from idp.reasons import Reason
from idp.services import apps as apps_svc
from idp.services import webhooks as wh

from ..conftest import make_settings
from ..webclient import saml_form
from ..webhook_receiver import Receiver
from .conftest import PASSWORD


@pytest.fixture
def settings(tmp_path: Path, key_template: Path) -> Settings:
    # the receiver listens on loopback over http, which only IDP_WEBHOOK_ALLOW_PRIVATE permits
    return make_settings(tmp_path, key_template, webhook_allow_private=True, webhook_timeout_s=1.0)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def cli(app: Flask, *args: str, stdin: str | None = None) -> Any:
    return app.test_cli_runner().invoke(args=list(args), input=stdin)


def add(app: Flask, receiver: Receiver, *args: str) -> int:
    """`idp webhooks add` for the receiver; the secret it prints is what the receiver verifies with."""
    r = cli(app, "webhooks", "add", receiver.url, *args)
    assert r.exit_code == 0, r.output
    secret = r.stdout.strip().splitlines()[0]
    assert secret.startswith("whsec_")
    receiver.secrets.append(secret)
    return int(db.session.scalar(select(func.max(WebhookEndpoint.id))) or 0)


def run_worker() -> int:
    w = Worker("test-worker")
    w.run(once=True)
    return w.ran


def make_due() -> None:
    """Time passes: pending jobs are due, and a failing endpoint's next probe time has come (its delivery log,
    from which the circuit breaker dates the last attempt, is an hour older)."""
    db.session.commit()
    for job in db.session.scalars(select(OutboxJob).where(OutboxJob.state == "pending")):
        job.run_after = utcnow() - timedelta(seconds=1)
    for row in db.session.scalars(select(WebhookDelivery)):
        row.at = row.at - timedelta(hours=1)
    db.session.commit()


def jobs(state: str | None = None) -> list[OutboxJob]:
    db.session.commit()
    q = select(OutboxJob).where(OutboxJob.kind == wh.KIND)
    if state:
        q = q.where(OutboxJob.state == state)
    return list(db.session.scalars(q.order_by(OutboxJob.id)))


def log_of(endpoint_id: int) -> list[WebhookDelivery]:
    db.session.commit()
    return list(db.session.scalars(select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
                                   .order_by(WebhookDelivery.id)))


def endpoint(endpoint_id: int) -> WebhookEndpoint:
    db.session.commit()
    row = db.session.get(WebhookEndpoint, endpoint_id, populate_existing=True)
    assert row is not None
    return row


def user_changed(username: str, n: int) -> None:
    """An audited change to a user (published as user.updated, subject = the username)."""
    audit.record("user.update", "user", username, after={"n": n})
    db.session.commit()


def sso(username: str, app_slug: str, reason: Reason = Reason.OK) -> None:
    record_event(EventContext(event_type="sso", app_slug=app_slug, username=username), reason,
                 client_ip="203.0.113.9", user_agent="UA")
    db.session.commit()


# ------------------------------------------------------------------ payload and signature

def test_a_notice_is_a_signed_cloudevent_with_the_event_log_fields(app: Flask, receiver: Receiver) -> None:
    ep = add(app, receiver, "--event", "sso.success", "--description", "SIEM bridge")
    sso("alice", "crm")
    assert len(jobs("pending")) == 1 and receiver.received == []   # enqueued with the event, nothing sent yet
    assert run_worker() == 1
    [got] = receiver.received
    assert got.verified, got.headers
    assert got.headers["content-type"] == "application/json"
    event = got.event
    assert event["specversion"] == "1.0" and event["type"] == "sso.success"
    assert event["id"] == got.webhook_id and event["source"] == "http://localhost"
    assert event["subject"] == "alice" and event["time"].endswith("Z")
    assert event["datacontenttype"] == "application/json" and event["dataschema"] == "urn:idp:webhook:1"
    data = event["data"]
    assert data["username"] == "alice" and data["app_slug"] == "crm" and data["reason"] == "ok"
    assert data["outcome"] == "success" and data["client_ip"] == "203.0.113.9"
    assert abs(int(got.headers["webhook-timestamp"]) - got.at) < 60
    [row] = log_of(ep)
    assert row.ok and row.status_code == 200 and row.attempt == 1 and row.notice_id == event["id"]
    assert endpoint(ep).last_success_at is not None and endpoint(ep).failure_streak == 0
    # the secret is sealed at rest and in no audit row
    assert receiver.secrets[0] not in endpoint(ep).secret_sealed
    assert all(receiver.secrets[0] not in json.dumps([a.before, a.after])
               for a in db.session.scalars(select(AdminAudit)))


def test_a_signature_under_another_secret_does_not_verify(app: Flask, receiver: Receiver) -> None:
    add(app, receiver, "--event", "sso.success")
    receiver.secrets[:] = ["whsec_" + "A" * 43 + "="]   # a receiver holding the wrong secret
    sso("alice", "crm")
    run_worker()
    assert [r.verified for r in receiver.received] == [False]


def test_a_given_secret_is_used_and_not_printed(app: Flask, receiver: Receiver) -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    r = cli(app, "webhooks", "add", receiver.url, "--event", "sso.success", "--secret-stdin", stdin=secret + "\n")
    assert r.exit_code == 0, r.output
    assert secret not in r.output
    receiver.secrets.append(secret)
    sso("alice", "crm")
    run_worker()
    assert [r.verified for r in receiver.received] == [True]


def test_rotating_the_secret_signs_with_both_during_the_overlap(app: Flask, receiver: Receiver) -> None:
    ep = add(app, receiver, "--event", "sso.success")
    old = receiver.secrets[0]
    r = cli(app, "webhooks", "rotate-secret", str(ep), "--overlap-hours", "1")
    assert r.exit_code == 0, r.output
    new = r.stdout.strip().splitlines()[0]
    assert new.startswith("whsec_") and new != old
    sso("alice", "crm")
    run_worker()
    [got] = receiver.received
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    for only in (old, new):   # a receiver holding either secret accepts the delivery
        receiver.secrets[:] = [only]
        assert receiver.verify(got.body, got.headers)
    r = cli(app, "webhooks", "rotate-secret", str(ep), "--overlap-hours", "0")
    newest = r.stdout.strip().splitlines()[0]
    sso("alice", "crm")
    run_worker()
    assert len(receiver.received[1].headers["webhook-signature"].split(" ")) == 1
    receiver.secrets[:] = [newest]
    assert receiver.verify(receiver.received[1].body, receiver.received[1].headers)


# ------------------------------------------------------------------ ordering, retries, at-least-once

def test_deliveries_of_one_subject_keep_their_order_across_a_retry(app: Flask, receiver: Receiver) -> None:
    ep = add(app, receiver, "--event", "user.updated")
    receiver.respond(500)          # the first delivery fails once
    for n in (1, 2, 3):
        user_changed("alice", n)
    user_changed("bob", 1)
    run_worker()
    # alice's first failed; her later ones wait behind it; bob's went through
    assert [(e["subject"], e["data"]["after"]["n"]) for e in receiver.events()] == [("alice", 1), ("bob", 1)]
    assert [j.state for j in jobs()] == ["pending", "pending", "pending", "done"]
    make_due()
    run_worker()
    assert [(e["subject"], e["data"]["after"]["n"]) for e in receiver.unique()
            if e["subject"] == "alice"] == [("alice", 1), ("alice", 2), ("alice", 3)]
    assert receiver.received[0].webhook_id == receiver.received[2].webhook_id   # the retry: the same id
    assert all(r.verified for r in receiver.received)
    assert len({r.headers["webhook-timestamp"] for r in receiver.received}) >= 1
    log = log_of(ep)
    first = [d for d in log if d.notice_id == receiver.received[0].webhook_id]
    assert [(d.attempt, d.ok, d.status_code) for d in first] == [(1, False, 500), (2, True, 200)]
    assert "HTTP 500" in (first[0].error or "")
    assert endpoint(ep).failure_streak == 0 and all(j.state == "done" for j in jobs())


def test_a_timeout_is_retried_and_the_copy_is_deduplicated_by_webhook_id(app: Flask, receiver: Receiver) -> None:
    ep = add(app, receiver, "--event", "sso.success")
    receiver.respond((2.5, 200))   # answers after IDP_WEBHOOK_TIMEOUT (1 s): the IdP gives up, the receiver got it
    sso("alice", "crm")
    run_worker()
    [failed] = log_of(ep)
    assert not failed.ok and failed.status_code is None and "did not answer within 1 s" in (failed.error or "")
    make_due()
    run_worker()
    assert len(receiver.received) == 2 and receiver.received[0].webhook_id == receiver.received[1].webhook_id
    assert len(receiver.unique()) == 1
    assert [(d.attempt, d.ok) for d in log_of(ep)] == [(1, False), (2, True)]


def test_a_delivery_failing_every_attempt_is_dead(app: Flask, settings: Settings, receiver: Receiver) -> None:
    receiver.default = (0.0, 503)
    ep = add(app, receiver, "--event", "sso.success")
    sso("alice", "crm")
    for _ in range(settings.worker_max_attempts):
        make_due()
        run_worker()
    [job] = jobs()
    assert job.state == "dead" and job.attempts == settings.worker_max_attempts
    log = log_of(ep)
    assert [d.attempt for d in log] == list(range(1, settings.worker_max_attempts + 1))
    assert "dead" in (log[-1].error or "") and all(d.status_code == 503 for d in log)
    # admins retry it as any dead job once the receiver is fixed
    receiver.default = (0.0, 200)
    assert cli(app, "outbox", "retry", str(job.id)).exit_code == 0
    make_due()   # the endpoint's circuit breaker is open: the retry goes at its next probe time
    run_worker()
    assert log_of(ep)[-1].ok and jobs()[0].state == "done"


def test_410_gone_disables_the_endpoint_at_once_and_later_jobs_are_skipped(app: Flask, receiver: Receiver) -> None:
    ep = add(app, receiver, "--event", "sso.success")
    watcher = Receiver().start()
    try:
        add(app, watcher, "--event", "webhook.disabled")
        receiver.respond(410)
        sso("alice", "crm")
        sso("bob", "crm")
        run_worker()
        row = endpoint(ep)
        assert not row.enabled and "410" in (row.disabled_reason or "")
        assert len(receiver.received) == 1                  # bob's was not sent
        log = log_of(ep)
        assert log[0].status_code == 410 and (log[1].error or "").startswith("skipped: the endpoint is disabled")
        [notice] = watcher.events()
        assert notice["type"] == "webhook.disabled" and notice["data"]["endpoint_id"] == ep
        assert watcher.received[0].verified
        assert db.session.scalar(select(AdminAudit).where(AdminAudit.action == "webhook.auto_disable")) is not None
        assert [j.state for j in jobs() if j.payload["endpoint_id"] == ep] == ["dead", "dead"]
    finally:
        watcher.stop()


def test_the_backlog_of_a_disabled_endpoint_is_dead_and_sent_after_enabling_with_retry_dead(
        app: Flask, receiver: Receiver) -> None:
    """Deliveries queued while an endpoint is disabled are not lost: dead (with a log row saying why), sent
    once it is enabled with --retry-dead. Failed before the fix: they ended `done`, skipped for good."""
    ep = add(app, receiver, "--event", "sso.success")
    sso("alice", "crm")
    sso("bob", "crm")
    assert cli(app, "webhooks", "disable", str(ep)).exit_code == 0   # queued first, as an automatic disable
    run_worker()
    assert receiver.received == []
    assert [j.state for j in jobs()] == ["dead", "dead"]
    assert all("endpoint disabled" in (j.last_error or "") for j in jobs())
    log = log_of(ep)
    assert len(log) == 2 and all((d.error or "").startswith("skipped: the endpoint is disabled") for d in log)
    assert endpoint(ep).failure_streak == 0          # not the endpoint's failure: nothing was sent
    r = cli(app, "webhooks", "enable", str(ep), "--retry-dead")
    assert r.exit_code == 0 and "2 dead deliveries pending again" in r.output, r.output
    run_worker()
    assert sorted(e["subject"] for e in receiver.events()) == ["alice", "bob"]
    assert [j.state for j in jobs()] == ["done", "done"]
    assert [(d.attempt, d.ok) for d in log_of(ep)[2:]] == [(1, True), (1, True)]


def test_a_delivery_numbers_its_attempt_from_the_job_without_reading_the_delivery_log(
        app: Flask, receiver: Receiver) -> None:
    """The attempt number is the job's (attempts + 1): the worker never counts the endpoint's delivery log
    (only indexed on endpoint and time, a scan of the whole log per delivery). Failed before the fix."""
    from sqlalchemy import event as sa_event
    ep = add(app, receiver, "--event", "sso.success")
    receiver.respond(500)
    sso("alice", "crm")
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    run_and_watch = [run_worker, make_due, run_worker]
    for step in run_and_watch:
        if step is make_due:
            step()
            continue
        sa_event.listen(db.engine, "before_cursor_execute", seen)
        try:
            step()
        finally:
            sa_event.remove(db.engine, "before_cursor_execute", seen)
    reads = [st for st in statements if st.lstrip().upper().startswith("SELECT") and "webhook_deliveries" in st]
    assert reads == []
    assert [(d.attempt, d.ok) for d in log_of(ep)] == [(1, False), (2, True)]


def test_an_endpoint_failing_long_enough_is_disabled_and_admins_are_told(app: Flask, tmp_path: Path,
                                                                         key_template: Path,
                                                                         receiver: Receiver) -> None:
    app.extensions["idp.settings"] = dataclasses.replace(app.extensions["idp.settings"],
                                                         webhook_disable_failures=3, webhook_disable_hours=24.0)
    receiver.default = (0.0, 500)
    ep = add(app, receiver, "--event", "user.updated")
    watcher = Receiver().start()
    try:
        add(app, watcher, "--event", "webhook.disabled")
        for n in range(4):          # three failures in a row (the fourth delivery waits: circuit breaker), but
            user_changed(f"user{n}", n)   # within the first 24 hours: still enabled
        run_worker()
        row = endpoint(ep)
        assert row.enabled and row.failure_streak == 3 and row.failing_since is not None
        row.failing_since = utcnow() - timedelta(hours=25)   # failing for more than a day
        db.session.commit()
        make_due()
        run_worker()
        row = endpoint(ep)
        assert not row.enabled and "failed deliveries in a row" in (row.disabled_reason or "")
        [notice] = watcher.unique()
        assert notice["type"] == "webhook.disabled" and notice["data"]["endpoint_id"] == ep
        listed = json.loads(cli(app, "webhooks", "list", "--json").output)
        assert listed[0]["enabled"] is False and listed[0]["disabled_reason"] == row.disabled_reason
        # enabled again by an admin: the streak starts over, deliveries resume
        receiver.default = (0.0, 200)
        assert cli(app, "webhooks", "enable", str(ep)).exit_code == 0
        row = endpoint(ep)
        assert row.enabled and row.failure_streak == 0 and row.failing_since is None
        user_changed("carol", 9)
        run_worker()
        assert receiver.events()[-1]["subject"] == "carol" and log_of(ep)[-1].ok
    finally:
        watcher.stop()


def test_a_hanging_endpoint_is_probed_not_retried_per_delivery_and_does_not_starve_other_jobs(
        app: Flask, receiver: Receiver) -> None:
    """The circuit breaker: after BREAKER_FAILURES failed attempts in a row, a hanging endpoint's other
    deliveries are deferred (no POST, no attempt counted) to its next probe time, one probe at a time, so the job
    queued behind them runs at once. Counts POSTs, not time. Failed before the fix: every queued delivery was
    POSTed (and waited for) first."""
    BREAKER = 3   # webhooks.delivery.BREAKER_FAILURES
    receiver.default = (1.5, 200)   # answers after IDP_WEBHOOK_TIMEOUT (1 s): every attempt times out
    hanging = add(app, receiver, "--event", "user.updated")
    other = Receiver().start()
    try:
        add(app, other, "--event", "sso.success")
        for n in range(10):
            user_changed(f"user{n}", n)
        sso("alice", "crm")                     # queued behind the ten
        run_worker()
        assert len(receiver.received) == BREAKER
        assert [e["subject"] for e in other.events()] == ["alice"]
        pending = [j for j in jobs("pending") if j.payload["endpoint_id"] == hanging]
        assert len(pending) == 10
        assert sorted(j.attempts for j in pending) == [0] * 7 + [1] * 3   # a deferral is not an attempt
        assert endpoint(hanging).failure_streak == BREAKER
        # the probe time comes: one delivery goes through as the probe, the rest wait again
        make_due()
        run_worker()
        assert len(receiver.received) == BREAKER + 1
        # the endpoint recovers: the probe succeeds, the breaker closes and the backlog is sent at once
        receiver.default = (0.0, 200)
        make_due()
        run_worker()
        assert endpoint(hanging).failure_streak == 0
        assert sorted({e["subject"] for e in receiver.unique()}) == sorted(f"user{n}" for n in range(10))
        assert all(j.state == "done" for j in jobs())
    finally:
        other.stop()


# ------------------------------------------------------------------ subscriptions and filters

@pytest.fixture
def two_apps(app: Flask) -> None:
    for slug in ("crm", "wiki"):
        apps_svc.register_oidc_app(name=slug.upper(), slug=slug, settings=apps_svc.initial_settings(
            redirect_uris=(f"https://{slug}.example.com/cb",)))
    db.session.commit()


def test_per_app_subscriptions_and_outcome_reason_filters(app: Flask, receiver: Receiver, two_apps: None) -> None:
    add(app, receiver, "--event", "sso.success,sso.denied", "--app", "crm")
    add(app, receiver, "--event", "sso.denied", "--outcome", "denied", "--reason", "ip_not_allowed")
    sso("alice", "crm")                                 # 1st endpoint
    sso("alice", "wiki")                                # nobody: other app, other type for the 2nd
    sso("bob", "wiki", Reason.IP_NOT_ALLOWED)           # 2nd endpoint (org-wide, reason matches)
    sso("bob", "wiki", Reason.USER_DISABLED)            # nobody: reason filtered out
    sso("carol", "crm", Reason.IP_NOT_ALLOWED)          # both
    run_worker()
    got = sorted((r.path, r.event["type"], r.event["subject"], r.event["data"]["app_slug"])
                 for r in receiver.received)
    assert got == sorted([("/hook", "sso.success", "alice", "crm"), ("/hook", "sso.denied", "bob", "wiki"),
                          ("/hook", "sso.denied", "carol", "crm"), ("/hook", "sso.denied", "carol", "crm")])
    assert all(r.verified for r in receiver.received)


def test_a_disabled_endpoint_gets_nothing_new(app: Flask, receiver: Receiver) -> None:
    ep = add(app, receiver, "--event", "sso.success")
    assert cli(app, "webhooks", "disable", str(ep)).exit_code == 0
    sso("alice", "crm")
    assert jobs() == []
    run_worker()
    assert receiver.received == []


def test_sso_completes_while_the_subscribed_endpoint_hangs(app: Flask, receiver: Receiver, make_sp: Any,
                                                           browser: Any, alice: Any) -> None:
    receiver.default = (30.0, 200)   # a receiver that never answers in time
    add(app, receiver, "--event", "sso.success")
    sp = make_sp("pysaml2")
    req = sp.authn_request("redirect")
    form = saml_form(browser.sso(req, "alice", PASSWORD))
    assert form is not None and sp.process_response(form.saml_response, req.request_id).name_id == "alice"
    assert receiver.received == []                      # sign-in only enqueued the delivery
    [job] = jobs("pending")
    assert job.payload["event"]["type"] == "sso.success" and job.payload["event"]["subject"] == "alice"


# ------------------------------------------------------------------ the CLI, the SSRF guard, the test button

def test_cli_refuses_bad_input_and_writes_nothing(app: Flask, receiver: Receiver, two_apps: None) -> None:
    cases = [
        (("--event", "sso.sucess"), "unknown event type(s): sso.sucess"),
        (("--event", "webhook.test"), "unknown event type"),
        (("--event", "sso.success", "--app", "nope"), "no app with slug 'nope'"),
        (("--event", "sso.success", "--outcome", "maybe"), "unknown outcome"),
        (("--event", "sso.success", "--reason", "bogus"), "unknown reason"),
    ]
    for args, message in cases:
        r = cli(app, "webhooks", "add", receiver.url, *args)
        assert r.exit_code == 1 and message in r.output, (args, r.output)
    for url in ("ftp://example.com/x", "hooks.example.com", "https://user:pw@127.0.0.1/x"):
        r = cli(app, "webhooks", "add", url, "--event", "sso.success")
        assert r.exit_code == 1 and "Error:" in r.output, (url, r.output)
    r = cli(app, "webhooks", "add", receiver.url, "--event", "sso.success", "--secret-stdin", stdin="not-a-secret\n")
    assert r.exit_code == 1 and "whsec_" in r.output
    assert cli(app, "webhooks", "test", "99").exit_code == 1
    assert cli(app, "webhooks", "remove", "99").exit_code == 1
    assert db.session.scalars(select(WebhookEndpoint)).all() == []
    assert db.session.scalars(select(AdminAudit).where(AdminAudit.action.like("webhook.%"))).all() == []
    types = cli(app, "webhooks", "types").output
    assert "sso.success" in types and "webhook.disabled" in types and "webhook.test" not in types


def test_private_and_loopback_targets_are_refused_without_the_setting(app: Flask, receiver: Receiver) -> None:
    ep = add(app, receiver, "--event", "sso.success")    # allowed: the setting is on
    app.extensions["idp.settings"] = dataclasses.replace(app.extensions["idp.settings"], webhook_allow_private=False)
    for url in (receiver.url, "https://127.0.0.1/hook", "https://10.1.2.3/hook", "https://[::1]/hook",
                "https://169.254.169.254/latest/meta-data"):
        r = cli(app, "webhooks", "add", url, "--event", "sso.success")
        assert r.exit_code == 1, (url, r.output)
        assert "https://" in r.output or "non-public address" in r.output, r.output
    assert "IDP_WEBHOOK_ALLOW_PRIVATE" in cli(app, "webhooks", "add", "https://127.0.0.1/h", "--event",
                                              "sso.success").output
    # an endpoint added while it was allowed is not delivered to once it is not
    sso("alice", "crm")
    run_worker()
    assert receiver.received == []
    [row] = log_of(ep)
    assert not row.ok and "IDP_WEBHOOK_ALLOW_PRIVATE" in (row.error or "")


def test_link_local_targets_are_refused_even_with_the_setting(app: Flask, receiver: Receiver) -> None:
    """IDP_WEBHOOK_ALLOW_PRIVATE opens private and loopback receivers, never the cloud metadata service."""
    assert app.extensions["idp.settings"].webhook_allow_private is True
    for url in ("http://169.254.169.254/latest/meta-data", "https://[fe80::1]/hook"):
        r = cli(app, "webhooks", "add", url, "--event", "sso.success")
        assert r.exit_code == 1 and "link-local" in r.output, (url, r.output)
    assert db.session.scalars(select(WebhookEndpoint)).all() == []


def test_a_secret_bearing_url_is_masked_outside_its_own_endpoint(app: Flask, receiver: Receiver) -> None:
    """Slack / Teams style URLs carry their token in the path or query: audit rows (and so syslog and the
    admin.changed notices other endpoints get) and the webhook.disabled notice (and the admins' email made from
    it) show scheme://host/… and a fingerprint; `webhooks list` shows the full URL. Failed before the fix."""
    watcher = Receiver().start()
    try:
        add(app, watcher, "--event", "admin.changed,webhook.disabled")
        base = receiver.url.rsplit("/", 1)[0]
        url = f"{base}/services/T0ORG/B0HOOK/TOKENpath123?token=TOKENquery456"
        r = cli(app, "webhooks", "add", url, "--event", "sso.success")
        assert r.exit_code == 0, r.output
        receiver.secrets.append(r.stdout.strip().splitlines()[0])
        ep = int(db.session.scalar(select(func.max(WebhookEndpoint.id))) or 0)
        receiver.respond(410)   # disabled at once: a webhook.disabled notice with the URL
        sso("alice", "crm")
        run_worker()
        run_worker()
        assert not endpoint(ep).enabled
        masked = wh.masked_url(url)
        assert masked.startswith(f"{base}/…#") and "TOKEN" not in masked
        types = [e["type"] for e in watcher.unique()]
        assert "admin.changed" in types and "webhook.disabled" in types
        disabled = next(e for e in watcher.unique() if e["type"] == "webhook.disabled")
        assert disabled["data"]["url"] == masked
        assert "TOKEN" not in json.dumps(watcher.events())
        audits = db.session.scalars(select(AdminAudit)).all()
        assert any(a.action == "webhook.add" and (a.after or {}).get("url") == masked for a in audits)
        assert "TOKEN" not in json.dumps([(a.before, a.after) for a in audits])
        db.session.commit()
        assert "TOKEN" not in json.dumps([j.payload for j in db.session.scalars(select(OutboxJob))])
        # the admin's own views keep the full URL
        listed = json.loads(cli(app, "webhooks", "list", "--json").output)
        assert url in [d["url"] for d in listed]
        assert cli(app, "webhooks", "remove", str(ep)).exit_code == 0
        removed = db.session.scalar(select(AdminAudit).where(AdminAudit.action == "webhook.remove"))
        assert removed is not None and removed.before["url"] == masked
    finally:
        watcher.stop()


class _OddServer:
    """A loopback HTTP server answering every POST with one fixed (status, headers, body)."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        self.hits = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.hits += 1
                try:
                    self.send_response(status)
                    for k, v in {**headers, "Content-Length": str(len(body))}.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass   # the IdP stopped reading

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _add_url(app: Flask, url: str) -> int:
    r = cli(app, "webhooks", "add", url, "--event", "sso.success")
    assert r.exit_code == 0, r.output
    return int(db.session.scalar(select(func.max(WebhookEndpoint.id))) or 0)


def test_a_redirect_is_not_followed_and_counts_as_a_failure(app: Flask, receiver: Receiver) -> None:
    """The endpoint answers 302 to another receiver: that receiver is never contacted, the attempt failed."""
    redirector = _OddServer(302, {"Location": receiver.url}, b"")
    try:
        ep = _add_url(app, redirector.url)
        sso("alice", "crm")
        run_worker()
        assert redirector.hits == 1 and receiver.received == []
        [row] = log_of(ep)
        assert not row.ok and row.status_code == 302 and "redirects are not followed" in (row.error or "")
        [job] = jobs()
        assert job.state == "pending" and job.attempts == 1 and endpoint(ep).failure_streak == 1
    finally:
        redirector.stop()


def test_an_answer_over_1_mib_is_a_failure(app: Flask) -> None:
    big = _OddServer(200, {"Content-Type": "text/plain"}, b"x" * (wh.delivery.MAX_ANSWER + 1))
    try:
        ep = _add_url(app, big.url)
        sso("alice", "crm")
        run_worker()
        assert big.hits == 1
        [row] = log_of(ep)
        assert not row.ok and f"answered more than {wh.delivery.MAX_ANSWER} bytes" in (row.error or "")
        [job] = jobs()
        assert job.state == "pending" and job.attempts == 1 and endpoint(ep).failure_streak == 1
    finally:
        big.stop()


def test_a_host_resolving_to_a_private_address_at_delivery_is_refused(app: Flask, receiver: Receiver,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the endpoint's name resolved to a public address when it was added, and to loopback (the
    receiver) at delivery: refused at delivery, nothing connects. Only the resolver is replaced."""
    import socket
    app.extensions["idp.settings"] = dataclasses.replace(app.extensions["idp.settings"], webhook_allow_private=False)
    real = socket.getaddrinfo
    port = int(receiver.url.split(":")[2].split("/")[0])
    answers = {"now": "93.184.216.34"}   # a public address when added
    lookups: list[str] = []

    def resolver(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "hooks.rebind.example":
            lookups.append(answers["now"])
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers["now"], port))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    ep = _add_url(app, f"https://hooks.rebind.example:{port}/hook")
    answers["now"] = "127.0.0.1"          # the name now points inside
    sso("alice", "crm")
    run_worker()
    assert lookups == ["93.184.216.34", "127.0.0.1"]   # resolved again at delivery
    assert receiver.received == []
    [row] = log_of(ep)
    assert not row.ok and row.status_code is None and "non-public address" in (row.error or "")


def test_test_button_list_deliveries_and_remove(app: Flask, receiver: Receiver, two_apps: None) -> None:
    ep = add(app, receiver, "--event", "sso.success,sso.denied", "--app", "crm", "--outcome", "denied",
             "--description", "crm alerts")
    r = cli(app, "webhooks", "test", str(ep))
    assert r.exit_code == 0 and "delivered: HTTP 200" in r.output, r.output
    [got] = receiver.received
    assert got.verified and got.event["type"] == "webhook.test" and got.event["data"]["endpoint_id"] == ep
    receiver.respond(500)
    r = cli(app, "webhooks", "test", str(ep))
    assert r.exit_code == 1 and "HTTP 500" in r.output
    listed = json.loads(cli(app, "webhooks", "list", "--json").output)
    assert listed[0]["events"] == ["sso.success", "sso.denied"] and listed[0]["app"] == "crm"
    assert listed[0]["outcomes"] == ["denied"] and listed[0]["description"] == "crm alerts"
    assert listed[0]["last_delivery"]["status_code"] == 500
    assert "secret" not in json.dumps(listed)
    table = cli(app, "webhooks", "list").output
    assert receiver.url in table and "crm" in table
    deliveries = json.loads(cli(app, "webhooks", "deliveries", str(ep), "--format", "json").output)
    assert [(d["type"], d["ok"], d["status_code"]) for d in deliveries] == [("webhook.test", False, 500),
                                                                             ("webhook.test", True, 200)]
    assert "webhook.test" in cli(app, "webhooks", "deliveries", str(ep)).output
    r = cli(app, "webhooks", "remove", str(ep))
    assert r.exit_code == 0 and db.session.scalars(select(WebhookEndpoint)).all() == []
    assert log_of(ep) == []
    assert cli(app, "webhooks", "list").output.startswith("no webhook endpoints")


def test_jobs_of_a_removed_endpoint_finish_without_sending(app: Flask, receiver: Receiver) -> None:
    ep = add(app, receiver, "--event", "sso.success")
    sso("alice", "crm")
    assert cli(app, "webhooks", "remove", str(ep)).exit_code == 0
    run_worker()
    assert receiver.received == [] and [j.state for j in jobs()] == ["done"]


def test_a_notice_from_an_audit_row_in_its_own_session_is_delivered(app: Flask, receiver: Receiver) -> None:
    """Key operations write their audit row in a session of their own (the key files changed already): the
    delivery job is written in that session, with the row."""
    add(app, receiver, "--event", "key.rotated")
    r = cli(app, "certs", "rotate")
    assert r.exit_code == 0, r.output
    assert len(jobs("pending")) == 1
    run_worker()
    [event] = receiver.events()
    assert event["type"] == "key.rotated" and event["data"]["action"] == "certs.rotate"
    assert receiver.received[0].verified
