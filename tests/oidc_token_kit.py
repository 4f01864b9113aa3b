"""Helpers for the token-endpoint tests: OIDC clients registered through the services, authorization codes seeded
as the authorization endpoint would (a real session, grant and OIDC session participant), token requests, and
client assertions signed with `cryptography` alone (not joserfc, which the server uses)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from typing import Any
from urllib.parse import quote

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from flask.testing import FlaskClient

from idp.auth.sessions import start_session
from idp.extensions import db
from idp.flows.oidc_codes import issue_code
from idp.flows.oidc_subject import subject_for
from idp.models import ConnectedApp, OidcGrant, SessionParticipant, User, utcnow
from idp.oidc.codes import AuthorizationCode
from idp.services import apps as apps_svc

from . import jwt_check
from .conftest import IDP_BASE

CB = "https://rp.example.com/cb"
TOKEN_URL = f"{IDP_BASE}/oauth2/token"


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, b64url(hashlib.sha256(verifier.encode()).digest())


def make_client(slug: str, *, grants: tuple[str, ...] = ("authorization_code", "refresh_token"),
                public: bool = False, **values: Any) -> tuple[ConnectedApp, str, str | None]:
    """A registered OIDC app: (row, client_id, secret or None)."""
    values.setdefault("redirect_uris", (CB,))
    if not public:
        values.setdefault("require_pkce", False)   # PKCE is on by default; the PKCE tests turn it back on
    values.setdefault("scopes", ("openid", "profile", "email", "groups", "offline_access"))
    clear = values.pop("clear", ())
    settings = apps_svc.initial_settings(public=public, grant_types=grants, clear=clear, **values)
    row, secret = apps_svc.register_oidc_app(name=slug.title(), slug=slug, settings=settings)
    db.session.flush()
    return row, row.oidc.client_id, secret


def seed_code(row: ConnectedApp, user: User, *, scopes: tuple[str, ...] = ("openid", "profile", "email"),
              challenge: str | None = None, nonce: str | None = "n-0S6_WzA2Mj", redirect_uri: str = CB,
              resources: tuple[str, ...] = (), mfa: bool = False, session: Any = None,
              issued_at: int | None = None) -> tuple[str, Any]:
    """An authorization code for `user` at `row`, as the authorization endpoint issues one; (code, session)."""
    session = session or start_session(user, "127.0.0.1", mfa=mfa)
    grant = db.session.query(OidcGrant).filter_by(app_id=row.id, user_id=user.id).one_or_none()
    if grant is None:
        grant = OidcGrant(app_id=row.id, user_id=user.id, scopes=list(scopes), consent="admin",
                          created_at=utcnow())
        db.session.add(grant)
        db.session.flush()
    sub = subject_for(user)
    part = db.session.query(SessionParticipant).filter_by(session_id=session.id, app_id=row.id).one_or_none()
    if part is None:
        part = SessionParticipant(session_id=session.id, app_id=row.id, name_id=sub, name_id_format="oidc",
                                  session_index=secrets.token_urlsafe(16), protocol="oidc")
        db.session.add(part)
        db.session.flush()
    now = int(time.time())
    record = AuthorizationCode(
        app_id=row.id, client_id=row.oidc.client_id, user_id=user.id, username=user.username,
        redirect_uri=redirect_uri, scopes=scopes, grant_id=grant.id, session_id=session.id,
        sid=part.session_index, auth_time=int(session.authn_at.timestamp()), issued_at=issued_at or now,
        amr=tuple((session.amr or "pwd").split()), nonce=nonce, code_challenge=challenge,
        code_challenge_method="S256" if challenge else None, resources=resources)
    code = issue_code(record)
    db.session.commit()
    return code, session


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def post(client: FlaskClient, path: str, data: dict[str, str], headers: dict[str, str] | None = None) -> Any:
    return client.post(path, data=data, headers=headers or {})


def token(client: FlaskClient, data: dict[str, str], auth: tuple[str, str | None] | None = None) -> Any:
    headers = basic(auth[0], auth[1]) if auth and auth[1] else {}
    return client.post("/oauth2/token", data=data, headers=headers)


def exchange(client: FlaskClient, code: str, client_id: str, secret: str | None, verifier: str | None = None,
             **extra: str) -> Any:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": CB, **extra}
    if verifier is not None:
        data["code_verifier"] = verifier
    if secret is None:
        data["client_id"] = client_id
    return token(client, data, (client_id, secret))


def jwks(client: FlaskClient) -> dict[str, Any]:
    return client.get("/oauth2/jwks").get_json()


def check_jwt(client: FlaskClient, tok: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) verified with the independent checker against the published JWKS."""
    return jwt_check.verify(tok, jwks(client))


# ---------------------------------------------------------------- client assertions (RFC 7523)

def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: Any, kid: str) -> dict[str, Any]:
    return {**jwt_check.jwk_members(key.public_key()), "kid": kid, "use": "sig"}


def sign_jws(header: dict[str, Any], claims: dict[str, Any], key: Any = None, *, hmac_secret: bytes | None = None
             ) -> str:
    head = b64url(json.dumps(header, separators=(",", ":")).encode())
    body = b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{head}.{body}".encode()
    alg = header.get("alg")
    if alg == "none":
        sig = b""
    elif hmac_secret is not None:
        import hmac as _hmac
        sig = _hmac.new(hmac_secret, signing_input, hashlib.sha256).digest()
    elif isinstance(key, rsa.RSAPrivateKey):
        sig = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        raise TypeError(type(key))
    return f"{head}.{body}.{b64url(sig)}"


def assertion(key: Any, client_id: str, *, kid: str = "k1", alg: str = "RS256", aud: Any = TOKEN_URL,
              lifetime: int = 120, jti: str | None = "auto", **over: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"iss": client_id, "sub": client_id, "aud": aud, "iat": now, "exp": now + lifetime,
                              "jti": secrets.token_urlsafe(12) if jti == "auto" else jti}
    claims.update(over)
    claims = {k: v for k, v in claims.items() if v is not None}
    return sign_jws({"alg": alg, "kid": kid, "typ": "JWT"}, claims, key)


def assertion_form(tok: str, **extra: str) -> dict[str, str]:
    return {"client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": tok, **extra}
