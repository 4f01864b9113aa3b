"""Event streaming to a SIEM over syslog (IDP_SYSLOG_URL): RFC 5424 messages over UDP (RFC 5426), TCP (RFC 6587
octet counting) or TLS (RFC 5425, the same framing), sent by one background thread per process.

Sign-in never waits for the collector: `send` puts the message in a bounded in-memory queue and returns; the
sender thread connects, writes, and reconnects with exponential backoff when the collector is away. When the
queue is full (the collector has been away long enough, or cannot keep up) new messages are dropped and counted
(idp_syslog_dropped_total). What is queued when a process exits, and the message a broken TCP connection was
writing, may be lost or (after a reconnect) sent twice: the database event log stays the record of truth. A process
that exits normally (a CLI command, a worker told to stop) first gives the thread up to EXIT_FLUSH_S to send what
is queued (an atexit hook), so a CLI command's audit rows reach the collector when it is there.

A message: `<PRI>1 TIMESTAMP HOSTNAME idp PROCID MSGID [idp@32473 k="v" ...] JSON`, with the facility local0
and the severity from the outcome (success: informational, denied: warning, error: error; audit rows: notice),
MSGID the event type (`audit` for audit rows), the main fields as structured data (RFC 5424 6.3.3 escaping) and
MSG the JSON line the `idp.events` logger writes (ASCII, so no BOM is needed).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from . import metrics
from .extensions import component, component_or_new

log = logging.getLogger("idp.siem")

SCHEMES = ("udp", "tcp", "tls")
DEFAULT_PORTS = {"udp": 514, "tcp": 601, "tls": 6514}
FACILITY_LOCAL0 = 16
SEVERITY = {"success": 6, "denied": 4, "error": 3}    # informational, warning, error
SEVERITY_AUDIT = 5                                   # notice
SD_ID = "idp@32473"                                  # 32473: the enterprise number for examples (RFC 5612)
QUEUE_SIZE = 10_000
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.5, 30.0
CONNECT_TIMEOUT_S = 5.0
EXIT_FLUSH_S = 2.0                                   # at most this long at process exit to send what is queued
UDP_MAX = 65_000                                     # one datagram; longer messages are cut (RFC 5426 3.2)


class SyslogConfigError(ValueError):
    """IDP_SYSLOG_URL cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    host: str
    port: int


def parse_url(url: str) -> Target:
    """udp://host[:port], tcp://host[:port], tls://host[:port] (ports 514, 601, 6514 by default)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise SyslogConfigError(f"IDP_SYSLOG_URL is not a URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise SyslogConfigError(f"IDP_SYSLOG_URL must start with udp://, tcp:// or tls://, got {url!r}")
    if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise SyslogConfigError(f"IDP_SYSLOG_URL must be {scheme}://host[:port] and nothing else, got {url!r}")
    return Target(scheme, parts.hostname, port or DEFAULT_PORTS[scheme])


# ---------------------------------------------------------------- the message (RFC 5424)

def _header_field(value: str, limit: int) -> str:
    """A HEADER field: printable US-ASCII without spaces, at most `limit` characters; "-" (NILVALUE) if empty."""
    clean = "".join(c for c in value if "!" <= c <= "~")[:limit]
    return clean or "-"


def _param_value(value: object) -> str:
    """PARAM-VALUE escaping (RFC 5424 6.3.3): backslash before '"', '\\' and ']'."""
    text = str(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _timestamp(at: datetime | str | None) -> str:
    if isinstance(at, str):
        with contextlib.suppress(ValueError):
            at = datetime.fromisoformat(at.replace("Z", "+00:00"))
    if not isinstance(at, datetime):
        at = datetime.now(UTC)
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_message(*, severity: int, at: datetime | str | None, msgid: str, params: Mapping[str, object],
                   msg: str, hostname: str | None = None, procid: int | None = None) -> bytes:
    """One RFC 5424 message. `params` with None values are left out; names must be SD-NAMEs (ASCII, no
    '=', ' ', ']', '"', at most 32 characters)."""
    pri = FACILITY_LOCAL0 * 8 + severity
    sd_params = "".join(f' {name}="{_param_value(v)}"' for name, v in params.items() if v is not None and v != "")
    sd = f"[{SD_ID}{sd_params}]"
    head = (f"<{pri}>1 {_timestamp(at)} {_header_field(hostname or socket.gethostname(), 255)} idp "
            f"{_header_field(str(procid or os.getpid()), 128)} {_header_field(msgid, 32)} ")
    return (head + sd + " " + msg).encode("utf-8")


EVENT_PARAMS = ("id", "event_type", "app_slug", "username", "outcome", "reason", "client_ip", "protocol",
                "sp_entity_id", "request_id")
AUDIT_PARAMS = ("id", "actor", "action", "target_type", "target")


def event_message(fields: Mapping[str, Any], json_line: str) -> bytes:
    """An event (the fields of events.event_dict) and the JSON line the idp.events logger writes for it."""
    return format_message(severity=SEVERITY.get(str(fields.get("outcome")), 5), at=fields.get("at"),
                          msgid=str(fields.get("event_type") or "event"),
                          params={k: fields.get(k) for k in EVENT_PARAMS}, msg=json_line)


def audit_message(fields: Mapping[str, Any], json_line: str) -> bytes:
    return format_message(severity=SEVERITY_AUDIT, at=fields.get("at"), msgid="audit",
                          params={k: fields.get(k) for k in AUDIT_PARAMS}, msg=json_line)


# ---------------------------------------------------------------- the sender

class SyslogSender:
    """A bounded queue and one daemon thread per process (started on first use, again after a fork)."""

    def __init__(self, url: str, *, ca_file: str | None = None, queue_size: int = QUEUE_SIZE) -> None:
        self.target = parse_url(url)
        self.ca_file = ca_file
        self.queue_size = queue_size
        self._pid: int | None = None
        self._queue: queue.Queue[bytes] = queue.Queue(queue_size)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._exit_hook = False
        self.sent = 0
        self.dropped = 0

    def send(self, message: bytes) -> bool:
        """Queue a message; never blocks. False (and counted) when the queue is full."""
        self._ensure_thread()
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            self.dropped += 1
            metrics.count("idp_syslog_dropped_total")
            return False
        return True

    def _ensure_thread(self) -> None:
        pid = os.getpid()
        if self._pid == pid:
            return
        with self._lock:
            if self._pid == pid:
                return
            if self._pid is not None:      # a forked child: the parent's queue and thread are not ours
                self._queue = queue.Queue(self.queue_size)
            self._pid = pid
            self._thread = threading.Thread(target=self._run, name="idp-syslog", daemon=True)
            self._thread.start()
            if not self._exit_hook:     # once per sender (a forked child inherits the hook with the flag)
                self._exit_hook = True
                atexit.register(self.close, EXIT_FLUSH_S)

    def close(self, timeout: float = 2.0) -> None:
        """Stop the thread after it has sent what is queued, including the message it is writing (at most
        `timeout` seconds). Also the exit hook: in a process whose thread was never started (or belongs to the
        parent it was forked from) there is nothing of ours to send."""
        if self._pid != os.getpid() or self._thread is None:
            return
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.01)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()) + 0.5)

    # -- the thread

    def _connect(self) -> socket.socket:
        t = self.target
        if t.scheme == "udp":
            info = socket.getaddrinfo(t.host, t.port, type=socket.SOCK_DGRAM)[0]
            sock = socket.socket(info[0], socket.SOCK_DGRAM)
            sock.connect(info[4])
            return sock
        sock = socket.create_connection((t.host, t.port), timeout=CONNECT_TIMEOUT_S)
        if t.scheme == "tls":
            ctx = ssl.create_default_context(cafile=self.ca_file)   # the system CAs unless IDP_SYSLOG_CA_FILE
            try:
                sock = ctx.wrap_socket(sock, server_hostname=t.host)
            except (OSError, ssl.SSLError):
                sock.close()
                raise
        sock.settimeout(CONNECT_TIMEOUT_S)
        return sock

    def _frame(self, message: bytes) -> bytes:
        if self.target.scheme == "udp":
            return message[:UDP_MAX]
        return str(len(message)).encode() + b" " + message    # octet counting (RFC 6587 3.4.1, RFC 5425 4.3)

    def _run(self) -> None:
        sock: socket.socket | None = None
        backoff = BACKOFF_MIN_S
        pending: bytes | None = None
        while not self._stop.is_set():
            if pending is None:
                try:
                    pending = self._queue.get(timeout=0.5)
                except queue.Empty:
                    continue
            try:
                if sock is None:
                    sock = self._connect()
                    backoff = BACKOFF_MIN_S
                sock.sendall(self._frame(pending))
                pending = None
                self._queue.task_done()
                self.sent += 1
                metrics.count("idp_syslog_sent_total")
            except (OSError, ssl.SSLError) as exc:
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.close()
                    sock = None
                log.warning("syslog %s://%s:%s unavailable (%s: %s); retrying in %.1f s", self.target.scheme,
                            self.target.host, self.target.port, exc.__class__.__name__, exc, backoff)
                self._stop.wait(backoff)
                backoff = min(BACKOFF_MAX_S, backoff * 2)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()


def sender() -> SyslogSender | None:
    """The app's sender (made on first use), None when IDP_SYSLOG_URL is unset or no app is in context."""
    def make() -> SyslogSender | bool:
        s = component("idp.settings")
        if not s.syslog_url:
            return False
        return SyslogSender(s.syslog_url, ca_file=str(s.syslog_ca_file) if s.syslog_ca_file else None)

    try:
        found = component_or_new("idp.siem", make)
    except RuntimeError:      # outside an application context (a bare script's session)
        return None
    return found if isinstance(found, SyslogSender) else None
