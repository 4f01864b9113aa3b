"""Hostile passkey ceremonies (review of issue 13, items 3, 4 and 9): malformed registration and assertion JSON
(COSE key as a CBOR list or string, an EC key off its curve, truncated CBOR, wrong types, huge strings) is a 400
JSON refusal with a `passkey_failed` event, never a 500, and the challenge stays consumed (the database state
backend: the refusal commits); a passwordless assertion needs its user handle; the per-user passkey limit holds
at registration, not only when options are issued."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import cbor2
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from idp.auth import passkeys as passkeys_auth
from idp.extensions import db
from idp.models import Passkey, PendingRequest, SsoEvent, User, utcnow
from idp.services import org

from ..functional.test_passkeys import csrf, passkey_fields, passkey_login, password_login, register
from ..functional.test_policy_flows import set_policy
from ..passkey_authenticator import SoftAuthenticator, b64url, unb64url
from ..webclient import Browser
from .conftest import PASSWORD

Mutation = Callable[[dict[str, Any]], Any]


@pytest.fixture(autouse=True)
def trusted_here(app: Flask) -> None:
    org.add_trusted_range("127.0.0.0/8")   # a first passkey may be registered from the test client's address
    db.session.commit()


def _last_event() -> SsoEvent:
    db.session.expire_all()
    ev = db.session.scalars(select(SsoEvent).order_by(SsoEvent.id.desc())).first()
    assert ev is not None
    return ev


def _pending_rows() -> int:
    db.session.expire_all()
    return int(db.session.scalar(select(func.count()).select_from(PendingRequest)) or 0)


def _set(path: str, value: Any) -> Mutation:
    def mutate(cred: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = cred
        for p in parents:
            node = node[p]
        node[leaf] = value
    return mutate


def _del(path: str) -> Mutation:
    def mutate(cred: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = cred
        for p in parents:
            node = node[p]
        del node[leaf]
    return mutate


def _attestation(change: Callable[[dict[str, Any]], None]) -> Mutation:
    """Rewrite the CBOR attestation object (fmt, attStmt, authData)."""
    def mutate(cred: dict[str, Any]) -> None:
        obj = cbor2.loads(unb64url(cred["response"]["attestationObject"]))
        change(obj)
        cred["response"]["attestationObject"] = b64url(cbor2.dumps(obj))
    return mutate


def _truncate(field: str, keep: int) -> Mutation:
    def mutate(cred: dict[str, Any]) -> None:
        cred["response"][field] = b64url(unb64url(cred["response"][field])[:keep])
    return mutate


def _auth_data(cut: int) -> Mutation:
    return _attestation(lambda obj: obj.update(authData=obj["authData"][:cut]))


HUGE = "A" * 60_000  # under the 64 KiB body limit: parsed, then refused


# (name, create() keyword arguments, mutation of the RegistrationResponseJSON)
REGISTRATIONS: list[tuple[str, dict[str, Any], Mutation | None]] = [
    ("cose key a CBOR list", {"cose_key": cbor2.dumps([1, 2, -7, b"x" * 32])}, None),
    ("cose key a short CBOR list", {"cose_key": cbor2.dumps([2])}, None),
    ("cose key a CBOR string", {"cose_key": cbor2.dumps("a public key")}, None),
    ("cose key a short CBOR string", {"cose_key": cbor2.dumps("k")}, None),
    ("cose key a CBOR map with text keys", {"cose_key": cbor2.dumps({"kty": 2})}, None),
    ("cose key a CBOR integer", {"cose_key": cbor2.dumps(7)}, None),
    ("cose key without x and y", {"cose_key": cbor2.dumps({1: 2, 3: -7, -1: 1})}, None),
    ("cose key with x, y of wrong types", {"cose_key": cbor2.dumps({1: 2, 3: -7, -1: 1, -2: 5, -3: "y"})}, None),
    ("EC key not on its curve", {"cose_key": cbor2.dumps({1: 2, 3: -7, -1: 1, -2: b"\x01" * 32, -3: b"\x02" * 32})},
     None),
    ("uncompressed point that is no point", {"cose_key": b"\x04" + b"\x07" * 64}, None),
    ("unsupported COSE algorithm", {"cose_key": cbor2.dumps({1: 2, 3: -999, -1: 1, -2: b"\x01" * 32,
                                                              -3: b"\x02" * 32})}, None),
    ("truncated attestation object", {}, _truncate("attestationObject", 40)),
    ("truncated authData", {}, _auth_data(50)),
    ("authData cut inside the public key", {}, _auth_data(37 + 16 + 2 + 32 + 10)),
    ("attestation object a CBOR list", {}, _set("response.attestationObject", b64url(cbor2.dumps([1, 2, 3])))),
    ("authData an integer", {}, _attestation(lambda obj: obj.update(authData=12))),
    ("unknown fmt", {}, _attestation(lambda obj: obj.update(fmt="evil"))),
    ("packed fmt with junk statement", {}, _attestation(lambda obj: obj.update(fmt="packed",
                                                                               attStmt={"alg": "x", "sig": 3}))),
    ("id an integer", {}, _set("id", 12345)),
    ("rawId a dict", {}, _set("rawId", {"a": 1})),
    ("response a string", {}, _set("response", "nope")),
    ("response missing", {}, _del("response")),
    ("clientDataJSON a list", {}, _set("response.clientDataJSON", [1, 2])),
    ("clientDataJSON not JSON", {}, _set("response.clientDataJSON", b64url(b"\xff\xfe not json"))),
    ("clientDataJSON a JSON list", {}, _set("response.clientDataJSON", b64url(b"[1, 2]"))),
    ("clientDataJSON challenge a number", {}, _set("response.clientDataJSON",
                                                   b64url(json.dumps({"type": "webauthn.create", "challenge": 5,
                                                                      "origin": "http://localhost"}).encode()))),
    ("attestationObject not base64url", {}, _set("response.attestationObject", "%%%***")),
    ("type wrong", {}, _set("type", "password")),
    ("huge id", {}, _set("id", HUGE)),
    ("huge clientDataJSON", {}, _set("response.clientDataJSON", HUGE)),
    ("huge attestationObject", {}, _set("response.attestationObject", HUGE)),
]


# shapes the ceremony does not depend on ("none" attestation has no statement to check; transports and the
# attachment are hints): accepted or refused, never a 500, and nothing odd stored
TOLERATED: list[tuple[str, Mutation]] = [
    ("attStmt a string", _attestation(lambda obj: obj.update(attStmt="x"))),
    ("transports a string", _set("response.transports", "internal")),
    ("transports of integers", _set("response.transports", [1, 2])),
    ("transports unknown", _set("response.transports", ["carrier-pigeon", "usb"])),
    ("authenticatorAttachment a number", _set("authenticatorAttachment", 3)),
    ("clientExtensionResults a list", _set("clientExtensionResults", [1])),
]


def _register_options(client: FlaskClient) -> tuple[dict[str, Any], str, str]:
    token = csrf(client, "/account")
    opts = client.post("/passkeys/register/options", json={}, headers={"X-CSRFToken": token})
    assert opts.status_code == 200, opts.get_data(as_text=True)
    with client.session_transaction() as sess:
        ceremony = sess["passkey_register"]
    return opts.get_json(), token, ceremony


@pytest.mark.parametrize("name,create,mutate", REGISTRATIONS, ids=[r[0] for r in REGISTRATIONS])
def test_malformed_registration_is_a_400_with_an_event_and_spends_the_challenge(app, client, alice, name, create,
                                                                                mutate):
    password_login(client)
    auth = SoftAuthenticator()
    opts, token, ceremony = _register_options(client)
    rows = _pending_rows()
    cred = auth.create(opts, **create)
    if mutate is not None:
        mutate(cred)
    resp = client.post("/passkeys/register", json={"credential": cred, "name": "x"}, headers={"X-CSRFToken": token})
    assert resp.status_code == 400, (name, resp.status_code, resp.get_data(as_text=True)[:300])
    assert resp.is_json and resp.get_json()["error"]
    assert "Traceback" not in resp.get_data(as_text=True)
    ev = _last_event()
    assert (ev.reason, ev.event_type, ev.username) == ("passkey_failed", "account", "alice"), name
    assert db.session.query(Passkey).count() == 0
    # the refusal committed: the challenge is gone from the shared state, and a valid answer to the same options
    # (the ceremony token replayed from an old cookie) is refused
    assert _pending_rows() == rows - 1
    with client.session_transaction() as sess:
        sess["passkey_register"] = ceremony
    again = client.post("/passkeys/register", json={"credential": SoftAuthenticator().create(opts)},
                        headers={"X-CSRFToken": token})
    assert again.status_code == 400 and "expired or was already used" in again.get_json()["error"]
    assert db.session.query(Passkey).count() == 0


@pytest.mark.parametrize("name,mutate", TOLERATED, ids=[t[0] for t in TOLERATED])
def test_harmless_oddities_never_break_registration(app, client, alice, name, mutate):
    password_login(client)
    opts, token, _ceremony = _register_options(client)
    cred = SoftAuthenticator().create(opts)
    mutate(cred)
    resp = client.post("/passkeys/register", json={"credential": cred}, headers={"X-CSRFToken": token})
    assert resp.status_code in (201, 400), (name, resp.status_code, resp.get_data(as_text=True)[:300])
    assert resp.is_json
    for row in db.session.query(Passkey).all():
        assert all(t in ("usb", "nfc", "ble", "internal", "hybrid", "cable", "smart-card") for t in row.transports)


@pytest.mark.parametrize("body", [{"credential": "a string"}, {"credential": [1, 2]}, {"credential": None}, {},
                                  {"credential": {"id": "x" * 70_000}}])
def test_registration_without_a_usable_credential_spends_the_challenge(app, client, alice, body):
    password_login(client)
    opts, token, ceremony = _register_options(client)
    resp = client.post("/passkeys/register", json=body, headers={"X-CSRFToken": token})
    assert resp.status_code == 400 and resp.get_json()["error"]
    assert _last_event().reason == "passkey_failed"
    with client.session_transaction() as sess:
        sess["passkey_register"] = ceremony
    again = client.post("/passkeys/register", json={"credential": SoftAuthenticator().create(opts)},
                        headers={"X-CSRFToken": token})
    assert again.status_code == 400 and "expired or was already used" in again.get_json()["error"]


def test_a_key_that_does_not_load_is_never_stored(app, alice):
    """The library alone stores an EC point off the curve under "none" attestation; the key is now loaded first."""
    db.session.expire_all()
    user = db.session.get(User, alice.id)
    opts, token = passkeys_auth.registration_options(user)
    bad = cbor2.dumps({1: 2, 3: -7, -1: 1, -2: b"\x01" * 32, -3: b"\x02" * 32})
    cred = SoftAuthenticator().create(json.loads(opts), cose_key=bad)
    with pytest.raises(passkeys_auth.PasskeyError) as exc:
        passkeys_auth.register(user, token, cred, "bad")
    assert exc.value.code == "invalid" and "public key" in exc.value.detail
    assert db.session.query(Passkey).count() == 0


# ---------------------------------------------------------------- assertions

def _tamper_auth_data(cut: int) -> Mutation:
    return _truncate("authenticatorData", cut)


# (name, get() keyword arguments, mutation of the AuthenticationResponseJSON)
ASSERTIONS: list[tuple[str, dict[str, Any], Mutation | None]] = [
    ("truncated authenticatorData", {}, _tamper_auth_data(20)),
    ("authenticatorData empty", {}, _set("response.authenticatorData", "")),
    ("authenticatorData a number", {}, _set("response.authenticatorData", 7)),
    ("signature a list", {}, _set("response.signature", [1])),
    ("signature garbage DER", {}, _set("response.signature", b64url(b"\x30\x03\x02\x01"))),
    ("signature huge", {}, _set("response.signature", HUGE)),
    ("userHandle a number", {}, _set("response.userHandle", 5)),
    ("userHandle a dict", {}, _set("response.userHandle", {"a": 1})),
    ("clientDataJSON a JSON string", {}, _set("response.clientDataJSON", b64url(b'"x"'))),
    ("clientDataJSON not base64url", {}, _set("response.clientDataJSON", "***")),
    ("response a list", {}, _set("response", [])),
    ("response missing", {}, _del("response")),
    ("id a number", {}, _set("id", 3)),
    ("rawId a list", {}, _set("rawId", [1])),
    ("huge rawId", {}, _set("rawId", HUGE)),
]


def _login_options(client: FlaskClient, purpose: str = "login", page: str = "/login") -> tuple[dict[str, Any], str,
                                                                                              str]:
    token = csrf(client, page)
    opts = client.post("/passkeys/login/options", json={"purpose": purpose}, headers={"X-CSRFToken": token})
    assert opts.status_code == 200, opts.get_data(as_text=True)
    with client.session_transaction() as sess:
        ceremony = sess["passkey_login"]
    return opts.get_json(), token, ceremony


@pytest.fixture
def alice_key(app: Flask, alice: User) -> SoftAuthenticator:
    auth = SoftAuthenticator()
    c = app.test_client()
    password_login(c)
    assert register(c, auth).status_code == 201
    return auth


@pytest.mark.parametrize("name,get,mutate", ASSERTIONS, ids=[a[0] for a in ASSERTIONS])
def test_malformed_assertion_is_a_400_with_an_event_and_spends_the_challenge(app, alice, alice_key, name, get,
                                                                             mutate):
    c = app.test_client()
    opts, token, ceremony = _login_options(c)
    cred = alice_key.get(opts, **get)
    if mutate is not None:
        mutate(cred)
    resp = c.post("/passkeys/login", json={"credential": cred}, headers={"X-CSRFToken": token})
    assert resp.status_code in (400, 401), (name, resp.status_code, resp.get_data(as_text=True)[:300])
    assert resp.is_json and resp.get_json()["error"]
    assert _last_event().reason == "passkey_failed"
    assert c.get("/account").status_code == 302, "not signed in"
    with c.session_transaction() as sess:
        sess["passkey_login"] = ceremony
    again = c.post("/passkeys/login", json={"credential": alice_key.get(opts)}, headers={"X-CSRFToken": token})
    assert again.status_code == 400 and "already used" in again.get_json()["error"]


def test_assertion_without_a_credential_spends_the_challenge(app, alice, alice_key):
    c = app.test_client()
    opts, token, ceremony = _login_options(c)
    resp = c.post("/passkeys/login", json={"credential": "x"}, headers={"X-CSRFToken": token})
    assert resp.status_code == 400 and _last_event().reason == "passkey_failed"
    with c.session_transaction() as sess:
        sess["passkey_login"] = ceremony
    again = c.post("/passkeys/login", json={"credential": alice_key.get(opts)}, headers={"X-CSRFToken": token})
    assert again.status_code == 400 and "already used" in again.get_json()["error"]


# ---------------------------------------------------------------- item 4: the user handle

@pytest.mark.parametrize("kw", [{"omit_user_handle": True}, {"user_handle": b""}])
def test_passwordless_assertion_without_user_handle_is_refused(app, alice, alice_key, kw):
    """WebAuthn §7.2: the user was not identified before the ceremony, so the response must name them."""
    c = app.test_client()
    resp = passkey_login(c, alice_key, **kw)
    assert resp.status_code == 400, resp.get_data(as_text=True)
    ev = _last_event()
    assert (ev.reason, ev.username) == ("passkey_failed", "alice") and "user handle" in ev.detail["message"]
    assert c.get("/account").status_code == 302, "not signed in"
    assert passkey_login(c, alice_key).status_code == 200, "with its user handle the same passkey signs in"


def test_second_factor_assertion_may_omit_the_user_handle(app, make_sp, alice, alice_key):
    """After the password the user is identified: a security key that returns no user handle still works."""
    sp = make_sp("pysaml2")
    set_policy(sp, require_mfa=True)
    browser = Browser(app.test_client())
    page = browser.sso(sp.authn_request("redirect"), "alice", PASSWORD)
    fields = passkey_fields(page.get_data(as_text=True))
    out = passkey_login(browser.client, alice_key, purpose="mfa", page="/mfa", next_url=fields["next"],
                        request=fields["request"], omit_user_handle=True)
    assert out.status_code == 200, out.get_data(as_text=True)


# ---------------------------------------------------------------- item 9: the per-user limit at registration

def test_passkey_limit_is_checked_again_at_registration(app, alice, alice_key):
    """Two tabs got options while the user had MAX_PER_USER - 1 passkeys: only one registration may finish."""
    template = db.session.scalars(select(Passkey)).one()
    for i in range(passkeys_auth.MAX_PER_USER - 2):
        db.session.add(Passkey(user_id=alice.id, credential_id=os.urandom(32), public_key=template.public_key,
                               sign_count=0, transports=[], aaguid=template.aaguid, backup_eligible=False,
                               backup_state=False, name=f"spare {i}", created_at=utcnow()))
    db.session.commit()
    assert db.session.query(Passkey).count() == passkeys_auth.MAX_PER_USER - 1
    c = app.test_client()
    assert passkey_login(c, alice_key).status_code == 200   # a session that passed the second factor
    # two tabs of this browser ask for options (a registration from another browser would end this session)
    opts1, token, ceremony1 = _register_options(c)
    opts2, _token, _ceremony2 = _register_options(c)
    auth = SoftAuthenticator()
    first = c.post("/passkeys/register", json={"credential": auth.create(opts2)}, headers={"X-CSRFToken": token})
    assert first.status_code == 201, first.get_data(as_text=True)
    with c.session_transaction() as sess:
        sess["passkey_register"] = ceremony1
    second = c.post("/passkeys/register", json={"credential": auth.create(opts1)}, headers={"X-CSRFToken": token})
    assert second.status_code == 409 and str(passkeys_auth.MAX_PER_USER) in second.get_json()["error"]
    assert _last_event().reason == "passkey_failed"
    assert db.session.query(Passkey).count() == passkeys_auth.MAX_PER_USER
