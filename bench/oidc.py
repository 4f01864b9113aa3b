"""OAuth / OIDC token endpoint figures: the authorization-code exchange and the client-credentials grant.

Both call the WSGI app directly with a complete environ (as SsoBench does), so the figure is the IdP's cost of
one POST /oauth2/token, not the test client's. The code exchange redeems codes issued beforehand outside the
timed region (issuing one is the authorization endpoint's work): per exchange it verifies the client secret,
spends the code (replay cache row, redeemed marker), issues a refresh token (row), signs an access token and an
ID token and writes the event. Client credentials is one secret check, one signature and one event row.
The round trip is what an RP's sign-in costs the IdP when the browser already has a session: GET
/oauth2/authorize (session, policy, remembered consent, code issued, redirect) then the code exchange.
"""

from __future__ import annotations

import base64
import io
import json
import secrets
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from flask import Flask

from idp import create_app
from idp.auth.sessions import start_session
from idp.config import load_settings
from idp.extensions import db
from idp.flows.oidc_codes import issue_code
from idp.flows.oidc_subject import subject_for
from idp.models import OidcGrant, SessionParticipant, User, utcnow
from idp.oidc.codes import AuthorizationCode
from idp.services import apps as apps_svc

from .fixtures import INPROCESS_BASE_URL, USERNAME, Workspace, clone_instance, login_test_client
from .timing import PoolExhausted

CALLBACK = "https://rp.bench.example/cb"
CODE_SCOPES = ("openid", "profile", "email", "groups")


class OidcBench:
    """Two registered clients on a copy of the bench database, with OIDC enabled."""

    def __init__(self, ws: Workspace) -> None:
        ws = clone_instance(ws, "oidc")
        self.app: Flask = create_app(load_settings(ws.env(INPROCESS_BASE_URL), oidc_enabled=True))
        self.codes: deque[str] = deque()
        with self.app.app_context():
            web, web_secret = apps_svc.register_oidc_app(
                name="Bench RP", slug="bench-rp", settings=apps_svc.initial_settings(
                    redirect_uris=(CALLBACK,), grant_types=("authorization_code", "refresh_token"),
                    scopes=CODE_SCOPES, require_pkce=False))
            api, api_secret = apps_svc.register_oidc_app(
                name="Bench API", slug="bench-api", settings=apps_svc.initial_settings(
                    grant_types=("client_credentials",), scopes=("reports:read",)))
            assert web_secret is not None and api_secret is not None
            assert web.oidc is not None and api.oidc is not None
            user = db.session.query(User).filter_by(username=USERNAME).one()
            session = start_session(user, "127.0.0.1")
            grant = OidcGrant(app_id=web.id, user_id=user.id, scopes=list(CODE_SCOPES), consent="user",
                              created_at=utcnow())
            db.session.add(grant)
            db.session.flush()
            sid = secrets.token_urlsafe(16)
            db.session.add(SessionParticipant(session_id=session.id, app_id=web.id, name_id=subject_for(user),
                                              name_id_format="oidc", session_index=sid, protocol="oidc"))
            db.session.commit()
            self._record: dict[str, Any] = dict(app_id=web.id, client_id=web.oidc.client_id, user_id=user.id,
                                username=user.username, redirect_uri=CALLBACK, scopes=CODE_SCOPES,
                                grant_id=grant.id, session_id=session.id, sid=sid,
                                auth_time=int(session.authn_at.timestamp()), amr=("pwd",), nonce="bench-nonce")
            self.web_auth = _basic(web.oidc.client_id, web_secret)
            self.api_auth = _basic(api.oidc.client_id, api_secret)
            db.session.remove()
        self._environ = {
            "REQUEST_METHOD": "POST", "SCRIPT_NAME": "", "PATH_INFO": "/oauth2/token", "QUERY_STRING": "",
            "SERVER_NAME": "localhost", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "localhost", "HTTP_USER_AGENT": "bench-rp/1",
            "CONTENT_TYPE": "application/x-www-form-urlencoded", "wsgi.version": (1, 0), "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr, "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False,
        }
        self._cc_body = urlencode({"grant_type": "client_credentials", "scope": "reports:read"}).encode()
        # the browser of the round trip: one password login (outside the timed region), its cookie reused
        browser = login_test_client(self.app)
        self._cookie = "; ".join(f"{c.key}={c.value}" for c in (browser._cookies or {}).values())
        self._authorize_query = urlencode({"response_type": "code", "client_id": self._record["client_id"],
                                           "redirect_uri": CALLBACK, "scope": " ".join(CODE_SCOPES),
                                           "state": "bench-state", "nonce": "bench-nonce"})

    # ------------------------------------------------------------ inputs

    def refill(self, n: int) -> None:
        """Issue codes until `n` are waiting (outside the timed region), committed like the authorization
        endpoint's request would."""
        with self.app.app_context():
            now = int(time.time())
            while len(self.codes) < n:
                self.codes.append(issue_code(AuthorizationCode(issued_at=now, **self._record)))
            db.session.commit()
            db.session.remove()

    # ------------------------------------------------------------ one request

    def _post(self, body: bytes, auth: str) -> dict[str, Any]:
        environ = {**self._environ, "CONTENT_LENGTH": str(len(body)), "HTTP_AUTHORIZATION": auth,
                   "wsgi.input": io.BytesIO(body)}
        status: list[str] = []

        def start_response(s: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status.append(s)
            return None

        chunks = self.app.wsgi_app(environ, start_response)
        try:
            raw = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        if not status or not status[0].startswith("200"):
            raise RuntimeError(f"token request failed: HTTP {status[:1]}: {raw[:300]!r}")
        return dict(json.loads(raw))

    def exchange(self) -> dict[str, Any]:
        if not self.codes:
            raise PoolExhausted
        code = self.codes.popleft()
        body = urlencode({"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK}).encode()
        return self._post(body, self.web_auth)

    def client_credentials(self) -> dict[str, Any]:
        return self._post(self._cc_body, self.api_auth)

    def authorize(self) -> str:
        """GET /oauth2/authorize with the session cookie; the code from the redirect to the RP."""
        environ = {**self._environ, "REQUEST_METHOD": "GET", "PATH_INFO": "/oauth2/authorize",
                   "QUERY_STRING": self._authorize_query, "HTTP_COOKIE": self._cookie, "HTTP_ACCEPT": "text/html",
                   "CONTENT_TYPE": "", "wsgi.input": io.BytesIO()}
        found: list[tuple[str, list[tuple[str, str]]]] = []

        def start_response(s: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            found.append((s, headers))
            return None

        chunks = self.app.wsgi_app(environ, start_response)
        try:
            raw = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        status, headers = found[0] if found else ("", [])
        location = dict(headers).get("Location", "")
        if not status.startswith("302") or not location.startswith(CALLBACK + "?"):
            raise RuntimeError(f"authorization failed: HTTP {status}: {location[:200]} {raw[:300]!r}")
        code = parse_qs(urlsplit(location).query).get("code")
        if not code:
            raise RuntimeError(f"no code in the redirect: {location[:200]}")
        return code[0]

    def roundtrip(self) -> dict[str, Any]:
        """Authorization with an existing session, then the code exchange: an RP's whole sign-in, IdP side."""
        code = self.authorize()
        body = urlencode({"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK}).encode()
        return self._post(body, self.web_auth)

    def variants(self) -> dict[str, tuple[Callable[[], object], Callable[[int], None] | None]]:
        return {"oidc code exchange (/oauth2/token)": (self.exchange, self.refill),
                "client credentials (/oauth2/token)": (self.client_credentials, None),
                "oidc code round trip (/oauth2/authorize + /oauth2/token)": (self.roundtrip, None)}

    def check_sample(self) -> dict[str, Any]:
        """One of each, checked: the token types and what a code exchange returns."""
        self.refill(1)
        ex = self.exchange()
        cc = self.client_credentials()
        rt = self.roundtrip()
        return {"roundtrip": sorted(rt),
                "code_exchange": sorted(ex), "id_token": "id_token" in ex, "refresh_token": "refresh_token" in ex,
                "client_credentials": sorted(cc), "access_token_bytes": len(cc["access_token"])}


def _basic(client_id: str, secret: str) -> str:
    raw = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
    return "Basic " + base64.b64encode(raw).decode()
