"""Email: the SMTP configuration (org settings over IDP_SMTP_URL / IDP_SMTP_FROM), the admin recipients, building
a message (plain text + HTML from templates/email/) and sending it with smtplib.

Sending happens in the worker (services.notify_email's outbox jobs) and in `idp notify test` / the console's
test button, never on a sign-in request. The SMTP URL may hold a password: it is stored sealed with the data key
(auth.datakeys), shown and audited masked (`smtp://user:***@host`), never logged.

URL forms: smtp://[user:password@]host[:port] (port 25; STARTTLS when the server offers it,
`?starttls=require` refuses to go on without it), smtps://[user:password@]host[:port] (port 465; TLS from the
first byte). A password is only ever sent over TLS. The server's certificate is checked against the system's
CAs or IDP_SMTP_CA_FILE, and its name against the host of the URL.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, formatdate, parseaddr
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from email_validator import EmailNotValidError, validate_email
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy import select

from ..auth.datakeys import DataKeyError, DataKeys
from ..extensions import component, db
from ..models import User
from . import ServiceError, org

SMTP_URL = "smtp_url"
SMTP_FROM = "smtp_from"
ADMIN_EMAILS = "admin_emails"
URL_PURPOSE = "org.smtp_url"
MASK = "***"
MAX_ADMIN_EMAILS = 50
DEFAULT_PORTS = {"smtp": 25, "smtps": 465}
TEMPLATE_DIR = Path(__file__).resolve().parents[1] / "web" / "templates" / "email"


class MailError(Exception):
    """Sending failed; the message is for the operator (never holds the password). `permanent`: the server
    refused the message or its recipient for good (5xx), retrying cannot help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class SmtpUrl:
    scheme: str
    host: str
    port: int
    username: str | None
    password: str | None
    require_starttls: bool

    @property
    def implicit_tls(self) -> bool:
        return self.scheme == "smtps"

    def text(self, *, masked: bool) -> str:
        auth = ""
        if self.username is not None:
            auth = quote(self.username, safe="")
            if self.password is not None:
                auth += ":" + (MASK if masked else quote(self.password, safe=""))
            auth += "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = "?starttls=require" if self.require_starttls else ""
        return f"{self.scheme}://{auth}{host}:{self.port}{query}"


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    url: SmtpUrl
    from_addr: str
    timeout_s: float
    ca_file: str | None
    source: str   # "org" (idp org set --smtp-url) or "environment" (IDP_SMTP_URL)

    @property
    def masked_url(self) -> str:
        return self.url.text(masked=True)


def parse_smtp_url(value: str) -> SmtpUrl:
    """An SMTP URL checked (a ServiceError with field "smtp_url" says what is wrong, without the password)."""
    text = value.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ServiceError("the SMTP URL is malformed (expected smtp://[user:password@]host[:port] or "
                           "smtps://...)", field="smtp_url") from None
    if parts.scheme not in DEFAULT_PORTS:
        raise ServiceError("the SMTP URL must start with smtp:// (STARTTLS) or smtps:// (TLS)", field="smtp_url")
    if not parts.hostname:
        raise ServiceError("the SMTP URL has no host", field="smtp_url")
    if parts.path not in ("", "/") or parts.fragment:
        raise ServiceError("the SMTP URL takes no path: smtp://[user:password@]host[:port][?starttls=require]",
                           field="smtp_url")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if set(query) - {"starttls"} or query.get("starttls", "auto") not in ("auto", "require"):
        raise ServiceError("the only SMTP URL option is ?starttls=require", field="smtp_url")
    require = query.get("starttls") == "require"
    if require and parts.scheme == "smtps":
        raise ServiceError("?starttls=require is for smtp://; smtps:// is TLS from the start", field="smtp_url")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is not None and not username:
        raise ServiceError("the SMTP URL has a password but no user name", field="smtp_url")
    return SmtpUrl(parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme], username, password, require)


def mask_url(value: str | None) -> str | None:
    """The URL as it may be shown (the password replaced by ***); a malformed one as "(invalid)"."""
    if not value:
        return None
    try:
        return parse_smtp_url(value).text(masked=True)
    except ServiceError:
        return "(invalid)"


def validate_address(value: str, field: str = "to") -> str:
    """One email address (ASCII or internationalised), normalised; a ServiceError naming `field` otherwise."""
    text = (value or "").strip()
    if not text or len(text) > 254 or any(ord(c) < 32 for c in text):
        raise ServiceError(f"{text[:60]!r} is not an email address", field=field)
    try:
        return str(validate_email(text, check_deliverability=False).normalized)
    except EmailNotValidError as exc:
        raise ServiceError(f"{text[:60]!r} is not an email address: {exc}", field=field) from None


def validate_from(value: str) -> str:
    """A From value: `addr@example.org` or `Display Name <addr@example.org>`."""
    text = (value or "").strip()
    if any(ord(c) < 32 for c in text):
        raise ServiceError("the From address must be one line", field="smtp_from")
    name, addr = parseaddr(text)
    if not addr:
        raise ServiceError(f"{text[:60]!r} is not an email address", field="smtp_from")
    address = validate_address(addr, "smtp_from")
    return formataddr((name, address)) if name else address


# ------------------------------------------------------------------ the configuration

def _data_keys() -> DataKeys:
    return cast(DataKeys, component("idp.datakeys"))


def _settings() -> Any:
    return component("idp.settings")


def _shown_url(stored: Any) -> Any:
    """What the audit trail and `org show` hold for a stored (sealed) URL: the masked URL."""
    if not isinstance(stored, str):
        return stored
    try:
        return mask_url(_data_keys().open(stored, URL_PURPOSE))
    except Exception:   # noqa: BLE001 - a value that no longer opens is shown as such, never raises
        return "(sealed; the data key does not open it)"


def stored_smtp_url() -> str | None:
    """The org's SMTP URL (opened), or None when the org has none (IDP_SMTP_URL may still apply)."""
    stored = org._get(SMTP_URL, None)
    return _data_keys().open(stored, URL_PURPOSE) if stored else None


def is_configured() -> bool:
    """Whether email can be sent: cheap (the environment, else the org settings' 1-second read cache)."""
    return bool(_settings().smtp_url) or bool(org._get(SMTP_URL, None))


def current_config() -> SmtpConfig | None:
    """The SMTP configuration in force (the org's URL and From first, then IDP_SMTP_URL / IDP_SMTP_FROM); None
    when no URL is set anywhere. Without a From address, `idp@<host of IDP_BASE_URL>`."""
    s = _settings()
    stored = stored_smtp_url()
    raw, source = (stored, "org") if stored else (s.smtp_url, "environment")
    if not raw:
        return None
    url = parse_smtp_url(raw)
    from_addr = org._get(SMTP_FROM, None) or s.smtp_from or f"idp@{urlsplit(s.base_url).hostname or 'localhost'}"
    return SmtpConfig(url=url, from_addr=str(from_addr), timeout_s=float(s.smtp_timeout_s), ca_file=s.smtp_ca_file,
                      source=source)


def set_smtp(url: str | None = None, from_addr: str | None = None, *, password: str | None = None) -> SmtpConfig:
    """Store the org's SMTP URL and/or From address (audited, the URL masked). `password` (a write-only form
    field) replaces the URL's password; a URL whose password is `***` (the masked URL shown back) keeps the
    stored password when the user and host are the same."""
    if url is not None:
        parsed = parse_smtp_url(url)
        if password:
            if not parsed.username:
                raise ServiceError("a password needs a user name in the SMTP URL (smtp://user@host)", field="smtp_url")
            parsed = _with_password(parsed, password)
        elif parsed.password == MASK:
            old = stored_smtp_url()
            old_parsed = parse_smtp_url(old) if old else None
            if old_parsed is None or (old_parsed.username, old_parsed.host) != (parsed.username, parsed.host):
                raise ServiceError("give the SMTP password (*** stands for the stored one, which belongs to another "
                                   "user or host)", field="smtp_password")
            parsed = _with_password(parsed, old_parsed.password)
        sealed = _data_keys().seal(parsed.text(masked=False), URL_PURPOSE)
        org._set(SMTP_URL, sealed, shown=_shown_url)
    if from_addr is not None:
        org._set(SMTP_FROM, validate_from(from_addr))
    config = current_config()
    if config is None:
        raise ServiceError("set the SMTP URL first (idp org set --smtp-url, or IDP_SMTP_URL)", field="smtp_url")
    return config


def _with_password(parsed: SmtpUrl, password: str | None) -> SmtpUrl:
    return SmtpUrl(parsed.scheme, parsed.host, parsed.port, parsed.username, password, parsed.require_starttls)


def clear_smtp() -> bool:
    """Remove the org's SMTP URL and From address (IDP_SMTP_URL / IDP_SMTP_FROM apply again); audited."""
    a = org._clear(SMTP_URL, shown=_shown_url)
    b = org._clear(SMTP_FROM)
    return a or b


def admin_emails_setting() -> list[str]:
    return list(org._get(ADMIN_EMAILS, []) or [])


def set_admin_emails(addresses: Iterable[str]) -> list[str]:
    """Who gets the admins' emails (certificate expiring, provisioning failures, webhook disabled); an empty list
    means the email addresses of the enabled admin users."""
    values = list(dict.fromkeys(validate_address(a, "admin_emails") for a in addresses if a.strip()))
    if len(values) > MAX_ADMIN_EMAILS:
        raise ServiceError(f"at most {MAX_ADMIN_EMAILS} admin recipients", field="admin_emails")
    if values != admin_emails_setting():
        if values:
            org._set(ADMIN_EMAILS, values)
        else:
            org._clear(ADMIN_EMAILS)
    return values


def admin_recipients(session: Any = None) -> list[str]:
    """The admin_emails org setting, else the addresses of enabled admin users (sorted, without duplicates)."""
    configured = admin_emails_setting()
    if configured:
        return configured
    sess = session if session is not None else db.session
    rows = sess.scalars(select(User.email).where(User.is_admin.is_(True), User.disabled.is_(False),
                                                 User.email.is_not(None), User.email != ""))
    return sorted(set(rows))


def settings_view() -> dict[str, object]:
    """The email settings as `idp org show` and the console show them (the URL masked)."""
    config = None
    try:
        config = current_config()
    except (ServiceError, DataKeyError):   # a stored URL that no longer parses or opens: shown as off
        pass
    return {"smtp_url": config.masked_url if config else None,
            "smtp_source": config.source if config else None,
            "smtp_from": config.from_addr if config else None,
            "admin_emails": admin_emails_setting()}


# ------------------------------------------------------------------ messages

_TEXT = Environment(loader=FileSystemLoader(TEMPLATE_DIR), autoescape=False, undefined=StrictUndefined,  # noqa: S701 - plain text
                    keep_trailing_newline=True)
_HTML = Environment(loader=FileSystemLoader(TEMPLATE_DIR), autoescape=select_autoescape(default=True),
                    undefined=StrictUndefined)


def render(name: str, context: dict[str, Any]) -> tuple[str, str]:
    """The plain-text and HTML bodies of template `name` (`email/<name>.txt` and `.html`)."""
    return _TEXT.get_template(f"{name}.txt").render(context), _HTML.get_template(f"{name}.html").render(context)


def one_line(text: str, limit: int = 200) -> str:
    """A header value: control characters (line breaks) become spaces, at most `limit` characters."""
    return "".join(" " if ord(c) < 32 or ord(c) == 127 else c for c in text).strip()[:limit]


def compose(config: SmtpConfig, to: str, subject: str, text: str, html: str, *, message_id: str) -> EmailMessage:
    """A multipart/alternative message (plain text first, HTML second) with the headers automated mail carries."""
    msg = EmailMessage()
    msg["Subject"] = one_line(subject)
    msg["From"] = config.from_addr
    msg["To"] = to
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"   # RFC 3834: no auto-replies
    msg["X-Auto-Response-Suppress"] = "All"
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return msg


def message_id(token: str, config: SmtpConfig) -> str:
    """A Message-ID from a stable token (the notice id and recipient), so a message sent again after a worker
    died mid-send carries the same id and receivers can drop the duplicate."""
    domain = parseaddr(config.from_addr)[1].rpartition("@")[2] or "localhost"
    return f"<{token}@{domain}>"


# ------------------------------------------------------------------ sending

def send(config: SmtpConfig, msg: EmailMessage) -> None:
    """Send one message; MailError with an operator-readable reason (connection refused, TLS, authentication,
    a refused recipient) and whether retrying can help."""
    url = config.url
    where = f"{url.host}:{url.port}"
    try:
        context = ssl.create_default_context(cafile=config.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise MailError(f"cannot read IDP_SMTP_CA_FILE {config.ca_file}: {exc}") from None
    try:
        conn: smtplib.SMTP
        if url.implicit_tls:
            conn = smtplib.SMTP_SSL(url.host, url.port, timeout=config.timeout_s, context=context)
        else:
            conn = smtplib.SMTP(url.host, url.port, timeout=config.timeout_s)
        with conn:
            conn.ehlo()
            tls = url.implicit_tls
            if not tls and conn.has_extn("starttls"):
                conn.starttls(context=context)
                conn.ehlo()
                tls = True
            if not tls and url.require_starttls:
                raise MailError(f"the SMTP server {where} does not offer STARTTLS (the URL requires it)")
            if url.username is not None:
                if not tls:
                    raise MailError(f"the SMTP server {where} does not offer STARTTLS: the password is not sent "
                                    "in clear (use smtps:// or a server with STARTTLS)")
                conn.login(url.username, url.password or "")
            conn.send_message(msg)
    except MailError:
        raise
    except smtplib.SMTPAuthenticationError as exc:
        raise MailError(f"the SMTP server {where} refused the user name or password ({exc.smtp_code} "
                        f"{_said(exc.smtp_error)})") from None
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        said = "; ".join(f"{rcpt}: {code} {_said(text)}" for rcpt, (code, text) in exc.recipients.items())
        raise MailError(f"the SMTP server {where} refused the recipient ({said})",
                        permanent=all(c >= 500 for c in codes)) from None
    except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
        what = "sender" if isinstance(exc, smtplib.SMTPSenderRefused) else "message"
        raise MailError(f"the SMTP server {where} refused the {what} ({exc.smtp_code} {_said(exc.smtp_error)})",
                        permanent=exc.smtp_code >= 500) from None
    except ssl.SSLCertVerificationError as exc:
        raise MailError(f"TLS with the SMTP server {where} failed: its certificate is not trusted "
                        f"({exc.verify_message}; IDP_SMTP_CA_FILE names a private CA)") from None
    except ssl.SSLError as exc:
        raise MailError(f"TLS with the SMTP server {where} failed: {exc.reason or exc}") from None
    except ConnectionRefusedError:
        raise MailError(f"cannot connect to the SMTP server {where}: connection refused") from None
    except TimeoutError:
        raise MailError(f"the SMTP server {where} did not answer within {config.timeout_s:g} s") from None
    except socket.gaierror as exc:
        raise MailError(f"cannot resolve the SMTP server's host {url.host}: {exc.strerror}") from None
    except smtplib.SMTPResponseException as exc:
        raise MailError(f"the SMTP server {where} answered {exc.smtp_code} {_said(exc.smtp_error)}",
                        permanent=False) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise MailError(f"sending through the SMTP server {where} failed: {exc.__class__.__name__}: {exc}") from None


def _said(text: bytes | str) -> str:
    raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return one_line(raw, 300)
