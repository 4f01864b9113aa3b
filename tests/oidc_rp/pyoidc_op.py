"""A reference OpenID Provider for the harness self-check: pyoidc's own `oic.oic.provider.Provider`, served on
loopback with pyoidc's WSGI helper. It is not the IdP and shares no code with it; it only proves that both test
RPs speak real OpenID Connect before the IdP's endpoints exist.

pyoidc's provider authenticates every browser as one fixed user (its NoAuthn method), refuses the client
credentials grant (`unsupported_grant_type`: "Not supported in OpenID Connect") and does not check PKCE, so the
self-check records each request and asserts the RP's PKCE and client credentials requests itself.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from oic import rndstr
from oic.oic.provider import Provider
from oic.utils.authn.authn_context import AuthnBroker
from oic.utils.authn.client import verify_client
from oic.utils.authn.user import NoAuthn
from oic.utils.authz import AuthzHandling
from oic.utils.http_util import Response, wsgi_wrapper
from oic.utils.keyio import build_keyjar
from oic.utils.sdb import create_session_db
from oic.utils.userinfo import UserInfo
from werkzeug.serving import make_server

USER = "alice"
USERS = {
    USER: {"sub": USER, "name": "Alice Example", "email": "alice@example.org", "email_verified": True},
}


@dataclass
class ReferenceOP:
    issuer: str
    provider: Provider
    requests: list[tuple[str, dict[str, list[str]]]] = field(default_factory=list)

    def register(
        self, client_id: str, client_secret: str, redirect_uri: str, post_logout_redirect_uri: str, token_auth: str
    ) -> None:
        self.provider.cdb[client_id] = {
            "client_id": client_id,
            "client_secret": client_secret,
            "redirect_uris": [(redirect_uri, None)],
            "post_logout_redirect_uris": [(post_logout_redirect_uri, None)],
            "client_salt": rndstr(8),
            "response_types": ["code"],
            "token_endpoint_auth_method": token_auth,
        }

    def seen(self, path: str) -> list[dict[str, list[str]]]:
        return [params for p, params in self.requests if p == path]


def _build_provider(issuer: str) -> Provider:
    _, keyjar, _ = build_keyjar([{"type": "RSA", "key": "", "use": ["sig"]}])
    keyjar.issuer_keys[issuer] = keyjar.issuer_keys[""]  # its own JWTs (logout confirmation) name it as issuer
    broker = AuthnBroker()
    broker.add("UNDEFINED", NoAuthn(None, USER))
    provider = Provider(
        issuer,
        create_session_db(issuer, secret=rndstr(32), password=rndstr(32)),
        {},
        broker,
        UserInfo(USERS),
        AuthzHandling(),
        verify_client,
        rndstr(16),
        keyjar=keyjar,
        baseurl=issuer,
    )
    provider.jwks_uri = f"{issuer}/jwks"  # oic 1.7.0's Provider drops its jwks_uri argument
    return provider


def _wsgi(op: ReferenceOP) -> Any:
    p = op.provider
    routes = {
        "/.well-known/openid-configuration": p.providerinfo_endpoint,
        "/authorization": p.authorization_endpoint,
        "/token": p.token_endpoint,
        "/userinfo": p.userinfo_endpoint,
        "/end_session": p.end_session_endpoint,
    }

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        body = b""
        if environ.get("REQUEST_METHOD") == "POST":
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = __import__("io").BytesIO(body)
        params = parse_qs(environ.get("QUERY_STRING", "")) | parse_qs(body.decode())
        op.requests.append((path, params))
        if path == "/jwks":
            return Response(json.dumps(p.keyjar.export_jwks()), content="application/json")(environ, start_response)
        if path not in routes:
            return Response("not found", status_code=404)(environ, start_response)
        return wsgi_wrapper(environ, start_response, routes[path])

    return app


@contextmanager
def serve_reference_op() -> Iterator[ReferenceOP]:
    server = make_server("127.0.0.1", 0, lambda e, s: app(e, s), threaded=True)
    issuer = f"http://127.0.0.1:{server.server_port}"
    op = ReferenceOP(issuer, _build_provider(issuer))
    app = _wsgi(op)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield op
    finally:
        server.shutdown()
        thread.join(5)
