"""Test data for the OIDC logout and usage tests: OIDC apps, session participants, ID tokens, grants and refresh
tokens made through the models and services (the authorization and token endpoints are other slices' work), and a
real HTTP receiver for back-channel logout POSTs."""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from flask import Flask

from idp.extensions import db
from idp.flows.oidc_subject import subject_for
from idp.models import ConnectedApp, IdpSession, OidcGrant, OidcRefreshToken, SessionParticipant, User, utcnow
from idp.oidc.jose import signing_key
from idp.oidc.tokens import IdTokenSpec, issue_id_token
from idp.services import apps as apps_svc

from .conftest import IDP_BASE


def add_oidc_app(slug: str, *, backchannel: str | None = None, post_logout: tuple[str, ...] = (),
                 grants: tuple[str, ...] = ("authorization_code", "refresh_token"), public: bool = False
                 ) -> tuple[ConnectedApp, str | None]:
    return apps_svc.register_oidc_app(
        name=slug.upper(), slug=slug,
        settings=apps_svc.initial_settings(public=public, redirect_uris=(f"https://{slug}.example.com/cb",),
                                           post_logout_redirect_uris=post_logout, grant_types=grants,
                                           backchannel_logout_uri=backchannel))


def live_session(user: User) -> IdpSession:
    db.session.expire_all()
    s = db.session.query(IdpSession).filter(IdpSession.user_id == user.id,
                                            IdpSession.ended_at.is_(None)).order_by(IdpSession.created_at.desc())
    row = s.first()
    assert row is not None, f"{user.username} has no live session"
    return row


def join_session(session: IdpSession, app: ConnectedApp, user: User) -> str:
    """What the authorization endpoint records when it issues a code: an OIDC participant with a fresh sid."""
    sid = secrets.token_urlsafe(16)
    db.session.add(SessionParticipant(session_id=session.id, app_id=app.id, name_id=subject_for(user),
                                      name_id_format="oidc", session_index=sid, protocol="oidc"))
    db.session.commit()
    return sid


def id_token(flask_app: Flask, app: ConnectedApp, user: User, *, sid: str | None = None,
             issued_at: datetime | None = None, lifetime: timedelta = timedelta(minutes=10)) -> str:
    keys = flask_app.extensions["idp.keystore"].current()
    now = issued_at or utcnow()
    spec = IdTokenSpec(issuer=IDP_BASE, subject=subject_for(user), client_id=app.oidc.client_id, issued_at=now,
                       lifetime=lifetime, auth_time=now, sid=sid)
    return issue_id_token(spec, signing_key(keys))


def add_grant(app: ConnectedApp, user: User, scopes: tuple[str, ...] = ("openid", "profile"), *,
              used: bool = True) -> OidcGrant:
    now = utcnow()
    g = OidcGrant(app_id=app.id, user_id=user.id, scopes=list(scopes), consent="user", created_at=now,
                  first_used_at=now if used else None, last_used_at=now if used else None)
    db.session.add(g)
    db.session.flush()
    return g


def add_refresh(grant: OidcGrant, *, session_id: str | None = None, offline: bool = False,
                expires_in: timedelta | None = None) -> OidcRefreshToken:
    now = utcnow()
    scopes = list(grant.scopes) + (["offline_access"] if offline else [])
    t = OidcRefreshToken(token_hash=hashlib.sha256(secrets.token_bytes(32)).hexdigest(),
                         family_id=secrets.token_urlsafe(16), grant_id=grant.id, app_id=grant.app_id,
                         user_id=grant.user_id, scopes=scopes, session_id=None if offline else session_id,
                         auth_time=now, family_started_at=now, created_at=now,
                         expires_at=now + expires_in if expires_in else None)
    db.session.add(t)
    db.session.flush()
    return t


@dataclass
class Receiver:
    """A back-channel logout endpoint on loopback: records each POST (path, headers, form) and answers `status`."""

    status: int = 200
    delay_s: float = 0.0
    posts: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""


@contextmanager
def receiver(status: int = 200, delay_s: float = 0.0) -> Iterator[Receiver]:
    rec = Receiver(status=status, delay_s=delay_s)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("ascii")
            rec.posts.append({"path": self.path, "content_type": self.headers.get("Content-Type"),
                              "form": {k: v[0] for k, v in parse_qs(body).items()}})
            if rec.delay_s:
                threading.Event().wait(rec.delay_s)
            self.send_response(rec.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/backchannel"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
