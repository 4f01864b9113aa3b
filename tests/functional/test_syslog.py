"""IDP_SYSLOG_URL streams committed events and audit rows as RFC 5424 syslog to a real listener on loopback
(UDP, TCP and TLS with a certificate made here, octet-counting framing), parsed strictly; a collector that is
away never blocks sign-in, the sender reconnects when it is back, and a full queue drops and counts."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from flask import Flask
from flask.testing import FlaskClient

from idp import create_app
from idp.config import ConfigError, Settings, load_settings
from idp.extensions import db
from idp.siem import SyslogSender

from ..conftest import make_settings, reset_backends
from ..webclient import Browser, saml_form
from .conftest import PASSWORD

GARBAGE = "/saml/sso?SAMLRequest=not-a-saml-request"


# ---------------------------------------------------------------- a strict RFC 5424 parser

@dataclass
class Syslog:
    pri: int
    timestamp: str
    hostname: str
    app_name: str
    procid: str
    msgid: str
    sd: dict[str, dict[str, str]]
    msg: str

    @property
    def facility(self) -> int:
        return self.pri // 8

    @property
    def severity(self) -> int:
        return self.pri % 8


HEADER = re.compile(r"<(\d{1,3})>1 (\S{1,}) ([!-~]{1,255}) ([!-~]{1,48}) ([!-~]{1,128}) ([!-~]{1,32}) ")
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)$")
SD_NAME = re.compile(r'[!-~]{1,32}')


def parse(raw: bytes) -> Syslog:
    text = raw.decode("utf-8")
    m = HEADER.match(text)
    assert m, text[:200]
    pri, ts, host, app, procid, msgid = m.groups()
    assert 0 <= int(pri) <= 191
    assert RFC3339.match(ts), ts
    i = m.end()
    sd: dict[str, dict[str, str]] = {}
    if text[i] == "-":
        i += 1
    else:
        while i < len(text) and text[i] == "[":
            i += 1
            j = i
            while text[j] not in " ]":
                assert text[j] not in '="', text
                j += 1
            sd_id, i = text[i:j], j
            assert SD_NAME.fullmatch(sd_id), sd_id
            params: dict[str, str] = {}
            while text[i] == " ":
                i += 1
                j = text.index("=", i)
                name = text[i:j]
                assert SD_NAME.fullmatch(name) and not set(name) & set(' ]"='), name
                assert text[j + 1] == '"', text[j:]
                i, value = j + 2, []
                while text[i] != '"':
                    if text[i] == "\\" and text[i + 1] in '"\\]':
                        value.append(text[i + 1])
                        i += 2
                        continue
                    assert text[i] not in '"]', text   # must have been escaped
                    value.append(text[i])
                    i += 1
                params[name] = "".join(value)
                i += 1
            assert text[i] == "]", text[i:]
            i += 1
            sd[sd_id] = params
    assert i == len(text) or text[i] == " ", text[i:]
    msg = text[i + 1:] if i < len(text) else ""
    assert not msg.startswith("\ufeff")      # the JSON line is ASCII: MSG-ANY, no BOM
    return Syslog(int(pri), ts, host, app, procid, msgid, sd, msg)


# ---------------------------------------------------------------- listeners on loopback

class Listener:
    def __init__(self, scheme: str, tls_files: tuple[Path, Path] | None = None, port: int = 0) -> None:
        self.scheme = scheme
        self.messages: list[bytes] = []
        self.frames_ok = True
        self.stop = threading.Event()
        family = socket.AF_INET
        if scheme == "udp":
            self.sock = socket.socket(family, socket.SOCK_DGRAM)
        else:
            self.sock = socket.socket(family, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.port = self.sock.getsockname()[1]
        self.ctx: ssl.SSLContext | None = None
        if tls_files is not None:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(str(tls_files[0]), str(tls_files[1]))
        self.sock.settimeout(0.2)
        if scheme != "udp":
            self.sock.listen(5)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://{'localhost' if self.scheme == 'tls' else '127.0.0.1'}:{self.port}"

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                if self.scheme == "udp":
                    data, _ = self.sock.recvfrom(70000)
                    self.messages.append(data)
                    continue
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.ctx is not None:
                conn.settimeout(5)
                conn = self.ctx.wrap_socket(conn, server_side=True)
            conn.settimeout(0.2)
            buf = b""
            while not self.stop.is_set():
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                buf += chunk
                while True:    # octet counting: MSG-LEN SP SYSLOG-MSG
                    m = re.match(rb"([1-9][0-9]*) ", buf)
                    if m is None:
                        if buf and not re.fullmatch(rb"[0-9]*", buf):
                            self.frames_ok = False
                        break
                    n = int(m.group(1))
                    if len(buf) < m.end() + n:
                        break
                    self.messages.append(buf[m.end():m.end() + n])
                    buf = buf[m.end() + n:]
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    def wait_for(self, n: int, timeout: float = 15.0) -> list[Syslog]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.frames_ok
        return [parse(m) for m in self.messages]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "collector.crt", tmp_path / "collector.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def listener(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Listener]:
    scheme = getattr(request, "param", "udp")
    lst = Listener(scheme, self_signed(tmp_path) if scheme == "tls" else None)
    yield lst
    lst.close()


@pytest.fixture
def settings(tmp_path: Path, key_template: Path, listener: Listener) -> Settings:
    extra = {"syslog_ca_file": tmp_path / "collector.crt"} if listener.scheme == "tls" else {}
    return make_settings(tmp_path, key_template, syslog_url=listener.url, **extra)


@pytest.fixture(autouse=True)
def close_sender(app: Flask) -> Iterator[None]:
    yield
    sender = app.extensions.get("idp.siem")
    if isinstance(sender, SyslogSender):
        sender.close()


@pytest.mark.parametrize("listener", ["udp", "tcp", "tls"], indirect=True)
def test_events_and_audit_rows_are_streamed(app: Flask, listener: Listener, make_sp, alice) -> None:  # type: ignore[no-untyped-def]
    browser = Browser(app.test_client())
    browser.client.environ_base["REMOTE_ADDR"] = "192.0.2.10"
    browser.client.environ_base["HTTP_USER_AGENT"] = 'ua "quoted" \\ back]slash'
    assert browser.get(GARBAGE).status_code == 400      # an error event
    sp = make_sp("pysaml2")                               # an audit row (app.add)
    assert saml_form(browser.sso(sp.authn_request("redirect"), "alice", PASSWORD)) is not None   # success
    got = listener.wait_for(5)   # user.add, group.add, app.add, the error, the success
    by_msgid: dict[str, list[Syslog]] = {}
    for m in got:
        by_msgid.setdefault(m.msgid, []).append(m)
        assert (m.facility, m.app_name, m.hostname) == (16, "idp", socket.gethostname()), m
        assert m.procid.isdigit()
        assert list(m.sd) == ["idp@32473"]
        json.loads(m.msg)
    error = next(m for m in by_msgid["sso"] if m.sd["idp@32473"]["outcome"] == "error")
    assert error.severity == 3
    fields = error.sd["idp@32473"]
    assert fields["reason"] == "malformed_request" and fields["client_ip"] == "192.0.2.10"
    line = json.loads(error.msg)
    assert line["log"] == "sso_event" and line["id"] == int(fields["id"]) and line["reason"] == "malformed_request"
    assert line["user_agent"] == 'ua "quoted" \\ back]slash'      # MSG carries it as JSON
    ok = next(m for m in by_msgid["sso"] if m.sd["idp@32473"]["outcome"] == "success")
    assert ok.severity == 6 and ok.sd["idp@32473"]["username"] == "alice"
    assert ok.sd["idp@32473"]["app_slug"] == sp.slug
    audits = by_msgid["audit"]
    assert {a.sd["idp@32473"]["action"] for a in audits} >= {"app.add", "user.add"}
    assert all(a.severity == 5 and json.loads(a.msg)["log"] == "admin_audit" for a in audits)
    assert "$argon2" not in "".join(m.msg for m in got)      # secrets stay redacted


def test_escaping_in_structured_data() -> None:
    from idp.siem import format_message
    raw = format_message(severity=4, at="2026-12-05T10:00:00Z", msgid="sso",
                         params={"username": 'a"b\\c]d', "app_slug": None, "reason": "x"}, msg='{"a": 1}',
                         hostname="host.example", procid=42)
    assert raw.startswith(b'<132>1 2026-12-05T10:00:00.000000Z host.example idp 42 sso [idp@32473 ')
    m = parse(raw)
    assert m.sd["idp@32473"] == {"username": 'a"b\\c]d', "reason": "x"} and m.msg == '{"a": 1}'


def test_bad_syslog_url_stops_the_start(tmp_path: Path) -> None:
    for url in ("http://collector:514", "tcp://", "udp://host:99999", "tcp://host/path"):
        with pytest.raises(ConfigError, match="IDP_SYSLOG_URL"):
            load_settings({"IDP_SYSLOG_URL": url, "IDP_SECRET_KEY": "x" * 32, "IDP_BASE_URL": "http://localhost",
                           "IDP_INSTANCE_DIR": str(tmp_path / "i"), "IDP_CERT_DIR": str(tmp_path / "c")})


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_collector_away_never_blocks_sign_in_and_the_sender_reconnects(tmp_path: Path, key_template: Path) -> None:
    port = free_port()                       # nothing listens there yet
    flask_app = create_app(make_settings(tmp_path, key_template, syslog_url=f"tcp://127.0.0.1:{port}"),
                           TESTING=True)
    from ..conftest import IsolatedClient
    flask_app.test_client_class = IsolatedClient
    with flask_app.app_context():
        reset_backends(flask_app)
        client: FlaskClient = flask_app.test_client()
        for _ in range(5):                   # answered while the collector is away
            assert client.get(GARBAGE).status_code == 400
        sender = flask_app.extensions["idp.siem"]
        assert isinstance(sender, SyslogSender) and sender.sent == 0
        listener = Listener("tcp", port=port)     # the collector comes up: queued events arrive after a reconnect
        try:
            got = listener.wait_for(5, timeout=60)
            assert len(got) == 5 and all(m.msgid == "sso" for m in got)
        finally:
            sender.close()
            listener.close()
            db.session.remove()
            db.drop_all()
            db.engine.dispose()


def test_a_full_queue_drops_and_counts(app: Flask, client: FlaskClient) -> None:
    def dropped_metric() -> int:
        text = client.get("/metrics").get_data(as_text=True)
        m = re.search(r"^idp_syslog_dropped_total (\d+)$", text, re.M)
        assert m, text
        return int(m.group(1))

    before = dropped_metric()
    sender = SyslogSender(f"tcp://127.0.0.1:{free_port()}", queue_size=5)   # nobody listens
    try:
        accepted = [sender.send(b"<134>1 - - idp - test - x") for _ in range(30)]
    finally:
        sender.close(timeout=0.1)
    assert accepted.count(True) <= 6 and sender.dropped == accepted.count(False) >= 24
    assert dropped_metric() - before == sender.dropped


@pytest.mark.parametrize("listener", ["tcp"], indirect=True)
def test_a_cli_command_sends_its_audit_rows_before_it_exits(tmp_path: Path, listener: Listener) -> None:
    """The sender thread is a daemon: without the exit hook `idp users add` ended before its user.add went out."""
    idp = Path(sys.executable).parent / "idp"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "IDP_INSTANCE_DIR": str(tmp_path / "cli-instance"), "IDP_CERT_DIR": str(tmp_path / "certs"),
           "IDP_BASE_URL": "https://idp.example.test", "IDP_ARGON2_TIME_COST": "1",
           "IDP_ARGON2_MEMORY_KIB": "1024", "IDP_ARGON2_PARALLELISM": "1"}

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(idp), *args], env={**env, **extra}, cwd=tmp_path, input="a cli password 1\n",
                              capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        return proc

    run("db", "init")
    listener.messages.clear()
    run("users", "add", "carol", "--email", "carol@example.test", "--password-stdin", IDP_SYSLOG_URL=listener.url)
    # the process has exited: whatever still arrives was written before the exit (the listener may lag a little)
    audits = [m for m in listener.wait_for(1, timeout=5) if m.msgid == "audit"]
    assert [(a.sd["idp@32473"]["action"], a.sd["idp@32473"]["target"]) for a in audits] == [("user.add", "carol")]
    assert "a cli password" not in json.dumps([a.msg for a in audits])


def test_a_rolled_back_savepoint_drops_only_its_own_messages(app: Flask, listener: Listener) -> None:
    """SQLAlchemy fires after_rollback / after_commit for savepoints too: a savepoint rolled back must not take the
    messages of the rows that are then committed, and a released savepoint's rows wait for the real commit."""
    from idp import audit
    from idp.errors import EventContext
    from idp.events import record_event
    from idp.reasons import Reason

    def event(slug: str) -> None:
        record_event(EventContext(event_type="sso", app_slug=slug), Reason.MALFORMED_REQUEST, client_ip=None,
                     user_agent=None)

    def marker(name: str) -> list[Syslog]:
        """Commit one more audit row and wait for it: one sender thread in order, so all before it are in."""
        audit.record("app.add", "app", name)
        db.session.commit()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            got = listener.wait_for(1)
            if any(m.sd["idp@32473"].get("target") == name for m in got):
                return got
            time.sleep(0.05)
        raise AssertionError(f"{name} never arrived")

    with audit.acting_as("tester"):
        marker("start")
        listener.messages.clear()
        audit.record("app.add", "app", "kept-outer")
        event("kept-outer")
        db.session.flush()
        savepoint = db.session.begin_nested()
        audit.record("app.add", "app", "undone")
        event("undone")
        db.session.flush()
        savepoint.rollback()
        with db.session.begin_nested():           # released: kept for the commit
            audit.record("app.add", "app", "kept-released")
            event("kept-released")
        db.session.commit()
        committed = marker("end-1")
        listener.messages.clear()

        with db.session.begin_nested():           # released, but the transaction then rolls back
            audit.record("app.add", "app", "released-then-rolled-back")
            event("released-then-rolled-back")
        db.session.rollback()
        after_rollback = marker("end-2")

    audits = [m.sd["idp@32473"]["target"] for m in committed if m.msgid == "audit"]
    events = [m.sd["idp@32473"]["app_slug"] for m in committed if m.msgid == "sso"]
    assert sorted(audits) == ["end-1", "kept-outer", "kept-released"]
    assert sorted(events) == ["kept-outer", "kept-released"]
    assert [m.sd["idp@32473"].get("target") for m in after_rollback] == ["end-2"]
