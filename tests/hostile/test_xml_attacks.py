"""Hostile XML and hostile encodings through HTTP, for both bindings and both endpoints (/saml/sso, /saml/slo).

Every payload wraps a message that would otherwise be acceptable (a registered Issuer, a signed-in browser), so a
parser that expanded, fetched or ignored something would show it: an assertion, an ended session, an opened named
pipe or a connection to a listening socket. Expected every time: 400 `malformed_request` with an event row (SSO
events for /saml/sso, logout events for /saml/slo), nothing issued, nothing read, nothing dialled.
"""

from __future__ import annotations

import base64
import itertools
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote_plus

import pytest

from ..functional.conftest import last_event
from .saml_tools import (
    assert_refused,
    authn_request,
    b64,
    case,
    live_sessions,
    logout_request,
    register_sp,
    sign_in,
)

ENDPOINTS = {"sso": "/saml/sso", "slo": "/saml/slo"}


@dataclass
class Ctx:
    """What a payload builder may use: the base message, its Issuer, a named pipe and a listening socket."""

    base: str
    issuer: str
    fifo: str
    probe_url: str

    def with_issuer(self, replacement: str) -> str:
        return self.base.replace(f">{self.issuer}</saml:Issuer>", f">{replacement}</saml:Issuer>", 1)

    def in_extensions(self, inner: str) -> str:
        """`inner` as the first child after the Issuer (inside samlp:Extensions, where anything is allowed)."""
        return self.base.replace("</saml:Issuer>", f"</saml:Issuer><samlp:Extensions>{inner}</samlp:Extensions>", 1)


def _utf16(doc: str) -> bytes:
    # UTF-16 slips past any byte-level "<!DOCTYPE" scan: the parser itself must refuse to resolve anything
    return ('<?xml version="1.0" encoding="UTF-16"?>' + doc).encode("utf-16")


LOL = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
FIFO_ENTITY = '<!DOCTYPE r [<!ENTITY x SYSTEM "file://{fifo}">]>'
Builder = Callable[[Ctx], bytes]

# category -> payload name -> builder
PAYLOADS: dict[str, dict[str, Builder]] = {
    "entities": {
        "billion-laughs": lambda c: (f'<!DOCTYPE r [<!ENTITY lol0 "lol">{LOL}]>'
                                     + c.with_issuer("&lol9;")).encode(),
        "quadratic-blowup": lambda c: (f'<!DOCTYPE r [<!ENTITY a "{"a" * 30000}">]>'
                                       + c.with_issuer("&a;" * 3000)).encode(),
        "internal-entity": lambda c: (f'<!DOCTYPE r [<!ENTITY i "{c.issuer}">]>' + c.with_issuer("&i;")).encode(),
        "plain-doctype": lambda c: ("<!DOCTYPE samlp:AuthnRequest>" + c.base).encode(),
    },
    "external-resources": {
        "xxe-file": lambda c: (FIFO_ENTITY.format(fifo=c.fifo) + c.with_issuer("&x;")).encode(),
        "xxe-file-utf16": lambda c: _utf16(FIFO_ENTITY.format(fifo=c.fifo) + c.with_issuer("&x;")),
        "param-entity-file-utf16": lambda c: _utf16(
            f'<!DOCTYPE r [<!ENTITY % pe SYSTEM "file://{c.fifo}"> %pe;]>' + c.base),
        "external-subset-file-utf16": lambda c: _utf16(f'<!DOCTYPE r SYSTEM "file://{c.fifo}">' + c.base),
        "param-entity-http": lambda c: (f'<!DOCTYPE r [<!ENTITY % pe SYSTEM "{c.probe_url}"> %pe;]>'
                                        + c.base).encode(),
        "param-entity-http-utf16": lambda c: _utf16(
            f'<!DOCTYPE r [<!ENTITY % pe SYSTEM "{c.probe_url}"> %pe;]>' + c.base),
        "external-subset-http-utf16": lambda c: _utf16(f'<!DOCTYPE r PUBLIC "-//X//Y" "{c.probe_url}">' + c.base),
        "xxe-http-utf16": lambda c: _utf16(f'<!DOCTYPE r [<!ENTITY x SYSTEM "{c.probe_url}">]>'
                                           + c.with_issuer("&x;")),
    },
    "structure": {
        "nested-71": lambda c: c.in_extensions("<x>" * 71 + "</x>" * 71).encode(),
        "nested-10000": lambda c: c.in_extensions("<x>" * 10000 + "</x>" * 10000).encode(),
        "wrong-root": lambda c: c.base.replace("AuthnRequest", "Response").replace("LogoutRequest",
                                                                                   "ArtifactResolve").encode(),
        "wrong-namespace": lambda c: c.base.replace("urn:oasis:names:tc:SAML:2.0:protocol",
                                                    "urn:oasis:names:tc:SAML:1.0:protocol").encode(),
        "truncated": lambda c: c.base[: len(c.base) // 2].encode(),
        "not-xml": lambda c: b"GET /etc/passwd HTTP/1.0",
        "oversized-inflated": lambda c: c.in_extensions("<!--" + "x" * 140_000 + "-->").encode(),
    },
}
ALL_PAYLOADS = {name: build for group in PAYLOADS.values() for name, build in group.items()}

# XInclude and stylesheet PIs are never processed: they parse, but their targets are never read, and the
# request is then judged on its own (an unsigned LogoutRequest, or an AuthnRequest with a bogus extension).
NOT_PROCESSED: dict[str, Callable[[Ctx], bytes]] = {
    "xinclude-file": lambda c: c.in_extensions(
        f'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file://{c.fifo}" parse="text"/>').encode(),
    "xinclude-http": lambda c: c.in_extensions(
        f'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="{c.probe_url}" parse="text"/>').encode(),
    "stylesheet-pi": lambda c: (f'<?xml-stylesheet type="text/xsl" href="{c.probe_url}"?>' + c.base).encode(),
}


DELIVERIES = [(b, e) for b in ("redirect", "post") for e in ("sso", "slo")]


@pytest.fixture
def setup(client, alice, sp_keys):  # type: ignore[no-untyped-def]
    """A registered SP with alice signed in to it; returns the SP and the (NameID, SessionIndex) it holds."""
    sp = register_sp(keypair=sp_keys["sp1"])
    return sp, sign_in(client, sp)


def base_message(endpoint: str, sp, session) -> str:  # type: ignore[no-untyped-def]
    if endpoint == "sso":
        return authn_request(sp).decode()
    return logout_request(sp.entity_id, session[0], [session[1]]).decode()


def deliver(client, binding: str, endpoint: str, xml: bytes, param: str = "SAMLRequest"):  # type: ignore[no-untyped-def]
    if binding == "redirect":
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        q = quote_plus(base64.b64encode(c.compress(xml) + c.flush()).decode())
        return client.get(f"{ENDPOINTS[endpoint]}?{param}={q}")
    return client.post(ENDPOINTS[endpoint], data={param: b64(xml)})


def event_type(endpoint: str) -> str:
    return "sso" if endpoint == "sso" else "logout"


@pytest.mark.parametrize("category", list(PAYLOADS))
def test_hostile_xml_is_refused(client, setup, fifos, conn_probe, category):  # type: ignore[no-untyped-def]
    sp, session = setup
    for (name, build), (binding, endpoint) in itertools.product(PAYLOADS[category].items(), DELIVERIES):
        with case(f"{name} {binding} {endpoint}"):
            fifo = fifos()
            xml = build(Ctx(base_message(endpoint, sp, session), sp.entity_id, str(fifo.path), conn_probe.url))
            resp = deliver(client, binding, endpoint, xml)
            ev = assert_refused(resp, 400, "malformed_request", event_type=event_type(endpoint))
            assert ev.binding == binding
            assert live_sessions() == 1
            assert not fifo.opened(), "the parser opened a file named by the message"
            assert not conn_probe.connected(0.02), "the parser connected to a URL named by the message"


def test_probes_notice_a_reader_and_a_connection(fifos, conn_probe):  # type: ignore[no-untyped-def]
    """Control for every "never opened / never connected" assertion in this suite: the probes do notice."""
    import socket

    fifo = fifos()
    with open(fifo.path, "rb") as fh:
        assert fh.read() == b'<!ENTITY leak "leaked-file-content">'
    assert fifo.opened()
    assert not conn_probe.connected(0.02)
    with socket.create_connection(("127.0.0.1", conn_probe.port), timeout=2):
        assert conn_probe.connected()


def test_xinclude_and_stylesheets_are_never_fetched(client, setup, fifos, conn_probe):  # type: ignore[no-untyped-def]
    sp, session = setup
    for name, endpoint in itertools.product(NOT_PROCESSED, ("sso", "slo")):
        with case(f"{name} {endpoint}"):
            fifo = fifos()
            xml = NOT_PROCESSED[name](Ctx(base_message(endpoint, sp, session), sp.entity_id, str(fifo.path),
                                          conn_probe.url))
            resp = deliver(client, "post", endpoint, xml)
            assert resp.status_code < 500
            if endpoint == "slo":  # unsigned: refused before the NameID is looked at
                assert_refused(resp, 403, "bad_signature", event_type="logout")
            assert live_sessions() == 1
            assert not conn_probe.connected(0.02)
            assert not fifo.opened()


def test_hostile_xml_as_logout_response_is_harmless(client, setup, fifos, conn_probe):  # type: ignore[no-untyped-def]
    """A hostile LogoutResponse outside a logout chain is refused (400, an event); nothing else happens."""
    sp, session = setup
    base = (f'<samlp:LogoutResponse xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
            f'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_r1" Version="2.0" '
            f'IssueInstant="2030-01-01T00:00:00Z"><saml:Issuer>{sp.entity_id}</saml:Issuer>'
            '<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>'
            "</samlp:LogoutResponse>")
    for name in ("billion-laughs", "xxe-file-utf16", "param-entity-http-utf16", "nested-10000"):
        for binding in ("redirect", "post"):
            with case(f"{name} {binding}"):
                fifo = fifos()
                xml = ALL_PAYLOADS[name](Ctx(base, sp.entity_id, str(fifo.path), conn_probe.url))
                resp = deliver(client, binding, "slo", xml, param="SAMLResponse")
                assert resp.status_code == 400 and last_event().reason == "unknown_session"
                assert live_sessions() == 1
                assert not conn_probe.connected(0.02)
                assert not fifo.opened()


# ---------------------------------------------------------------- broken encodings


def _deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def _bomb() -> str:
    """~20 KB of DEFLATE that inflates to 20 MB of '<'."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = b"<" * 1_000_000
    data = b"".join(c.compress(chunk) for _ in range(20)) + c.flush()
    return quote_plus(base64.b64encode(data).decode())


REDIRECT_ENCODINGS = {
    "bad-base64": "SAMLRequest=%%%not-base64!!",
    "base64-with-junk": "SAMLRequest=" + quote_plus("PHg+" + "*" * 8),
    "not-deflate": "SAMLRequest=" + quote_plus(base64.b64encode(b"<samlp:AuthnRequest/>").decode()),
    "truncated-deflate": "SAMLRequest=" + quote_plus(base64.b64encode(_deflate(b"<x>" * 500)[:40]).decode()),
    "deflate-bomb": "SAMLRequest=" + _bomb(),
    "empty-value": "SAMLRequest=",
    "no-message": "RelayState=abc",
    "non-ascii-query": "SAMLRequest=%C3%A9\xe9",
    "other-encoding": "SAMLRequest=" + quote_plus(base64.b64encode(_deflate(b"<x/>")).decode())
                      + "&SAMLEncoding=urn%3Aexample%3Agzip",
    "duplicate-message": "SAMLRequest=" + quote_plus(base64.b64encode(_deflate(b"<x/>")).decode())
                         + "&SAMLRequest=x",
}

POST_ENCODINGS = {
    "bad-base64": "!!!not base64!!!",
    "truncated-base64": b64(b"<samlp:AuthnRequest xmlns:samlp='urn:oasis:names:tc:SAML:2.0:protocol'/>")[:-3],
    "deflated-instead-of-plain": base64.b64encode(_deflate(b"<samlp:AuthnRequest/>")).decode(),
    "empty-value": "",
    "over-the-message-cap": b64(b"<x>" + b" " * 150_000 + b"</x>"),   # under the HTTP body cap, over 128 KiB
}


@pytest.mark.parametrize("endpoint", ["sso", "slo"])
def test_broken_redirect_encoding(client, alice, endpoint):  # type: ignore[no-untyped-def]
    for name, query in REDIRECT_ENCODINGS.items():
        with case(name):
            resp = client.get(f"{ENDPOINTS[endpoint]}?{query}")
            assert_refused(resp, 400, "malformed_request", event_type=event_type(endpoint))


@pytest.mark.parametrize("endpoint", ["sso", "slo"])
def test_broken_post_encoding(client, alice, endpoint):  # type: ignore[no-untyped-def]
    for name, value in POST_ENCODINGS.items():
        with case(name):
            resp = client.post(ENDPOINTS[endpoint], data={"SAMLRequest": value})
            assert_refused(resp, 400, "malformed_request", event_type=event_type(endpoint))


@pytest.mark.parametrize("endpoint", ["sso", "slo"])
def test_oversized_body_is_413(client, alice, endpoint):  # type: ignore[no-untyped-def]
    resp = client.post(ENDPOINTS[endpoint], data={"SAMLRequest": "A" * 300_000, "RelayState": "x"})
    # a refused SAML message is an event whatever refused it, the body-size cap included
    ev = assert_refused(resp, 413, "malformed_request", event_type=event_type(endpoint))
    assert "IDP_MAX_REQUEST_BYTES" in ev.detail["message"]
    resp = client.post(ENDPOINTS[endpoint], data=b"SAMLRequest=" + b"A" * 1_000_000,
                       content_type="application/x-www-form-urlencoded")
    assert_refused(resp, 413, "malformed_request", event_type=event_type(endpoint))


def test_deflate_bomb_is_refused_quickly(client, alice):  # type: ignore[no-untyped-def]
    import time

    query = REDIRECT_ENCODINGS["deflate-bomb"]
    started = time.perf_counter()
    resp = client.get("/saml/sso?" + query)
    assert time.perf_counter() - started < 2.0, "the inflate was not capped"
    assert_refused(resp, 400, "malformed_request")
