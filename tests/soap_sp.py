"""A SAML SP on loopback that implements single logout over the SOAP binding with pysaml2 (saml-bindings-2.0-os
3.2): a threading HTTP server whose handler feeds each POSTed SOAP envelope to a pysaml2 Saml2Client
(`parse_logout_request(body, BINDING_SOAP)` verifies the IdP's signature with the IdP's metadata) and answers
with `create_logout_response(..., bindings=[BINDING_SOAP], sign=True)` wrapped by `apply_binding(BINDING_SOAP)`.

`mode` scripts the answer: ok | unsigned | wrong_irt (a signed answer to another request) | fault (a SOAP fault,
HTTP 500) | error (HTTP 500, no SOAP) | sleep (answers after `delay` seconds) | failure (a signed Responder status)
| resign (the answer signed by `resign`, e.g. with a key that is not in the SP's metadata).
The SP's metadata lists the SOAP SingleLogoutService; with front_channel=False it lists only that one.

pysaml2's SOAP unwrapping (saml2.soap.parse_soap_enveloped_saml_thingy) re-serialises the Body's message with the
standard library's ElementTree, which renames namespace prefixes it has no registration for (samlp: -> ns0:);
exclusive c14n covers prefixes, so the signature of any sender that does not happen to write ns0/ns1/ns2 fails
there. A pysaml2 SP that receives signed SOAP messages therefore registers the prefixes its peers use, as
`soap_prefixes()` does for the tests (and undoes afterwards; the same fix as ECOSYSTEM.md pitfall 7).
"""

from __future__ import annotations

import copy
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from lxml import etree

from .sp_harness import NS, KeyPair, Pysaml2SP, SPValidationError, _pysaml2_call

BINDING_SOAP = "urn:oasis:names:tc:SAML:2.0:bindings:SOAP"
STATUS_RESPONDER = "urn:oasis:names:tc:SAML:2.0:status:Responder"
SOAP_FAULT = (b'<?xml version="1.0"?><SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/">'
              b"<SOAP-ENV:Body><SOAP-ENV:Fault><faultcode>SOAP-ENV:Server</faultcode>"
              b"<faultstring>session store unavailable</faultstring></SOAP-ENV:Fault></SOAP-ENV:Body>"
              b"</SOAP-ENV:Envelope>")


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass   # a refused TLS handshake (no client certificate) is what some tests want


@contextmanager
def soap_prefixes() -> Iterator[None]:
    """Register the prefixes the IdP's messages use with ElementTree while the block runs (see the module doc)."""
    saved = dict(ElementTree._namespace_map)  # type: ignore[attr-defined]
    for prefix, uri in (("samlp", "urn:oasis:names:tc:SAML:2.0:protocol"),
                        ("saml", "urn:oasis:names:tc:SAML:2.0:assertion"), ("ds", "http://www.w3.org/2000/09/xmldsig#")):
        ElementTree.register_namespace(prefix, uri)
    try:
        yield
    finally:
        ElementTree._namespace_map.clear()  # type: ignore[attr-defined]
        ElementTree._namespace_map.update(saved)  # type: ignore[attr-defined]


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    name_id: str | None = None
    session_indexes: list[str] = field(default_factory=list)
    request_id: str | None = None
    verified: bool = False            # pysaml2 accepted the LogoutRequest (signature checked against the IdP)
    error: str | None = None
    client_cert_subject: str | None = None   # over https: the certificate the IdP presented (mutual TLS)
    arrived: float = field(default_factory=time.monotonic)
    answered: float | None = None     # when the answer was sent


class SoapLogoutSP(Pysaml2SP):
    """A pysaml2 SP whose SingleLogoutService includes a SOAP endpoint served on loopback."""

    def __init__(self, workdir: Path, idp_metadata_xml: str, *, keypair: KeyPair | None = None,
                 front_channel: bool = True, mode: str = "ok", delay: float = 0.0,
                 tls: ssl.SSLContext | None = None, resign: Callable[[bytes], bytes] | None = None,
                 **kw: Any) -> None:
        self.mode, self.delay, self.front_channel = mode, delay, front_channel
        self.resign = resign   # mode "resign": the answer is built unsigned, then signed by this (a foreign key)
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self.server = _QuietServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        if tls is not None:   # https; the handshake runs in the handler's thread
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True, do_handshake_on_connect=False)
        port = self.server.server_address[1]
        scheme = "https" if tls is not None else "http"
        self.soap_url = f"{scheme}://127.0.0.1:{port}/saml/soap"
        self.extra_slo_endpoints = [(self.soap_url, BINDING_SOAP)]
        super().__init__(workdir, idp_metadata_xml, base_url=f"{scheme}://127.0.0.1:{port}", keypair=keypair, **kw)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def metadata_xml(self) -> str:
        root = etree.fromstring(super().metadata_xml().encode())
        sp = root.find("md:SPSSODescriptor", NS)
        assert sp is not None
        slos = sp.findall("md:SingleLogoutService", NS)
        soap = etree.Element(f"{{{NS['md']}}}SingleLogoutService", Binding=BINDING_SOAP, Location=self.soap_url)
        slos[-1].addnext(soap)
        if not self.front_channel:
            for el in slos:
                sp.remove(el)
        return etree.tostring(root, encoding="unicode")

    # ------------------------------------------------------------------ the SOAP endpoint

    def answer(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, Received]:
        """Process one SOAP LogoutRequest as pysaml2 does and build the scripted answer."""
        from saml2.samlp import Status, StatusCode

        rec = Received(headers=headers, body=body)
        with self._lock:
            self.received.append(rec)
        try:
            root = etree.fromstring(body)
            req_el = root.find("{http://schemas.xmlsoap.org/soap/envelope/}Body/"
                               "{urn:oasis:names:tc:SAML:2.0:protocol}LogoutRequest")
            if req_el is None or req_el.find("ds:Signature", NS) is None:
                raise SPValidationError("the SOAP LogoutRequest is not signed")
            req = _pysaml2_call("LogoutRequest", self.client.parse_logout_request, body.decode(), BINDING_SOAP)
            if req is None or req.message is None:
                raise SPValidationError("pysaml2 did not accept the LogoutRequest")
            self._check_logout_message(req_el, "LogoutRequest")
        except SPValidationError as exc:
            rec.error = f"{exc}\n{exc.detail or ''}"
            return 500, SOAP_FAULT, rec
        msg = req.message
        rec.verified, rec.request_id = True, msg.id
        rec.name_id = (msg.name_id.text or "").strip() if msg.name_id is not None else None
        rec.session_indexes = [(s.text or "").strip() for s in msg.session_index]
        if self.mode == "sleep":
            time.sleep(self.delay)
        if self.mode == "fault":
            return 500, SOAP_FAULT, rec
        if self.mode == "error":
            return 500, b"internal error", rec
        if self.mode == "wrong_irt":
            msg = copy.copy(msg)
            msg.id = "_an0ther0request"
        status = STATUS_RESPONDER if self.mode == "failure" else "urn:oasis:names:tc:SAML:2.0:status:Success"
        resp = self.client.create_logout_response(msg, bindings=[BINDING_SOAP],
                                                  status=Status(status_code=StatusCode(value=status)),
                                                  sign=self.mode not in ("unsigned", "resign"),
                                                  sign_alg=self.sig_alg, digest_alg=self.digest_alg)
        xml = str(resp)
        if self.mode == "resign" and self.resign is not None:
            xml = self.resign(xml.encode()).decode()
        info = self.client.apply_binding(BINDING_SOAP, xml, "", response=True)
        data = info["data"]
        return 200, data.encode() if isinstance(data, str) else data, rec

    def _check_logout_message(self, root: etree._Element, tag: str, request_id: str | None = None) -> None:
        """As the harness's check, but the Destination is the SOAP endpoint."""
        saved = self.slo_url
        self.slo_url = self.soap_url
        try:
            super()._check_logout_message(root, tag, request_id)
        finally:
            self.slo_url = saved

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        sp = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, data, rec = sp.answer(body, {k.lower(): v for k, v in self.headers.items()})
                if isinstance(self.connection, ssl.SSLSocket):
                    peer = self.connection.getpeercert() or {}
                    rec.client_cert_subject = ",".join(f"{k}={v}" for rdn in peer.get("subject", ()) for k, v in rdn)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "text/xml; charset=utf-8")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    rec.answered = time.monotonic()
                except OSError:
                    pass   # the IdP gave up (timeout)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler
