"""The token endpoint (RFC 6749 3.2, 4.1.3, 4.4, 6; OIDC Core 3.1.3, 12): the authorization_code, refresh_token
and client_credentials grants, each answered with tokens or an OAuthError, and one event either way.

Authorization codes are single use across instances: the first redemption records the code's hash in the shared
replay cache and turns the stored record into a "redeemed" marker naming what was issued; a second redemption
(RFC 6749 4.1.2, OAuth 2.0 Security BCP 4.5) revokes the refresh family and puts the access token's jti on the
revoked list; when two redemptions race, the loser marks the code "replayed" before looking for the winner's
marker, and the winner checks for that mark after storing its own, so whichever looks second revokes (the winner
then answers invalid_grant: no live token comes from a replayed code). Refresh tokens rotate; presenting a rotated
one revokes the whole family (Security BCP 4.14).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from ..auth import amr as amr_values
from ..auth.sessions import UserView
from ..certs.keystore import KeySet, KeyStoreError
from ..errors import EventContext
from ..events import record_event
from ..extensions import db
from ..models import OidcRefreshToken, SessionParticipant, utcnow
from ..oidc.claims import render_claims
from ..oidc.client_auth import parse_client_credentials
from ..oidc.codes import CODE_KIND, MAX_CODE_LEN, AuthorizationCode
from ..oidc.constants import TOKEN_PATH, GrantType, Scope
from ..oidc.errors import (
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    OAuthError,
    TemporarilyUnavailable,
    UnauthorizedClient,
    UnsupportedGrantType,
)
from ..oidc.jose import signing_key
from ..oidc.tokens import AccessTokenSpec, IdTokenSpec, issue_access_token, issue_id_token
from ..policy.model import Effect
from ..reasons import Reason
from ..services.apps import AppConfig
from ..services.apps.oidc_settings import NO_REFRESH, STANDARD_SCOPES
from ..services.oauth_lookups import GrantState, grant_state, mark_grant_used, stored_subject, user_view
from ..services.oauth_refresh import (
    FamilySpec,
    bound_session_ended,
    expired_under,
    find_refresh_token,
    issue_refresh_token,
    mark_rotated,
    new_family_id,
    spec_of,
)
from ..services.oauth_tokens import revoke_refresh_tokens
from ..state import shared
from .authorize import Client, decide
from .oidc_client_auth import AuthenticatedClient, FetchPolicy, authenticate_client
from .oidc_subject import subject_for
from .release import claim_fields, subject_of

REDEEMED_KIND = "oidc_code_redeemed"
REDEEMED_TTL_S = 600            # how long a redeemed code is remembered (replays after that find nothing)
CODE_REPLAY_KEY = "oidc code"
CODE_REPLAYED_KEY = "oidc code replayed"
REVOKED_JTI_KEY = "oidc revoked access token"
# RFC 7636 4.1: code_verifier = 43*128unreserved
VERIFIER_RE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
SCOPE_TOKEN_RE = re.compile(r"^[\x21\x23-\x5B\x5D-\x7E]{1,100}$")   # RFC 6749 3.3 scope-token, bounded
MAX_SCOPES = 50
MAX_RESOURCE_LEN = 2000


class InvalidTarget(OAuthError):
    """RFC 8707 2: a resource the client may not ask for."""

    error = "invalid_target"
    reason = Reason.INVALID_REQUEST


@dataclass(frozen=True, slots=True)
class TokenContext:
    """What the endpoint needs besides the request: the issuer and its URLs, keys, the caller and the clock."""

    issuer: str
    keys_loader: Callable[[], KeySet]
    client: Client
    now: datetime = field(default_factory=utcnow)
    fetch: FetchPolicy = field(default_factory=FetchPolicy)

    @property
    def token_endpoint(self) -> str:
        return self.issuer + TOKEN_PATH


@dataclass(slots=True)
class TokenEvent:
    """What the event will say, filled in as the request is understood."""

    grant_type: str | None = None
    endpoint: str = "token"           # token | revocation | introspection | userinfo
    client_id: str | None = None
    app_slug: str | None = None
    username: str | None = None
    scopes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def record_token_event(ev: TokenEvent, reason: Reason, client: Client, *, description: str | None = None) -> None:
    detail: dict[str, Any] = {"client_id": ev.client_id, "grant_type": ev.grant_type, "scopes": ev.scopes,
                              "endpoint": ev.endpoint, **ev.extra}
    if description:
        detail["error_description"] = description
    record_event(EventContext(event_type="token", app_slug=ev.app_slug, sp_entity_id=ev.client_id,
                              username=ev.username, protocol="oidc", detail=detail),
                 reason, client_ip=client.ip, user_agent=client.user_agent)


def record_malformed(endpoint: str, description: str, client: Client) -> None:
    """A request refused before it could be read (size, encoding, repeated parameters): still an event."""
    record_token_event(TokenEvent(endpoint=endpoint), Reason.INVALID_REQUEST, client, description=description)


def parse_scope(text: str | None) -> tuple[str, ...] | None:
    """A `scope` parameter as scope tokens (None when absent); InvalidScope for a malformed one."""
    if text is None:
        return None
    tokens = text.split(" ")
    if not text or len(tokens) > MAX_SCOPES or not all(SCOPE_TOKEN_RE.fullmatch(t) for t in tokens):
        raise InvalidScope("scope must be space-separated scope tokens")
    return tuple(dict.fromkeys(tokens))


def _jwk_key(ctx: TokenContext) -> Any:
    try:
        return signing_key(ctx.keys_loader())
    except KeyStoreError:
        raise TemporarilyUnavailable("the signing keys are unavailable") from None


def revoke_access_token_jti(jti: str, exp: float, now: datetime) -> None:
    """Put an access token's jti on the revoked list (shared replay cache) until it expires anyway."""
    ttl = int(exp - now.timestamp()) + 60
    if ttl > 0:
        shared().remember_once(f"{REVOKED_JTI_KEY}\n{jti}", ttl)


def access_token_revoked(jti: str) -> bool:
    return shared().was_remembered(f"{REVOKED_JTI_KEY}\n{jti}")


# ------------------------------------------------------------------ the endpoint

def token_request(params: Mapping[str, str], authorization: str | None, ctx: TokenContext) -> dict[str, Any]:
    """POST /oauth2/token: the JSON body of the token response, or an OAuthError (the event is recorded)."""
    ev = TokenEvent(grant_type=(params.get("grant_type") or "")[:100] or None)   # the client's words: bounded
    try:
        creds = parse_client_credentials(authorization, params)
        ev.client_id = creds.client_id
        client = authenticate_client(creds, issuer=ctx.issuer, token_endpoint=ctx.token_endpoint, now=ctx.now,
                                     fetch=ctx.fetch)
        ev.app_slug = client.app.slug
        ev.extra["auth_method"] = client.method
        grant_type = params.get("grant_type")
        if not grant_type:
            raise InvalidRequest("grant_type is required")
        handler = _GRANTS.get(grant_type)
        if handler is None:
            raise UnsupportedGrantType("this server offers authorization_code, refresh_token and "
                                       "client_credentials only")
        if grant_type not in client.oidc.grant_types:
            raise UnauthorizedClient(f"the client may not use the {grant_type} grant")
        body = handler(params, client, ctx, ev)
    except OAuthError as err:
        if err.status < 500:
            record_token_event(ev, err.reason, ctx.client, description=err.description)
        raise
    record_token_event(ev, Reason.OK, ctx.client)
    return body


def _response(access_token: str, lifetime: int, scopes: tuple[str, ...], **more: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"access_token": access_token, "token_type": "Bearer", "expires_in": lifetime}
    if scopes:
        body["scope"] = " ".join(scopes)
    body.update({k: v for k, v in more.items() if v is not None})
    return body


# ------------------------------------------------------------------ authorization_code

def _hash(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", errors="replace")).hexdigest()


def code_replayed_key(code: str) -> str:
    """The replay-cache key a losing redemption records so that a winner still issuing sees it (Redis: the
    loser may look for the winner's marker before the winner has stored it)."""
    return f"{CODE_REPLAYED_KEY}\n{_hash(code)}"


def _revoke_redeemed(marker: Mapping[str, Any], ev: TokenEvent, now: datetime) -> None:
    """A code came back: revoke what its first redemption issued (refresh family, access token)."""
    family = marker.get("family_id")
    revoked = 0
    if isinstance(family, str) and family:
        revoked = revoke_refresh_tokens(reason="code_reused", family_id=family)
    jti, exp = marker.get("jti"), marker.get("exp")
    if isinstance(jti, str) and isinstance(exp, int | float):
        revoke_access_token_jti(jti, exp, now)
    ev.extra["revoked_refresh_tokens"] = revoked
    ev.extra["revoked_access_token"] = bool(jti)


def _pkce_ok(record: AuthorizationCode, verifier: str | None, required: bool) -> None:
    if record.code_challenge is None:
        if verifier is not None:
            raise InvalidGrant("code_verifier sent for a code issued without a code_challenge (PKCE downgrade)")
        if required:
            raise InvalidGrant("this client must use PKCE: the code has no code_challenge")
        return
    if verifier is None:
        raise InvalidGrant("code_verifier is required: the code was issued with a code_challenge")
    if record.code_challenge_method not in (None, "S256"):
        raise InvalidGrant("the code's code_challenge_method is not S256")
    if not VERIFIER_RE.fullmatch(verifier):
        raise InvalidGrant("code_verifier must be 43-128 unreserved characters (RFC 7636 4.1)")
    computed = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()
    if not hmac.compare_digest(computed, record.code_challenge):
        raise InvalidGrant("code_verifier does not match the code_challenge")


def _live_grant(grant_id: int, app_id: int, user_id: int, issued_at: float) -> GrantState:
    grant = grant_state(grant_id)
    if grant is None or not grant.live or grant.app_id != app_id or grant.user_id != user_id:
        raise InvalidGrant("the user's authorization of this app has been revoked")
    if issued_at < int(grant.created_at.timestamp()):
        raise InvalidGrant("the user's authorization of this app was renewed since")
    return grant


def _subject(user: UserView) -> str:
    return stored_subject(user.id) or subject_for(user)


def _active_user(user_id: int) -> UserView:
    user = user_view(user_id)
    if user is None:
        raise InvalidGrant("the user no longer exists")
    if user.disabled:
        raise InvalidGrant("the user is disabled", reason=Reason.USER_DISABLED)
    return user


def _audiences(client: AuthenticatedClient, asked: str | None, granted: tuple[str, ...]) -> tuple[str, ...]:
    """RFC 8707: the access token's `aud`. `granted`: the resources of the authorization (the code record, or the
    refresh token's family, section 2.2), of which only those still registered for the client count. A `resource`
    parameter narrows to one of them, never beyond; without one, all of them; with none, the client itself."""
    registered = set(client.oidc.resources)
    usable = tuple(r for r in granted if r in registered)
    if asked is not None:
        if asked not in usable:
            raise InvalidTarget("resource was not asked for at authorization or is not registered for this client")
        return (asked,)
    if granted and not usable:
        raise InvalidTarget("the resources of this authorization are no longer registered for this client")
    return usable or (client.client_id,)


def _id_token(ctx: TokenContext, key: Any, app: AppConfig, user: UserView, sub: str, scopes: tuple[str, ...], *,
              auth_time: datetime, amr: tuple[str, ...], acr: str | None, sid: str | None, nonce: str | None,
              access_token: str) -> str:
    assert app.oidc is not None
    extra = render_claims(claim_fields(app, subject_of(app, user, amr=amr, auth_time=auth_time)),
                          app.settings.attributes, scopes)
    return issue_id_token(IdTokenSpec(
        issuer=ctx.issuer, subject=sub, client_id=app.oidc.client_id, issued_at=ctx.now,
        lifetime=timedelta(seconds=app.oidc.id_token_lifetime), auth_time=auth_time, nonce=nonce, acr=acr,
        amr=amr, access_token=access_token, sid=sid, extra=extra), key)


def _refresh_allowed(client: AuthenticatedClient) -> bool:
    return GrantType.REFRESH_TOKEN in client.oidc.grant_types and client.oidc.refresh_policy != NO_REFRESH


def _authorization_code(params: Mapping[str, str], client: AuthenticatedClient, ctx: TokenContext,
                        ev: TokenEvent) -> dict[str, Any]:
    code = params.get("code")
    if not code:
        raise InvalidRequest("code is required")
    if len(code) > MAX_CODE_LEN:
        raise InvalidGrant("the authorization code is invalid or expired")
    state = shared()
    data = state.get(code, CODE_KIND, consume=False)
    if data is None:
        marker = state.get(code, REDEEMED_KIND, consume=False)
        if marker is not None and marker.get("client_id") == client.client_id:
            ev.username = marker.get("username")
            _revoke_redeemed(marker, ev, ctx.now)
            raise InvalidGrant("the authorization code was already used: the tokens issued with it are revoked",
                               reason=Reason.CODE_REUSED)
        raise InvalidGrant("the authorization code is invalid or expired")
    record = AuthorizationCode.from_data(data)
    if record.client_id != client.client_id or record.app_id != client.app.id:
        raise InvalidGrant("the authorization code was issued to another client")
    ev.username = record.username
    ev.scopes = list(record.scopes)
    marker = {"kind": REDEEMED_KIND, "client_id": client.client_id, "username": record.username,
              "family_id": None, "jti": None, "exp": None}
    if not state.remember_once(f"{CODE_REPLAY_KEY}\n{_hash(code)}", REDEEMED_TTL_S):
        # spent by an earlier attempt that failed its checks, or redeemed by a request racing this one: this one
        # is the replay. Leave a mark first, then look for what the winner issued: with the database the winner
        # has committed by now (the replay cache's unique row made this request wait); with Redis it may still
        # be issuing, and then it finds the mark after storing its marker (whichever looks second revokes)
        state.remember_once(code_replayed_key(code), REDEEMED_TTL_S)
        raced = state.get(code, REDEEMED_KIND, consume=False)
        if raced is not None:
            _revoke_redeemed(raced, ev, ctx.now)
        raise InvalidGrant("the authorization code was already used", reason=Reason.CODE_REUSED)
    # spent from here on, whatever the outcome of the checks below (the replay cache remembers it; the record
    # becomes the redeemed marker once tokens exist)
    if params.get("redirect_uri") != record.redirect_uri:
        raise InvalidGrant("redirect_uri is not the one of the authorization request",
                           reason=Reason.REDIRECT_URI_MISMATCH)
    _pkce_ok(record, params.get("code_verifier"), client.oidc.is_public or client.oidc.require_pkce)
    user = _active_user(record.user_id)
    grant = _live_grant(record.grant_id, client.app.id, user.id, record.issued_at)
    audiences = _audiences(client, params.get("resource"), record.resources)
    key = _jwk_key(ctx)
    sub = _subject(user)
    scopes = record.scopes
    auth_time = datetime.fromtimestamp(record.auth_time, tz=ctx.now.tzinfo)
    lifetime = client.oidc.access_token_lifetime
    at_spec = AccessTokenSpec(issuer=ctx.issuer, client_id=client.client_id, audiences=audiences, scopes=scopes,
                              issued_at=ctx.now, lifetime=timedelta(seconds=lifetime), subject=sub,
                              auth_time=auth_time, acr=record.acr, amr=record.amr)
    access_token = issue_access_token(at_spec, key)
    refresh_token = None
    if _refresh_allowed(client):
        family = FamilySpec(family_id=new_family_id(), grant_id=grant.id, app_id=client.app.id, user_id=user.id,
                            scopes=scopes, session_id=record.session_id or None, auth_time=auth_time,
                            amr=record.amr, acr=record.acr, family_started_at=ctx.now, resources=record.resources)
        refresh_token = issue_refresh_token(family, client.oidc, ctx.now)
        marker["family_id"] = family.family_id
        ev.extra["family"] = family.family_id[:8]
    id_token = None
    if Scope.OPENID in scopes:
        id_token = _id_token(ctx, key, client.app, user, sub, scopes, auth_time=auth_time, amr=record.amr,
                             acr=record.acr, sid=record.sid or None, nonce=record.nonce, access_token=access_token)
    marker.update(jti=at_spec.jti, exp=int(ctx.now.timestamp()) + lifetime)
    state.replace(code, marker, REDEEMED_TTL_S)
    if state.was_remembered(code_replayed_key(code)):
        # a replay raced this redemption and found nothing to revoke yet: no live token from a replayed code
        _revoke_redeemed(marker, ev, ctx.now)
        raise InvalidGrant("the authorization code was used twice at once: the tokens issued with it are revoked",
                           reason=Reason.CODE_REUSED)
    mark_grant_used(grant.id, ctx.now)
    ev.extra["jti"] = at_spec.jti[:8]
    return _response(access_token, lifetime, scopes, id_token=id_token, refresh_token=refresh_token)


# ------------------------------------------------------------------ refresh_token

def _revoke_family(row: OidcRefreshToken, reason: str) -> None:
    revoke_refresh_tokens(reason=reason, family_id=row.family_id)


def _session_sid(session_id: str | None, app_id: int) -> str | None:
    if not session_id:
        return None
    return db.session.scalar(select(SessionParticipant.session_index).where(
        SessionParticipant.session_id == session_id, SessionParticipant.app_id == app_id,
        SessionParticipant.protocol == "oidc"))


def _refresh_token(params: Mapping[str, str], client: AuthenticatedClient, ctx: TokenContext,
                   ev: TokenEvent) -> dict[str, Any]:
    token = params.get("refresh_token")
    if not token:
        raise InvalidRequest("refresh_token is required")
    row = find_refresh_token(token)
    if row is None or row.app_id != client.app.id:
        raise InvalidGrant("the refresh token is invalid")
    ev.extra["family"] = row.family_id[:8]
    ev.scopes = list(row.scopes or ())
    user = user_view(row.user_id)
    ev.username = user.username if user is not None else None
    if row.revoked_at is not None:
        raise InvalidGrant("the refresh token has been revoked")
    if row.rotated_at is not None:
        _revoke_family(row, "refresh_token_reused")
        raise InvalidGrant("the refresh token was already used: its family is revoked",
                           reason=Reason.REFRESH_TOKEN_REUSED)
    if client.oidc.refresh_policy == NO_REFRESH or expired_under(client.oidc, row, ctx.now):
        revoke_refresh_tokens(reason="expired", token_id=row.id)
        raise InvalidGrant("the refresh token has expired")
    asked = parse_scope(params.get("scope"))
    family_scopes = tuple(row.scopes or ())
    if asked is not None and not set(asked) <= set(family_scopes):
        raise InvalidScope("a refresh may narrow the scopes granted, never widen them")
    scopes = asked if asked is not None else family_scopes
    audiences = _audiences(client, params.get("resource"), tuple(row.resources or ()))
    if user is None or user.disabled:
        _revoke_family(row, "user_disabled")
        raise InvalidGrant("the user is disabled or gone", reason=Reason.USER_DISABLED)
    grant = grant_state(row.grant_id)
    if grant is None or not grant.live or row.family_started_at < grant.created_at.replace(microsecond=0):
        _revoke_family(row, "grant_revoked")
        raise InvalidGrant("the user's authorization of this app has been revoked")
    if bound_session_ended(row):
        _revoke_family(row, "session_ended")
        raise InvalidGrant("the sign-in session this token was bound to has ended")
    app = client.app
    if client.oidc.ip_policy_refresh == "relax":
        app = replace(app, settings=replace(app.settings, ip_policy="relax"))
    amr = tuple((row.amr or "").split())
    decision = decide(None, app, user, ctx.client.ip, authn_at=None, mfa_passed=amr_values.MFA in amr,
                      now=ctx.now, phishing_resistant=amr_values.is_phishing_resistant(amr))
    if decision.effect is not Effect.ALLOW:
        ev.extra["policy"] = decision.to_detail()
        if decision.reason is not Reason.IP_NOT_ALLOWED:   # an address can change back; a permission cannot
            _revoke_family(row, str(decision.reason)[:40])
        raise InvalidGrant("the app's access policy no longer allows this user here", reason=decision.reason)
    if not mark_rotated(row, ctx.now):
        _revoke_family(row, "refresh_token_reused")
        raise InvalidGrant("the refresh token was already used: its family is revoked",
                           reason=Reason.REFRESH_TOKEN_REUSED)
    key = _jwk_key(ctx)
    new_token = issue_refresh_token(spec_of(row), client.oidc, ctx.now)
    sub = _subject(user)
    lifetime = client.oidc.access_token_lifetime
    at_spec = AccessTokenSpec(issuer=ctx.issuer, client_id=client.client_id, audiences=audiences,
                              scopes=scopes, issued_at=ctx.now, lifetime=timedelta(seconds=lifetime), subject=sub,
                              auth_time=row.auth_time, acr=row.acr, amr=amr)
    access_token = issue_access_token(at_spec, key)
    id_token = None
    if Scope.OPENID in scopes:   # what this response grants: a refresh narrowed to exclude openid gets none
        id_token = _id_token(ctx, key, client.app, user, sub, scopes, auth_time=row.auth_time, amr=amr,
                             acr=row.acr, sid=_session_sid(row.session_id, client.app.id), nonce=None,
                             access_token=access_token)
    mark_grant_used(grant.id, ctx.now)
    ev.scopes = list(scopes)
    ev.extra["jti"] = at_spec.jti[:8]
    return _response(access_token, lifetime, scopes, id_token=id_token, refresh_token=new_token)


# ------------------------------------------------------------------ client_credentials

def _client_credentials(params: Mapping[str, str], client: AuthenticatedClient, ctx: TokenContext,
                        ev: TokenEvent) -> dict[str, Any]:
    if client.oidc.is_public:
        raise UnauthorizedClient("a public client cannot use the client_credentials grant")
    if params.get("resource") is not None:
        raise InvalidTarget("resource indicators are not offered for client_credentials: the audience is the "
                            "client itself")
    custom = tuple(s for s in client.oidc.scopes if s not in STANDARD_SCOPES)
    asked = parse_scope(params.get("scope"))
    if asked is not None:
        ev.scopes = list(asked)
        wrong = [s for s in asked if s not in custom]
        if wrong:
            raise InvalidScope("client_credentials grants only the app's own (custom) scopes, not "
                               + " ".join(wrong[:5]))
    scopes = asked if asked is not None else custom
    ev.scopes = list(scopes)
    lifetime = client.oidc.access_token_lifetime
    spec = AccessTokenSpec(issuer=ctx.issuer, client_id=client.client_id, audiences=(client.client_id,),
                           scopes=scopes, issued_at=ctx.now, lifetime=timedelta(seconds=lifetime))
    access_token = issue_access_token(spec, _jwk_key(ctx))
    ev.extra["jti"] = spec.jti[:8]
    return _response(access_token, lifetime, scopes)


_GRANTS: dict[str, Callable[[Mapping[str, str], AuthenticatedClient, TokenContext, TokenEvent], dict[str, Any]]] = {
    GrantType.AUTHORIZATION_CODE: _authorization_code,
    GrantType.REFRESH_TOKEN: _refresh_token,
    GrantType.CLIENT_CREDENTIALS: _client_credentials,
}
