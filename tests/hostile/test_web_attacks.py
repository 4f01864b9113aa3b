"""Web-layer attacks: CSRF (login and every admin POST route), open redirects, session fixation, password and TOTP
guessing, X-Forwarded-For and Host header spoofing, and the security headers every page must carry.
"""

from __future__ import annotations

import base64
import os
import re
import statistics
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from lxml import etree
from sqlalchemy import update

from idp import create_app
from idp.auth import recovery_codes, totp
from idp.auth.totp import matching_step
from idp.extensions import db
from idp.models import AdminAudit, ConnectedApp, Group, IdpSession, OrgSetting, Passkey, User, WebhookEndpoint
from idp.services import users as users_svc

from ..conftest import IsolatedClient, make_settings, reset_backends
from ..functional.conftest import events, last_event
from ..raw_requests import redirect_query
from ..webclient import AUTHENTICATORS, Browser, continuation, login_admin, pass_second_factor, saml_form
from .conftest import ADMIN_PASSWORD, PASSWORD, csrf_token, login
from .saml_tools import (
    assert_refused,
    assertion_count,
    authn_request,
    case,
    live_sessions,
    logout_request,
    register_sp,
    sign_in,
    sp_metadata,
)

EVIL = "evil.example.com"
OWN_PAGE = {"Sec-Fetch-Site": "same-origin"}  # a link on the IdP's own pages


def client_at(app: Flask, ip: str) -> FlaskClient:
    """A browser whose requests come from the socket address `ip`."""
    c = app.test_client()
    c.environ_base["REMOTE_ADDR"] = ip
    return c


def session_rows() -> int:
    db.session.expire_all()
    return db.session.query(IdpSession).count()


# ---------------------------------------------------------------- CSRF


def test_login_csrf(app, client, alice):  # type: ignore[no-untyped-def]
    other = app.test_client()
    foreign = csrf_token(other)
    client.get("/login")
    for label, extra in [("no token", {}), ("empty token", {"csrf_token": ""}), ("wrong token", {"csrf_token": "x"}),
                         ("another browser's token", {"csrf_token": foreign})]:
        with case(label):
            resp = client.post("/login", data={"username": "alice", "password": PASSWORD, "next": "/", **extra})
            assert resp.status_code == 400
            assert session_rows() == 0
            assert client.get("/").status_code == 302
    with case("a token without its cookie"):
        fresh = app.test_client()
        resp = fresh.post("/login", data={"username": "alice", "password": PASSWORD, "csrf_token": foreign})
        assert resp.status_code == 400 and session_rows() == 0
    assert client.get("/").status_code == 302  # still anonymous


SAMPLE_ARGS = {"slug": "wiki", "username": "bob", "name": "engineering", "step": "rotate", "passkey_id": "1",
               "grant_id": "1", "job_id": "1", "endpoint_id": "1", "feed_id": "1"}


def _form_bag() -> dict[str, str]:
    """A POST body that would change something on any admin form, were it accepted."""
    md = sp_metadata("https://mallory.example.com/metadata", "https://mallory.example.com/acs").decode()
    return {"disabled": "1", "enabled": "0", "is_admin": "1", "password": "mallory passphrase 1",
            "password_confirm": "mallory passphrase 1", "username": "mallory", "email": "m@example.com",
            "name": "pwned", "first_name": "M", "cidr": "0.0.0.0/0", "self_enroll": "1", "member": "alice",
            "user": "alice", "groups": "engineering", "key_type": "rsa2048", "days": "30", "confirm": "1",
            "metadata_xml": md, "permitted": "admin-approved", "nameid_format": "email", "sign": "response",
            "current_password": PASSWORD, "new_password": "mallory passphrase 1",
            "new_password_confirm": "mallory passphrase 1", "code": "123456"}


def admin_post_rules(app: Flask) -> list[tuple[str, str]]:
    rules = []
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/admin") and "POST" in (rule.methods or set()):
            path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: SAMPLE_ARGS.get(m.group(1), "x"), rule.rule)
            rules.append((rule.endpoint, path))
    return rules


def snapshot(app: Flask) -> dict[str, Any]:
    db.session.expire_all()
    return {
        "users": {u.username: (u.email, u.is_admin, u.disabled, u.password_hash, u.totp_secret, u.group_names)
                  for u in db.session.query(User)},
        "groups": sorted(g.name for g in db.session.query(Group)),
        "org": {s.key: s.value for s in db.session.query(OrgSetting)},
        "apps": {a.slug: (a.enabled, a.name, a.settings, a.metadata_xml) for a in db.session.query(ConnectedApp)},
        "audit": db.session.query(AdminAudit).count(),
        "sessions": sorted((s.id, s.ended_at is None) for s in db.session.query(IdpSession)),
        "passkeys": sorted((p.id, p.user_id, p.name) for p in db.session.query(Passkey)),
        "webhooks": sorted((w.id, w.url, w.enabled, w.event_types) for w in db.session.query(WebhookEndpoint)),
        "keystore": (app.extensions["idp.settings"].cert_dir / "keystore.json").read_text(),
    }


def test_admin_post_routes_need_a_token_and_an_admin(app, client, alice, bob, admin):  # type: ignore[no-untyped-def]
    register_sp("https://wiki.example.com", slug="wiki")
    db.session.add(Passkey(id=1, user_id=bob.id, credential_id=b"bob-key", public_key=b"-", name="bob's key"))
    db.session.add(WebhookEndpoint(id=1, url="https://hooks.example.com/idp", secret_sealed="-",
                                   event_types=["sso.success"]))
    rules = admin_post_rules(app)
    assert any(path == "/admin/apps/new" for _, path in rules), rules  # the console is there to be tested
    admin_browser = client
    assert login_admin(admin_browser, "admin", ADMIN_PASSWORD).status_code == 303
    alice_browser = app.test_client()
    assert login(alice_browser).status_code == 303
    anonymous = app.test_client()
    alice_token = csrf_token(alice_browser, "/account")
    before = snapshot(app)
    for endpoint, path in rules:
        with case(f"{endpoint} {path}"):
            bag = _form_bag()
            assert admin_browser.post(path, data=bag).status_code == 400, "admin without a token"
            assert admin_browser.post(path, data={**bag, "csrf_token": "forged"}).status_code == 400
            assert anonymous.post(path, data=bag).status_code == 400, "anonymous without a token"
            assert alice_browser.post(path, data={**bag, "csrf_token": alice_token}).status_code == 403, \
                "a non-admin with a valid token"
    for path in ("/account/password", "/account/mfa/reset"):
        with case(path):
            assert alice_browser.post(path, data=_form_bag()).status_code == 400
    # and no admin page changes anything on a GET (which needs no token), whatever its query says
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/admin") and "GET" in (rule.methods or set()):
            path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: SAMPLE_ARGS.get(m.group(1), "x"), rule.rule)
            with case(f"GET {path}"):
                assert admin_browser.get(path, query_string=_form_bag()).status_code < 500
    assert snapshot(app) == before


# ---------------------------------------------------------------- open redirects


REDIRECT_TARGETS = [
    "//evil.example.com/", "https://evil.example.com/", "http:evil.example.com", "https:/evil.example.com",
    "/\\evil.example.com", "\\\\evil.example.com", "\\/evil.example.com", "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>", "/%0d%0aSet-Cookie:x=1", "/\r\nSet-Cookie: x=1",
    "\t//evil.example.com", "/\t/evil.example.com", "/\n/evil.example.com", " //evil.example.com",
    "///evil.example.com", "//evil.example.com@localhost/", "/\x00//evil.example.com", "\u3000//evil.example.com",
]


def assert_same_origin(location: str) -> None:
    assert not any(ord(c) < 33 or ord(c) == 127 for c in location), repr(location)
    assert location.startswith("/") and not location.startswith(("//", "/\\")), repr(location)
    parts = urlsplit(location)
    assert parts.scheme == "" and parts.netloc == "", repr(location)


def test_open_redirects_through_login(client, alice):  # type: ignore[no-untyped-def]
    for target in REDIRECT_TARGETS:
        with case(repr(target)):
            resp = login(client, next_url=target)
            assert resp.status_code == 303
            assert_same_origin(resp.headers["Location"])
            # already signed in: GET /login?next=… redirects straight away
            resp = client.get("/login?next=" + quote(target, safe=""))
            assert resp.status_code in (302, 303)
            assert_same_origin(resp.headers["Location"])
            client.get("/logout/saml", headers=OWN_PAGE)


def test_login_page_escapes_what_it_reflects(client, alice):  # type: ignore[no-untyped-def]
    payload = '/"><script>alert(1)</script>'
    body = client.get("/login?next=" + quote(payload, safe="")).get_data(as_text=True)
    assert "<script>alert(1)" not in body
    resp = login(client, '"><script>alert(2)</script>', "x", next_url=payload)
    assert resp.status_code == 401
    assert "<script>alert(" not in resp.get_data(as_text=True)


def _enrol(user: User) -> str:
    secret = pyotp.random_base32(32)
    user.totp_secret, user.totp_confirmed, user.totp_last_step = secret, True, None
    db.session.commit()
    return secret


def _unused_code(secret: str) -> str:
    code = int(pyotp.TOTP(secret).now())
    for delta in range(1, 1000):
        candidate = f"{(code + delta) % 1_000_000:06d}"
        if matching_step(secret, candidate) is None:
            return candidate
    raise AssertionError("no wrong code found")


def test_open_redirects_through_mfa_pages(client, alice):  # type: ignore[no-untyped-def]
    secret = _enrol(alice)
    assert login(client).status_code == 303
    for target in REDIRECT_TARGETS:
        with case(f"/mfa {target!r}"):
            db.session.execute(update(User).where(User.id == alice.id).values(totp_last_step=None))
            db.session.commit()
            token = csrf_token(client, "/mfa")
            resp = client.post("/mfa", data={"csrf_token": token, "code": pyotp.TOTP(secret).now(), "next": target})
            assert resp.status_code == 303, resp.get_data(as_text=True)[:300]
            assert_same_origin(resp.headers["Location"])
    bob = users_svc.add_user("bob2", email="bob2@example.com", password_hash=alice.password_hash)
    from idp.services import org
    org.add_trusted_range("127.0.0.0/8")   # self-enrolment from here (the default mode: trusted ranges only)
    other = client.application.test_client()
    for target in REDIRECT_TARGETS[:6]:
        with case(f"/mfa/enroll {target!r}"):
            assert login(other, "bob2").status_code == 303   # a first enrolment ends the session: sign in each time
            page = other.get("/mfa/enroll?next=" + quote(target, safe=""))
            assert page.status_code == 200
            db.session.refresh(bob)
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)  # type: ignore[union-attr]
            resp = other.post("/mfa/enroll", data={"csrf_token": token, "code": pyotp.TOTP(totp.secret_of(bob)).now(),
                                                   "next": target})
            assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
            href = re.search(r'id="sign-in-again" href="([^"]+)"', resp.get_data(as_text=True)).group(1)  # type: ignore[union-attr]
            assert_same_origin(href.replace("&amp;", "&"))
            nxt = re.search(r"[?&]next=([^&]*)", href.replace("&amp;", "&"))
            assert nxt is None or assert_same_origin(unquote(nxt.group(1))) is None
            db.session.execute(update(User).where(User.id == bob.id).values(totp_secret=None, totp_confirmed=False,
                                                                             totp_last_step=None))
            recovery_codes.clear(bob)   # as a reset does (codes left over would mean a first enrolment won)
            db.session.commit()


# ---------------------------------------------------------------- session fixation


def test_session_fixation(app, client, alice, bob):  # type: ignore[no-untyped-def]
    attacker = app.test_client()
    attacker.get("/login")
    planted = attacker.get_cookie("idp_session").value
    client.set_cookie("idp_session", planted)
    assert login(client).status_code == 303
    after = client.get_cookie("idp_session").value
    assert after != planted
    assert attacker.get("/").status_code == 302, "the planted cookie must not become a signed-in one"
    first = db.session.query(IdpSession).one()
    # a garbage cookie is simply replaced
    victim2 = app.test_client()
    victim2.set_cookie("idp_session", "x" * 40)
    assert login(victim2, "bob").status_code == 303 and victim2.get("/").status_code == 200
    # re-authenticating (here as someone else) in the same browser: a new server-side session, the old one ended
    token = csrf_token(client, "/login?force=1")
    client.post("/login", data={"csrf_token": token, "username": "bob", "password": PASSWORD, "force": "1"})
    db.session.expire_all()
    assert db.session.get(IdpSession, first.id).ended_at is not None
    stolen = app.test_client()
    stolen.set_cookie("idp_session", after)
    assert stolen.get("/").status_code == 302, "the cookie of the ended session still works"


def test_second_factor_renews_the_session(app, client, alice):  # type: ignore[no-untyped-def]
    secret = _enrol(alice)
    assert login(client).status_code == 303
    before_cookie = client.get_cookie("idp_session").value
    before = db.session.query(IdpSession).one().id
    token = csrf_token(client, "/mfa")
    assert client.post("/mfa", data={"csrf_token": token, "code": pyotp.TOTP(secret).now()}).status_code == 303
    db.session.expire_all()
    live = db.session.query(IdpSession).filter(IdpSession.ended_at.is_(None)).one()
    assert live.id != before and live.mfa_at is not None
    old = app.test_client()
    old.set_cookie("idp_session", before_cookie)
    assert old.get("/").status_code == 302


# ---------------------------------------------------------------- password guessing


# Growing lock-outs per (account, address), and that guesses from elsewhere cannot lock the user out:
# tests/hostile/test_lockout_attacks.py


def test_password_spraying_is_throttled_per_ip(app, client, alice, bob):  # type: ignore[no-untyped-def]
    for i in range(30):
        resp = login(client, f"user{i}", "Winter2024!", X_Forwarded_For=f"203.0.113.{i}")
        assert resp.status_code == 401, i
    resp = login(client, "bob", PASSWORD, X_Forwarded_For="203.0.113.250")
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) >= 1
    assert session_rows() == 0
    elsewhere = client_at(app, "198.51.100.99")
    assert login(elsewhere, "bob", PASSWORD).status_code == 303  # the lock is per address, not global


def _normalised(resp: Any, username: str) -> str:
    body = resp.get_data(as_text=True).replace(username, "USER")
    return re.sub(r'(name="csrf_token" value|data-csrf)="[^"]+"', "", body)  # tokens carry a timestamp


def test_unknown_user_and_wrong_password_are_indistinguishable(app, client, alice, monkeypatch):  # type: ignore[no-untyped-def]
    import idp.flows.signin as views  # where the password step throttles

    r1, r2 = login(client, "alice", "wrong password"), login(client, "nosuchuser", "wrong password")
    assert r1.status_code == r2.status_code == 401
    assert _normalised(r1, "alice") == _normalised(r2, "nosuchuser")
    assert sorted(r1.headers.keys()) == sorted(r2.headers.keys())
    # timing: one argon2 verification either way (the throttle is switched off so every attempt is checked)
    monkeypatch.setattr(views, "retry_after", lambda key: 0)
    monkeypatch.setattr(views, "record_failure", lambda key, rule: 0)
    token = csrf_token(client)

    def attempt(username: str) -> float:
        started = time.perf_counter()
        resp = client.post("/login", data={"csrf_token": token, "username": username, "password": "wrong password",
                                           "next": "/"})
        elapsed = time.perf_counter() - started
        assert resp.status_code == 401
        return elapsed

    for _ in range(3):  # warm-up
        attempt("alice"), attempt("nosuchuser")
    known, unknown = [], []
    for _ in range(15):
        known.append(attempt("alice"))
        unknown.append(attempt("nosuchuser"))
    ratio = statistics.median(known) / statistics.median(unknown)
    assert 0.5 <= ratio <= 2.0, (ratio, statistics.median(known), statistics.median(unknown))


# ---------------------------------------------------------------- TOTP guessing and replay


def _mfa_app() -> Any:
    return register_sp("https://mfa.example.com", require_mfa=True)


def _start_sso_to_mfa(client: FlaskClient, sp: Any) -> str:
    """Start an SSO to an MFA app and log in with the password; returns the /mfa URL the IdP sent us to."""
    resp = Browser(client).follow(client.get("/saml/sso?" + redirect_query(authn_request(sp))), limit=1)
    body = resp.get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', body).group(1)  # type: ignore[union-attr]
    resp = client.post("/login", data={"csrf_token": token, "username": "alice", "password": PASSWORD,
                                       **continuation(body)})
    assert resp.status_code == 303 and resp.headers["Location"].startswith("/mfa"), resp.headers.get("Location")
    return resp.headers["Location"]


def test_totp_guessing_is_throttled_and_logged(client, alice):  # type: ignore[no-untyped-def]
    secret = _enrol(alice)
    sp = _mfa_app()
    mfa_url = _start_sso_to_mfa(client, sp)
    assert session_rows() == 0  # only a pending user in the cookie
    from urllib.parse import parse_qs, urlsplit
    carried = {k: v[0] for k, v in parse_qs(urlsplit(mfa_url).query).items() if k in ("next", "request")}
    assert set(carried) == {"next", "request"}, mfa_url
    token = csrf_token(client, mfa_url)
    for i in range(5):
        resp = client.post("/mfa", data={"csrf_token": token, "code": _unused_code(secret), **carried})
        assert resp.status_code == 401, i
        ev = last_event()
        assert (ev.reason, ev.outcome, ev.app_slug, ev.username) == ("mfa_failed", "denied", sp.slug, "alice")
    resp = client.post("/mfa", data={"csrf_token": token, "code": pyotp.TOTP(secret).now(), **carried})
    assert resp.status_code == 429, "the right code must wait while locked"
    assert assertion_count(resp) == 0 and session_rows() == 0
    assert len(events(reason="mfa_failed")) == 5


def test_totp_code_replay_is_refused(app, client, alice):  # type: ignore[no-untyped-def]
    secret = _enrol(alice)
    sp = _mfa_app()
    code = pyotp.TOTP(secret).now()
    mfa_url = _start_sso_to_mfa(client, sp)
    resp = Browser(client).follow(client.post(mfa_url, data={"csrf_token": csrf_token(client, mfa_url),
                                                             "code": code}))
    assert assertion_count(resp) == 1
    # the same code, from another browser, while it is still inside its time window
    other = app.test_client()
    mfa_url = _start_sso_to_mfa(other, sp)
    resp = other.post(mfa_url, data={"csrf_token": csrf_token(other, mfa_url), "code": code})
    assert resp.status_code == 401 and assertion_count(resp) == 0
    assert last_event().reason == "mfa_failed"
    # and the code of the step before (still inside ±1) after a later one was used
    previous = pyotp.TOTP(secret).at(time.time() - 30)
    resp = other.post(mfa_url, data={"csrf_token": csrf_token(other, mfa_url), "code": previous})
    assert resp.status_code == 401 and live_sessions() == 1


def test_unknown_app_launches_do_not_grow_the_metrics_without_bound(client):  # type: ignore[no-untyped-def]
    marker = "hostile-" + base64.b32encode(os.urandom(5)).decode().lower()
    for i in range(200):
        assert client.get(f"/apps/{marker}-{i}/sso").status_code == 404
    exposition = client.get("/metrics").get_data(as_text=True)
    series = [ln for ln in exposition.splitlines() if marker in ln]
    assert len(series) <= 1, f"{len(series)} metric series created by anonymous requests"


# ---------------------------------------------------------------- client IP


def test_x_forwarded_for_is_ignored_without_trusted_proxies(app, alice):  # type: ignore[no-untyped-def]
    assert app.extensions["idp.settings"].trusted_proxies == 0
    sp = register_sp("https://ip.example.com", ip_policy="enforce", ip_ranges=("203.0.113.0/24",))
    c = client_at(app, "198.51.100.7")
    spoof = {"X-Forwarded-For": "203.0.113.9", "X-Real-IP": "203.0.113.9", "Forwarded": "for=203.0.113.9",
             "True-Client-IP": "203.0.113.9", "CF-Connecting-IP": "203.0.113.9"}
    resp = c.get("/saml/sso?SAMLRequest=%%%", headers=spoof)
    assert_refused(resp, 400, "malformed_request")
    assert last_event().client_ip == "198.51.100.7"
    token = csrf_token(c)
    assert c.post("/login", data={"csrf_token": token, "username": "alice", "password": PASSWORD, "next": "/"},
                  headers=spoof).status_code == 303
    assert db.session.query(IdpSession).one().client_ip == "198.51.100.7"
    resp = Browser(c).follow(c.get("/saml/sso?" + redirect_query(authn_request(sp)), headers=spoof))
    ev = assert_refused(resp, 403, "ip_not_allowed", outcome="denied")
    assert ev.client_ip == "198.51.100.7"


# ---------------------------------------------------------------- Host header


class Poisoned:
    """A browser whose every request claims to be for evil.example.com (Host and the X-Forwarded-* family)."""

    headers = {"Host": EVIL, "X-Forwarded-Host": EVIL, "X-Forwarded-Proto": "https", "X-Forwarded-Server": EVIL,
               "X-Forwarded-Port": "8443", "X-Original-URL": f"https://{EVIL}/", "Forwarded": f"host={EVIL}",
               "Sec-Fetch-Site": "same-origin"}

    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        self.seen: list[Any] = []

    def _keep(self, resp: Any) -> Any:
        self.seen.append(resp)
        return resp

    def get(self, path: str) -> Any:
        return self._keep(self.client.get(path, headers=self.headers))

    def post(self, path: str, data: dict[str, str]) -> Any:
        return self._keep(self.client.post(path, data=data, headers=self.headers))

    def follow(self, resp: Any) -> Any:
        while resp.status_code in (302, 303) and resp.headers["Location"].startswith("/"):
            resp = self.get(resp.headers["Location"])
        return resp

    def texts(self) -> Iterator[str]:
        for resp in self.seen:
            yield resp.get_data(as_text=True)
            yield "\n".join(f"{k}: {v}" for k, v in resp.headers.items())
            form = saml_form(resp)
            if form is not None:
                for value in form.fields.values():
                    try:
                        yield base64.b64decode(value).decode("utf-8", "replace")
                    except ValueError:
                        pass
            loc = resp.headers.get("Location", "")
            if "SAMLResponse=" in loc or "SAMLRequest=" in loc:
                import zlib
                from urllib.parse import parse_qs

                for key in ("SAMLResponse", "SAMLRequest"):
                    for v in parse_qs(urlsplit(loc).query).get(key, []):
                        yield zlib.decompress(base64.b64decode(v), -15).decode()


def test_host_header_never_reaches_an_emitted_url(app, client, admin, sp_keys):  # type: ignore[no-untyped-def]
    sp = register_sp("https://sp1.example.com", keypair=sp_keys["sp1"], signs=True)
    b = Poisoned(client)
    for path in ("/saml/metadata", "/saml/metadata?signed=1", f"/saml/metadata?app={sp.slug}&download=1",
                 "/saml/certificate", "/login?next=/account", "/nope", "/mfa", "/"):
        b.get(path)
    # SP-initiated SSO through the login detour
    resp = b.follow(b.get("/saml/sso?" + redirect_query(authn_request(sp), key_pem=sp.keypair.key_pem)))
    token = re.search(r'name="csrf_token" value="([^"]+)"', resp.get_data(as_text=True)).group(1)  # type: ignore[union-attr]
    resp = b.follow(b.post("/login", {"csrf_token": token, "username": "admin", "password": ADMIN_PASSWORD,
                                      **continuation(resp.get_data(as_text=True))}))
    root = etree.fromstring(base64.b64decode(saml_form(resp).saml_response))  # type: ignore[union-attr]
    assert root.get("Destination") == sp.acs_url and saml_form(resp).action == sp.acs_url  # type: ignore[union-attr]
    # IdP-initiated, a refused request (error page), the admin pages that show the IdP's URLs, then logout
    b.follow(b.get(f"/apps/{sp.slug}/sso"))
    b.get("/saml/sso?" + redirect_query(authn_request(sp, destination=f"http://{EVIL}/saml/sso")))
    step_up = b.follow(b.get("/admin/apps"))  # the console asks for the second factor (step-up), then answers
    token = re.search(r'name="csrf_token" value="([^"]+)"', step_up.get_data(as_text=True)).group(1)  # type: ignore[union-attr]
    b.follow(b.post("/mfa", {"csrf_token": token, "code": AUTHENTICATORS["admin"].code(),
                             **continuation(step_up.get_data(as_text=True))}))
    for path in ("/admin/apps", f"/admin/apps/{sp.slug}", "/admin/certs", "/account"):
        b.get(path)
    name_id = root.find(".//{urn:oasis:names:tc:SAML:2.0:assertion}NameID").text
    index = root.find(".//{urn:oasis:names:tc:SAML:2.0:assertion}AuthnStatement").get("SessionIndex")
    logout = logout_request(sp.entity_id, name_id, [index])
    out = b.get("/saml/slo?" + redirect_query(logout, key_pem=sp.keypair.key_pem))
    assert out.status_code == 303 and out.headers["Location"].startswith(sp.slo_url)
    b.follow(b.get("/logout"))
    assert len(b.seen) > 15
    for text in b.texts():
        assert EVIL not in text and "8443" not in text, text[:500]


# ---------------------------------------------------------------- security headers


def _html_pages(app: Flask, client: FlaskClient, sp: Any) -> list[tuple[str, Any]]:
    pages = [("login", client.get("/login")), ("404", client.get("/nope")),
             ("error", client.get("/saml/sso?SAMLRequest=%%%"))]
    assert login(client, "admin", ADMIN_PASSWORD).status_code == 303
    pages.append(("second factor", client.get("/mfa?next=/admin/apps")))
    assert pass_second_factor(client, "admin", "/admin/apps").status_code == 303
    pages += [(p, client.get(p)) for p in ("/", "/account", "/mfa/enroll", "/admin/apps", "/admin/events")]
    pages.append(("saml post form", Browser(client).sso_path("/saml/sso?" + redirect_query(authn_request(sp)),
                                                             "admin", ADMIN_PASSWORD)))
    pages.append(("signed out", Browser(client).follow(client.get("/logout", headers=OWN_PAGE))))
    return pages


def test_security_headers_on_html_pages(app, client, admin):  # type: ignore[no-untyped-def]
    sp = register_sp("https://sp1.example.com")
    for name, resp in _html_pages(app, client, sp):
        with case(name):
            assert resp.mimetype == "text/html", resp.status_code
            h = resp.headers
            assert "frame-ancestors 'none'" in h["Content-Security-Policy"]
            assert h["X-Content-Type-Options"] == "nosniff"
            assert h["Referrer-Policy"] in ("no-referrer", "same-origin", "strict-origin",
                                            "strict-origin-when-cross-origin")
            assert "Strict-Transport-Security" not in h  # an http:// base URL
            if name == "saml post form":
                assert saml_form(resp) is not None and "no-store" in h["Cache-Control"]
    for path in ("/saml/metadata", "/saml/certificate", "/healthz"):
        assert client.get(path).headers["X-Content-Type-Options"] == "nosniff"


def test_slo_post_form_is_not_cached(client, alice, sp_keys):  # type: ignore[no-untyped-def]
    from .saml_tools import send, signed

    sp = register_sp("https://sp1.example.com", keypair=sp_keys["sp1"])
    name_id, index = sign_in(client, sp)
    resp = send(client, "post", "/saml/slo", signed(logout_request(sp.entity_id, name_id, [index]), sp.keypair))
    assert saml_form(resp) is not None and "no-store" in resp.headers["Cache-Control"]


HTTPS_BASE = "https://idp.example.test"


@pytest.fixture
def https_app(tmp_path, key_template) -> Iterator[Flask]:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path / "https", key_template, base_url=HTTPS_BASE)
    https = create_app(settings, TESTING=True)
    https.test_client_class = IsolatedClient
    with https.app_context():
        reset_backends(https)
        pw = https.extensions["idp.passwords"]
        users_svc.add_user("alice", email="alice@example.com", password_hash=pw.hash(PASSWORD))
        yield https
        db.session.remove()
        db.drop_all()
        db.engine.dispose()


def test_https_deployment_sends_hsts_and_secure_cookies(https_app):  # type: ignore[no-untyped-def]
    c = https_app.test_client()
    page = c.get("/login", base_url=HTTPS_BASE)
    assert "max-age=" in page.headers["Strict-Transport-Security"]
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)  # type: ignore[union-attr]
    data = {"csrf_token": token, "username": "alice", "password": PASSWORD, "next": "/"}
    # over https, a POST without a same-origin Referer is refused too (Flask-WTF's strict SSL check)
    assert c.post("/login", data=data, base_url=HTTPS_BASE).status_code == 400
    assert c.post("/login", data=data, base_url=HTTPS_BASE,
                  headers={"Referer": f"https://{EVIL}/login"}).status_code == 400
    resp = c.post("/login", data=data, base_url=HTTPS_BASE, headers={"Referer": f"{HTTPS_BASE}/login"})
    assert resp.status_code == 303
    cookies = resp.headers.getlist("Set-Cookie")
    assert cookies and all("Secure" in ck and "HttpOnly" in ck and "SameSite=Lax" in ck for ck in cookies), cookies
    for path in ("/", "/saml/metadata", "/nope"):
        assert "Strict-Transport-Security" in c.get(path, base_url=HTTPS_BASE).headers, path
    assert f'entityID="{HTTPS_BASE}/saml/metadata"' in c.get("/saml/metadata", base_url=HTTPS_BASE).get_data(
        as_text=True)
