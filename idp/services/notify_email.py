"""Email notifications: the bus subscriber "email" and the outbox jobs (kind `email.send`) that send its messages.

To the user concerned: a second factor or passkey added (`mfa.enrolled`), their password changed
(`password.changed`), a sign-in from a new device (`signin.new_device`), an enrolment link an admin chose to
email (`send_enrolment_link`). To the admins (services.mailer.admin_recipients): a certificate expiring
(`key.expiring`), provisioning failures (`provisioning.failed`, at most one email per app per hour), a webhook
endpoint disabled (`webhook.disabled`), an app's metadata refresh refused (`metadata.refresh_failed`, once per
run of the same error: services.metadata_refresh).

The subscriber only wants those types, and only while SMTP is configured (mailer.is_configured: the environment
or the org settings' 1-second cache, no query per event). `deliver` writes one outbox job per recipient in the
change's own unit of work; the worker renders the templates (templates/email/NAME.txt and .html) and sends.
A job's payload holds no secret in clear: the enrolment link is sealed with the data key (auth.datakeys).
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..extensions import component, db
from ..models import OutboxJob, SentNotice, User, utcnow
from ..notifications import bus
from . import ServiceError, mailer, outbox

log = logging.getLogger("idp.mail")

KIND_SEND = "email.send"
PAYLOAD_PURPOSE = "outbox.email"
USER_TYPES = {"mfa.enrolled": "mfa_enrolled", "password.changed": "password_changed",
              "signin.new_device": "new_device"}
ADMIN_TYPES = {"key.expiring": "key_expiring", "provisioning.failed": "provisioning_failed",
               "webhook.disabled": "webhook_disabled", "metadata.refresh_failed": "metadata_refresh_failed"}
TEMPLATES: dict[str, str] = {   # template -> subject (a Jinja expression over the message's context)
    "mfa_enrolled": "New second factor on your account: {{ kind_label }}",
    "password_changed": "Your password was changed",
    "new_device": "New sign-in to your account from {{ client_ip or 'an unknown address' }}",
    "enrolment_link": "Set up your second factor",
    "key_expiring": "Signing certificate {{ subject or '' }} expires {{ when }}",
    "provisioning_failed": "Provisioning to {{ app_slug }} is failing",
    "webhook_disabled": "Webhook endpoint disabled: {{ url or subject or '' }}",
    "metadata_refresh_failed": "Metadata refresh of {{ app_slug }} refused",
    "test": "Test email from the identity provider",
}
FACTOR_KINDS = {"totp": "authenticator app", "passkey": "passkey"}
PROVISIONING_THROTTLE = timedelta(hours=1)


class EmailSubscriber:
    """The bus channel that turns notices into emails (registered on import)."""

    name = "email"

    def wants(self, type_: str, app_slug: str | None) -> bool:
        return (type_ in USER_TYPES or type_ in ADMIN_TYPES) and mailer.is_configured()

    def deliver(self, notice: bus.Notice, session: bus.AnySession) -> None:
        if notice.type in USER_TYPES:
            _deliver_to_user(notice, session)
        elif notice.type in ADMIN_TYPES:
            _deliver_to_admins(notice, session)


SUBSCRIBER = EmailSubscriber()
bus.subscribe(SUBSCRIBER)


# ------------------------------------------------------------------ notices -> jobs

def _deliver_to_user(notice: bus.Notice, session: bus.AnySession) -> None:
    template = USER_TYPES[notice.type]
    data = notice.data
    context: dict[str, Any] = {"username": notice.subject, "at": _iso(notice)}
    if notice.type == "mfa.enrolled":
        kind = str((data.get("detail") or {}).get("kind") or "")
        if kind not in FACTOR_KINDS:   # recovery codes come with a first factor: that factor's email says it
            return
        context.update(kind=kind, kind_label=FACTOR_KINDS[kind], client_ip=data.get("client_ip"),
                       user_agent=data.get("user_agent"))
    elif notice.type == "password.changed":
        # user.password_change: the user changed it; user.password_reset: an admin, the API or SCIM set it
        context.update(reset=data.get("action") == "user.password_reset")
    elif notice.type == "signin.new_device":
        context.update(client_ip=data.get("client_ip"), user_agent=data.get("user_agent"))
    user = session.scalar(select(User).where(User.username == notice.subject)) if notice.subject else None
    if user is None or not user.email or user.disabled:
        return
    context["first_name"] = user.first_name or user.username
    _enqueue(session, template, user.email, context, token=f"{notice.id}.{_short(user.email)}")


def _deliver_to_admins(notice: bus.Notice, session: bus.AnySession) -> None:
    template = ADMIN_TYPES[notice.type]
    if notice.type == "provisioning.failed" and not _first_within(
            session, f"email:provisioning.failed:{notice.app_slug or '-'}", PROVISIONING_THROTTLE):
        return
    data = notice.data
    details = {k: v for k, v in data.items() if isinstance(v, str | int | float | bool) and v not in ("", None)
               and k not in ("id",)}
    detail = data.get("detail")
    context: dict[str, Any] = {"subject": notice.subject, "app_slug": notice.app_slug, "at": _iso(notice),
                               "reason": notice.reason, "details": details,
                               "message": (detail or {}).get("message") if isinstance(detail, dict) else None,
                               "url": data.get("url"), "when": _when(data)}
    if notice.type == "metadata.refresh_failed":   # an audit row: what was refused is in its `after`
        raw = data.get("after")
        after: dict[str, Any] = raw if isinstance(raw, dict) else {}
        context.update(message=after.get("error"), reason=after.get("reason"), url=after.get("url"))
    for address in mailer.admin_recipients(session):
        _enqueue(session, template, address, context, token=f"{notice.id}.{_short(address)}")


def _when(data: dict[str, Any]) -> str:
    days = data.get("days") if data.get("days") is not None else data.get("days_left")
    if isinstance(days, int):
        return "tomorrow" if days <= 1 else f"in {days} days"
    return "soon"


def _first_within(session: bus.AnySession, key: str, window: timedelta) -> bool:
    """Whether this is the first notice of `key` within `window` (then it counts as sent now): an insert of the
    key, or a conditional update of its time, so parallel workers send at most one."""
    now = utcnow()
    dialect = session.get_bind().dialect.name
    insert = (pg_insert if dialect == "postgresql" else sqlite_insert)(SentNotice)
    # RETURNING rather than rowcount: psycopg reports -1 for an INSERT ... ON CONFLICT DO NOTHING
    inserted = session.execute(insert.values(key=key, sent_at=now).on_conflict_do_nothing()
                               .returning(SentNotice.key)).first()
    if inserted is not None:
        return True
    renewed = session.execute(update(SentNotice).where(SentNotice.key == key, SentNotice.sent_at <= now - window)
                              .values(sent_at=now).returning(SentNotice.key)
                              .execution_options(synchronize_session=False)).first()
    return renewed is not None


def _iso(notice: bus.Notice) -> str:
    return notice.time.strftime("%Y-%m-%d %H:%M UTC")


def _short(address: str) -> str:
    return hashlib.sha256(address.lower().encode()).hexdigest()[:12]


def _enqueue(session: bus.AnySession, template: str, to: str, context: dict[str, Any], *, token: str,
             secret: dict[str, Any] | None = None) -> OutboxJob:
    """One `email.send` job in `session` (the change's unit of work). `secret` is sealed, never stored in clear."""
    payload: dict[str, Any] = {"template": template, "to": to, "token": token,
                               "context": json.loads(json.dumps(context, default=str))}
    if secret:
        payload["sealed"] = mailer._data_keys().seal(json.dumps(secret), PAYLOAD_PURPOSE)
    now = utcnow()
    job = OutboxJob(kind=KIND_SEND, key=f"email:{token}"[:outbox.MAX_KEY], payload=payload, state="pending",
                    attempts=0, run_after=now, created_at=now)
    session.add(job)
    return job


def send_enrolment_link(user: User, url: str, valid_hours: int) -> str:
    """Email an enrolment link to `user` (through the outbox, the link sealed in the job); returns the address.
    A ServiceError when email is not configured or the user has no address."""
    if not mailer.is_configured():
        raise ServiceError("email is not configured: set `idp org set --smtp-url` (or IDP_SMTP_URL) first, or "
                           "hand the link over yourself", field="email")
    if not user.email:
        raise ServiceError(f"{user.username} has no email address", field="email")
    token = f"enrol.{hashlib.sha256(url.encode()).hexdigest()[:24]}"
    _enqueue(db.session, "enrolment_link", user.email,
             {"username": user.username, "first_name": user.first_name or user.username,
              "valid_hours": valid_hours}, token=token, secret={"link": url})
    return user.email


# ------------------------------------------------------------------ sending

def _base_context() -> dict[str, Any]:
    s = component("idp.settings")
    return {"base_url": s.base_url, "idp_host": urlsplit(s.base_url).hostname or s.base_url,
            "account_url": s.base_url + "/account", "console_url": s.base_url + "/admin/"}


def build(config: mailer.SmtpConfig, template: str, to: str, context: dict[str, Any], token: str) -> Any:
    """The EmailMessage of a template for `to`."""
    values = {**_base_context(), **context}
    subject = mailer._TEXT.from_string(TEMPLATES[template]).render(values)
    text, html = mailer.render(template, values)
    return mailer.compose(config, to, subject, text, html, message_id=mailer.message_id(token, config))


@outbox.handler(KIND_SEND)
def send_job(payload: dict[str, Any]) -> None:
    """Run one `email.send` job: render, open the sealed part, send; a 5xx refusal is permanent."""
    config = mailer.current_config()
    if config is None:
        raise outbox.PermanentFailure("email is not configured any more (no SMTP URL)")
    template = str(payload.get("template"))
    if template not in TEMPLATES:
        raise outbox.PermanentFailure(f"unknown email template {template!r}")
    context = dict(payload.get("context") or {})
    if payload.get("sealed"):
        context.update(json.loads(mailer._data_keys().open(str(payload["sealed"]), PAYLOAD_PURPOSE)))
    to = str(payload.get("to"))
    msg = build(config, template, to, context, str(payload.get("token")))
    try:
        mailer.send(config, msg)
    except mailer.MailError as exc:
        if exc.permanent:
            raise outbox.PermanentFailure(str(exc)) from None
        raise
    log.info("email %s sent to %s via %s", template, to, config.masked_url)


def send_test(to: str) -> mailer.SmtpConfig:
    """Send the test message to `to` now (no outbox: the admin waits for the answer); MailError on failure,
    ServiceError when nothing is configured or the address is bad. Logged either way."""
    address = mailer.validate_address(to, "to")
    config = mailer.current_config()
    if config is None:
        raise ServiceError("email is not configured: set `idp org set --smtp-url URL --from ADDRESS` or "
                           "IDP_SMTP_URL", field="smtp_url")
    token = f"test.{utcnow().strftime('%Y%m%d%H%M%S%f')}"
    msg = build(config, "test", address, {"source": config.source, "smtp_url": config.masked_url}, token)
    try:
        mailer.send(config, msg)
    except mailer.MailError as exc:
        log.warning("test email to %s via %s failed: %s", address, config.masked_url, exc)
        raise
    log.info("test email sent to %s via %s", address, config.masked_url)
    return config
