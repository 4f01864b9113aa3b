"""Hostile SP metadata and metadata URLs: `idp apps add --metadata FILE|URL` and the admin console's New-app form.

Files: entity tricks (nothing read, nothing fetched), local files that are not metadata (refused, never echoed),
script endpoints, duplicate entityIDs, markup in names (escaped wherever shown). URLs: SSRF in all its spellings,
redirects to internal addresses, slow and huge responses, non-XML bodies.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from idp.extensions import db
from idp.models import ConnectedApp
from idp.services import ServiceError
from idp.services import fetch as fetch_svc

from ..webclient import login_admin
from .conftest import ADMIN_PASSWORD, csrf_token, login
from .saml_tools import case, sp_metadata

GOOD_MD = sp_metadata("https://md.example.com/metadata", "https://md.example.com/acs")


def registered() -> list[str]:
    db.session.expire_all()
    return sorted(a.entity_id for a in db.session.query(ConnectedApp))


def cli(app: Flask, *args: str) -> tuple[int, str]:
    """`idp …` in-process; (exit code, stdout + stderr)."""
    result = app.test_cli_runner().invoke(args=list(args))
    return result.exit_code, result.output


def add(app: Flask, source: str | Path, *extra: str) -> tuple[int, str]:
    return cli(app, "apps", "add", "--metadata", str(source), *extra)


def allow_private(app: Flask, monkeypatch: pytest.MonkeyPatch, timeout: int = 5) -> None:
    settings = app.extensions["idp.settings"]
    monkeypatch.setitem(app.extensions, "idp.settings", dataclasses.replace(
        settings, metadata_fetch_allow_private=True, metadata_fetch_timeout_s=timeout))


# ---------------------------------------------------------------- hostile files


def _utf16(doc: str) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-16"?>' + doc).encode("utf-16")


def _md_with_entity(ref: str) -> str:
    return GOOD_MD.decode().replace("https://md.example.com/acs", f"https://md.example.com/{ref}")


ENTITY_FILES: dict[str, Callable[[str, str], bytes]] = {
    "xxe-file": lambda fifo, url: (f'<!DOCTYPE m [<!ENTITY x SYSTEM "file://{fifo}">]>'
                                   + _md_with_entity("&x;")).encode(),
    "xxe-file-utf16": lambda fifo, url: _utf16(f'<!DOCTYPE m [<!ENTITY x SYSTEM "file://{fifo}">]>'
                                               + _md_with_entity("&x;")),
    "param-entity-file-utf16": lambda fifo, url: _utf16(f'<!DOCTYPE m [<!ENTITY % p SYSTEM "file://{fifo}"> %p;]>'
                                                        + GOOD_MD.decode()),
    "param-entity-http-utf16": lambda fifo, url: _utf16(f'<!DOCTYPE m [<!ENTITY % p SYSTEM "{url}"> %p;]>'
                                                        + GOOD_MD.decode()),
    "external-subset-http-utf16": lambda fifo, url: _utf16(f'<!DOCTYPE m SYSTEM "{url}">' + GOOD_MD.decode()),
    "billion-laughs": lambda fifo, url: ('<!DOCTYPE m [<!ENTITY a "aaaaaaaaaa">'
                                         + "".join(f'<!ENTITY {c} "{("&" + p + ";") * 10}">'
                                                   for p, c in zip("abcdefgh", "bcdefghi", strict=True))
                                         + "]>" + _md_with_entity("&i;")).encode(),
    "internal-entity": lambda fifo, url: ('<!DOCTYPE m [<!ENTITY e "acs">]>' + _md_with_entity("&e;")).encode(),
    "xinclude": lambda fifo, url: GOOD_MD.replace(b"<md:SPSSODescriptor", (
        f'<md:Extensions><xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file://{fifo}" '
        'parse="text"/></md:Extensions><md:SPSSODescriptor').encode(), 1),
}


def test_hostile_metadata_files(app, tmp_path, fifos, conn_probe):  # type: ignore[no-untyped-def]
    for name, build in ENTITY_FILES.items():
        with case(name):
            fifo = fifos()
            f = tmp_path / f"{name}.xml"
            f.write_bytes(build(str(fifo.path), conn_probe.url))
            code, out = add(app, f)
            assert not fifo.opened(), "the parser opened a file named by the metadata"
            assert not conn_probe.connected(0.02), "the parser connected to a URL named by the metadata"
            assert "leaked-file-content" not in out and "Traceback" not in out
            if name == "xinclude":  # harmless once ignored: registered as written, nothing included
                assert code == 0, out
                assert "leaked" not in app.test_cli_runner().invoke(args=["apps", "show", out.strip()]).output
                cli(app, "apps", "remove", out.strip())
            else:
                assert code != 0 and ("DOCTYPE" in out or "not well-formed" in out), out
    assert registered() in ([], ["https://md.example.com/metadata"])


@pytest.mark.parametrize("location", [
    "javascript:alert(1)", "JaVaScRiPt:alert(1)", "&#106;avascript:alert(1)", "java&#x09;script:alert(1)",
    "java&#x0A;script:alert(1)", "&#x20;javascript:alert(1)", "vbscript:msgbox(1)",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==", "file:///etc/passwd", "ftp://sp.example/acs",
    "//sp.example/acs", "https://", "http://sp.example.com:99999/acs",
])
def test_script_and_non_http_endpoints(app, tmp_path, location):  # type: ignore[no-untyped-def]
    f = tmp_path / "md.xml"
    for where in ("acs", "slo"):
        with case(where):
            if where == "acs":
                f.write_bytes(sp_metadata("https://md.example.com/metadata", location))
            else:
                f.write_bytes(sp_metadata("https://md.example.com/metadata", "https://md.example.com/acs",
                                          slo_url=location))
            code, out = add(app, f)
            assert code != 0 and "Location" in out, out
    assert registered() == []


def test_duplicate_entity_id(app, tmp_path):  # type: ignore[no-untyped-def]
    f = tmp_path / "md.xml"
    f.write_bytes(GOOD_MD)
    assert add(app, f, "--slug", "first")[0] == 0
    before = app.test_cli_runner().invoke(args=["apps", "show", "first", "--format", "json"]).output
    other = tmp_path / "other.xml"
    other.write_bytes(GOOD_MD.replace(b"https://md.example.com/acs", b"https://evil.example.com/acs"))
    code, out = add(app, other, "--slug", "second")
    assert code != 0 and "already registered" in out
    assert registered() == ["https://md.example.com/metadata"]
    assert app.test_cli_runner().invoke(args=["apps", "show", "first", "--format", "json"]).output == before


def test_local_files_are_refused_and_never_echoed(app, tmp_path, fifos):  # type: ignore[no-untyped-def]
    secret = tmp_path / "secret.xml"
    secret.write_text("<config><password>hunter2-very-secret</password></config>")
    link = tmp_path / "md.xml"
    link.symlink_to("/etc/passwd")
    fifo = fifos()
    env_value = "hostile-suite-env-marker-31337"
    os.environ["IDP_HOSTILE_MARKER"] = env_value
    try:
        sources = ["/etc/shadow", "/etc/passwd", str(link), "/proc/self/environ", "/proc/self/cmdline",
                   "/proc/self/maps", str(secret), "/dev/zero", "/dev/urandom", str(fifo.path), "/etc", "~root/.ssh"]
        for source in sources:
            with case(source):
                code, out = add(app, source)
                assert code != 0, out
                assert "Traceback" not in out
                for leak in ("root:", "hunter2", env_value, "PATH=", "/usr/bin/python", "r-xp"):
                    assert leak not in out, leak
        assert not fifo.opened(), "--metadata opened a named pipe"
    finally:
        del os.environ["IDP_HOSTILE_MARKER"]
    assert registered() == []


# ---------------------------------------------------------------- URLs: SSRF


def ssrf_urls(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/md", f"https://127.0.0.1:{port}/md", f"http://localhost:{port}/md",
        f"http://LOCALHOST.:{port}/md", f"http://127.1:{port}/md", f"http://0x7f000001:{port}/md",
        f"http://2130706433:{port}/md", f"http://0177.0.0.1:{port}/md", f"http://[::ffff:127.0.0.1]:{port}/md",
        f"http://[::ffff:7f00:1]:{port}/md", f"http://[::1]:{port}/md", f"http://0.0.0.0:{port}/md",
        f"http://[::]:{port}/md", "http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/md",
        "http://[fd00::1]/md", "http://10.0.0.1/md", "http://172.16.0.1/md", "http://192.168.0.1/md",
        "http://100.64.0.1/md", "http://198.18.0.1/md", "http://224.0.0.1/md", "http://[64:ff9b::7f00:1]/md",
        "http://[2002:7f00:1::]/md", f"http://user:pw@127.0.0.1:{port}/md", f"file://127.0.0.1:{port}/etc/passwd",
        f"gopher://127.0.0.1:{port}/_GET%20/", f"dict://127.0.0.1:{port}/info", f"ftp://127.0.0.1:{port}/md",
        f"HTTP://127.0.0.1:{port}/md", "javascript:alert(1)", "data:text/xml,<x/>",
    ]


def test_ssrf_urls_are_refused_without_a_connection(app, conn_probe):  # type: ignore[no-untyped-def]
    assert app.extensions["idp.settings"].metadata_fetch_allow_private is False
    for url in ssrf_urls(conn_probe.port):
        with case(url):
            code, out = add(app, url)
            assert code != 0 and "Traceback" not in out, out
            assert not conn_probe.connected(0.01), "the IdP connected to an internal address"
    assert registered() == []


class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        self.hits.append(self.path)
        status, headers, body = self.routes.get(self.path, (404, {}, b""))
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def md_server() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("H", (_Handler,), {"routes": {}, "hits": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _redirect(to: str) -> tuple[int, dict[str, str], bytes]:
    return 302, {"Location": to}, b""


def test_local_server_is_refused_at_the_first_hop(app, md_server):  # type: ignore[no-untyped-def]
    base, handler = md_server
    handler.routes["/md"] = (200, {"Content-Type": "application/xml"}, GOOD_MD)
    handler.routes["/r"] = _redirect("http://169.254.169.254/latest/meta-data/")
    for path in ("/md", "/r"):
        with case(path):
            code, out = add(app, base + path)
            assert code != 0 and "non-public address" in out, out
    assert handler.hits == [], "the IdP connected to a loopback server"
    assert registered() == []


PUBLIC_IP = "93.184.215.14"  # any global address: the test maps it to a local server, nothing leaves the machine


@pytest.fixture
def fake_public_host(monkeypatch, md_server):  # type: ignore[no-untyped-def]
    """`sp.public.example` resolves to a global address; connections to it land on the local md_server.

    Every other connection the fetcher opens is recorded and refused, so a hop to an internal address the
    vetting missed shows up in `dialled` instead of reaching anything.
    """
    base, handler = md_server
    port = int(base.rsplit(":", 1)[1])
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.create_connection
    answers = {"sp.public.example": [PUBLIC_IP], "rebind.public.example": [PUBLIC_IP, "127.0.0.1"]}
    dialled: list[tuple[str, int]] = []

    def getaddrinfo(host: str, port_: Any, *args: Any, **kw: Any) -> Any:
        if host in answers:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port_)) for ip in answers[host]]
        return real_getaddrinfo(host, port_, *args, **kw)

    def create_connection(address: tuple[str, int], *args: Any, **kw: Any) -> socket.socket:
        dialled.append(address)
        if address[0] == PUBLIC_IP:
            return real_connect(("127.0.0.1", port), *args, **kw)
        raise OSError("test: connection refused to anything but the fake public host")

    monkeypatch.setattr(fetch_svc.socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(fetch_svc.socket, "create_connection", create_connection)
    return handler, dialled


def test_redirects_from_a_public_host_to_internal_addresses(app, fake_public_host, conn_probe):  # type: ignore[no-untyped-def]
    handler, dialled = fake_public_host
    handler.routes["/md"] = (200, {"Content-Type": "application/samlmetadata+xml"}, GOOD_MD)
    targets = {
        "/metadata-service": "http://169.254.169.254/latest/meta-data/iam/",
        "/loopback": f"http://127.0.0.1:{conn_probe.port}/md", "/localhost": f"http://localhost:{conn_probe.port}/",
        "/mapped": f"http://[::ffff:127.0.0.1]:{conn_probe.port}/", "/private": "http://10.1.2.3/md",
        "/file": "file:///etc/passwd", "/gopher": f"gopher://127.0.0.1:{conn_probe.port}/_x",
        "/creds": "http://admin:admin@sp.public.example/md", "/rebind": "http://rebind.public.example/md",
    }
    for path, to in targets.items():
        handler.routes[path] = _redirect(to)
    for path in targets:
        with case(path):
            dialled.clear()
            code, out = add(app, f"http://sp.public.example{path}")
            assert code != 0, out
            assert dialled == [(PUBLIC_IP, 80)], f"a later hop was dialled: {dialled}"
    assert not conn_probe.connected(0.02)
    assert registered() == []
    # control: a public-to-public redirect is followed and registers
    handler.routes["/ok"] = _redirect("/md")
    code, out = add(app, "http://sp.public.example/ok")
    assert code == 0, out
    assert registered() == ["https://md.example.com/metadata"]


def test_with_private_hosts_allowed_the_chain_keeps_its_checks(app, monkeypatch, md_server):  # type: ignore[no-untyped-def]
    base, handler = md_server
    allow_private(app, monkeypatch)
    handler.routes.update({
        "/md": (200, {}, GOOD_MD), "/unspecified": _redirect(f"http://0.0.0.0:{base.rsplit(':', 1)[1]}/md"),
        "/file": _redirect("file:///etc/passwd"), "/creds": _redirect(base.replace("//", "//u:p@") + "/md"),
        "/multicast": _redirect("http://224.0.0.1/md"), "/loop": _redirect("/loop"),
        "/javascript": _redirect("javascript:alert(1)"),
    })
    for path, fragment in [("/unspecified", "forbidden address"), ("/file", "http"), ("/creds", "credentials"),
                           ("/multicast", "forbidden address"), ("/loop", "too many"), ("/javascript", "http")]:
        with case(path):
            code, out = add(app, base + path)
            assert code != 0 and fragment in out, out
    assert registered() == []


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/md"])
def test_link_local_is_refused_even_with_private_hosts_allowed(app, monkeypatch, md_server, url):  # type: ignore[no-untyped-def]
    """Cloud metadata services answer on link-local addresses: no *_ALLOW_PRIVATE switch opens them, for any
    caller of the guard (metadata fetch directly, and through a redirect; a POST as webhooks, back-channel
    logout and provisioning send). Failed before the fix: the switch let them through."""
    base, handler = md_server
    allow_private(app, monkeypatch)
    handler.routes["/to-metadata"] = _redirect(url)
    for attempt in (url, base + "/to-metadata"):
        with case(attempt):
            code, out = add(app, attempt)
            assert code != 0 and "link-local" in out, out
    with pytest.raises(ServiceError, match="link-local"):
        fetch_svc.http_request("POST", url, body=b"{}", headers={}, allow_private=True, timeout=2.0)
    assert registered() == []


# ---------------------------------------------------------------- URLs: slow, huge, not XML


class _RawServer:
    """A one-connection-at-a-time TCP server running `behave(conn)`; `sent` counts body bytes written."""

    def __init__(self, behave: Callable[[socket.socket, _RawServer], None]) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/md"
        self.stop = threading.Event()
        self.sent = 0
        self.behave = behave
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    conn.recv(65536)
                    self.behave(conn, self)
                except OSError:
                    pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.sock.close()


@pytest.fixture
def raw_server() -> Iterator[Callable[[Callable[[socket.socket, _RawServer], None]], _RawServer]]:
    made: list[_RawServer] = []

    def make(behave: Callable[[socket.socket, _RawServer], None]) -> _RawServer:
        made.append(_RawServer(behave))
        return made[-1]

    yield make
    for s in made:
        s.close()


def _trickle_body(conn: socket.socket, srv: _RawServer) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: 100000\r\n\r\n")
    while not srv.stop.is_set():
        conn.sendall(b" ")
        time.sleep(0.05)


def _trickle_headers(conn: socket.socket, srv: _RawServer) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    while not srv.stop.is_set():
        conn.sendall(b"X")
        time.sleep(0.05)


def _silent(conn: socket.socket, srv: _RawServer) -> None:
    srv.stop.wait(30)


def _fetch_in_thread(url: str, timeout: float) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}

    def run() -> None:
        started = time.monotonic()
        try:
            fetch_svc.fetch_metadata(url, allow_private=True, timeout=timeout)
            result["outcome"] = "returned"
        except ServiceError as exc:
            result["outcome"] = str(exc)
        result["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


SLOW = {
    "trickled-body": pytest.param(_trickle_body, id="trickled-body"),
    "trickled-headers": pytest.param(_trickle_headers, id="trickled-headers"),
}


@pytest.mark.parametrize("behave", list(SLOW.values()))
def test_slow_servers_are_given_up_within_the_timeout(raw_server, behave):  # type: ignore[no-untyped-def]
    srv = raw_server(behave)
    thread, result = _fetch_in_thread(srv.url, timeout=2)
    thread.join(3.5)
    still_running = thread.is_alive()
    srv.close()  # unblocks a fetch that did not give up by itself
    thread.join(10)
    assert not still_running, "the fetch was still reading 3.5 s after a 2 s timeout"
    assert result["outcome"] != "returned" and result["seconds"] < 3.5, result


def test_silent_server_is_given_up_within_the_configured_timeout(app, monkeypatch, raw_server):  # type: ignore[no-untyped-def]
    """Through the CLI, with the timeout from settings (a server that accepts and never answers)."""
    allow_private(app, monkeypatch, timeout=1)
    srv = raw_server(_silent)
    started = time.monotonic()
    code, out = add(app, srv.url)
    assert code != 0 and time.monotonic() - started < 3, out
    assert registered() == []


def _huge_stream(conn: socket.socket, srv: _RawServer) -> None:
    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/xml\r\n\r\n<md:EntityDescriptor>")
    chunk = b"<!-- padding -->" * 4096
    for _ in range(64 * 1024 * 1024 // len(chunk)):  # 64 MiB, close-delimited
        conn.sendall(chunk)
        srv.sent += len(chunk)


def _huge_declared(conn: socket.socket, srv: _RawServer) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: 6291456\r\n\r\n")
    srv.stop.wait(30)


def test_huge_responses_are_refused_early(app, monkeypatch, raw_server):  # type: ignore[no-untyped-def]
    allow_private(app, monkeypatch, timeout=10)
    streamed = raw_server(_huge_stream)
    code, out = add(app, streamed.url)
    assert code != 0 and "larger than" in out, out
    time.sleep(0.2)
    assert streamed.sent < 16 * 1024 * 1024, f"the fetch kept reading: {streamed.sent} bytes sent"
    declared = raw_server(_huge_declared)
    started = time.monotonic()
    code, out = add(app, declared.url)
    assert code != 0 and "larger than" in out and time.monotonic() - started < 2, out
    assert registered() == []


def test_non_xml_responses_are_refused_without_echo(app, monkeypatch, md_server):  # type: ignore[no-untyped-def]
    base, handler = md_server
    allow_private(app, monkeypatch)
    handler.routes.update({
        "/html": (200, {"Content-Type": "text/html"}, b"<html><body>internal-secret-42</body></html>"),
        "/json": (200, {"Content-Type": "application/json"}, b'{"token": "internal-secret-42"}'),
        "/text": (200, {"Content-Type": "text/plain"}, b"root:x:0:0:internal-secret-42"),
        "/xml": (200, {"Content-Type": "application/xml"}, b"<creds><k>internal-secret-42</k></creds>"),
        "/empty": (200, {}, b""),
    })
    for path in ("/html", "/json", "/text", "/xml", "/empty"):
        with case(path):
            code, out = add(app, base + path)
            assert code != 0 and "internal-secret-42" not in out, out
    assert registered() == []


# ---------------------------------------------------------------- markup in names, and the admin console


MARKUP = "<script>alert(1)</script>"


def test_markup_in_names_is_escaped_everywhere_shown(app, client, alice, admin, tmp_path):  # type: ignore[no-untyped-def]
    from urllib.parse import quote_plus

    from ..raw_requests import authn_request_xml, deflate_b64

    ui = ('<md:Extensions><mdui:UIInfo xmlns:mdui="urn:oasis:names:tc:SAML:metadata:ui">'
          '<mdui:DisplayName xml:lang="en">&lt;img src=x onerror=alert(2)&gt;</mdui:DisplayName></mdui:UIInfo>'
          "</md:Extensions>")
    f = tmp_path / "md.xml"
    f.write_bytes(sp_metadata("https://x.example.com/&lt;svg onload=alert(3)&gt;", "https://x.example.com/acs")
                  .replace(b'AuthnRequestsSigned="false">', b'AuthnRequestsSigned="false">' + ui.encode()))
    code, slug = add(app, f, "--name", MARKUP)
    assert code == 0, slug
    slug = slug.strip()
    f2 = tmp_path / "md2.xml"
    f2.write_bytes(sp_metadata("https://y.example.com/metadata", "https://y.example.com/acs")
                   .replace(b'AuthnRequestsSigned="false">', b'AuthnRequestsSigned="false">' + ui.encode()))
    code2, slug2 = add(app, f2)
    assert code2 == 0, slug2
    code, listing = cli(app, "apps", "list")
    assert code == 0 and "<svg onload=alert(3)>" in listing  # plain text on a terminal: shown as is
    # an unknown-SP event whose Issuer is markup (shown on the error page and in the admin event log)
    xml = authn_request_xml("", issuer_xml="<saml:Issuer>&lt;script&gt;alert(4)&lt;/script&gt;</saml:Issuer>")
    err = client.get("/saml/sso?SAMLRequest=" + quote_plus(deflate_b64(xml)))
    assert err.status_code == 403
    pages = {"error page": err}
    alice.first_name = "<img src=x onerror=alert(5)>"
    db.session.commit()
    assert login(client).status_code == 303
    pages["launcher"] = client.get("/")
    admin_browser = app.test_client()
    assert login_admin(admin_browser, "admin", ADMIN_PASSWORD).status_code == 303
    for path in ("/admin/apps", f"/admin/apps/{slug}", f"/admin/apps/{slug2.strip()}", "/admin/events",
                 f"/admin/apps/{slug}/delete", "/admin/audit"):
        pages[path] = admin_browser.get(path)
    for name, resp in pages.items():
        with case(name):
            body = resp.get_data(as_text=True)
            assert resp.status_code in (200, 403), resp.status_code
            for raw in ("<script>alert(", "<img src=x", "<svg onload"):
                assert raw not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages["launcher"].get_data(as_text=True)
    assert "&lt;script&gt;alert(4)" in pages["/admin/events"].get_data(as_text=True)


def test_admin_new_app_form_refuses_the_same_attacks(app, client, admin, fifos, conn_probe):  # type: ignore[no-untyped-def]
    assert login_admin(client, "admin", ADMIN_PASSWORD).status_code == 303
    fifo = fifos()

    def post(**fields: Any) -> Any:
        return client.post("/admin/apps/new", data={"csrf_token": csrf_token(client, "/admin/apps/new"), **fields},
                           content_type="multipart/form-data")

    cases = {
        "pasted XXE": {"metadata_xml": ENTITY_FILES["xxe-file"](str(fifo.path), conn_probe.url).decode()},
        "pasted param entity": {"metadata_xml": f'<!DOCTYPE m [<!ENTITY % p SYSTEM "{conn_probe.url}"> %p;]>'
                                + GOOD_MD.decode()},
        "uploaded UTF-16 XXE": {"metadata_file": (__import__("io").BytesIO(
            ENTITY_FILES["param-entity-http-utf16"](str(fifo.path), conn_probe.url)), "md.xml")},
        "loopback URL": {"metadata_url": f"http://127.0.0.1:{conn_probe.port}/md"},
        "localhost URL": {"metadata_url": f"http://localhost:{conn_probe.port}/md"},
        "metadata-service URL": {"metadata_url": "http://169.254.169.254/latest/meta-data/"},
        "file URL": {"metadata_url": "file:///etc/passwd"},
        "gopher URL": {"metadata_url": f"gopher://127.0.0.1:{conn_probe.port}/_x"},
        "javascript ACS by hand": {"entity_id": "https://h.example.com/md", "acs_url": "javascript:alert(1)"},
    }
    for label, fields in cases.items():
        with case(label):
            resp = post(**fields)
            assert resp.status_code in (400, 422), resp.status_code
            body = resp.get_data(as_text=True)
            assert "root:" not in body and "leaked-file-content" not in body
    assert not fifo.opened() and not conn_probe.connected(0.02)
    assert registered() == []
    # the refresh form of an existing app takes URLs too
    assert post(metadata_xml=GOOD_MD.decode(), slug="good").status_code == 303
    token = csrf_token(client, "/admin/apps/good/refresh")
    resp = client.post("/admin/apps/good/refresh", data={"csrf_token": token,
                                                         "metadata_url": f"http://127.0.0.1:{conn_probe.port}/"})
    assert resp.status_code in (400, 409, 422) and not conn_probe.connected(0.02)



def test_a_stuck_name_lookup_counts_against_the_deadline(app, monkeypatch):  # type: ignore[no-untyped-def]
    """getaddrinfo has no timeout: a resolver that never answers must not hold an outbound exchange (a logout's
    back channel, a metadata fetch) past its deadline."""
    released = threading.Event()
    real_getaddrinfo = socket.getaddrinfo

    def stuck(host: str, *args: Any, **kw: Any) -> Any:
        if host == "stuck.example":
            released.wait(10)
        return real_getaddrinfo(host, *args, **kw)

    monkeypatch.setattr(fetch_svc.socket, "getaddrinfo", stuck)
    try:
        with pytest.raises(ServiceError) as exc:
            fetch_svc.http_request("GET", "https://stuck.example/scim/v2/Users", timeout=0.5)
        assert "took longer than 0.5 s" in str(exc.value) and "resolving the host 'stuck.example'" in str(exc.value)
    finally:
        released.set()
