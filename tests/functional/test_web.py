"""Login, sessions, redirects, headers and metadata over HTTP."""

from __future__ import annotations

import re

import pytest
from lxml import etree

from idp.extensions import db
from idp.models import IdpSession
from idp.services import users as users_svc

from ..webclient import Browser, saml_form
from .conftest import PASSWORD

MD = "urn:oasis:names:tc:SAML:2.0:metadata"
OWN_PAGE = {"Sec-Fetch-Site": "same-origin"}  # what a browser sends for a link on the IdP's own pages


def csrf(resp) -> str:  # type: ignore[no-untyped-def]
    m = re.search(r'name="csrf_token" value="([^"]+)"', resp.get_data(as_text=True))
    assert m
    return m.group(1)


def login(client, username, password, next_url="/"):  # type: ignore[no-untyped-def]
    token = csrf(client.get("/login"))
    return client.post("/login", data={"csrf_token": token, "username": username, "password": password,
                                       "next": next_url})


def test_login_requires_csrf(client, alice):
    resp = client.post("/login", data={"username": "alice", "password": PASSWORD})
    assert resp.status_code == 400
    assert db.session.query(IdpSession).count() == 0


def test_login_success_and_home(client, alice):
    resp = login(client, "alice", PASSWORD)
    assert resp.status_code == 303 and resp.headers["Location"] == "/"
    home = client.get("/")
    assert home.status_code == 200 and "Hello, Alice" in home.get_data(as_text=True)


def test_wrong_password_and_unknown_user_look_the_same(client, alice):
    r1 = login(client, "alice", "wrong password")
    r2 = login(client, "nosuchuser", "wrong password")
    assert r1.status_code == r2.status_code == 401
    b1 = r1.get_data(as_text=True).replace("alice", "X")
    b2 = r2.get_data(as_text=True).replace("nosuchuser", "X")
    strip = lambda b: re.sub(r'(name="csrf_token" value|data-csrf)="[^"]+"', "", b)  # noqa: E731
    assert strip(b1) == strip(b2)
    assert db.session.query(IdpSession).count() == 0


def test_disabled_user_cannot_log_in_and_loses_session(client, alice):
    assert login(client, "alice", PASSWORD).status_code == 303
    assert client.get("/").status_code == 200
    users_svc.set_user(users_svc.get_user("alice"), disabled=True)
    assert client.get("/").status_code == 302  # back to login
    assert login(client, "alice", PASSWORD).status_code == 401


@pytest.mark.parametrize("target", ["//evil.example.com/", "https://evil.example.com/", "/\\evil.example.com",
                                    "javascript:alert(1)", "/%0d%0aSet-Cookie:x=1", "\t//evil.example.com"])
def test_open_redirect_in_next_is_refused(client, alice, target):
    resp = login(client, "alice", PASSWORD, next_url=target)
    assert resp.status_code == 303
    loc = resp.headers["Location"]
    assert loc == "/" or (loc.startswith("/") and not loc.startswith("//") and "evil" not in loc.split("?")[0][:3])
    assert "evil.example.com" not in loc or loc.startswith("/%")


def test_session_id_renewed_at_login_and_logout_ends_it(client, alice, app):
    client.get("/login")
    pre = client.get_cookie("idp_session").value
    login(client, "alice", PASSWORD)
    post = client.get_cookie("idp_session").value
    assert pre != post
    first = db.session.query(IdpSession).one()
    # a second login (same browser, re-authentication) gets a brand-new server-side session
    token = csrf(client.get("/login?force=1"))
    client.post("/login", data={"csrf_token": token, "username": "alice", "password": PASSWORD, "force": "1"})
    db.session.expire_all()
    sessions = db.session.query(IdpSession).order_by(IdpSession.authn_at).all()
    assert len(sessions) == 2 and sessions[0].id == first.id and sessions[0].ended_at is not None
    resp = client.get("/logout", headers=OWN_PAGE)
    Browser(client).follow(resp)
    db.session.expire_all()
    assert db.session.query(IdpSession).filter(IdpSession.ended_at.is_(None)).count() == 0
    assert client.get("/").status_code == 302


def test_stolen_cookie_is_dead_after_logout(client, app, alice):
    login(client, "alice", PASSWORD)
    cookie = client.get_cookie("idp_session").value
    Browser(client).follow(client.get("/logout", headers=OWN_PAGE))
    other = app.test_client()
    other.set_cookie("idp_session", cookie)
    assert other.get("/").status_code == 302


@pytest.mark.parametrize("site", ["cross-site", "same-site", None])
def test_logout_started_by_another_site_asks_first(client, alice, site):  # type: ignore[no-untyped-def]
    """Logout CSRF: an <img src=https://idp/logout> on another site must not end the session (and with it
    every app's session); the browser marks such requests with Sec-Fetch-Site, and a browser that sends
    no such header is asked too."""
    login(client, "alice", PASSWORD)
    foreign = {"Sec-Fetch-Site": site} if site else {}
    for path in ("/logout", "/logout/saml"):
        page = client.get(path, headers=foreign)
        assert page.status_code == 200 and 'id="logout-confirm"' in page.get_data(as_text=True), path
    assert page.headers["Cache-Control"] == "no-store"
    assert client.get("/").status_code == 200, "still signed in"
    assert client.post("/logout/saml", data={}, headers=foreign).status_code == 400, "a POST needs the token"
    assert client.get("/").status_code == 200
    done = Browser(client).follow(client.post("/logout/saml", data={"csrf_token": csrf(page)}))
    assert 'id="signed-out"' in done.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.query(IdpSession).filter(IdpSession.ended_at.is_(None)).count() == 0
    assert client.get("/").status_code == 302


@pytest.mark.parametrize("site", ["same-origin", "none"])
def test_logout_from_own_pages_is_immediate(client, alice, site):  # type: ignore[no-untyped-def]
    """A GET the browser marks as the IdP's own (same-origin) or the user's own action (typed URL: none)."""
    login(client, "alice", PASSWORD)
    done = Browser(client).follow(client.get("/logout", headers={"Sec-Fetch-Site": site}))
    assert 'id="signed-out"' in done.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_sign_out_button_is_a_csrf_protected_post(client, alice):  # type: ignore[no-untyped-def]
    login(client, "alice", PASSWORD)
    home = client.get("/")
    assert 'id="logout-form"' in home.get_data(as_text=True)
    assert client.post("/logout/saml", data={}).status_code == 400
    assert client.get("/").status_code == 200
    done = Browser(client).follow(client.post("/logout/saml", data={"csrf_token": csrf(home)}))
    assert 'id="signed-out"' in done.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_host_header_cannot_poison_urls(client, make_sp, alice):
    md = client.get("/saml/metadata", headers={"Host": "evil.example.com"})
    assert b"evil.example.com" not in md.data
    sp = make_sp("onelogin")
    req = sp.authn_request("redirect")
    resp = client.get(req.url.split("localhost", 1)[1], headers={"Host": "evil.example.com"})
    assert "evil.example.com" not in resp.headers.get("Location", "")


def test_security_headers(client, alice, make_sp):
    resp = client.get("/login")
    h = resp.headers
    assert "frame-ancestors 'none'" in h["Content-Security-Policy"]
    assert h["X-Content-Type-Options"] == "nosniff"
    assert h["X-Frame-Options"] == "DENY"
    assert "Strict-Transport-Security" not in h  # http base URL
    sp = make_sp("pysaml2")
    form_resp = Browser(client).sso(sp.authn_request("redirect"), "alice", PASSWORD)
    assert saml_form(form_resp) is not None
    assert "no-store" in form_resp.headers["Cache-Control"]


def test_idp_metadata(client, settings):
    resp = client.get("/saml/metadata")
    assert resp.status_code == 200
    assert resp.mimetype == "application/samlmetadata+xml"
    root = etree.fromstring(resp.data)
    assert root.get("entityID") == "http://localhost/saml/metadata"
    idp = root.find(f"{{{MD}}}IDPSSODescriptor")
    assert idp.get("WantAuthnRequestsSigned") == "false"
    kds = idp.findall(f"{{{MD}}}KeyDescriptor")
    assert [k.get("use") for k in kds] == ["signing"]
    sso = {(e.get("Binding").rsplit(":", 1)[1], e.get("Location")) for e in idp.findall(f"{{{MD}}}SingleSignOnService")}
    assert sso == {("HTTP-Redirect", "http://localhost/saml/sso"), ("HTTP-POST", "http://localhost/saml/sso")}
    slo = {e.get("Binding").rsplit(":", 1)[1] for e in idp.findall(f"{{{MD}}}SingleLogoutService")}
    assert slo == {"HTTP-Redirect", "HTTP-POST"}
    assert len(idp.findall(f"{{{MD}}}NameIDFormat")) == 4
    assert client.get("/saml/metadata?download=1").headers["Content-Disposition"].startswith("attachment")


def test_metadata_is_503_when_the_key_store_is_broken(client, settings):
    for p in settings.cert_dir.glob("*.key"):
        p.write_text("garbage")
    import os
    os.utime(settings.cert_dir / "keystore.json")  # the store reloads when its state file changes
    (settings.cert_dir / "keystore.json").write_text((settings.cert_dir / "keystore.json").read_text() + " ")
    resp = client.get("/saml/metadata")
    assert resp.status_code == 503
    assert b"not a valid unencrypted PEM private key" in resp.data


def test_sso_fails_closed_when_the_key_store_is_broken(client, settings, make_sp, alice):
    sp = make_sp("pysaml2")
    b = Browser(client)
    b.sso(sp.authn_request("redirect"), "alice", PASSWORD)
    for p in settings.cert_dir.glob("*.key"):
        p.unlink()
    (settings.cert_dir / "keystore.json").write_text((settings.cert_dir / "keystore.json").read_text() + " ")
    resp = b.send(sp.authn_request("redirect"))
    assert resp.status_code == 503
    assert saml_form(resp) is None
    from .conftest import last_event
    assert last_event().reason == "service_unavailable"


def test_not_found_and_method_not_allowed_pages(client):
    assert client.get("/nope").status_code == 404
    r = client.delete("/saml/sso")
    assert r.status_code == 405 and b"Traceback" not in r.data


def test_oversized_body_is_413(client):
    resp = client.post("/saml/sso", data={"SAMLRequest": "A" * 400_000})
    assert resp.status_code == 413


def test_password_guessing_is_throttled_per_account(client, alice):
    for _ in range(5):
        assert login(client, "alice", "wrong guess").status_code == 401
    resp = login(client, "alice", PASSWORD)  # even the right password waits while locked
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) >= 1
    assert db.session.query(IdpSession).count() == 0
    # unknown accounts are throttled the same way (no user enumeration through the lock-out)
    for _ in range(5):
        login(client, "ghost", "wrong guess")
    assert login(client, "ghost", "x").status_code == 429
