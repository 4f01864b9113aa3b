"""Email notifications end to end: a real SMTP server on loopback (aiosmtpd) receives what the worker sends for
each message type (factor added through the web flow, password changed, sign-in from a new device, an emailed
enrolment link, the admins' notices); STARTTLS with a self-signed certificate and SMTP AUTH; the SMTP password
and the enrolment link never stored in clear; retries while the server is down; a 5xx refusal is final;
`idp notify test` and `idp org set --smtp-url --from`."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient

from idp import audit
from idp.auth import enrolment_links
from idp.cli.worker import Worker
from idp.config import Settings
from idp.errors import EventContext
from idp.events import record_event
from idp.extensions import db
from idp.models import AdminAudit, EnrolmentLink, KnownDevice, OrgSetting, OutboxJob, User, utcnow
from idp.notifications import bus
from idp.reasons import Reason
from idp.services import mailer, org
from idp.services import users as users_svc

from ..conftest import make_settings
from ..smtp_sink import SmtpSink, TlsFiles, make_tls_files
from ..webclient import Browser
from .conftest import PASSWORD
from .test_admin_console import login, post
from .test_cli import cli, fails, ok
from .test_policy_flows import submit_code

FROM = "Example IdP <idp@example.org>"
SMTP_PASSWORD = "s3cret smtp pass"   # noqa: S105 - the test server's


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("smtp-tls"))


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    server = SmtpSink().start()
    yield server
    server.stop()


@pytest.fixture
def env_smtp() -> bool:
    """Parametrised True: the SMTP URL comes from IDP_SMTP_URL instead of the org settings."""
    return False


@pytest.fixture
def settings(tmp_path: Path, key_template: Path, tls_files: TlsFiles, sink: SmtpSink, env_smtp: bool) -> Settings:
    extra: dict[str, Any] = {"smtp_url": sink.url(), "smtp_from": FROM} if env_smtp else {}
    return make_settings(tmp_path, key_template, smtp_ca_file=str(tls_files.cert), **extra)


def configure(url: str, from_addr: str = FROM) -> None:
    mailer.set_smtp(url, from_addr)
    db.session.commit()


def run_worker() -> None:
    Worker("w-email").run(once=True)
    db.session.expire_all()


def email_jobs() -> list[OutboxJob]:
    db.session.expire_all()
    return list(db.session.query(OutboxJob).filter_by(kind="email.send").order_by(OutboxJob.id))


def due_now() -> None:
    for job in email_jobs():
        job.run_after = utcnow() - timedelta(seconds=1)
    db.session.commit()


def check_headers(msg: Any, to: str) -> None:
    assert msg["To"] == to and msg["From"] == FROM
    assert msg["Auto-Submitted"] == "auto-generated"
    assert re.fullmatch(r"<[^<>@\s]+@example\.org>", msg["Message-ID"]), msg["Message-ID"]
    assert msg["Date"]
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]


# ---------------------------------------------------------------- to the user

def test_a_factor_enrolled_through_the_web_flow_is_emailed_after_the_worker_runs(
        app: Flask, sink: SmtpSink, browser: Browser, alice: User) -> None:
    configure(sink.url())
    org.add_trusted_range("127.0.0.0/8")
    browser.login(browser.get("/login"), "alice", PASSWORD)
    page = browser.get("/mfa/enroll?next=/account")
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page.get_data(as_text=True)).group(1)  # type: ignore[union-attr]
    submit_code(browser, page, pyotp.TOTP(secret).now(), path="/mfa/enroll")
    assert sink.received == []            # nothing is sent on the request
    assert len(email_jobs()) == 1         # the totp factor; its recovery codes send nothing of their own
    run_worker()
    [got] = sink.received
    check_headers(got.message, "alice@example.com")
    assert got.rcpt_tos == ["alice@example.com"]
    assert got.message["Subject"] == "New second factor on your account: authenticator app"
    assert "authenticator app was added to your account alice" in got.part("plain")
    assert "<strong>authenticator app</strong>" in got.part("html")
    assert secret not in got.part("plain") and secret not in got.part("html")
    assert email_jobs()[0].state == "done"


def test_a_password_change_is_emailed(app: Flask, client: FlaskClient, sink: SmtpSink, alice: User) -> None:
    configure(sink.url())
    login(client, "alice", PASSWORD)
    resp = post(client, "/account/password", {"current_password": PASSWORD, "new_password": "brand new pass 1",
                                              "new_password_confirm": "brand new pass 1"})
    assert resp.status_code == 303
    run_worker()
    [got] = sink.received
    check_headers(got.message, "alice@example.com")
    assert got.message["Subject"] == "Your password was changed"
    assert "password of your account alice was changed" in got.part("plain")
    assert "brand new pass 1" not in got.message.as_string()


def test_an_admin_reset_says_it_was_a_reset(app: Flask, sink: SmtpSink, alice: User) -> None:
    configure(sink.url())
    ok(app, "users", "set", "alice", "--password-stdin", input="another long pass 9\n")
    run_worker()
    [got] = sink.received
    assert "was reset" in got.part("plain")


def test_a_sign_in_from_a_new_device_is_emailed_but_not_the_first_nor_a_known_one(
        app: Flask, sink: SmtpSink, alice: User) -> None:
    configure(sink.url())

    def sign_in(user_agent: str) -> None:
        c = app.test_client()
        c.environ_base["HTTP_USER_AGENT"] = user_agent
        login(c, "alice", PASSWORD)

    sign_in("Firefox/140 on the office PC")
    assert db.session.query(KnownDevice).count() == 1 and email_jobs() == []   # the first device: no email
    sign_in("Firefox/140 on the office PC")
    assert db.session.query(KnownDevice).count() == 1 and email_jobs() == []   # the same device again
    sign_in('Evil <b>"Browser"</b>')
    assert db.session.query(KnownDevice).count() == 2 and len(email_jobs()) == 1
    run_worker()
    [got] = sink.received
    check_headers(got.message, "alice@example.com")
    assert got.message["Subject"] == "New sign-in to your account from 127.0.0.1"
    assert 'Evil <b>"Browser"</b>' in got.part("plain")
    html = got.part("html")
    assert "&lt;b&gt;&#34;Browser&#34;&lt;/b&gt;" in html and "<b>" not in html   # autoescaped
    sign_in('Evil <b>"Browser"</b>')
    assert len(email_jobs()) == 1   # known now


def test_a_rotating_ipv6_privacy_address_is_the_same_device(app: Flask, sink: SmtpSink, alice: User) -> None:
    """An IPv6 client's device is its /64 and user agent: a new privacy address in the same /64 is not a new
    device; another /64 is (the email shows the full address). Failed before the fix (an email per address)."""
    configure(sink.url())

    def sign_in(ip: str) -> None:
        c = app.test_client()
        c.environ_base.update(HTTP_USER_AGENT="Firefox/140 on a laptop", REMOTE_ADDR=ip)
        login(c, "alice", PASSWORD)

    sign_in("2001:db8:1:2:a1b2:c3d4:e5f6:1111")
    sign_in("2001:db8:1:2:9999:8888:7777:2222")      # the next day's privacy address, same network
    assert db.session.query(KnownDevice).count() == 1 and email_jobs() == []
    sign_in("2001:db8:7:7::42")                      # another network
    assert db.session.query(KnownDevice).count() == 2 and len(email_jobs()) == 1
    run_worker()
    [got] = sink.received
    assert got.message["Subject"] == "New sign-in to your account from 2001:db8:7:7::42"


def test_new_devices_are_remembered_even_without_smtp(app: Flask, alice: User) -> None:
    for ua in ("UA one", "UA two"):
        c = app.test_client()
        c.environ_base["HTTP_USER_AGENT"] = ua
        login(c, "alice", PASSWORD)
    assert db.session.query(KnownDevice).count() == 2 and email_jobs() == []


def test_an_enrolment_link_is_emailed_sealed_in_the_job(app: Flask, sink: SmtpSink, alice: User) -> None:
    configure(sink.url())
    result = ok(app, "users", "enrolment-link", "alice", "--email", "--valid-hours", "24")
    assert "emailed to alice@example.com" in result.stdout and "/mfa/enroll/link/" not in result.output
    [job] = email_jobs()
    assert job.payload["sealed"].startswith("v1:") and "link" not in json.dumps(job.payload["context"])
    run_worker()
    [got] = sink.received
    check_headers(got.message, "alice@example.com")
    text = got.part("plain")
    link = re.search(r"http://localhost/mfa/enroll/link/(\S+)", text)
    assert link is not None and f'href="{link.group(0)}"' in got.part("html")
    assert "for 24 hours" in text
    token = link.group(1)
    assert enrolment_links.check(token).state is enrolment_links.LinkState.VALID
    stored = json.dumps(email_jobs()[0].payload)
    assert token not in stored and "/mfa/enroll/link/" not in stored   # the job row never held it
    audit_rows = json.dumps([a.after for a in db.session.query(AdminAudit)])
    assert token not in audit_rows


def test_emailing_a_link_without_smtp_or_address_is_refused_and_issues_nothing(app: Flask, alice: User) -> None:
    fails(app, "users", "enrolment-link", "alice", "--email", fragment="email is not configured")
    assert db.session.query(EnrolmentLink).count() == 0
    ok(app, "users", "enrolment-link", "alice")   # the existing interface is unchanged: prints the URL
    assert db.session.query(EnrolmentLink).count() == 1


# ---------------------------------------------------------------- to the admins

def provisioning_failed(app_slug: str) -> None:
    record_event(EventContext(event_type="provision", app_slug=app_slug, username="alice",
                              detail={"message": "HTTP 503 from the SCIM service"}),
                 Reason.PROVISIONING_FAILED, client_ip=None, user_agent=None)
    db.session.commit()


def test_admin_notices_go_to_the_admin_emails_and_provisioning_failures_are_throttled(
        app: Flask, sink: SmtpSink) -> None:
    configure(sink.url())
    ok(app, "org", "set", "--admin-email", "ops@example.org", "--admin-email", "sec@example.org")
    for slug in ("crm", "crm", "wiki", "crm"):
        provisioning_failed(slug)
    assert len(email_jobs()) == 4   # one per app per hour, to each of the two recipients
    bus.publish_notice(bus.Notice(type="key.expiring", time=utcnow(), subject="k-2026", app_slug=None,
                                  outcome=None, reason=None, data={"kid": "k-2026", "days": 7,
                                                                   "not_after": "2027-01-01T00:00:00Z"},
                                  source="system"), db.session)
    bus.publish_notice(bus.Notice(type="webhook.disabled", time=utcnow(), subject="3", app_slug=None,
                                  outcome=None, reason=None,
                                  data={"url": "https://hooks.example.net/<idp>", "failures": 20},
                                  source="system"), db.session)
    db.session.commit()
    run_worker()
    got = sorted((r.rcpt_tos[0], r.message["Subject"]) for r in sink.received)
    assert got == sorted([(to, subject) for to in ("ops@example.org", "sec@example.org") for subject in (
        "Provisioning to crm is failing", "Provisioning to wiki is failing",
        "Signing certificate k-2026 expires in 7 days",
        "Webhook endpoint disabled: https://hooks.example.net/<idp>")])
    crm = next(r for r in sink.received if r.message["Subject"] == "Provisioning to crm is failing")
    assert "HTTP 503 from the SCIM service" in crm.part("plain") and "within the hour" in crm.part("plain")
    hook = next(r for r in sink.received if r.message["Subject"].startswith("Webhook"))
    assert "https://hooks.example.net/&lt;idp&gt;" in hook.part("html")
    # an hour later the next failure of crm is emailed again
    from idp.models import SentNotice
    db.session.query(SentNotice).update({"sent_at": utcnow() - timedelta(minutes=61)})
    db.session.commit()
    provisioning_failed("crm")
    assert len(email_jobs()) == 8 + 2


def test_without_admin_emails_the_enabled_admins_get_them(app: Flask, sink: SmtpSink) -> None:
    configure(sink.url())
    users_svc.add_user("root", email="root@example.com", password_hash=None, is_admin=True)
    off = users_svc.add_user("old", email="old@example.com", password_hash=None, is_admin=True)
    off.disabled = True
    users_svc.add_user("carol", email="carol@example.com", password_hash=None)
    provisioning_failed("crm")
    run_worker()
    assert [r.rcpt_tos for r in sink.received] == [["root@example.com"]]


def test_nothing_is_queued_while_smtp_is_not_configured(app: Flask, client: FlaskClient, alice: User) -> None:
    login(client, "alice", PASSWORD)
    post(client, "/account/password", {"current_password": PASSWORD, "new_password": "brand new pass 1",
                                       "new_password_confirm": "brand new pass 1"})
    provisioning_failed("crm")
    assert email_jobs() == []
    fails(app, "notify", "test", "--to", "ops@example.org", fragment="email is not configured")


# ---------------------------------------------------------------- delivery: retries, refusals

def test_a_server_down_is_retried_and_the_email_arrives_when_it_is_back(app: Flask, sink: SmtpSink,
                                                                          alice: User) -> None:
    configure(sink.url())
    sink.stop()
    ok(app, "users", "enrolment-link", "alice", "--email")
    run_worker()
    [job] = email_jobs()
    assert job.state == "pending" and job.attempts == 1 and "connection refused" in (job.last_error or "")
    sink.start()   # the same port
    due_now()
    run_worker()
    [job] = email_jobs()
    assert job.state == "done" and len(sink.received) == 1


def test_a_refused_recipient_is_a_permanent_failure(app: Flask, sink: SmtpSink, alice: User) -> None:
    configure(sink.url())
    sink.refuse.add("alice@example.com")
    ok(app, "users", "enrolment-link", "alice", "--email")
    run_worker()
    [job] = email_jobs()
    assert job.state == "dead" and job.attempts == 1
    assert "refused the recipient" in (job.last_error or "") and "550" in (job.last_error or "")


# ---------------------------------------------------------------- settings, TLS, AUTH, idp notify test

def test_org_set_smtp_stores_the_url_sealed_and_shows_it_masked(app: Flask, sink: SmtpSink,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = sink.url(userinfo="mailer:s3cret%20smtp%20pass")
    result = ok(app, "org", "set", "--smtp-url", url, "--from", FROM)
    assert f"smtp://mailer:***@127.0.0.1:{sink.port}" in result.stdout and SMTP_PASSWORD not in result.output
    shown = ok(app, "org", "show", "--format", "json").stdout
    values = json.loads(shown)
    assert values["smtp_url"] == f"smtp://mailer:***@127.0.0.1:{sink.port}" and values["smtp_from"] == FROM
    assert values["smtp_source"] == "org"
    stored = json.dumps([(s.key, s.value) for s in db.session.query(OrgSetting)])
    assert "s3cret" not in stored and "mailer" not in stored   # sealed whole
    trail = json.dumps([(a.before, a.after) for a in db.session.query(AdminAudit)])
    assert "mailer:***@" in trail and "s3cret" not in trail
    # `-` reads the URL from standard input; the masked URL shown back keeps the stored password
    ok(app, "org", "set", "--smtp-url", "-", input=sink.url(userinfo="other:pw2") + "\n")
    assert mailer.stored_smtp_url() == sink.url(userinfo="other:pw2")
    mailer.set_smtp(f"smtp://other:***@127.0.0.1:{sink.port}")
    assert mailer.stored_smtp_url() == sink.url(userinfo="other:pw2")
    fails(app, "org", "set", "--smtp-url", "http://mail.example.org", fragment="must start with smtp://")
    fails(app, "org", "set", "--from", "not an address", fragment="not an email address")
    fails(app, "org", "set", "--smtp-url", "smtp://h?starttls=maybe", fragment="?starttls=require")
    ok(app, "org", "set", "--clear-smtp")
    assert mailer.current_config() is None
    assert "s3cret" not in caplog.text


def test_starttls_and_auth_with_idp_notify_test(app: Flask, tls_files: TlsFiles,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server = SmtpSink(tls=tls_files, login=("mailer", SMTP_PASSWORD), require_starttls=True).start()
    try:
        ok(app, "org", "set", "--smtp-url",
           server.url(userinfo="mailer:s3cret%20smtp%20pass", query="?starttls=require"), "--from", FROM)
        result = ok(app, "notify", "test", "--to", "ops@example.org")
        assert "test email sent to ops@example.org" in result.stdout
        [got] = server.received
        assert got.tls and got.authenticated and got.rcpt_tos == ["ops@example.org"]
        check_headers(got.message, "ops@example.org")
        assert "mailer:***@127.0.0.1" in got.part("plain")
        ok(app, "org", "set", "--smtp-url", server.url(userinfo="mailer:wrong", query="?starttls=require"))
        fails(app, "notify", "test", "--to", "ops@example.org",
              fragment="refused the user name or password (535")
    finally:
        server.stop()
    assert SMTP_PASSWORD not in caplog.text and "s3cret" not in caplog.text


def test_tls_and_connection_failures_are_clear(app: Flask, tmp_path: Path) -> None:
    stranger = SmtpSink(tls=make_tls_files(tmp_path / "other-ca"), login=("mailer", "pw")).start()
    try:
        configure(stranger.url(userinfo="mailer:pw"))
        fails(app, "notify", "test", "--to", "ops@example.org", fragment="certificate is not trusted")
    finally:
        stranger.stop()
    plain = SmtpSink().start()
    try:
        configure(plain.url(userinfo="mailer:pw"))
        fails(app, "notify", "test", "--to", "ops@example.org",
              fragment="does not offer STARTTLS: the password is not sent in clear")
        configure(plain.url(query="?starttls=require"))
        fails(app, "notify", "test", "--to", "ops@example.org", fragment="does not offer STARTTLS (the URL requires")
    finally:
        plain.stop()
    configure(plain.url())
    fails(app, "notify", "test", "--to", "ops@example.org", fragment="connection refused")
    fails(app, "notify", "test", "--to", "not-an-address", fragment="not an email address")


@pytest.mark.parametrize("env_smtp", [True])
def test_the_environment_configures_email_when_the_org_does_not(app: Flask, sink: SmtpSink, env_smtp: bool) -> None:
    values = json.loads(ok(app, "org", "show", "--format", "json").stdout)
    assert values["smtp_source"] == "environment" and values["smtp_from"] == FROM
    ok(app, "notify", "test", "--to", "ops@example.org")
    [got] = sink.received
    assert "configured in the environment" in got.part("plain")


def test_the_audit_of_admin_emails(app: Flask) -> None:
    with audit.acting_as("cli:test"):
        ok(app, "org", "set", "--admin-email", "Ops@Example.org")
    assert mailer.admin_emails_setting() == ["Ops@example.org"]
    fails(app, "org", "set", "--admin-email", "nope", fragment="not an email address")
    ok(app, "org", "set", "--clear-admin-emails")
    assert mailer.admin_emails_setting() == []
    assert cli(app, "org", "set", "--admin-email", "a@example.org", "--clear-admin-emails").exit_code == 1


# ---------------------------------------------------------------- the console's email section

@pytest.fixture
def admin_client(app: Flask) -> FlaskClient:
    from ..webclient import enrol_totp, login_admin
    from .test_admin_console import ADMIN_PASSWORD
    pw = app.extensions["idp.passwords"]
    root = users_svc.add_user("root", email="root@example.com", password_hash=pw.hash(ADMIN_PASSWORD), is_admin=True)
    enrol_totp(root)
    c = app.test_client()
    login_admin(c, "root", ADMIN_PASSWORD)
    return c


PAGE = "/admin/notifications/email"


def test_console_email_settings_keep_the_password_write_only(app: Flask, admin_client: FlaskClient,
                                                             sink: SmtpSink) -> None:
    body = admin_client.get(PAGE).get_data(as_text=True)
    assert 'id="email-state" class="badge bad">off' in body
    assert 'href="/admin/notifications/email"' in admin_client.get("/admin/org").get_data(as_text=True)
    resp = post(admin_client, PAGE, {"smtp_url": "ftp://mail.example.org", "smtp_password": "",
                                     "smtp_from": FROM}, PAGE)
    assert resp.status_code == 422 and 'id="smtp_url-error"' in resp.get_data(as_text=True)
    assert mailer.current_config() is None   # nothing stored
    resp = post(admin_client, PAGE, {"smtp_url": sink.url(userinfo="mailer"), "smtp_password": SMTP_PASSWORD,
                                     "smtp_from": FROM}, PAGE)
    assert resp.status_code == 303
    assert mailer.stored_smtp_url() == sink.url(userinfo="mailer:s3cret%20smtp%20pass")
    body = admin_client.get(PAGE).get_data(as_text=True)
    assert f'value="smtp://mailer:***@127.0.0.1:{sink.port}"' in body and "s3cret" not in body
    assert 'id="email-state" class="badge ok">on' in body
    # the form sent back as shown (password field empty, URL masked) keeps the stored password
    resp = post(admin_client, PAGE, {"smtp_url": f"smtp://mailer:***@127.0.0.1:{sink.port}", "smtp_password": "",
                                     "smtp_from": "Other <other@example.org>"}, PAGE)
    assert resp.status_code == 303
    assert mailer.stored_smtp_url() == sink.url(userinfo="mailer:s3cret%20smtp%20pass")
    assert mailer.current_config().from_addr == "Other <other@example.org>"  # type: ignore[union-attr]
    trail = json.dumps([(a.before, a.after) for a in db.session.query(AdminAudit)])
    assert "s3cret" not in trail and "web:root" in {a.actor for a in db.session.query(AdminAudit)}
    resp = post(admin_client, PAGE + "/clear", {}, PAGE)
    assert resp.status_code == 303 and mailer.current_config() is None


def test_console_test_button_and_admin_recipients(app: Flask, admin_client: FlaskClient, sink: SmtpSink) -> None:
    configure(sink.url())
    resp = post(admin_client, PAGE + "/test", {"to": "ops@example.org"}, PAGE)
    assert resp.status_code == 303
    [got] = sink.received
    assert got.rcpt_tos == ["ops@example.org"] and got.message["Subject"] == "Test email from the identity provider"
    sink.stop()
    resp = post(admin_client, PAGE + "/test", {"to": "ops@example.org"}, PAGE)
    body = resp.get_data(as_text=True)
    assert resp.status_code == 422 and 'id="to-error"' in body and "connection refused" in body
    assert 'id="admin-recipients">root@example.com<' in admin_client.get(PAGE).get_data(as_text=True)
    resp = post(admin_client, PAGE + "/admins", {"admin_emails": "ops@example.org\nsec@example.org"}, PAGE)
    assert resp.status_code == 303 and mailer.admin_emails_setting() == ["ops@example.org", "sec@example.org"]
    resp = post(admin_client, PAGE + "/admins", {"admin_emails": "ops@example.org\nnope"}, PAGE)
    assert resp.status_code == 422 and 'id="admin_emails-error"' in resp.get_data(as_text=True)
    assert mailer.admin_emails_setting() == ["ops@example.org", "sec@example.org"]


def test_console_emails_an_enrolment_link(app: Flask, admin_client: FlaskClient, sink: SmtpSink,
                                          alice: User) -> None:
    page = "/admin/users/alice"
    resp = post(admin_client, page + "/enrolment-link", {"valid_hours": "12", "email": "1"}, page)
    assert resp.status_code == 409 and "email is not configured" in resp.get_data(as_text=True)
    assert db.session.query(EnrolmentLink).count() == 0
    configure(sink.url())
    assert 'id="enrolment-link-email"' in admin_client.get(page).get_data(as_text=True)
    resp = post(admin_client, page + "/enrolment-link", {"valid_hours": "12", "email": "1"}, page)
    assert resp.status_code == 303
    assert "being emailed to alice@example.com" in admin_client.get(page).get_data(as_text=True)
    run_worker()
    [got] = sink.received
    assert "/mfa/enroll/link/" in got.part("plain") and "for 12 hours" in got.part("plain")


def test_a_worker_process_sends_over_smtps_with_auth(app: Flask, settings: Settings, tls_files: TlsFiles,
                                                     alice: User, tmp_path: Path) -> None:
    """`idp worker` as its own process (the data key read from the instance folder opens the sealed link) sends
    through smtps:// (TLS from the first byte) with SMTP AUTH."""
    import subprocess

    from .test_worker_kill import BIN, worker_env
    server = SmtpSink(tls=tls_files, implicit_tls=True, login=("mailer", SMTP_PASSWORD)).start()
    try:
        configure(server.url(scheme="smtps", userinfo="mailer:s3cret%20smtp%20pass"))
        ok(app, "users", "enrolment-link", "alice", "--email")
        env = {**worker_env(settings), "IDP_SMTP_CA_FILE": str(tls_files.cert)}
        done = subprocess.run([str(BIN / "idp"), "worker", "--once", "--id", "mailer-1"], env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "s3cret" not in done.stdout + done.stderr
        [got] = server.received
        assert got.authenticated and got.rcpt_tos == ["alice@example.com"]
        assert "/mfa/enroll/link/" in got.part("plain")
        [job] = email_jobs()
        assert job.state == "done" and job.attempts == 0
    finally:
        server.stop()
