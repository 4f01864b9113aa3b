"""Well-formed requests that lie: comments in names, bad IDs, wrong Destination, stale or replayed messages, hostile
RelayState and ACS URLs that only look like the registered one. Both bindings; alice is signed in, so anything
accepted by mistake would come back as an assertion.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import pytest

from ..sp_harness import KeyPair
from ..webclient import Browser, saml_form
from .conftest import login
from .saml_tools import (
    SSO_URL,
    assert_refused,
    assertion_count,
    authn_request,
    case,
    logout_request,
    register_sp,
    send,
    sign_in,
    signed,
)

BINDINGS = ["redirect", "post"]


@pytest.fixture
def sp(client, alice):  # type: ignore[no-untyped-def]
    """An SP that does not sign its requests, with alice already signed in to the IdP."""
    registered = register_sp("https://sp1.example.com")
    assert login(client).status_code == 303
    return registered


@pytest.fixture
def signing_sp(client, alice, sp_keys):  # type: ignore[no-untyped-def]
    registered = register_sp("https://sp2.example.com", keypair=sp_keys["sp2"], signs=True)
    assert login(client).status_code == 303
    return registered


def sso(client, binding: str, xml: bytes, *, relay_state: str | None = None, sign_with: KeyPair | None = None):  # type: ignore[no-untyped-def]
    """Deliver an AuthnRequest; signed with `sign_with` (query signature, or an enveloped XML signature)."""
    key_pem = None
    if sign_with is not None and binding == "post":
        xml = signed(xml, sign_with)
    elif sign_with is not None:
        key_pem = sign_with.key_pem
    return Browser(client).follow(send(client, binding, "/saml/sso", xml, relay_state=relay_state, key_pem=key_pem))


def with_attr(xml: bytes, name: str, value: str) -> bytes:
    """Set (or replace) a root attribute with an exact string the builders would not produce."""
    text = xml.decode()
    attr = f'{name}="{html.escape(value, quote=True)}"'
    if re.search(rf' {name}="[^"]*"', text):
        text = re.sub(rf' {name}="[^"]*"', " " + attr.replace("\\", "\\\\"), text, count=1)
    else:
        text = text.replace(" Version=", f" {attr} Version=", 1)
    return text.encode()


# ---------------------------------------------------------------- Issuer / NameID: the full text content


@pytest.mark.parametrize("binding", BINDINGS)
def test_comment_injection_in_issuer(client, sp, binding):  # type: ignore[no-untyped-def]
    for issuer, expect in [
        ("https://sp1.example.com/metadata<!---->.evil", "https://sp1.example.com/metadata.evil"),
        ("https://sp1.example.com/metadata<!-- x -->.evil.example", "https://sp1.example.com/metadata.evil.example"),
        ("https://sp1.example.com/metadata<![CDATA[.evil]]>", "https://sp1.example.com/metadata.evil"),
        ("https://sp1.example.com/metadata<?pi x?>.evil", "https://sp1.example.com/metadata.evil"),
        ("https://sp1.example.com/<!---->metadata/x", "https://sp1.example.com/metadata/x"),
    ]:
        with case(issuer):
            xml = authn_request(sp, issuer_xml=f"<saml:Issuer>{issuer}</saml:Issuer>")
            ev = assert_refused(sso(client, binding, xml), 403, "unknown_sp")
            assert ev.sp_entity_id == expect and ev.app_slug is None
    # split by a comment but whole when read in full: this is simply sp1 (and it goes to sp1's ACS only)
    xml = authn_request(sp, issuer_xml="<saml:Issuer>https://sp1.example.com<!-- x -->/metadata</saml:Issuer>")
    resp = sso(client, binding, xml)
    assert assertion_count(resp) == 1 and saml_form(resp).action == sp.acs_url  # type: ignore[union-attr]


# ---------------------------------------------------------------- IDs


BAD_IDS = ["1abc", "-abc", ".abc", "_a b", "_a:b", "_a/b", "_a<b", "_a&amp;b", "", " _abc", "_" + "a" * 300]


@pytest.mark.parametrize("endpoint", ["sso", "slo"])
def test_ids_that_are_not_ncnames(client, alice, sp_keys, endpoint):  # type: ignore[no-untyped-def]
    sp = register_sp(keypair=sp_keys["sp1"], signs=True)
    nid, idx = sign_in(client, sp)
    for binding in BINDINGS:
        for bad in BAD_IDS + [None]:
            with case(f"{binding} {bad!r}"):
                if endpoint == "sso":
                    xml = authn_request(sp, req_id="_placeholder")
                else:
                    xml = logout_request(sp.entity_id, nid, [idx], req_id="_placeholder")
                xml = xml.replace(b' ID="_placeholder"', b"" if bad is None else f' ID="{bad}"'.encode())
                # parsing comes before the signature check, so these need no signature to be judged
                resp = send(client, binding, f"/saml/{endpoint}", xml)
                assert_refused(resp, 400, "malformed_request", event_type="sso" if endpoint == "sso" else "logout")


# ---------------------------------------------------------------- Destination


WRONG_DESTINATIONS = [
    "https://evil.example.com/{p}", "http://localhost/{p}/", "http://LOCALHOST/{p}", "http://localhost:80/{p}",
    "https://localhost/{p}", "http://localhost/{p}?x=1", "http://localhost.evil.example/{p}",
    "http://evil@localhost/{p}", " http://localhost/{p}", "http://localhost/saml/%2e%2e/{p}", "{p}",
]


@pytest.mark.parametrize("binding", BINDINGS)
def test_destination_mismatch(client, sp, binding):  # type: ignore[no-untyped-def]
    for template in WRONG_DESTINATIONS + ["http://localhost/saml/slo"]:
        dest = template.format(p="saml/sso")
        with case(dest):
            xml = with_attr(authn_request(sp), "Destination", dest)
            assert_refused(sso(client, binding, xml), 400, "wrong_destination")


@pytest.mark.parametrize("binding", BINDINGS)
def test_logout_destination_mismatch(client, alice, sp_keys, binding):  # type: ignore[no-untyped-def]
    from .saml_tools import live_sessions

    sp = register_sp(keypair=sp_keys["sp1"], signs=True)
    nid, idx = sign_in(client, sp)
    for template in WRONG_DESTINATIONS + ["http://localhost/saml/sso", None]:
        dest = template.format(p="saml/slo") if template else None
        with case(repr(dest)):
            xml = logout_request(sp.entity_id, nid, [idx], destination=dest)
            if binding == "post":
                resp = send(client, "post", "/saml/slo", signed(xml, sp.keypair))
            else:
                resp = send(client, "redirect", "/saml/slo", xml, key_pem=sp.keypair.key_pem)
            assert_refused(resp, 400, "wrong_destination", event_type="logout")
            assert live_sessions() == 1


@pytest.mark.parametrize("binding", BINDINGS)
def test_signed_request_without_destination(client, signing_sp, binding):  # type: ignore[no-untyped-def]
    xml = authn_request(signing_sp, destination=None)
    assert_refused(sso(client, binding, xml, sign_with=signing_sp.keypair), 400, "wrong_destination")
    # control: the same request with its Destination is fine
    xml = authn_request(signing_sp, destination=SSO_URL)
    assert assertion_count(sso(client, binding, xml, sign_with=signing_sp.keypair)) == 1


def test_unsigned_request_without_destination_is_allowed(client, sp):  # type: ignore[no-untyped-def]
    """saml-bindings §3.4.5.2/§3.5.5.2 require Destination only on signed messages."""
    assert assertion_count(sso(client, "redirect", authn_request(sp, destination=None))) == 1


# ---------------------------------------------------------------- IssueInstant


def _stamp(dt: datetime, offset: str = "Z") -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + offset


@pytest.mark.parametrize("binding", BINDINGS)
def test_issue_instant_outside_the_window(client, sp, binding):  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    for stamp in [
        _stamp(now - timedelta(hours=1)), _stamp(now + timedelta(hours=1)),
        _stamp(now - timedelta(seconds=330)), _stamp(now + timedelta(seconds=330)),
        "1970-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z",
        _stamp(now, "-14:00"),            # the wall-clock digits of now, but 14 hours in the future
        _stamp(now, "+05:30"),            # 5.5 hours in the past
        _stamp(now - timedelta(days=1), ".999999999Z"),
    ]:
        with case(stamp):
            xml = with_attr(authn_request(sp), "IssueInstant", stamp)
            assert_refused(sso(client, binding, xml), 400, "request_expired")
    for stamp in ["yesterday", "2024-02-30T00:00:00Z", _stamp(now, "+25:00"), "", _stamp(now)[:-1] + "z"]:
        with case(stamp):
            xml = with_attr(authn_request(sp), "IssueInstant", stamp)
            assert_refused(sso(client, binding, xml), 400, "malformed_request")


# ---------------------------------------------------------------- replay


@pytest.mark.parametrize(("first", "second"), [("redirect", "post"), ("post", "redirect"), ("post", "post")])
def test_replay_across_bindings(client, app, sp, first, second):  # type: ignore[no-untyped-def]
    xml = authn_request(sp, req_id="_replayed-request-1")
    assert assertion_count(sso(client, first, xml, relay_state="one")) == 1
    ev = assert_refused(sso(client, second, xml, relay_state="two"), 409, "replayed_request")
    assert ev.request_id == "_replayed-request-1"
    # from another browser, and with a new IssueInstant around the same ID: still the same (issuer, ID)
    other = app.test_client()
    assert login(other).status_code == 303
    later = with_attr(xml, "IssueInstant", _stamp(datetime.now(UTC) + timedelta(seconds=5)))
    assert_refused(sso(other, first, later), 409, "replayed_request")


# ---------------------------------------------------------------- RelayState


BAD_RELAY_STATES = ["x" * 81, "é" * 41, "<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "it's",
                    "a\x00b", "a\r\nSet-Cookie: x=1", "tab\there", "<"]


@pytest.mark.parametrize("binding", BINDINGS)
def test_relay_state_too_long_or_with_markup(client, sp, binding):  # type: ignore[no-untyped-def]
    for rs in BAD_RELAY_STATES:
        with case(repr(rs)):
            assert_refused(sso(client, binding, authn_request(sp), relay_state=rs), 400, "malformed_request")
    form = saml_form(sso(client, binding, authn_request(sp), relay_state="y" * 80))  # the limit itself is fine
    assert form is not None and form.relay_state == "y" * 80


def test_relay_state_checks_on_idp_initiated_launch_and_logout(client, alice, sp_keys):  # type: ignore[no-untyped-def]
    from urllib.parse import quote

    sp = register_sp(keypair=sp_keys["sp1"], signs=True)
    nid, idx = sign_in(client, sp)
    for rs in BAD_RELAY_STATES:
        with case(repr(rs)):
            resp = client.get(f"/apps/{sp.slug}/sso?RelayState={quote(rs)}")
            assert_refused(resp, 400, "malformed_request")
            xml = logout_request(sp.entity_id, nid, [idx])
            resp = send(client, "post", "/saml/slo", signed(xml, sp.keypair), relay_state=rs)
            assert_refused(resp, 400, "malformed_request", event_type="logout")


# ---------------------------------------------------------------- ACS URL and index


ACS_LOOKALIKES = [
    "https://sp1.example.com/acs/", "https://sp1.example.com/ACS", "https://SP1.example.com/acs",
    "HTTPS://sp1.example.com/acs", "https://sp1.example.com:443/acs", "https://sp1.example.com:8443/acs",
    "https://sp1.example.com/acs?x=1", "https://sp1.example.com/acs#x", "https://sp1.example.com/acs?",
    "https://evil@sp1.example.com/acs", "https://sp1.example.com@evil.example/acs",
    "https://sp1.example.com%2F@evil.example/acs", "https://sp1.example.com\\@evil.example/acs",
    "https://sp1.example.com/acs/../acs", "https://sp1.example.com/./acs", "https://sp1.example.com/x/../acs",
    "https://sp1.example.com/acs%2F..%2Facs", "https://sp1.example.com.evil.example/acs",
    "https://evil.example/sp1.example.com/acs", "https://xsp1.example.com/acs", "https://sp1.example.co/acs",
    "https://sp1.exаmple.com/acs",  # Cyrillic а
    "http://sp1.example.com/acs", " https://sp1.example.com/acs", "https://sp1.example.com/acs ",
    "//sp1.example.com/acs", "/acs", "javascript:alert(1)//https://sp1.example.com/acs",
    'https://sp1.example.com/acs"><script>alert(1)</script>',
]


@pytest.mark.parametrize("binding", BINDINGS)
def test_acs_url_lookalikes(client, sp, binding):  # type: ignore[no-untyped-def]
    for acs in ACS_LOOKALIKES:
        with case(acs):
            resp = sso(client, binding, authn_request(sp, acs_url=html.escape(acs, quote=True)))
            ev = assert_refused(resp, 403, "acs_not_registered")
            assert ev.app_slug == sp.slug
            assert "<script>alert(" not in resp.get_data(as_text=True)  # the URL is shown, escaped
    # control: the registered URL itself
    assert saml_form(sso(client, binding, authn_request(sp, acs_url=sp.acs_url))).action == sp.acs_url  # type: ignore[union-attr]


@pytest.mark.parametrize("binding", BINDINGS)
def test_acs_index_out_of_range(client, sp, binding):  # type: ignore[no-untyped-def]
    for index in ["1", "7", "65535"]:
        with case(index):
            xml = with_attr(authn_request(sp), "AssertionConsumerServiceIndex", index)
            assert_refused(sso(client, binding, xml), 403, "acs_not_registered")
    for index in ["65536", "-1", "0x0", " 0", "", "1e1", "٠"]:
        with case(repr(index)):
            xml = with_attr(authn_request(sp), "AssertionConsumerServiceIndex", index)
            assert_refused(sso(client, binding, xml), 400, "malformed_request")
    both = with_attr(authn_request(sp, acs_url=sp.acs_url), "AssertionConsumerServiceIndex", "0")
    assert_refused(sso(client, binding, both), 400, "malformed_request")
