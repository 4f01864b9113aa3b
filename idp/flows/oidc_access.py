"""Using and ending tokens: UserInfo (OIDC Core 5.3), introspection (RFC 7662) and revocation (RFC 7009).

An access token (our RFC 9068 JWT) is active iff its signature, typ, iss and exp are valid, its jti is not on
the revoked list, its client's app exists and is enabled, and, for a user's token, the user exists and is
enabled and the user's grant for the app is live and not renewed since the token was issued (iat >=
floor(grant.created_at)), and the refresh family it was issued from has not been revoked at the revocation
endpoint since (revoke_family_access_tokens). A client-credentials token (sub = client_id, no auth_time) has no
user nor grant.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from ..certs.keystore import KeySet, KeyStoreError
from ..extensions import db
from ..models import OidcGrant, OidcRefreshToken, User
from ..oidc.claims import render_claims
from ..oidc.client_auth import parse_client_credentials
from ..oidc.constants import ACCESS_TOKEN_TYP, Scope, TokenAuthMethod
from ..oidc.errors import InvalidClient, InvalidRequest, InvalidToken, OAuthError, TemporarilyUnavailable
from ..oidc.jose import TokenInvalid, verify_jwt
from ..reasons import Reason
from ..services.apps import AppConfig, app_config_by_client_id
from ..services.oauth_refresh import bound_session_ended, expired_under, find_refresh_token
from ..services.oauth_tokens import revoke_refresh_tokens
from ..state import shared
from .authorize import Client
from .oidc_client_auth import AuthenticatedClient, authenticate_client
from .oidc_subject import subject_for, user_for_subject
from .oidc_token import (
    TokenContext,
    TokenEvent,
    access_token_revoked,
    record_token_event,
    revoke_access_token_jti,
)
from .release import claim_fields, subject_of

MAX_TOKEN_PARAM = 16 * 1024
REVOKED_ISSUE_KEY = "oidc revoked family issue"


class InsufficientScope(OAuthError):
    """RFC 6750 3.1: the token is valid but lacks a scope the resource needs."""

    error = "insufficient_scope"
    status = 403
    reason = Reason.INVALID_TOKEN


@dataclass(frozen=True, slots=True)
class ActiveToken:
    claims: dict[str, Any]
    app: AppConfig
    user: User | None          # None: a client-credentials token

    @property
    def scopes(self) -> tuple[str, ...]:
        scope = self.claims.get("scope")
        return tuple(scope.split()) if isinstance(scope, str) else ()


def _grant_live(app_id: int, user_id: int, iat: float) -> bool:
    grant = db.session.scalar(select(OidcGrant).where(OidcGrant.app_id == app_id, OidcGrant.user_id == user_id))
    return grant is not None and grant.revoked_at is None and iat >= int(grant.created_at.timestamp())


def _issue_key(client_id: str, user_id: int, iat: int) -> str:
    return f"{REVOKED_ISSUE_KEY}\n{client_id} {user_id} {iat}"


def revoke_family_access_tokens(family_id: str, client_id: str, lifetime_s: int, now: datetime) -> int:
    """RFC 7009 2.1: the access tokens issued from a revoked refresh family become inactive too.

    Each of a family's access tokens was issued in the same instant as one of its refresh tokens (the code
    exchange and every refresh), so the family's rows created within the access-token lifetime name the ones
    still alive by (client, user, iat): those go on a revoked list until they expire. Nothing is added to the
    tokens or stored per access token. Coarse by a second: another family of the same user and client issued in
    the same second loses its access token too (its refresh token is untouched). Returns how many were listed."""
    rows = db.session.execute(select(OidcRefreshToken.user_id, OidcRefreshToken.created_at).where(
        OidcRefreshToken.family_id == family_id,
        OidcRefreshToken.created_at >= now - timedelta(seconds=lifetime_s + 1))).all()
    issued = {(user_id, int(created.timestamp())) for user_id, created in rows}
    for user_id, iat in issued:
        ttl = iat + lifetime_s - int(now.timestamp()) + 60     # until the token has expired anyway
        shared().remember_once(_issue_key(client_id, user_id, iat), max(1, ttl))
    return len(issued)


def check_access_token(token: str, keys: KeySet, *, issuer: str, now: datetime) -> ActiveToken | None:
    """The active access token's claims, app and user; None when it is not active (for any reason)."""
    try:
        claims = verify_jwt(token, keys, issuer=issuer, audience=None, now=now, typ=ACCESS_TOKEN_TYP, leeway_s=0)
    except TokenInvalid:
        return None
    jti, client_id, sub = claims.get("jti"), claims.get("client_id"), claims.get("sub")
    if not isinstance(jti, str) or not isinstance(client_id, str) or not isinstance(sub, str):
        return None
    if access_token_revoked(jti):
        return None
    app = app_config_by_client_id(client_id)
    if app is None or not app.enabled:
        return None
    if sub == client_id and "auth_time" not in claims:
        return ActiveToken(claims, app, None)
    user = user_for_subject(sub)
    if user is None or user.disabled:
        return None
    if not _grant_live(app.id, user.id, float(claims["iat"])):
        return None
    if shared().was_remembered(_issue_key(client_id, user.id, int(claims["iat"]))):
        return None     # issued from a refresh family revoked since (revoke_family_access_tokens)
    return ActiveToken(claims, app, user)


def _keys(ctx: TokenContext) -> KeySet:
    try:
        return ctx.keys_loader()
    except KeyStoreError:
        raise TemporarilyUnavailable("the signing keys are unavailable") from None


# ------------------------------------------------------------------ UserInfo

def userinfo(token: str | None, ctx: TokenContext) -> dict[str, Any]:
    """The claims of the token's user, by the token's scopes (OIDC Core 5.3.2, 5.4)."""
    if not token:
        raise InvalidToken("a Bearer access token is required")
    active = check_access_token(token, _keys(ctx), issuer=ctx.issuer, now=ctx.now)
    if active is None:
        _refusal(ctx.client, "userinfo", None, "the access token is invalid, expired or revoked")
        raise InvalidToken("the access token is invalid, expired or revoked")
    if active.user is None or Scope.OPENID not in active.scopes:
        _refusal(ctx.client, "userinfo", active, "the access token lacks the openid scope")
        raise InsufficientScope("the access token lacks the openid scope")
    # the sign-in the token stands for (its amr and auth_time claims), so session formulas see what the ID token's did
    auth_time = active.claims.get("auth_time")
    subject = subject_of(active.app, active.user, amr=tuple(active.claims.get("amr") or ()),
                         auth_time=datetime.fromtimestamp(auth_time, UTC) if isinstance(auth_time, int) else None)
    claims = render_claims(claim_fields(active.app, subject), active.app.settings.attributes, active.scopes)
    return {"sub": active.claims["sub"], **claims}


def _refusal(client: Client, what: str, active: ActiveToken | None, description: str) -> None:
    ev = TokenEvent(endpoint=what, client_id=active.app.oidc.client_id if active and active.app.oidc else None,
             app_slug=active.app.slug if active else None,
             username=active.user.username if active and active.user else None,
             scopes=list(active.scopes) if active else [])
    record_token_event(ev, Reason.INVALID_TOKEN, client, description=description)


# ------------------------------------------------------------------ client authentication at revoke / introspect

def _authenticated(params: Mapping[str, str], authorization: str | None, ctx: TokenContext, ev: TokenEvent
                   ) -> AuthenticatedClient:
    creds = parse_client_credentials(authorization, params)
    ev.client_id = creds.client_id
    client = authenticate_client(creds, issuer=ctx.issuer, token_endpoint=ctx.token_endpoint, now=ctx.now,
                                 fetch=ctx.fetch)
    ev.app_slug = client.app.slug
    return client


def _token_param(params: Mapping[str, str]) -> str:
    token = params.get("token")
    if not token:
        raise InvalidRequest("token is required")
    if len(token) > MAX_TOKEN_PARAM:
        raise InvalidRequest("token is too long")
    # token_type_hint is not needed: the two kinds are told apart by their form (a JWT or an opaque string),
    # and an unknown hint is ignored (RFC 7009 2.1, RFC 7662 2.1)
    return token


def _looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


# ------------------------------------------------------------------ revocation (RFC 7009)

def revoke(params: Mapping[str, str], authorization: str | None, ctx: TokenContext) -> None:
    """Revoke a refresh token (its whole family) or an access token (its jti, until exp) of the calling client.
    Unknown tokens, tokens of another client and already revoked ones: success without effect (RFC 7009 2.2)."""
    ev = TokenEvent(endpoint="revocation")
    try:
        client = _authenticated(params, authorization, ctx, ev)
        token = _token_param(params)
    except OAuthError as err:
        if err.status < 500:
            record_token_event(ev, err.reason, ctx.client, description=err.description)
        raise
    if _looks_like_jwt(token):
        try:
            claims = verify_jwt(token, _keys(ctx), issuer=ctx.issuer, audience=None, now=ctx.now,
                                typ=ACCESS_TOKEN_TYP)
        except TokenInvalid:
            return
        jti, exp = claims.get("jti"), claims.get("exp")
        if claims.get("client_id") != client.client_id or not isinstance(jti, str):
            return
        revoke_access_token_jti(jti, float(exp), ctx.now)  # type: ignore[arg-type]  # exp checked by verify_jwt
        ev.extra.update({"token_type": "access_token", "jti": jti[:8]})
        scope = claims.get("scope")
        ev.scopes = scope.split() if isinstance(scope, str) else []
        user = user_for_subject(str(claims.get("sub"))) if "auth_time" in claims else None
        ev.username = user.username if user is not None else None
        record_token_event(ev, Reason.TOKEN_REVOKED, ctx.client)
        return
    row = find_refresh_token(token)
    if row is None or row.app_id != client.app.id:
        return
    count = revoke_refresh_tokens(reason="revoked_by_client", family_id=row.family_id)
    ended = revoke_family_access_tokens(row.family_id, client.client_id, client.oidc.access_token_lifetime, ctx.now)
    user = db.session.get(User, row.user_id)
    ev.username = user.username if user is not None else None
    ev.scopes = list(row.scopes or ())
    ev.extra.update({"token_type": "refresh_token", "family": row.family_id[:8], "revoked_refresh_tokens": count,
                     "revoked_access_tokens": ended})
    record_token_event(ev, Reason.TOKEN_REVOKED, ctx.client)


# ------------------------------------------------------------------ introspection (RFC 7662)

INACTIVE: dict[str, Any] = {"active": False}


def introspect(params: Mapping[str, str], authorization: str | None, ctx: TokenContext) -> dict[str, Any]:
    """{active: false} for anything not active or not the caller's to see; else the token's metadata. Only
    confidential clients (resource servers) may ask, and only about tokens issued to them or naming them in aud."""
    ev = TokenEvent(endpoint="introspection")
    try:
        client = _authenticated(params, authorization, ctx, ev)
        if client.method == TokenAuthMethod.NONE:
            raise InvalidClient("introspection is for confidential clients")
        token = _token_param(params)
    except OAuthError as err:
        if err.status < 500:
            record_token_event(ev, err.reason, ctx.client, description=err.description)
        raise
    if _looks_like_jwt(token):
        return _introspect_access(token, client, ctx)
    return _introspect_refresh(token, client, ctx)


def _introspect_access(token: str, client: AuthenticatedClient, ctx: TokenContext) -> dict[str, Any]:
    active = check_access_token(token, _keys(ctx), issuer=ctx.issuer, now=ctx.now)
    if active is None:
        return INACTIVE
    c = active.claims
    aud = c.get("aud")
    auds = [aud] if isinstance(aud, str) else list(aud or [])
    if c.get("client_id") != client.client_id and client.client_id not in auds:
        return INACTIVE
    out: dict[str, Any] = {"active": True, "scope": c.get("scope", ""), "client_id": c["client_id"],
                           "sub": c["sub"], "token_type": "Bearer", "exp": c["exp"], "iat": c["iat"],
                           "iss": c["iss"], "aud": aud, "jti": c["jti"]}
    if active.user is not None:
        out["username"] = active.user.username
    for name in ("auth_time", "acr"):
        if name in c:
            out[name] = c[name]
    return out


def _introspect_refresh(token: str, client: AuthenticatedClient, ctx: TokenContext) -> dict[str, Any]:
    row = find_refresh_token(token)
    if row is None or row.app_id != client.app.id or row.revoked_at is not None or row.rotated_at is not None:
        return INACTIVE
    if client.oidc.refresh_policy == "none" or expired_under(client.oidc, row, ctx.now):
        return INACTIVE
    if bound_session_ended(row):    # the token endpoint would refuse it (and revoke its family)
        return INACTIVE
    user = db.session.get(User, row.user_id)
    if user is None or user.disabled or not _grant_live(row.app_id, row.user_id, row.family_started_at.timestamp()):
        return INACTIVE
    out: dict[str, Any] = {"active": True, "scope": " ".join(row.scopes or ()), "client_id": client.client_id,
                           "sub": subject_for(user), "username": user.username, "token_type": "refresh_token",
                           "iat": int(row.created_at.timestamp()), "iss": ctx.issuer, "aud": client.client_id}
    if row.expires_at is not None:
        out["exp"] = int(row.expires_at.timestamp())
    return out
