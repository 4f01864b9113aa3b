"""Two IdP server processes sharing one PostgreSQL and one Redis, as behind a load balancer."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pyotp
import pytest
import requests

from ..sp_harness import OneLoginSP
from ..webclient import PostedForm, continuation
from .conftest import csrf_of, idp_cli, local, needs_services

pytestmark = needs_services
PASSWORD = "correct horse battery"
FORM = re.compile(r'<form id="saml-post" method="post" action="([^"]+)">')
INPUT = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def saml_form(html: str) -> PostedForm | None:
    from html import unescape
    m = FORM.search(html)
    if not m:
        return None
    return PostedForm(action=unescape(m.group(1)), fields={unescape(k): unescape(v) for k, v in INPUT.findall(html)})


def login(s: requests.Session, base: str, username: str, password: str, next_path: str = "/") -> requests.Response:
    page = s.get(f"{base}/login?next={next_path}")
    return s.post(f"{base}/login", data={"csrf_token": csrf_of(page.text), "username": username,
                                         "password": password, "next": next_path}, allow_redirects=True)


@pytest.fixture(scope="module")
def setup(cluster, tmp_path_factory, sp_keys_module):  # type: ignore[no-untyped-def]
    a, b, env = cluster
    idp_cli(env, "groups", "add", "engineering")
    idp_cli(env, "users", "add", "alice", "--email", "alice@example.com", "--password-stdin", "--group",
            "engineering", stdin=PASSWORD + "\n")
    idp_cli(env, "users", "add", "carol", "--email", "carol@example.com", "--password-stdin", stdin=PASSWORD + "\n")
    md = requests.get(f"{a.url}/saml/metadata").text
    work = tmp_path_factory.mktemp("sps")
    sp = OneLoginSP(work, md, base_url="https://sp.example.com", sign_requests=True, keypair=sp_keys_module)
    (work / "sp.xml").write_text(sp.metadata_xml())
    idp_cli(env, "apps", "add", "--metadata", str(work / "sp.xml"), "--slug", "shared-sp")
    return a, b, env, sp


@pytest.fixture(scope="module")
def sp_keys_module(tmp_path_factory):  # type: ignore[no-untyped-def]
    from ..sp_harness import make_keypair
    return make_keypair(tmp_path_factory.mktemp("spk"), "sp")


def send(s: requests.Session, base: str, req) -> requests.Response:  # type: ignore[no-untyped-def]
    if req.binding == "redirect":
        return s.get(base + local(req.url))
    return s.post(base + local(req.url), data=req.form)


def test_login_on_a_then_sso_on_b_without_password(setup):  # type: ignore[no-untyped-def]
    a, b, _, sp = setup
    s = requests.Session()
    assert login(s, a.url, "alice", PASSWORD).status_code == 200
    req = sp.authn_request("redirect")
    resp = send(s, b.url, req)
    form = saml_form(resp.text)
    assert form is not None, "instance B must know the session created on A"
    assert sp.process_response(form.saml_response, req.request_id).name_id == "alice"
    # the same signed request replayed on A after B: refused, shared replay cache
    again = send(s, a.url, req)
    assert again.status_code == 409 and saml_form(again.text) is None


def test_post_request_parked_on_a_resumes_on_b(setup):  # type: ignore[no-untyped-def]
    a, b, _, sp = setup
    s = requests.Session()
    req = sp.authn_request("post")
    resp = s.post(a.url + local(req.url), data=req.form, allow_redirects=False)
    assert resp.status_code == 303
    login_page = s.get(b.url + local(resp.headers["Location"]), allow_redirects=True)  # continue on B
    assert 'name="password"' in login_page.text
    done = s.post(f"{a.url}/login", data={"csrf_token": csrf_of(login_page.text), "username": "alice",
                                           "password": PASSWORD, **continuation(login_page.text)})
    form = saml_form(done.text)
    assert form is not None
    assert sp.process_response(form.saml_response, req.request_id).name_id == "alice"


def test_logout_on_b_ends_the_session_on_a(setup):  # type: ignore[no-untyped-def]
    a, b, _, _ = setup
    s = requests.Session()
    login(s, a.url, "alice", PASSWORD)
    assert s.get(f"{a.url}/", allow_redirects=False).status_code == 200
    s.get(f"{b.url}/logout", headers={"Sec-Fetch-Site": "same-origin"}, allow_redirects=True)
    assert s.get(f"{a.url}/", allow_redirects=False).status_code == 302


def test_totp_code_used_on_a_is_refused_on_b(setup):  # type: ignore[no-untyped-def]
    a, b, env, sp = setup
    uri = idp_cli(env, "users", "mfa-enroll", "carol").strip()
    totp = pyotp.parse_uri(uri)
    idp_cli(env, "apps", "set", "shared-sp", "--require-mfa")
    try:
        code = totp.now()
        sa, sb = requests.Session(), requests.Session()
        pages = {}
        for s, inst in ((sa, a), (sb, b)):
            req = sp.authn_request("redirect")
            resp = send(s, inst.url, req)
            mfa = s.post(f"{inst.url}/login", data={"csrf_token": csrf_of(resp.text), "username": "carol",
                                                    "password": PASSWORD, **continuation(resp.text)})
            assert 'name="code"' in mfa.text
            pages[inst.port] = (s, mfa)
        s, page = pages[a.port]
        ok = s.post(f"{a.url}/mfa", data={"csrf_token": csrf_of(page.text), "code": code,
                                          **continuation(page.text)})
        assert saml_form(ok.text) is not None
        s, page = pages[b.port]
        replay = s.post(f"{b.url}/mfa", data={"csrf_token": csrf_of(page.text), "code": code,
                                              **continuation(page.text)})
        assert replay.status_code == 401 and saml_form(replay.text) is None
    finally:
        idp_cli(env, "apps", "set", "shared-sp", "--no-require-mfa")


def test_login_throttling_counts_across_instances(setup):  # type: ignore[no-untyped-def]
    a, b, _, _ = setup
    statuses = []
    for i in range(6):
        inst = a if i % 2 == 0 else b
        s = requests.Session()
        statuses.append(login(s, inst.url, "victim-account", "wrong").status_code)
    assert statuses[:5] == [401] * 5 and statuses[5] == 429


def test_health_ready_metrics(setup):  # type: ignore[no-untyped-def]
    a, _, _, _ = setup
    assert requests.get(f"{a.url}/healthz").text == "ok\n"
    r = requests.get(f"{a.url}/readyz")
    assert r.status_code == 200 and r.json()["checks"] == {"database": "ok", "redis": "ok", "signing_key": "ok"}
    m = requests.get(f"{a.url}/metrics")
    assert m.status_code == 200
    assert 'idp_sso_attempts_total{type="sso",app="shared-sp",outcome="success",reason="ok"' in m.text
    assert "idp_sso_duration_seconds_bucket" in m.text and "idp_signing_key_days_to_expiry" in m.text


def test_events_are_json_lines_on_stdout(setup):  # type: ignore[no-untyped-def]
    import json
    a, _, _, _ = setup
    time.sleep(0.5)
    lines = [json.loads(line) for line in Path(a.log).read_text().splitlines() if line.startswith("{")]
    events = [e for e in lines if e.get("log") == "sso_event"]
    assert events and {"app_slug", "outcome", "reason", "username", "client_ip"} <= set(events[0])
    assert all("password" not in json.dumps(e).lower() for e in events)


def test_passkey_ceremonies_span_instances_and_challenges_are_single_use(setup):  # type: ignore[no-untyped-def]
    """A passkey challenge issued by A is verified by B (shared state: Redis), and only once."""
    from ..passkey_authenticator import SoftAuthenticator
    a, b, env, _ = setup
    idp_cli(env, "users", "add", "dave", "--email", "dave@example.com", "--password-stdin", stdin=PASSWORD + "\n")
    idp_cli(env, "org", "ip-ranges", "add", "127.0.0.0/8")   # self-enrolment of a first factor: trusted ranges
    auth = SoftAuthenticator()
    origin = "http://idp.example.test"   # IDP_BASE_URL of both instances: RP ID idp.example.test
    try:
        s = requests.Session()
        login(s, a.url, "dave", PASSWORD, "/account")
        headers = {"X-CSRFToken": csrf_of(s.get(f"{a.url}/account").text)}
        opts = s.post(f"{a.url}/passkeys/register/options", json={}, headers=headers)
        assert opts.status_code == 200 and opts.json()["rp"]["id"] == "idp.example.test"
        reg = s.post(f"{b.url}/passkeys/register", json={"credential": auth.create(opts.json(), origin=origin),
                                                          "name": "key"}, headers=headers)
        assert reg.status_code == 201, reg.text
        assert len(reg.json()["recovery_codes"]) == 10   # a first factor: every session ended
        # passwordless: options from B, assertion verified by A
        s = requests.Session()
        headers = {"X-CSRFToken": csrf_of(s.get(f"{b.url}/login").text)}
        opts = s.post(f"{b.url}/passkeys/login/options", json={"purpose": "login"}, headers=headers)
        assert opts.status_code == 200
        assertion = auth.get(opts.json(), origin=origin)
        body = {"credential": assertion, "purpose": "login", "next": "/"}
        replay = requests.Session()   # the browser cookie as it was, naming the ceremony: replayed below
        replay.cookies.update(s.cookies)
        ok = s.post(f"{a.url}/passkeys/login", json=body, headers=headers)
        assert ok.status_code == 200, ok.text
        assert s.get(f"{b.url}/account", allow_redirects=False).status_code == 200
        # the same ceremony and assertion again, on the other instance: the challenge was consumed
        again = replay.post(f"{b.url}/passkeys/login", json=body, headers=headers)
        assert again.status_code == 400 and "expired or was already used" in again.json()["error"]
    finally:
        idp_cli(env, "org", "ip-ranges", "remove", "127.0.0.0/8")
