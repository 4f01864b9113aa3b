"""POST /oauth2/token, GET|POST /oauth2/userinfo, /oauth2/revoke, /oauth2/introspect through the test client.

Codes are seeded as the authorization endpoint issues them (idp.flows.oidc_codes.issue_code with a real session,
grant and OIDC session participant); tokens are verified with tests/jwt_check.py (cryptography, not joserfc).
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from idp import create_app
from idp.config import Settings
from idp.extensions import db
from idp.flows.oidc_client_auth import forget_jwks
from idp.flows.oidc_subject import subject_for
from idp.models import IdpSession, OidcGrant, OidcRefreshToken, SsoEvent, utcnow
from idp.services import apps as apps_svc
from idp.services.oauth_tokens import revoke_grant

from .. import jwt_check
from ..conftest import IDP_BASE, make_settings, reset_backends
from ..oidc_rp.fixtures import make_oidc_rp, oidc_rp_kind  # noqa: F401 - fixtures: one run per RP
from ..oidc_token_kit import (
    CB,
    assertion,
    assertion_form,
    basic,
    check_jwt,
    exchange,
    make_client,
    pkce_pair,
    public_jwk,
    rsa_key,
    seed_code,
    token,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def settings(tmp_path: Path, key_template: Path) -> Settings:
    return make_settings(tmp_path, key_template, oidc_enabled=True)


@pytest.fixture(autouse=True)
def _fresh_jwks_cache() -> Iterator[None]:
    forget_jwks()
    yield
    forget_jwks()


def token_events(**where: Any) -> list[SsoEvent]:
    q = db.session.query(SsoEvent).filter(SsoEvent.event_type == "token")
    for k, v in where.items():
        q = q.filter(getattr(SsoEvent, k) == v)
    return q.order_by(SsoEvent.id).all()


def ok(resp: Any) -> dict[str, Any]:
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["Pragma"] == "no-cache"
    return dict(resp.get_json())


def err(resp: Any, status: int, error: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/json"
    body = resp.get_json()
    assert body["error"] == error, body
    assert "access_token" not in body and "refresh_token" not in body and "id_token" not in body
    return dict(body)


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


# ------------------------------------------------------------------ authorization_code


def test_code_exchange_issues_verified_tokens(client: FlaskClient, alice: Any) -> None:
    row, cid, secret = make_client("crm")
    apps_svc.change_settings(row, attributes={"nickname": "first_name", "urn:oid:2.5.4.42": "first_name"})
    verifier, challenge = pkce_pair()
    code, session = seed_code(row, alice, scopes=("openid", "profile", "email", "groups"), challenge=challenge)
    body = ok(exchange(client, code, cid, secret, verifier))
    assert body["token_type"] == "Bearer" and body["expires_in"] == 600
    assert body["scope"] == "openid profile email groups"
    header, at = check_jwt(client, body["access_token"])
    assert header["typ"] == "at+jwt" and header["alg"] == "RS256"
    sub = subject_for(alice)
    assert at["iss"] == IDP_BASE and at["aud"] == cid and at["client_id"] == cid and at["sub"] == sub
    assert at["scope"] == "openid profile email groups" and at["exp"] - at["iat"] == 600 and at["jti"]
    assert at["auth_time"] == int(session.authn_at.timestamp()) and at["amr"] == ["pwd"]
    _, idt = check_jwt(client, body["id_token"])
    assert idt["aud"] == cid and idt["sub"] == sub and idt["nonce"] == "n-0S6_WzA2Mj"
    assert idt["at_hash"] == jwt_check.half_hash(body["access_token"])
    assert idt["sid"] and idt["auth_time"] == at["auth_time"]
    assert idt["email"] == "alice@example.com" and idt["given_name"] == "Alice" and idt["family_name"] == "Liddell"
    assert idt["name"] == "Alice Liddell" and idt["preferred_username"] == "alice"
    assert idt["groups"] == ["engineering"] and idt["nickname"] == "Alice"
    assert "urn:oid:2.5.4.42" not in idt               # SAML URI names stay SAML-only
    assert body["refresh_token"] and len(body["refresh_token"]) >= 40
    stored = db.session.query(OidcRefreshToken).one()
    assert stored.token_hash != body["refresh_token"] and body["refresh_token"] not in stored.token_hash
    assert stored.session_id == session.id
    ev = token_events()[-1]
    assert (ev.outcome, ev.reason, ev.protocol, ev.sp_entity_id, ev.username) == ("success", "ok", "oidc", cid,
                                                                                   "alice")
    assert ev.detail["grant_type"] == "authorization_code" and ev.detail["client_id"] == cid
    assert ev.detail["scopes"] == ["openid", "profile", "email", "groups"]
    for secret_value in (secret, code, body["access_token"], body["refresh_token"], verifier):
        assert secret_value not in str(ev.detail)
    grant = db.session.query(OidcGrant).one()
    assert grant.first_used_at is not None and grant.last_used_at is not None


def test_client_secret_basic_is_form_decoded(client: FlaskClient, alice: Any) -> None:
    """RFC 6749 2.3.1: the id and secret are form-urlencoded before Basic (openid-client does it)."""
    row, cid, secret = make_client("crm")
    code, _ = seed_code(row, alice)
    raw = f"{cid.replace('-', '%2D').replace('_', '%5F')}:{secret.replace('-', '%2D')}".encode()
    resp = client.post("/oauth2/token", data={"grant_type": "authorization_code", "code": code, "redirect_uri": CB},
                       headers={"Authorization": "Basic " + base64.b64encode(raw).decode()})
    ok(resp)


def test_client_secret_post_and_method_mismatch(client: FlaskClient, alice: Any) -> None:
    row, cid, secret = make_client("crm", token_endpoint_auth_method="client_secret_post")
    code, _ = seed_code(row, alice)
    # the registered method is client_secret_post: Basic is refused
    resp = exchange(client, code, cid, secret)
    err(resp, 401, "invalid_client")
    assert resp.headers["WWW-Authenticate"].startswith("Basic")
    code, _ = seed_code(row, alice)
    ok(client.post("/oauth2/token", data={"grant_type": "authorization_code", "code": code, "redirect_uri": CB,
                                          "client_id": cid, "client_secret": secret}))


def test_wrong_secret_is_invalid_client_and_never_logged(client: FlaskClient, alice: Any) -> None:
    row, cid, _ = make_client("crm")
    code, _ = seed_code(row, alice)
    resp = exchange(client, code, cid, "not-the-secret-xyz")
    err(resp, 401, "invalid_client")
    assert resp.headers["WWW-Authenticate"].startswith("Basic")
    ev = token_events()[-1]
    assert ev.reason == "invalid_client" and ev.outcome == "denied" and ev.sp_entity_id == cid
    assert "not-the-secret-xyz" not in str(ev.detail) and ev.detail["error_description"]


def test_public_client_needs_pkce(client: FlaskClient, alice: Any) -> None:
    row, cid, secret = make_client("spa", public=True)
    assert secret is None
    verifier, challenge = pkce_pair()
    code, _ = seed_code(row, alice, challenge=challenge)
    err(exchange(client, code, cid, None), 400, "invalid_grant")          # no verifier
    code, _ = seed_code(row, alice, challenge=challenge)
    err(exchange(client, code, cid, None, "x" * 43), 400, "invalid_grant")  # wrong verifier
    code, _ = seed_code(row, alice, challenge=challenge)
    body = ok(exchange(client, code, cid, None, verifier))
    assert body["id_token"] and body["refresh_token"]
    code, _ = seed_code(row, alice)                                        # a code without a challenge
    err(exchange(client, code, cid, None), 400, "invalid_grant")


def test_confidential_client_with_pkce_required(client: FlaskClient, alice: Any) -> None:
    row, cid, secret = make_client("crm", require_pkce=True)
    code, _ = seed_code(row, alice)
    err(exchange(client, code, cid, secret), 400, "invalid_grant")
    verifier, challenge = pkce_pair()
    code, _ = seed_code(row, alice, challenge=challenge)
    ok(exchange(client, code, cid, secret, verifier))


def test_redirect_uri_must_match_and_spends_the_code(client: FlaskClient, alice: Any) -> None:
    row, cid, secret = make_client("crm")
    code, _ = seed_code(row, alice)
    err(exchange(client, code, cid, secret, redirect_uri="https://rp.example.com/other"), 400, "invalid_grant")
    assert token_events()[-1].reason == "redirect_uri_mismatch"
    err(exchange(client, code, cid, secret), 400, "invalid_grant")         # spent by the failed attempt
    assert token_events()[-1].reason == "code_reused"


def test_code_of_another_client_is_refused(client: FlaskClient, alice: Any) -> None:
    row, _, _ = make_client("crm")
    _, cid2, secret2 = make_client("wiki")
    code, _ = seed_code(row, alice)
    err(exchange(client, code, cid2, secret2), 400, "invalid_grant")


def test_code_for_disabled_user_or_revoked_grant(client: FlaskClient, alice: Any, bob: Any) -> None:
    row, cid, secret = make_client("crm")
    code, _ = seed_code(row, alice)
    alice.disabled = True
    db.session.commit()
    err(exchange(client, code, cid, secret), 400, "invalid_grant")
    assert token_events()[-1].reason == "user_disabled"
    code, _ = seed_code(row, bob)
    revoke_grant(db.session.query(OidcGrant).filter_by(user_id=bob.id).one().id, reason="test")
    err(exchange(client, code, cid, secret), 400, "invalid_grant")


def test_no_refresh_token_without_the_grant(client: FlaskClient, alice: Any) -> None:
    row, cid, secret = make_client("crm", grants=("authorization_code",))
    code, _ = seed_code(row, alice, scopes=("profile",))
    body = ok(exchange(client, code, cid, secret))
    assert "refresh_token" not in body and "id_token" not in body        # no openid: an OAuth-only token
    err(token(client, {"grant_type": "refresh_token", "refresh_token": "x" * 43}, (cid, secret)), 400,
        "unauthorized_client")


def test_resource_indicator_sets_the_audience(client: FlaskClient, alice: Any) -> None:
    row, cid, secret = make_client("crm", resources=("https://api.example.com",))
    code, _ = seed_code(row, alice, resources=("https://api.example.com",))
    body = ok(exchange(client, code, cid, secret))
    assert check_jwt(client, body["access_token"])[1]["aud"] == "https://api.example.com"
    assert check_jwt(client, body["id_token"])[1]["aud"] == cid
    code, _ = seed_code(row, alice)
    err(exchange(client, code, cid, secret, resource="https://evil.example.com"), 400, "invalid_target")


def test_unknown_and_unsupported_grants(client: FlaskClient) -> None:
    _, cid, secret = make_client("crm")
    for grant in ("password", "implicit", "urn:ietf:params:oauth:grant-type:device_code"):
        err(token(client, {"grant_type": grant}, (cid, secret)), 400, "unsupported_grant_type")
    err(token(client, {"grant_type": "client_credentials"}, (cid, secret)), 400, "unauthorized_client")
    err(token(client, {}, (cid, secret)), 400, "invalid_request")
    assert token_events()[-1].reason == "invalid_request"


# ------------------------------------------------------------------ refresh tokens


def _family(client: FlaskClient, alice: Any, scopes: tuple[str, ...] = ("openid", "profile", "email"),
            **client_settings: Any) -> tuple[Any, str, str, dict[str, Any]]:
    row, cid, secret = make_client("crm", **client_settings)
    code, _ = seed_code(row, alice, scopes=scopes)
    return row, cid, secret, ok(exchange(client, code, cid, secret))


def refresh(client: FlaskClient, cid: str, secret: str | None, rt: str, **extra: str) -> Any:
    data = {"grant_type": "refresh_token", "refresh_token": rt, **extra}
    if secret is None:
        data["client_id"] = cid
    return token(client, data, (cid, secret))


def test_refresh_rotates_and_reuse_revokes_the_family(client: FlaskClient, alice: Any) -> None:
    _, cid, secret, first = _family(client, alice)
    second = ok(refresh(client, cid, secret, first["refresh_token"]))
    assert second["refresh_token"] != first["refresh_token"]
    _, idt = check_jwt(client, second["id_token"])                      # a new ID token (openid was granted)
    assert idt["sub"] == subject_for(alice) and "nonce" not in idt and idt["sid"]
    assert idt["at_hash"] == jwt_check.half_hash(second["access_token"])
    third = ok(refresh(client, cid, secret, second["refresh_token"]))
    rows = db.session.query(OidcRefreshToken).order_by(OidcRefreshToken.id).all()
    assert len({r.family_id for r in rows}) == 1 and [r.rotated_at is not None for r in rows] == [True, True, False]
    # the first token again: a reuse
    err(refresh(client, cid, secret, first["refresh_token"]), 400, "invalid_grant")
    ev = token_events()[-1]
    assert ev.reason == "refresh_token_reused" and ev.detail["grant_type"] == "refresh_token"
    err(refresh(client, cid, secret, third["refresh_token"]), 400, "invalid_grant")   # the family is gone
    db.session.expire_all()
    assert all(r.revoked_at is not None for r in db.session.query(OidcRefreshToken))


def test_refresh_may_narrow_never_widen(client: FlaskClient, alice: Any) -> None:
    _, cid, secret, first = _family(client, alice)
    narrow = ok(refresh(client, cid, secret, first["refresh_token"], scope="openid email"))
    assert narrow["scope"] == "openid email"
    assert check_jwt(client, narrow["access_token"])[1]["scope"] == "openid email"
    err(refresh(client, cid, secret, narrow["refresh_token"], scope="openid email groups"), 400, "invalid_scope")
    # the refresh token keeps the original scopes: a later refresh may ask for them all again
    again = ok(refresh(client, cid, secret, narrow["refresh_token"]))
    assert again["scope"] == "openid profile email"


def test_refresh_of_another_client_is_refused(client: FlaskClient, alice: Any) -> None:
    _, _, _, first = _family(client, alice)
    _, cid2, secret2 = make_client("wiki")
    err(refresh(client, cid2, secret2, first["refresh_token"]), 400, "invalid_grant")


def test_expire_after_counts_from_the_family_start(client: FlaskClient, alice: Any) -> None:
    _, cid, secret, first = _family(client, alice, refresh_policy="expire-after", refresh_lifetime=3600)
    second = ok(refresh(client, cid, secret, first["refresh_token"]))
    for r in db.session.query(OidcRefreshToken):
        r.family_started_at = utcnow() - timedelta(hours=2)
        r.expires_at = None
    db.session.commit()
    err(refresh(client, cid, secret, second["refresh_token"]), 400, "invalid_grant")


def test_expire_if_unused(client: FlaskClient, alice: Any) -> None:
    _, cid, secret, first = _family(client, alice, refresh_policy="expire-if-unused", refresh_lifetime=3600)
    second = ok(refresh(client, cid, secret, first["refresh_token"]))
    live = db.session.query(OidcRefreshToken).filter(OidcRefreshToken.rotated_at.is_(None)).one()
    live.family_started_at = utcnow() - timedelta(days=30)     # an old family, used recently: fine
    db.session.query(OidcGrant).one().created_at = utcnow() - timedelta(days=31)
    db.session.commit()
    third = ok(refresh(client, cid, secret, second["refresh_token"]))
    live = db.session.query(OidcRefreshToken).filter(OidcRefreshToken.rotated_at.is_(None)).one()
    live.created_at = utcnow() - timedelta(hours=2)
    live.expires_at = None
    db.session.commit()
    err(refresh(client, cid, secret, third["refresh_token"]), 400, "invalid_grant")


def test_until_revoked_and_policy_none(client: FlaskClient, alice: Any) -> None:
    row, cid, secret, first = _family(client, alice, refresh_policy="until-revoked",
                                          clear=("refresh_lifetime",))
    assert db.session.query(OidcRefreshToken).one().expires_at is None
    second = ok(refresh(client, cid, secret, first["refresh_token"]))
    apps_svc.change_oidc(row, grant_types=("authorization_code",), refresh_policy="none")
    err(refresh(client, cid, secret, second["refresh_token"]), 400, "unauthorized_client")


def test_refresh_rechecks_the_access_policy(client: FlaskClient, alice: Any) -> None:
    row, cid, secret, first = _family(client, alice)
    apps_svc.change_settings(row, permitted="admin-approved", allow_groups=("finance",))
    err(refresh(client, cid, secret, first["refresh_token"]), 400, "invalid_grant")
    assert token_events()[-1].reason == "user_not_permitted"
    apps_svc.change_settings(row, permitted="all")
    err(refresh(client, cid, secret, first["refresh_token"]), 400, "invalid_grant")   # the family was revoked


def test_refresh_for_a_disabled_user_revokes(client: FlaskClient, alice: Any) -> None:
    _, cid, secret, first = _family(client, alice)
    alice.disabled = True
    db.session.commit()
    err(refresh(client, cid, secret, first["refresh_token"]), 400, "invalid_grant")
    db.session.expire_all()
    assert db.session.query(OidcRefreshToken).one().revoke_reason == "user_disabled"


def test_ip_ranges_at_refresh_enforce_or_relax(client: FlaskClient, alice: Any) -> None:
    row, cid, secret, first = _family(client, alice)
    apps_svc.change_settings(row, ip_policy="enforce", ip_ranges=("10.0.0.0/8",))   # the test client is 127.0.0.1
    err(refresh(client, cid, secret, first["refresh_token"]), 400, "invalid_grant")
    assert token_events()[-1].reason == "ip_not_allowed"
    apps_svc.change_oidc(row, ip_policy_refresh="relax")
    ok(refresh(client, cid, secret, first["refresh_token"]))     # not revoked by the IP refusal; IP not checked


def test_session_bound_unless_offline_access(client: FlaskClient, alice: Any) -> None:
    row, cid, secret = make_client("crm")
    code, session = seed_code(row, alice, scopes=("openid", "email"))
    online = ok(exchange(client, code, cid, secret))
    code, _ = seed_code(row, alice, scopes=("openid", "email", "offline_access"), session=session)
    offline = ok(exchange(client, code, cid, secret))
    db.session.get(IdpSession, session.id).ended_at = utcnow()
    db.session.commit()
    err(refresh(client, cid, secret, online["refresh_token"]), 400, "invalid_grant")
    ok(refresh(client, cid, secret, offline["refresh_token"]))


def test_public_client_refresh(client: FlaskClient, alice: Any) -> None:
    row, cid, _ = make_client("spa", public=True)
    verifier, challenge = pkce_pair()
    code, _ = seed_code(row, alice, challenge=challenge)
    first = ok(exchange(client, code, cid, None, verifier))
    ok(refresh(client, cid, None, first["refresh_token"]))


# ------------------------------------------------------------------ client credentials


def test_client_credentials(client: FlaskClient) -> None:
    _, cid, secret = make_client("reports-api", grants=("client_credentials",),
                                 scopes=("reports:read", "reports:write"))
    body = ok(token(client, {"grant_type": "client_credentials", "scope": "reports:read"},
                    (cid, secret)))
    assert body["scope"] == "reports:read" and "refresh_token" not in body and "id_token" not in body
    _, at = check_jwt(client, body["access_token"])
    assert at["sub"] == cid and at["client_id"] == cid and at["aud"] == cid and "auth_time" not in at
    every = ok(token(client, {"grant_type": "client_credentials"}, (cid, secret)))
    assert every["scope"] == "reports:read reports:write"
    for bad in ("openid", "offline_access", "reports:read profile", "other"):
        err(token(client, {"grant_type": "client_credentials", "scope": bad}, (cid, secret)), 400, "invalid_scope")
    ev = token_events(reason="ok")[-1]
    assert ev.detail["grant_type"] == "client_credentials" and ev.username is None and ev.sp_entity_id == cid
    # the token is not a user's: no UserInfo, but introspection says who
    resp = client.get("/oauth2/userinfo", headers=bearer(body["access_token"]))
    assert resp.status_code == 403
    info = ok(client.post("/oauth2/introspect", data={"token": body["access_token"]}, headers=basic(cid, secret)))
    assert info["active"] is True and info["sub"] == cid and "username" not in info


def test_client_credentials_needs_the_grant(client: FlaskClient) -> None:
    _, cid, secret = make_client("crm")
    err(token(client, {"grant_type": "client_credentials"}, (cid, secret)), 400, "unauthorized_client")


# ------------------------------------------------------------------ private_key_jwt


def test_private_key_jwt_with_registered_jwks(client: FlaskClient, alice: Any) -> None:
    key = rsa_key()
    row, cid, secret = make_client("crm", token_endpoint_auth_method="private_key_jwt",
                                   jwks={"keys": [public_jwk(key, "k1")]})
    assert secret is None
    code, _ = seed_code(row, alice)
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": CB,
            **assertion_form(assertion(key, cid))}
    body = ok(client.post("/oauth2/token", data=form))
    assert body["id_token"]
    # the issuer as aud is accepted too
    code, _ = seed_code(row, alice)
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": CB, "client_id": cid,
            **assertion_form(assertion(key, cid, aud=[IDP_BASE]))}
    ok(client.post("/oauth2/token", data=form))
    # a secret is not this client's method
    err(client.post("/oauth2/token", data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"],
                                           "client_id": cid, "client_secret": "guess"}), 401, "invalid_client")


class _JwksServer:
    """A loopback HTTP server answering the current JWKS (rotated by the test) and counting requests."""

    def __init__(self) -> None:
        self.jwks: dict[str, Any] = {"keys": []}
        self.hits = 0
        outer = self

        def wsgi(environ: Any, start_response: Any) -> list[bytes]:
            import json
            outer.hits += 1
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps(outer.jwks).encode()]

        self.server = make_server("127.0.0.1", 0, wsgi)
        self.url = f"http://127.0.0.1:{self.server.server_port}/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(5)


def test_private_key_jwt_with_jwks_uri_refetches_on_a_new_kid(tmp_path: Path, key_template: Path) -> None:
    """The JWKS URI goes through the SSRF-guarded fetcher (loopback allowed here by configuration), is cached,
    and is read again when an assertion names a kid it does not hold (the client rotated its key)."""
    settings = make_settings(tmp_path, key_template, oidc_enabled=True, metadata_fetch_allow_private=True)
    app = create_app(settings, TESTING=True)
    srv = _JwksServer()
    try:
        with app.app_context():
            reset_backends(app)
            from ..conftest import IsolatedClient
            app.test_client_class = IsolatedClient
            c = app.test_client()
            k1, k2 = rsa_key(), rsa_key()
            srv.jwks = {"keys": [public_jwk(k1, "k1")]}
            _, cid, _ = make_client("crm", grants=("client_credentials",), scopes=("api",),
                                    token_endpoint_auth_method="private_key_jwt", jwks_uri=srv.url)
            db.session.commit()
            form = {"grant_type": "client_credentials"}
            ok(c.post("/oauth2/token", data={**form, **assertion_form(assertion(k1, cid))}))
            ok(c.post("/oauth2/token", data={**form, **assertion_form(assertion(k1, cid))}))
            assert srv.hits == 1                                           # cached
            srv.jwks = {"keys": [public_jwk(k2, "k2")]}
            import idp.flows.oidc_client_auth as ca
            for uri, (t, doc) in list(ca._jwks_cache.items()):
                ca._jwks_cache[uri] = (t - ca.JWKS_REFETCH_MIN_S - 1, doc)     # the last fetch is not too recent
            ok(c.post("/oauth2/token", data={**form, **assertion_form(assertion(k2, cid, kid="k2"))}))
            assert srv.hits == 2
            err(c.post("/oauth2/token", data={**form, **assertion_form(assertion(k1, cid))}), 401, "invalid_client")
            db.session.remove()
            db.engine.dispose()
    finally:
        srv.close()


# ------------------------------------------------------------------ userinfo


def test_userinfo_by_scope(client: FlaskClient, alice: Any) -> None:
    row, cid, secret = make_client("crm")
    apps_svc.change_settings(row, attributes={"preferred_username": "email"})
    code, _ = seed_code(row, alice, scopes=("openid", "email", "profile"))
    body = ok(exchange(client, code, cid, secret))
    info = ok(client.get("/oauth2/userinfo", headers=bearer(body["access_token"])))
    assert info == {"sub": subject_for(alice), "email": "alice@example.com", "name": "Alice Liddell",
                    "given_name": "Alice", "family_name": "Liddell", "preferred_username": "alice@example.com"}
    # POST with the token in the form body (RFC 6750 2.2)
    assert ok(client.post("/oauth2/userinfo", data={"access_token": body["access_token"]})) == info
    code, _ = seed_code(row, alice, scopes=("openid",))
    only = ok(exchange(client, code, cid, secret))
    assert ok(client.get("/oauth2/userinfo", headers=bearer(only["access_token"]))) == {"sub": subject_for(alice)}


def test_userinfo_refusals(client: FlaskClient, alice: Any) -> None:
    row, cid, secret = make_client("crm")
    code, _ = seed_code(row, alice, scopes=("email",))
    no_openid = ok(exchange(client, code, cid, secret))["access_token"]
    resp = client.get("/oauth2/userinfo", headers=bearer(no_openid))
    assert resp.status_code == 403 and 'error="insufficient_scope"' in resp.headers["WWW-Authenticate"]
    resp = client.get("/oauth2/userinfo")
    assert resp.status_code == 401 and resp.headers["WWW-Authenticate"] == 'Bearer realm="oauth2"'
    resp = client.get("/oauth2/userinfo", headers=bearer(no_openid[:-4] + "AAAA"))
    assert resp.status_code == 401 and 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    resp = client.get(f"/oauth2/userinfo?access_token={no_openid}")
    assert resp.status_code == 400
    assert token_events(reason="invalid_token")


def test_userinfo_after_grant_revocation_or_disable(client: FlaskClient, alice: Any) -> None:
    row, cid, secret = make_client("crm")
    code, _ = seed_code(row, alice)
    at = ok(exchange(client, code, cid, secret))["access_token"]
    ok(client.get("/oauth2/userinfo", headers=bearer(at)))
    revoke_grant(db.session.query(OidcGrant).one().id, reason="user")
    db.session.commit()
    assert client.get("/oauth2/userinfo", headers=bearer(at)).status_code == 401


# ------------------------------------------------------------------ revocation and introspection


def test_revoking_a_refresh_token_revokes_its_family(client: FlaskClient, alice: Any) -> None:
    _, cid, secret, first = _family(client, alice)
    second = ok(refresh(client, cid, secret, first["refresh_token"]))
    resp = client.post("/oauth2/revoke", data={"token": second["refresh_token"], "token_type_hint": "refresh_token"},
                       headers=basic(cid, secret))
    assert resp.status_code == 200
    err(refresh(client, cid, secret, second["refresh_token"]), 400, "invalid_grant")
    ev = token_events(reason="token_revoked")[-1]
    assert ev.outcome == "success" and ev.detail["token_type"] == "refresh_token" and ev.username == "alice"


def test_revoking_an_access_token(client: FlaskClient, alice: Any) -> None:
    _, cid, secret, first = _family(client, alice)
    at = first["access_token"]
    assert ok(client.post("/oauth2/introspect", data={"token": at}, headers=basic(cid, secret)))["active"]
    assert client.post("/oauth2/revoke", data={"token": at}, headers=basic(cid, secret)).status_code == 200
    assert client.get("/oauth2/userinfo", headers=bearer(at)).status_code == 401
    assert ok(client.post("/oauth2/introspect", data={"token": at}, headers=basic(cid, secret))) == {"active": False}
    ok(refresh(client, cid, secret, first["refresh_token"]))        # the refresh family is untouched


def test_revoke_unknown_or_foreign_tokens_is_a_no_op(client: FlaskClient, alice: Any) -> None:
    _, cid, secret, first = _family(client, alice)
    _, cid2, secret2 = make_client("wiki")
    n = len(token_events())
    for tok in ("nonsense", first["refresh_token"], first["access_token"]):
        assert client.post("/oauth2/revoke", data={"token": tok}, headers=basic(cid2, secret2)).status_code == 200
    assert len(token_events()) == n
    ok(refresh(client, cid, secret, first["refresh_token"]))
    assert client.get("/oauth2/userinfo", headers=bearer(first["access_token"])).status_code == 200
    err(client.post("/oauth2/revoke", data={"token": "x"}, headers=basic(cid, "wrong")), 401, "invalid_client")


def test_introspection(client: FlaskClient, alice: Any) -> None:
    _, cid, secret, first = _family(client, alice)
    info = ok(client.post("/oauth2/introspect", data={"token": first["access_token"]}, headers=basic(cid, secret)))
    assert info["active"] is True and info["client_id"] == cid and info["sub"] == subject_for(alice)
    assert info["username"] == "alice" and info["token_type"] == "Bearer" and info["iss"] == IDP_BASE
    assert info["scope"] == "openid profile email" and info["aud"] == cid and info["exp"] > info["iat"]
    rt = ok(client.post("/oauth2/introspect", data={"token": first["refresh_token"]}, headers=basic(cid, secret)))
    assert rt["active"] is True and rt["token_type"] == "refresh_token" and rt["username"] == "alice"
    # another confidential client sees nothing of it
    _, cid2, secret2 = make_client("wiki")
    for tok in (first["access_token"], first["refresh_token"], "garbage", "a.b.c"):
        assert ok(client.post("/oauth2/introspect", data={"token": tok}, headers=basic(cid2, secret2))) == {
            "active": False}
    # a public client may not introspect
    _, pub, _ = make_client("spa", public=True)
    err(client.post("/oauth2/introspect", data={"token": first["access_token"], "client_id": pub}), 401,
        "invalid_client")
    # a rotated refresh token is inactive
    ok(refresh(client, cid, secret, first["refresh_token"]))
    assert ok(client.post("/oauth2/introspect", data={"token": first["refresh_token"]},
                          headers=basic(cid, secret))) == {"active": False}


def test_discovery_lists_the_endpoints(client: FlaskClient) -> None:
    d = client.get("/.well-known/openid-configuration").get_json()
    assert d["token_endpoint"] == f"{IDP_BASE}/oauth2/token"
    assert d["userinfo_endpoint"] == f"{IDP_BASE}/oauth2/userinfo"
    assert d["revocation_endpoint"] == f"{IDP_BASE}/oauth2/revoke"
    assert d["introspection_endpoint"] == f"{IDP_BASE}/oauth2/introspect"
    assert set(d["grant_types_supported"]) == {"authorization_code", "refresh_token", "client_credentials"}
    assert set(d["token_endpoint_auth_methods_supported"]) == {"client_secret_basic", "client_secret_post",
                                                               "private_key_jwt", "none"}
    assert "none" not in d["token_endpoint_auth_signing_alg_values_supported"]
    assert not any(a.startswith("HS") for a in d["token_endpoint_auth_signing_alg_values_supported"])
    assert {"email", "groups", "preferred_username"} <= set(d["claims_supported"])


# ------------------------------------------------------------------ independent RPs, live server


@pytest.fixture
def live_oidc(tmp_path: Path, key_template: Path) -> Iterator[tuple[Flask, str]]:
    import socket
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    base = f"http://127.0.0.1:{port}"
    app = create_app(make_settings(tmp_path, key_template, base_url=base, oidc_enabled=True))
    with app.app_context():
        reset_backends(app)
        db.session.remove()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app, base
    finally:
        server.shutdown()
        thread.join(5)
        with app.app_context():
            db.session.remove()
            db.engine.dispose()




@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_client_credentials_with_independent_rps(live_oidc: tuple[Flask, str], make_oidc_rp: Any,  # noqa: F811
                                                 method: str) -> None:
    app, base = live_oidc
    with app.app_context():
        row, secret = apps_svc.register_oidc_app(name="Reports API", slug="reports", settings=apps_svc.initial_settings(
            grant_types=("client_credentials",), scopes=("reports:read", "reports:write"),
            token_endpoint_auth_method=method))
        cid = row.oidc.client_id
        db.session.commit()
        db.session.remove()
    rp = make_oidc_rp(base, cid, client_secret=secret, token_auth=method)
    tokens = rp.client_credentials(scope="reports:read")
    assert tokens["token_type"].lower() == "bearer" and tokens["scope"] == "reports:read"
    assert "refresh_token" not in tokens
    with app.test_client() as c:
        header, claims = jwt_check.verify(tokens["access_token"], c.get("/oauth2/jwks").get_json())
    assert header["typ"] == "at+jwt" and claims["sub"] == cid and claims["iss"] == base
    from tests.oidc_rp import RPError
    with pytest.raises(RPError) as refused:
        rp.client_credentials(scope="openid")
    assert refused.value.error == "invalid_scope"
