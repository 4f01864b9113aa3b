"""Hostile LogoutRequests: unsigned, forged, wrapped, naming someone else's session, expired or replayed.

alice and bob are signed in (each in their own browser) to the same app; whatever arrives at /saml/slo, the live
IdpSession rows must stay exactly as they were unless a LogoutRequest legitimately names one of them.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote_plus

import pytest
from flask import Flask
from flask.testing import FlaskClient
from lxml import etree

from ..raw_requests import deflate_b64, redirect_query
from ..sp_harness import KeyPair
from .saml_tools import (
    NS,
    SAMLP,
    assert_refused,
    case,
    last_event,
    live_sessions,
    logout_request,
    register_sp,
    send,
    sign_in,
    signed,
    verifies_with,
)

BINDINGS = ["redirect", "post"]


class World:
    def __init__(self, app: Flask, client: FlaskClient, sp_keys: dict[str, KeyPair]) -> None:
        self.sp = register_sp("https://sp1.example.com", keypair=sp_keys["sp1"], signs=True)
        self.sp2 = register_sp("https://sp2.example.com", keypair=sp_keys["sp2"], signs=True)
        self.other = sp_keys["other"]
        self.alice_browser, self.bob_browser = client, app.test_client()
        self.alice = sign_in(self.alice_browser, self.sp, "alice")
        self.bob = sign_in(self.bob_browser, self.sp, "bob")
        assert live_sessions() == 2

    def deliver(self, binding: str, xml: bytes, *, key: KeyPair | None = None, sign: bool = True,
                relay_state: str | None = None, browser: FlaskClient | None = None) -> Any:
        """A LogoutRequest from the app, signed with its real key unless told otherwise."""
        key = key or self.sp.keypair
        client = browser or self.alice_browser
        if binding == "post":
            return send(client, "post", "/saml/slo", signed(xml, key) if sign else xml, relay_state=relay_state)
        return send(client, "redirect", "/saml/slo", xml, key_pem=key.key_pem if sign else None,
                    relay_state=relay_state)


@pytest.fixture
def world(app, client, alice, bob, sp_keys) -> World:  # type: ignore[no-untyped-def]
    return World(app, client, sp_keys)


def assert_nothing_ended(resp: Any, status: int, reason: str) -> None:
    assert_refused(resp, status, reason, event_type="logout")
    assert live_sessions() == 2


@pytest.mark.parametrize("binding", BINDINGS)
def test_unsigned_or_forged_logout_requests(world: World, binding: str) -> None:
    name_id, index = world.alice
    with case("unsigned"):
        assert_nothing_ended(world.deliver(binding, logout_request(world.sp.entity_id, name_id, [index]),
                                           sign=False), 403, "bad_signature")
    with case("signed with an attacker's key"):
        assert_nothing_ended(world.deliver(binding, logout_request(world.sp.entity_id, name_id, [index]),
                                           key=world.other), 403, "bad_signature")
    with case("signed by another app, naming this app as Issuer"):
        assert_nothing_ended(world.deliver(binding, logout_request(world.sp.entity_id, name_id, [index]),
                                           key=world.sp2.keypair), 403, "bad_signature")
    with case("unknown issuer"):
        xml = logout_request("https://unknown.example.com/metadata", name_id, [index])
        assert_nothing_ended(world.deliver(binding, xml), 403, "unknown_sp")


def test_app_without_a_certificate_cannot_log_anyone_out(client, alice, sp_keys) -> None:  # type: ignore[no-untyped-def]
    sp = register_sp("https://nocert.example.com")
    name_id, index = sign_in(client, sp)
    for binding in BINDINGS:
        with case(binding):
            xml = logout_request(sp.entity_id, name_id, [index])
            if binding == "post":
                resp = send(client, "post", "/saml/slo", signed(xml, sp_keys["sp3"]))
            else:
                resp = send(client, "redirect", "/saml/slo", xml, key_pem=sp_keys["sp3"].key_pem)
            assert_refused(resp, 403, "bad_signature", event_type="logout")
            assert live_sessions() == 1


def test_redirect_logout_altered_after_signing(world: World) -> None:
    name_id, index = world.alice
    xml = logout_request(world.sp.entity_id, name_id, [index])
    good = redirect_query(xml, relay_state="good", key_pem=world.sp.keypair.key_pem)
    for label, query, status, reason in [
        ("relay state altered", good.replace("RelayState=good", "RelayState=evil"), 403, "bad_signature"),
        ("SigAlg swapped", good.replace(quote_plus("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"),
                                        quote_plus("http://www.w3.org/2001/04/xmldsig-more#rsa-sha512")),
         403, "bad_signature"),
        ("SigAlg swapped to sha1", good.replace(quote_plus("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"),
                                                quote_plus("http://www.w3.org/2000/09/xmldsig#rsa-sha1")),
         403, "bad_signature"),
        ("message swapped", good.replace(good.split("&")[0], "SAMLRequest=" + quote_plus(deflate_b64(
            logout_request(world.sp.entity_id, world.bob[0], [world.bob[1]])))), 403, "bad_signature"),
        ("message duplicated", good + "&SAMLRequest=" + quote_plus(deflate_b64(
            logout_request(world.sp.entity_id, world.bob[0], [world.bob[1]]))), 400, "malformed_request"),
        ("relay state duplicated", good + "&RelayState=evil", 400, "malformed_request"),
        ("signature duplicated", good + "&Signature=AAAA", 400, "malformed_request"),
    ]:
        with case(label):
            assert_nothing_ended(world.alice_browser.get("/saml/slo?" + query), status, reason)


def _wrapped(world: World, how: str) -> bytes:
    """alice's legitimately signed LogoutRequest, re-wrapped into a forged one that names bob."""
    orig = etree.fromstring(signed(logout_request(world.sp.entity_id, world.alice[0], [world.alice[1]],
                                                  req_id="_orig"), world.sp.keypair))
    forged = etree.fromstring(logout_request(world.sp.entity_id, world.bob[0], [world.bob[1]], req_id="_evil"))
    issuer = forged.find("saml:Issuer", NS)
    ext = etree.Element(f"{{{SAMLP}}}Extensions")
    if how == "extensions":  # the whole signed original (signature included) hidden in Extensions
        ext.append(orig)
        issuer.addnext(ext)
    else:  # the signature moved onto the forged root, still referencing the original (now in Extensions)
        sig = orig.find("ds:Signature", NS)
        orig.remove(sig)
        ext.append(orig)
        issuer.addnext(sig)
        sig.addnext(ext)
    return etree.tostring(forged)


def test_logout_signature_wrapping(world: World) -> None:
    for how in ("extensions", "signature-on-root"):
        with case(how):
            xml = _wrapped(world, how)
            if how == "signature-on-root":
                assert verifies_with(xml, world.sp.keypair.cert_pem)
            assert_nothing_ended(world.deliver("post", xml, sign=False), 403, "bad_signature")
    with case("two signatures"):
        doc = etree.fromstring(signed(logout_request(world.sp.entity_id, world.bob[0], [world.bob[1]]),
                                      world.sp.keypair))
        doc.find("ds:Signature", NS).addnext(copy.deepcopy(doc.find("ds:Signature", NS)))
        assert_nothing_ended(world.deliver("post", etree.tostring(doc), sign=False), 403, "bad_signature")


@pytest.mark.parametrize("binding", BINDINGS)
def test_logout_request_naming_another_users_session(world: World, binding: str) -> None:
    (alice_id, alice_idx), (bob_id, bob_idx) = world.alice, world.bob
    for label, xml in [
        ("alice's NameID with bob's SessionIndex", logout_request(world.sp.entity_id, alice_id, [bob_idx])),
        ("bob's NameID with alice's SessionIndex", logout_request(world.sp.entity_id, bob_id, [alice_idx])),
        ("comment-extended NameID", logout_request(world.sp.entity_id, "", [alice_idx], name_id_xml=(
            f'<saml:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress">{alice_id}<!---->.evil'
            "</saml:NameID>"))),
        ("CDATA-extended NameID", logout_request(world.sp.entity_id, "", [alice_idx], name_id_xml=(
            f"<saml:NameID>{alice_id}<![CDATA[.evil]]></saml:NameID>"))),
        ("unknown NameID, no SessionIndex", logout_request(world.sp.entity_id, "mallory@example.com")),
        ("a SessionIndex this app never got", logout_request(world.sp.entity_id, alice_id, ["_" + "0" * 32])),
    ]:
        with case(label):
            resp = world.deliver(binding, xml, browser=world.bob_browser)
            assert resp.status_code in (200, 303), resp.status_code
            ev = last_event()
            assert (ev.event_type, ev.reason) == ("logout", "unknown_session")
            assert live_sessions() == 2


def test_one_app_cannot_end_a_session_it_is_not_part_of(world: World) -> None:
    """sp2 signs a LogoutRequest naming bob (who only uses sp1), with and without sp1's SessionIndex."""
    bob_id, bob_idx = world.bob
    for label, indexes in [("no SessionIndex", []), ("sp1's SessionIndex", [bob_idx])]:
        with case(label):
            xml = logout_request(world.sp2.entity_id, bob_id, indexes)
            resp = world.deliver("redirect", xml, key=world.sp2.keypair)
            assert resp.status_code in (200, 303)
            assert last_event().reason == "unknown_session" and live_sessions() == 2


def test_full_text_of_a_comment_split_name_id_still_matches(world: World) -> None:
    """Control for the comment cases above: a NameID split by a comment is read whole, and then it matches."""
    alice_id, alice_idx = world.alice
    local, domain = alice_id.split("@")
    xml = logout_request(world.sp.entity_id, "", [alice_idx], name_id_xml=(
        f"<saml:NameID>{local}@<!-- x -->{domain}</saml:NameID>"))
    resp = world.deliver("post", xml)
    assert resp.status_code in (200, 303)
    assert last_event().reason == "logout" and live_sessions() == 1


@pytest.mark.parametrize("binding", BINDINGS)
def test_expired_logout_requests(world: World, binding: str) -> None:
    name_id, index = world.alice
    now = datetime.now(UTC)
    for label, kw in [
        ("NotOnOrAfter passed", {"not_on_or_after": now - timedelta(seconds=5)}),
        ("NotOnOrAfter now", {"not_on_or_after": now}),
        ("IssueInstant an hour old", {"issue_instant": now - timedelta(hours=1)}),
        ("IssueInstant an hour ahead", {"issue_instant": now + timedelta(hours=1)}),
        ("IssueInstant in 1970", {"issue_instant": datetime(1970, 1, 1, tzinfo=UTC),
                                  "not_on_or_after": now + timedelta(days=1)}),
    ]:
        with case(label):
            assert_nothing_ended(world.deliver(binding, logout_request(world.sp.entity_id, name_id, [index], **kw)),
                                 400, "request_expired")


@pytest.mark.parametrize(("first", "second"), [("redirect", "post"), ("post", "redirect"), ("redirect", "redirect")])
def test_replayed_logout_request(world: World, first: str, second: str) -> None:
    """A LogoutRequest naming alice without a SessionIndex (so it would match her next session too) is used once."""
    alice_id, _ = world.alice
    xml = logout_request(world.sp.entity_id, alice_id, req_id="_logout-once")
    resp = world.deliver(first, xml)
    assert resp.status_code in (200, 303) and last_event().reason == "logout"
    assert live_sessions() == 1
    sign_in(world.alice_browser, world.sp, "alice")  # alice comes back
    assert live_sessions() == 2
    ev = assert_refused(world.deliver(second, xml), 409, "replayed_request", event_type="logout")
    assert ev.request_id == "_logout-once"
    assert live_sessions() == 2


def test_encrypted_or_missing_name_id_is_malformed(world: World) -> None:
    for label, nid in [("EncryptedID", '<saml:EncryptedID><x:y xmlns:x="urn:x"/></saml:EncryptedID>'),
                       ("no NameID", ""), ("BaseID", '<saml:BaseID NameQualifier="x"/>')]:
        with case(label):
            xml = logout_request(world.sp.entity_id, "", [world.alice[1]], name_id_xml=nid)
            assert_nothing_ended(world.deliver("post", xml), 400, "malformed_request")
