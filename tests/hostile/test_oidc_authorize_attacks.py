"""Hostile input at the OIDC authorization endpoint: redirect URIs that are almost the registered one, repeated
and oversized parameters, forged parked-request tokens, foreign id_token_hints. Never a redirect to an
unregistered URI, never a code after a refusal, never a 500."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient

from idp.config import Settings
from idp.extensions import db
from idp.flows import sso
from idp.models import OidcGrant, utcnow

from ..conftest import make_settings
from ..functional.oidc_authz import CB, at_rp, authorize_url, last_event, make_client, params, sign_in
from ..webclient import Browser


@pytest.fixture
def settings(tmp_path: Path, key_template: Path) -> Settings:
    return make_settings(tmp_path, key_template, oidc_enabled=True)


ALMOST = [
    "https://rp.example.com/cb/",                     # trailing slash
    "https://RP.example.com/cb",                      # host case
    "https://rp.example.com/CB",                      # path case
    "https://rp.example.com/cb?next=https://evil.example",   # added query
    "https://rp.example.com/cb#frag",                 # fragment
    "https://attacker@rp.example.com/cb",             # userinfo
    "https://rp.example.com@evil.example/cb",         # userinfo the other way round
    "https://rp.example.com:8443/cb",                 # other port
    "https://rp.example.com:443/cb",                  # default port spelled out
    "http://rp.example.com/cb",                       # downgraded scheme
    "https://rp.example.com.evil.example/cb",         # suffix host
    "https://rp.example.com/cb/../cb",                # dot segments
    "https://rp.example.com/%63b",                    # percent-encoded path
    "https://rp.example.com/cb%00",                   # NUL
    "https://rp.example.com/cb\r\nSet-Cookie: x=1",   # header injection
    "//evil.example/cb",                              # scheme-relative
    "javascript:alert(document.domain)//https://rp.example.com/cb",
    "data:text/html,<script>alert(1)</script>",
    " https://rp.example.com/cb",                     # leading space
]


@pytest.mark.parametrize("redirect_uri", ALMOST)
def test_almost_registered_redirect_uri_never_redirects(app: Flask, browser: Browser, alice: Any,
                                                        redirect_uri: str) -> None:
    client_id = make_client()
    sign_in(browser, authorize_url(client_id))                 # signed in and consented: the worst case
    for resp in (browser.client.get(authorize_url(client_id, redirect_uri=redirect_uri)),
                 browser.client.get(authorize_url(client_id, redirect_uri=redirect_uri, prompt="none")),
                 browser.client.post("/oauth2/authorize", data=params(client_id, redirect_uri=redirect_uri))):
        body = resp.get_data(as_text=True)
        assert resp.status_code == 400 and "Location" not in resp.headers, (resp.status_code, body[:300])
        assert "evil.example" not in body and "<script>alert" not in body
    ev = last_event()
    assert ev.reason == "redirect_uri_mismatch" and ev.protocol == "oidc"


def test_redirect_uri_given_twice_or_missing_is_a_page(app: Flask, client: FlaskClient) -> None:
    client_id = make_client()
    query = urlencode([*params(client_id).items(), ("redirect_uri", "https://evil.example/cb")])
    resp = client.get("/oauth2/authorize?" + query)
    assert resp.status_code == 400 and "Location" not in resp.headers
    query = urlencode([("client_id", client_id), *params(client_id).items()])
    resp = client.get("/oauth2/authorize?" + query)
    assert resp.status_code == 400 and "Location" not in resp.headers
    assert last_event().reason == "invalid_request"


@pytest.mark.parametrize("name", ["state", "scope", "response_type", "code_challenge", "nonce", "prompt"])
def test_repeated_parameter_is_invalid_request_without_echoing_a_repeated_state(app: Flask, client: FlaskClient,
                                                                                name: str) -> None:
    client_id = make_client()
    p = params(client_id)
    extra = [(name, p[name])] if name in p else [(name, "login"), (name, "login")]
    query = urlencode([*p.items(), *extra])
    got = at_rp(client.get("/oauth2/authorize?" + query))
    assert got["error"] == "invalid_request" and "code" not in got
    assert ("state" in got) == (name != "state")


@pytest.mark.parametrize(("name", "size"), [("state", 5000), ("nonce", 2000), ("scope", 5000),
                                            ("code_challenge", 200), ("login_hint", 1000), ("acr_values", 5000),
                                            ("id_token_hint", 20000), ("resource", 5000)])
def test_oversized_parameter_is_invalid_request(app: Flask, client: FlaskClient, name: str, size: int) -> None:
    client_id = make_client()
    got = at_rp(client.get(authorize_url(client_id, **{name: "a" * size})))
    assert got["error"] == "invalid_request" and "code" not in got
    if name == "state":
        assert "state" not in got           # never echo a value we refused to read
    assert last_event().protocol == "oidc"


def test_oversized_or_garbage_client_id_is_a_page(app: Flask, client: FlaskClient) -> None:
    make_client()
    for client_id in ("x" * 5000, "\x00", "<script>alert(1)</script>", "é" * 30, "../../etc/passwd"):
        resp = client.get(authorize_url(client_id))
        assert resp.status_code == 400 and "Location" not in resp.headers
        assert "<script>alert" not in resp.get_data(as_text=True)


def test_parameter_flood_and_control_characters(app: Flask, client: FlaskClient) -> None:
    client_id = make_client()
    flood = urlencode([*params(client_id).items(), *((f"x{i}", "1") for i in range(200))])
    assert at_rp(client.get("/oauth2/authorize?" + flood))["error"] == "invalid_request"
    got = at_rp(client.get(authorize_url(client_id, nonce="a\r\nb")))
    assert got["error"] == "invalid_request"
    # a state with quotes and markup is echoed exactly (URL-encoded), never interpreted
    weird = '"><script>x</script>&code=forged'
    resp = client.get(authorize_url(client_id, state=weird, response_type="token"))
    got = at_rp(resp)
    assert got["state"] == weird and got["error"] == "unsupported_response_type"
    assert "code" not in got and "&code=forged" not in resp.headers["Location"]


def test_error_description_is_wire_safe(app: Flask, client: FlaskClient) -> None:
    client_id = make_client()
    got = at_rp(client.get(authorize_url(client_id, scope='profile "bad\\scope')))
    assert got["error"] == "invalid_scope"
    assert '"' not in got["error_description"] and "\\" not in got["error_description"]


def test_login_hint_is_only_an_escaped_prefill(app: Flask, client: FlaskClient) -> None:
    client_id = make_client()
    resp = client.get(authorize_url(client_id, login_hint='"><script>alert(1)</script>'))
    page = client.get(resp.headers["Location"])
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and "<script>alert(1)</script>" not in body


def test_forged_or_foreign_parked_tokens(app: Flask, browser: Browser, alice: Any) -> None:
    client_id = make_client()
    for token in ("nope", "A" * 64, "A" * 500):
        resp = browser.client.get(f"/oauth2/authorize/continue/{token}")
        assert resp.status_code in (400, 404) and "Location" not in resp.headers
    # a SAML request parked under kind "sso" is not an OIDC request
    saml = sso.park(sso.PendingSso(app_id=1, initiated_by="idp", binding=None, acs_url="https://sp.example/acs",
                                   relay_state=None, received_at=utcnow()))
    db.session.commit()
    resp = browser.client.get(f"/oauth2/authorize/continue/{saml}")
    assert resp.status_code == 400 and "Location" not in resp.headers
    page = sign_in(browser, authorize_url(client_id), consent=None)
    csrf = page.get_data(as_text=True).split('name="csrf_token" value="')[1].split('"')[0]
    for token in ("forged", saml, ""):
        resp = browser.client.post("/oauth2/authorize/consent", data={"csrf_token": csrf, "request": token,
                                                                      "decision": "allow"})
        assert resp.status_code == 400 and "Location" not in resp.headers
    resp = browser.client.post("/oauth2/authorize/consent", data={"csrf_token": csrf, "request": "x",
                                                                  "decision": "maybe"})
    assert resp.status_code == 400
    assert db.session.query(OidcGrant).count() == 0


def test_consent_token_is_single_use(app: Flask, browser: Browser, alice: Any) -> None:
    client_id = make_client()
    page = sign_in(browser, authorize_url(client_id), consent=None)
    body = page.get_data(as_text=True)
    csrf = body.split('name="csrf_token" value="')[1].split('"')[0]
    token = body.split('name="request" value="')[1].split('"')[0]
    data = {"csrf_token": csrf, "request": token, "decision": "allow"}
    assert "code" in at_rp(browser.client.post("/oauth2/authorize/consent", data=data))
    again = browser.client.post("/oauth2/authorize/consent", data=data)
    assert again.status_code == 400 and "Location" not in again.headers


def _b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def test_unsigned_or_foreign_id_token_hint_is_refused(app: Flask, browser: Browser, alice: Any) -> None:
    client_id = make_client()
    sign_in(browser, authorize_url(client_id))
    now = int(utcnow().timestamp())
    claims = {"iss": "http://localhost", "sub": "x", "aud": client_id, "iat": now, "exp": now + 60}
    for hint in (f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.",
                 f"{_b64({'alg': 'HS256', 'kid': 'k'})}.{_b64(claims)}.c2ln"):
        got = at_rp(browser.client.get(authorize_url(client_id, id_token_hint=hint)))
        assert got["error"] == "invalid_request" and "code" not in got


def test_no_code_in_events(app: Flask, browser: Browser, alice: Any) -> None:
    client_id = make_client()
    got = at_rp(sign_in(browser, authorize_url(client_id)))
    from idp.models import SsoEvent
    dump = json.dumps([[e.detail, e.request_id, e.response_id] for e in db.session.query(SsoEvent)])
    assert got["code"] not in dump and CB
