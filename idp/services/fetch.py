"""Fetch SP metadata from a URL, and POST a form to an RP (back-channel logout), without becoming an SSRF proxy.

Only http(s); every address the host name resolves to must be public unless private targets
are allowed by configuration (link-local addresses, where cloud metadata services live, never are); the
connection goes to the vetted address (no second DNS lookup to rebind); redirects are followed by hand (at
most 3) with the same checks (a POST follows none); bounded time and size.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from . import ServiceError

MAX_BYTES = 5 * 1024 * 1024
MAX_REDIRECTS = 3


# IPv6 ranges that embed or translate to IPv4 (and so can reach internal IPv4 hosts), or are not unicast.
_IPV6_TUNNELS = [ipaddress.ip_network(n) for n in ("::/96", "64:ff9b::/96", "64:ff9b:1::/48", "2002::/16",
                                                   "2001::/32")]


def _vet_address(ip: str, allow_private: bool, what: str = "metadata URL",
                 switch: str = "IDP_METADATA_FETCH_ALLOW_PRIVATE") -> None:
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    if isinstance(addr, ipaddress.IPv6Address) and any(addr in n for n in _IPV6_TUNNELS) and not allow_private:
        raise ServiceError(f"{what} resolves to a non-public address ({addr}: IPv6 embedding IPv4)", field="url")
    if addr.is_link_local:
        # 169.254.0.0/16 and fe80::/10: the cloud metadata service (instance credentials) lives there; no
        # *_ALLOW_PRIVATE switch opens it (an internal receiver has a private or loopback address, not these)
        raise ServiceError(f"{what} resolves to a non-public address ({addr}: link-local, refused whatever "
                           f"{switch} says)", field="url")
    if allow_private:
        if addr.is_unspecified or addr.is_multicast:
            raise ServiceError(f"{what} resolves to a forbidden address ({addr})", field="url")
        return
    if not addr.is_global or addr.is_multicast:
        raise ServiceError(f"{what} resolves to a non-public address ({addr}); "
                           f"set {switch}=true to allow internal hosts", field="url")


# getaddrinfo has no timeout of its own: lookups run on these threads and are waited for only until the exchange's
# deadline (a stuck lookup keeps its thread until the resolver gives up; later ones fail fast meanwhile)
_RESOLVER = ThreadPoolExecutor(max_workers=4, thread_name_prefix="idp-dns")


def _resolve(host: str, port: int, allow_private: bool, what: str = "metadata URL",
             switch: str = "IDP_METADATA_FETCH_ALLOW_PRIVATE", timeout: float | None = None) -> str:
    try:
        future = _RESOLVER.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
        infos = future.result(timeout=timeout)
    except FutureTimeout:
        raise ServiceError(f"resolving the host {host!r} of the {what} took longer than {timeout:.1f} s",
                           field="url") from None
    except (socket.gaierror, UnicodeError):
        raise ServiceError(f"cannot resolve the host {host!r} of the {what}", field="url") from None
    addresses = sorted({info[4][0] for info in infos})
    if not addresses:
        raise ServiceError(f"cannot resolve the host {host!r} of the {what}", field="url")
    for ip in addresses:  # every answer must pass, or a round-robin name could slip one through
        _vet_address(str(ip), allow_private, what, switch)
    return str(addresses[0])


def _tls_context(client_cert: tuple[str, str] | None) -> ssl.SSLContext:
    """The system CAs, the server's name checked; with `client_cert` (certificate PEM path, key PEM path) the
    IdP presents that certificate when the server asks for one (mutual TLS)."""
    context = ssl.create_default_context()
    if client_cert is not None:
        try:
            context.load_cert_chain(client_cert[0], client_cert[1])
        except (OSError, ssl.SSLError) as exc:
            raise ServiceError(f"the TLS client certificate cannot be loaded: {exc.__class__.__name__}",
                               field="client_cert") from None
    return context


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, ip: str, port: int, timeout: float,
                 client_cert: tuple[str, str] | None = None) -> None:
        super().__init__(host, port, timeout=timeout, context=_tls_context(client_cert))
        self._ip = ip

    def connect(self) -> None:
        sock = socket.create_connection((self._ip, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, ip: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._ip = ip

    def connect(self) -> None:
        self.sock = socket.create_connection((self._ip, self.port), self.timeout)


def _shutdown(conn: http.client.HTTPConnection) -> None:
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _pinned_connection(url: str, allow_private: bool, deadline: float, min_timeout: float, subject: str,
                       what: str = "metadata URL", switch: str = "IDP_METADATA_FETCH_ALLOW_PRIVATE",
                       client_cert: tuple[str, str] | None = None
                       ) -> tuple[http.client.HTTPConnection, str, float]:
    """The SSRF guard in one place: vet `url` (absolute http(s), no credentials, a valid port), resolve it to a
    permitted address and open a connection pinned to that address; (connection, request path, timeout)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ServiceError(f"{subject} must be an absolute http:// or https:// URL", field="url")
    if parts.username or parts.password:
        raise ServiceError(f"{subject} must not contain credentials", field="url")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ServiceError(f"{subject} has an invalid port", field="url") from None
    ip = _resolve(parts.hostname, port, allow_private, what, switch,
                  timeout=max(min_timeout, deadline - time.monotonic()))   # the lookup counts against the deadline
    remaining = max(min_timeout, deadline - time.monotonic())
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if parts.scheme == "https":
        return _PinnedHTTPSConnection(parts.hostname, ip, port, remaining, client_cert), path, remaining
    return _PinnedHTTPConnection(parts.hostname, ip, port, remaining), path, remaining


@dataclass(frozen=True, slots=True)
class FetchedMetadata:
    """The answer to a (conditional) metadata GET: `body` is None when the server said 304 Not Modified."""

    body: bytes | None
    etag: str | None
    last_modified: str | None
    url: str                    # after redirects

    @property
    def not_modified(self) -> bool:
        return self.body is None


def fetch_metadata(url: str, *, allow_private: bool = False, timeout: float = 10.0,
                   max_bytes: int = MAX_BYTES) -> bytes:
    answer = fetch_metadata_conditional(url, allow_private=allow_private, timeout=timeout, max_bytes=max_bytes)
    assert answer.body is not None   # no validator sent: never a 304
    return answer.body


def _header_value(value: str | None, limit: int = 512) -> str | None:
    """A validator echoed back to the server: printable ASCII only, bounded (a hostile server cannot make us
    send header injection or unbounded headers)."""
    if not value or len(value) > limit or not value.isascii() or any(ord(c) < 32 or ord(c) == 127 for c in value):
        return None
    return value


def fetch_metadata_conditional(url: str, *, etag: str | None = None, last_modified: str | None = None,
                               allow_private: bool = False, timeout: float = 10.0, max_bytes: int = MAX_BYTES,
                               accept: str = "application/samlmetadata+xml, application/xml, text/xml"
                               ) -> FetchedMetadata:
    """GET metadata with If-None-Match / If-Modified-Since (RFC 9110 §13.1) when validators are given; a 304
    comes back as `body` None. The same SSRF guard, redirect handling and bounds as every fetch here."""
    deadline = time.monotonic() + timeout
    headers = {"Accept": accept, "User-Agent": "idp-metadata-fetch/1"}
    if _header_value(etag):
        headers["If-None-Match"] = str(etag)
    if _header_value(last_modified):
        headers["If-Modified-Since"] = str(last_modified)
    for _ in range(MAX_REDIRECTS + 1):
        conn, path, remaining = _pinned_connection(url, allow_private, deadline, 0.5, "metadata URL")
        resp: http.client.HTTPResponse | None = None
        # The socket timeout bounds each receive only; a server trickling a byte at a time (headers or
        # body) would hold us forever. A timer shuts the socket at the overall deadline.
        watchdog = threading.Timer(remaining, _shutdown, args=(conn,))
        watchdog.daemon = True
        watchdog.start()
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            if resp.status in (301, 302, 303, 307, 308):
                location = resp.getheader("Location")
                if not location:
                    raise ServiceError("metadata URL redirected without a Location", field="url")
                target = urljoin(url, location)
                if urlsplit(url).scheme.lower() == "https" and urlsplit(target).scheme.lower() != "https":
                    # a downgrade would hand the document to anyone on the path
                    raise ServiceError("metadata URL redirected from https:// to a plain http:// URL: refused",
                                       field="url")
                url = target
                continue
            if resp.status == 304 and len(headers) > 2:
                return FetchedMetadata(None, _header_value(resp.getheader("ETag")) or etag,
                                       _header_value(resp.getheader("Last-Modified")) or last_modified, url)
            if resp.status != 200:
                raise ServiceError(f"metadata URL answered HTTP {resp.status}", field="url")
            declared = resp.getheader("Content-Length")
            if declared and declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
                raise ServiceError(f"metadata is larger than {max_bytes} bytes", field="url")
            chunks, total = [], 0
            while True:
                if time.monotonic() > deadline:
                    raise ServiceError("metadata download took too long", field="url")
                chunk = resp.read1(65536)
                if not chunk:
                    break
                total += len(chunk)
                if total > max_bytes:
                    raise ServiceError(f"metadata is larger than {max_bytes} bytes", field="url")
                chunks.append(chunk)
            if time.monotonic() >= deadline:
                raise ServiceError(f"metadata download took longer than {timeout:.0f} s", field="url")
            if declared and declared.isascii() and declared.isdigit() and total != int(declared):
                raise ServiceError("metadata download was cut short", field="url")
            return FetchedMetadata(b"".join(chunks), _header_value(resp.getheader("ETag")),
                                   _header_value(resp.getheader("Last-Modified")), url)
        except ServiceError:
            raise
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if time.monotonic() >= deadline:
                raise ServiceError(f"metadata download took longer than {timeout:.0f} s", field="url") from None
            raise ServiceError(f"could not fetch the metadata URL: {exc.__class__.__name__}", field="url") from None
        finally:
            watchdog.cancel()
            if resp is not None:
                resp.close()
            conn.close()
    raise ServiceError("metadata URL redirected too many times", field="url")


MAX_ANSWER_BYTES = 64 * 1024


def post_form(url: str, fields: dict[str, str], *, allow_private: bool = False, timeout: float = 5.0,
              what: str = "back-channel logout URI", switch: str = "IDP_OIDC_BACKCHANNEL_ALLOW_PRIVATE") -> int:
    """POST `fields` (application/x-www-form-urlencoded) to `url`; returns the HTTP status of the answer.

    The same SSRF guard as fetch_metadata (vetted, pinned address; private targets only when `allow_private`).
    No redirect is followed (a redirect answer is returned as its status: OIDC Back-Channel Logout 1.0 section
    2.8 has the RP answer 200 itself). At most MAX_ANSWER_BYTES of the answer are read; `timeout` bounds the
    whole exchange. Refusals and network failures are ServiceErrors with a message fit for an event (never the
    posted values).
    """
    from urllib.parse import urlencode

    deadline = time.monotonic() + timeout
    conn, path, remaining = _pinned_connection(url, allow_private, deadline, 0.2, f"the {what}", what, switch)
    body = urlencode(fields).encode("ascii")
    resp: http.client.HTTPResponse | None = None
    watchdog = threading.Timer(remaining, _shutdown, args=(conn,))
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.request("POST", path, body=body, headers={
            "Content-Type": "application/x-www-form-urlencoded", "User-Agent": "idp-backchannel/1",
            "Cache-Control": "no-store"})
        resp = conn.getresponse()
        resp.read(MAX_ANSWER_BYTES)
        return int(resp.status)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        if time.monotonic() >= deadline:
            raise ServiceError(f"the {what} did not answer within {timeout:g} s", field="url") from None
        raise ServiceError(f"could not reach the {what}: {exc.__class__.__name__}", field="url") from None
    finally:
        watchdog.cancel()
        if resp is not None:
            resp.close()
        conn.close()


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status: int
    content_type: str
    body: bytes


def http_request(method: str, url: str, *, body: bytes | None = None, headers: dict[str, str] | None = None,
                 allow_private: bool = False, timeout: float = 10.0, max_bytes: int = MAX_BYTES,
                 what: str = "SCIM service", switch: str = "IDP_PROVISIONING_ALLOW_PRIVATE",
                 client_cert: tuple[str, str] | None = None, user_agent: str = "idp-provisioning/1") -> HttpAnswer:
    """One HTTP exchange with a remote API (outbound SCIM provisioning): the same SSRF guard as fetch_metadata
    (vetted, pinned address; private and loopback targets only when `allow_private`), no redirect followed (a
    redirect answer is returned as it is), `timeout` bounds the whole exchange, at most `max_bytes` of the
    answer. Refusals and network failures are ServiceErrors whose message names neither headers nor body (the
    caller's credentials stay out of events and logs). `client_cert` (certificate and key PEM paths): presented
    to an https server that asks for one (mutual TLS)."""
    deadline = time.monotonic() + timeout
    conn, path, remaining = _pinned_connection(url, allow_private, deadline, 0.2, f"the {what} URL", what, switch,
                                               client_cert)
    resp: http.client.HTTPResponse | None = None
    watchdog = threading.Timer(remaining, _shutdown, args=(conn,))
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.request(method, path, body=body, headers={"User-Agent": user_agent, **(headers or {})})
        resp = conn.getresponse()
        data = resp.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise ServiceError(f"the {what} answered more than {max_bytes} bytes", field="url")
        return HttpAnswer(int(resp.status), resp.getheader("Content-Type") or "", data)
    except ServiceError:
        raise
    except (OSError, http.client.HTTPException, ValueError) as exc:
        if time.monotonic() >= deadline:
            raise ServiceError(f"the {what} did not answer within {timeout:g} s", field="url") from None
        raise ServiceError(f"could not reach the {what}: {exc.__class__.__name__}", field="url") from None
    finally:
        watchdog.cancel()
        if resp is not None:
            resp.close()
        conn.close()
