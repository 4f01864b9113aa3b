"""A scripted browser over Flask's test client: follows redirects, logs in, and reads SAML POST forms."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from html import unescape
from typing import Any
from urllib.parse import quote, urlsplit

import pyotp
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from .sp_harness import OutgoingRequest

_INPUT = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
_FORM = re.compile(r'<form id="saml-post" method="post" action="([^"]+)">')
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class PostedForm:
    action: str
    fields: dict[str, str]

    @property
    def saml_response(self) -> str:
        return self.fields["SAMLResponse"]

    @property
    def relay_state(self) -> str | None:
        return self.fields.get("RelayState")


def saml_form(resp: TestResponse) -> PostedForm | None:
    body = resp.get_data(as_text=True)
    m = _FORM.search(body)
    if not m:
        return None
    return PostedForm(action=unescape(m.group(1)),
                      fields={unescape(k): unescape(v) for k, v in _INPUT.findall(body)})


def continuation(body: str) -> dict[str, str]:
    """The hidden fields that carry a sign-in page's continuation (`next`, and `request`: the parked request's
    token), unescaped, to post back with a hand-made form."""
    out = {}
    for name in ("next", "request"):
        m = re.search(rf'name="{name}" value="([^"]*)"', body)
        if m:
            out[name] = unescape(m.group(1))
    return out


def local_path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


class Browser:
    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        self.last: TestResponse | None = None

    def send(self, req: OutgoingRequest) -> TestResponse:
        """Deliver an SP's request to the IdP (Redirect: GET with the raw query; POST: form post)."""
        if req.binding == "redirect":
            resp = self.client.get(local_path(req.url))
        else:
            resp = self.client.post(local_path(req.url), data=req.form)
        return self.follow(resp)

    def get(self, path: str) -> TestResponse:
        return self.follow(self.client.get(path))

    def follow(self, resp: TestResponse, limit: int = 10) -> TestResponse:
        for _ in range(limit):
            if resp.status_code not in (301, 302, 303, 307, 308):
                break
            location = resp.headers["Location"]
            if urlsplit(location).netloc not in ("", "localhost"):
                break  # leaves the IdP (e.g. a Redirect-binding logout message to an SP)
            resp = self.client.get(local_path(location))
        self.last = resp
        return resp

    def login(self, resp: TestResponse, username: str, password: str) -> TestResponse:
        """Fill in the login form the IdP is showing."""
        body = resp.get_data(as_text=True)
        m = _CSRF.search(body)
        assert m, f"no login form (status {resp.status_code}): {body[:300]}"
        nxt = re.search(r'name="next" value="([^"]*)"', body)
        data = {"csrf_token": m.group(1), "username": username, "password": password,
                "next": unescape(nxt.group(1)) if nxt else "/"}
        req = re.search(r'name="request" value="([^"]*)"', body)
        if req:
            data["request"] = unescape(req.group(1))
        if 'name="force" value="1"' in body:
            data["force"] = "1"
        return self.follow(self.client.post("/login", data=data))

    def sso_path(self, path: str, username: str, password: str) -> TestResponse:
        resp = self.get(path)
        if "csrf_token" in resp.get_data(as_text=True) and saml_form(resp) is None:
            resp = self.login(resp, username, password)
        return resp

    def sso(self, req: OutgoingRequest, username: str | None = None, password: str | None = None) -> TestResponse:
        resp = self.send(req)
        if username is not None and "csrf_token" in resp.get_data(as_text=True) and saml_form(resp) is None:
            resp = self.login(resp, username, password or "")
        return resp


# ---------------------------------------------------------------- a user's authenticator app (TOTP)

TOTP_STEP = 30


class Authenticator:
    """The authenticator app of a test user: the code of a time step the IdP has not yet accepted.

    The IdP accepts ±1 step around now and each step once only (a later step also retires the earlier ones), so
    a test that signs the same user in several times gets the previous step, then the current, then the next;
    a fourth sign-in within one step waits for the next step (rare: tests sign in once or twice).
    """

    def __init__(self, secret: str) -> None:
        self.totp = pyotp.TOTP(secret)
        self.last_step: int | None = None

    def code(self) -> str:
        now = time.time()
        current = int(now // TOTP_STEP)
        # the previous step only with a few seconds of margin before the server's clock moves past it
        earliest = current - 1 if now - current * TOTP_STEP < TOTP_STEP - 5 else current
        step = earliest if self.last_step is None else max(earliest, self.last_step + 1)
        if step > current + 1:  # every step the IdP would accept now is used: wait for the next one
            time.sleep((step - 1) * TOTP_STEP - now + 0.2)
        self.last_step = step
        return self.totp.at(step * TOTP_STEP)


AUTHENTICATORS: dict[str, Authenticator] = {}  # username -> the user's app, emptied for every test's new IdP


def enrol_totp(user: Any) -> Authenticator:
    """Give `user` a confirmed TOTP factor (as `idp users mfa-enroll` + a first code would) and keep its
    authenticator for `pass_second_factor` / `login_admin`; commits (the test is the outer unit of work)."""
    from idp.auth import totp
    from idp.extensions import db

    secret = totp.start_enrolment(user)
    user.totp_confirmed = True
    db.session.commit()
    AUTHENTICATORS[user.username] = Authenticator(secret)
    return AUTHENTICATORS[user.username]


def pass_second_factor(client: FlaskClient, username: str, next_url: str = "/") -> TestResponse:
    """The signed-in `username` proves the second factor on /mfa (step-up) with a fresh code from their
    authenticator; returns the redirect to `next_url`."""
    page = client.get(f"/mfa?next={quote(next_url, safe='/')}")
    body = page.get_data(as_text=True)
    m = _CSRF.search(body)
    assert m and 'name="code"' in body, f"no second-factor form (status {page.status_code}): {body[:300]}"
    resp = client.post("/mfa", data={"csrf_token": m.group(1), "code": AUTHENTICATORS[username].code(),
                                     "next": next_url})
    assert resp.status_code == 303, f"second factor refused ({resp.status_code}): {resp.get_data(as_text=True)[:300]}"
    return resp


def login_admin(client: FlaskClient, username: str, password: str, next_url: str = "/") -> TestResponse:
    """Sign an admin in as the console requires: the password, then the TOTP code of their authenticator
    (`enrol_totp` first). Returns the final redirect (303 to `next_url`)."""
    m = _CSRF.search(client.get("/login").get_data(as_text=True))
    assert m, "no login form"
    resp = client.post("/login", data={"csrf_token": m.group(1), "username": username, "password": password,
                                       "next": next_url})
    assert resp.status_code == 303, f"password refused ({resp.status_code}): {resp.get_data(as_text=True)[:300]}"
    return pass_second_factor(client, username, next_url)
