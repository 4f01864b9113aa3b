"""OpenID Connect logout: RP-initiated logout (RP-Initiated Logout 1.0) and Back-Channel Logout 1.0 delivery.

Both run from the ONE logout of the IdP (flows.slo.start_logout_chain): whoever ends an IdP session by logout
(the IdP's "Sign out", a SAML SP's LogoutRequest, an RP at /oauth2/logout), the SAML SPs of the session get their
front-channel LogoutRequests and the OIDC RPs their back-channel logout tokens, and the session-bound refresh
tokens are revoked (offline_access ones outlive the session: OIDC Core 11).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..certs.keystore import KeySet, KeyStoreError
from ..config import Settings
from ..errors import EventContext
from ..events import record_event
from ..models import IdpSession, SessionParticipant, utcnow
from ..oidc.jose import TokenInvalid, signing_key, verify_jwt
from ..oidc.logout_token import LogoutTokenSpec, build_logout_token
from ..reasons import Reason
from ..services import ServiceError
from ..services.apps import AppConfig, app_config_by_client_id, app_config_by_id
from ..services.fetch import post_form
from ..services.oauth_tokens import revoke_refresh_tokens
from .authorize import Client

OIDC = "oidc"
LOGOUT_REVOKE_REASON = "logout"
# Bounds on the RP-initiated logout parameters (anything longer is refused as invalid_request, never truncated)
MAX_CLIENT_ID = 64
MAX_STATE = 1024
MAX_URI = 2000


# ---------------------------------------------------------------- back-channel logout


@dataclass(frozen=True, slots=True)
class Delivery:
    """One RP's back-channel logout: delivered (HTTP 200/204) or not, and why (for the event log)."""

    app_slug: str
    client_id: str
    delivered: bool
    status: int | None = None
    error: str | None = None
    jti: str | None = None


def end_oidc_sessions(session: IdpSession, parts: list[SessionParticipant], settings: Settings, keys: KeySet,
                      client: Client, now: datetime | None = None) -> list[Delivery]:
    """An IdP session has ended by logout: revoke its session-bound refresh tokens, then POST a logout token to
    every OIDC RP of the session that registered a back-channel logout URI.

    A failed delivery is an event (reason backchannel_logout_failed), never an exception: the logout goes on.
    The POSTs run one after another, each bounded by IDP_OIDC_BACKCHANNEL_TIMEOUT (seconds). Callers that must
    not hold a database transaction open across the network use the three steps apart: revoke_and_collect,
    then (after their commit) deliver_backchannel, then record_deliveries.
    """
    targets = revoke_and_collect(session, parts)
    out = deliver_backchannel(targets, settings, keys, now)
    record_deliveries(out, session.user.username, client)
    return out


BackchannelTarget = tuple[AppConfig, SessionParticipant]


def revoke_and_collect(session: IdpSession, parts: list[SessionParticipant]) -> list[BackchannelTarget]:
    """The database part before the back channel: the session's refresh tokens revoked, and the OIDC RPs to tell
    (those that registered a back-channel logout URI)."""
    revoke_refresh_tokens(reason=LOGOUT_REVOKE_REASON, session_id=session.id, keep_offline=True)
    targets = []
    for p in parts:
        if p.protocol != OIDC:
            continue
        app = app_config_by_id(p.app_id)
        if app is None or app.oidc is None or not app.oidc.backchannel_logout_uri:
            continue
        targets.append((app, p))
    return targets


def deliver_backchannel(targets: list[BackchannelTarget], settings: Settings, keys: KeySet,
                        now: datetime | None = None) -> list[Delivery]:
    """The network part: one logout token POSTed to each RP (no database access)."""
    now = now or utcnow()
    return [_deliver(app, p, settings, keys, now) for app, p in targets]


def record_deliveries(deliveries: list[Delivery], username: str, client: Client) -> None:
    for d in deliveries:
        _record_delivery(d, username, client)


def _deliver(app: AppConfig, p: SessionParticipant, settings: Settings, keys: KeySet, now: datetime) -> Delivery:
    assert app.oidc is not None and app.oidc.backchannel_logout_uri is not None  # noqa: S101 - checked by caller
    client_id = app.oidc.client_id
    try:
        token, jti = build_logout_token(LogoutTokenSpec(issuer=settings.base_url, client_id=client_id,
                                                        sub=p.name_id, sid=p.session_index, now=now),
                                        signing_key(keys))
    except KeyStoreError as exc:
        return Delivery(app.slug, client_id, False, error=f"signing key unavailable: {exc}"[:300])
    try:
        status = post_form(app.oidc.backchannel_logout_uri, {"logout_token": token},
                           allow_private=settings.oidc_backchannel_allow_private,
                           timeout=settings.oidc_backchannel_timeout_s)
    except ServiceError as exc:
        return Delivery(app.slug, client_id, False, error=str(exc)[:300], jti=jti)
    # section 2.8: 200 OK on success (204 is accepted too); anything else is a failure worth an admin's look
    if status in (200, 204):
        return Delivery(app.slug, client_id, True, status=status, jti=jti)
    return Delivery(app.slug, client_id, False, status=status, error=f"the RP answered HTTP {status}", jti=jti)


def _record_delivery(d: Delivery, username: str, client: Client) -> None:
    detail: dict[str, Any] = {"client_id": d.client_id, "backchannel": "delivered" if d.delivered else "failed",
                              "logout_token_jti": d.jti}
    if d.status is not None:
        detail["http_status"] = d.status
    if d.error:
        detail["error_description"] = d.error
    ctx = EventContext(event_type="logout", app_slug=d.app_slug, sp_entity_id=d.client_id,
                       username=username, initiated_by="idp", binding="back-channel", protocol=OIDC,
                       detail=detail)
    record_event(ctx, Reason.LOGOUT if d.delivered else Reason.BACKCHANNEL_LOGOUT_FAILED, client_ip=client.ip,
                 user_agent=client.user_agent)


# ---------------------------------------------------------------- RP-initiated logout


@dataclass(frozen=True, slots=True)
class RpLogoutParams:
    """The parameters of /oauth2/logout as received (RP-Initiated Logout 1.0 section 2; ui_locales is ignored)."""

    id_token_hint: str | None = None
    client_id: str | None = None
    post_logout_redirect_uri: str | None = None
    state: str | None = None


@dataclass(frozen=True, slots=True)
class RpLogout:
    """A checked request: the RP (when known), the user the hint names, and where to go after the logout."""

    app: AppConfig | None
    hint_sub: str | None            # `sub` of a valid id_token_hint
    hint_sid: str | None
    redirect_to: str | None         # the registered post-logout URI with `state`; None: the signed-out page
    uri_refused: bool = False       # a post_logout_redirect_uri was given that is not registered for the RP
    detail: dict[str, Any] = field(default_factory=dict)

    def origin(self) -> dict[str, Any] | None:
        """The logout chain's origin (flows.slo): redirect the browser here once the SAML SPs are done."""
        return {"oidc_redirect": self.redirect_to} if self.redirect_to else None


class LogoutRefused(Exception):
    """An RP-initiated logout request that cannot be trusted: answered with an IdP page, never a redirect."""

    def __init__(self, reason: Reason, message: str, event_id: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.event_id = event_id


def _with_state(uri: str, state: str | None) -> str:
    if state is None:
        return uri
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True) + [("state", state)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _hint_client(claims: dict[str, Any], client_id: str | None) -> str:
    aud = claims.get("aud")
    auds = [aud] if isinstance(aud, str) else list(aud or [])
    if client_id is not None:
        if client_id not in auds:
            raise LogoutRefused(Reason.INVALID_REQUEST, "client_id does not match the audience of id_token_hint")
        return client_id
    if len(auds) == 1:
        return str(auds[0])
    azp = claims.get("azp")
    if isinstance(azp, str) and azp in auds:
        return azp
    raise LogoutRefused(Reason.INVALID_REQUEST, "id_token_hint names several audiences and no azp: give client_id")


def check_rp_logout(params: RpLogoutParams, settings: Settings, keys: KeySet, client: Client,
                    now: datetime | None = None) -> RpLogout:
    """Validate an RP-initiated logout request; LogoutRefused (with its event recorded) when it cannot be trusted.

    id_token_hint: an ID token we signed (any of our published keys; expired is fine, section 2); its `aud` names
    the client, and client_id (when given too) must agree. post_logout_redirect_uri must be registered for that
    client exactly; otherwise no redirect happens (`uri_refused`, the caller shows the IdP's page instead).
    """
    now = now or utcnow()
    ctx = EventContext(event_type="logout", initiated_by="sp", protocol=OIDC)
    try:
        for name, value, limit in (("client_id", params.client_id, MAX_CLIENT_ID), ("state", params.state, MAX_STATE),
                                   ("post_logout_redirect_uri", params.post_logout_redirect_uri, MAX_URI)):
            if value is not None and (len(value) > limit or not value.isprintable()):
                raise LogoutRefused(Reason.INVALID_REQUEST, f"{name} is too long or holds control characters")
        claims: dict[str, Any] | None = None
        if params.id_token_hint is not None:
            try:
                claims = verify_jwt(params.id_token_hint, keys, issuer=settings.base_url, audience=None, now=now,
                                    typ="JWT", check_exp=False)
            except TokenInvalid as exc:
                ctx.detail["hint_error"] = exc.reason
                raise LogoutRefused(Reason.INVALID_REQUEST, "id_token_hint is not a valid ID token of this "
                                                            "identity provider") from None
            except KeyStoreError:
                raise LogoutRefused(Reason.SIGNING_KEY_UNAVAILABLE, "the signing keys are unavailable") from None
        client_id = _hint_client(claims, params.client_id) if claims is not None else params.client_id
        app = None
        if client_id is not None:
            ctx.sp_entity_id = client_id
            app = app_config_by_client_id(client_id)
            if app is None or app.oidc is None:
                raise LogoutRefused(Reason.INVALID_CLIENT, "no OpenID Connect app has this client_id")
            ctx.app_slug = app.slug
        redirect_to, refused = None, False
        uri = params.post_logout_redirect_uri
        if uri is not None:
            if app is not None and app.oidc is not None and uri in app.oidc.post_logout_redirect_uris:
                redirect_to = _with_state(uri, params.state)
            else:
                refused = True
                ctx.detail.update({"client_id": client_id, "error_description": "post_logout_redirect_uri is not "
                                   "registered for this client (or no client was named)"})
                record_event(ctx, Reason.REDIRECT_URI_MISMATCH, client_ip=client.ip, user_agent=client.user_agent)
        sub = claims.get("sub") if claims is not None else None
        sid = claims.get("sid") if claims is not None else None
        return RpLogout(app=app, hint_sub=sub if isinstance(sub, str) else None,
                        hint_sid=sid if isinstance(sid, str) else None, redirect_to=redirect_to, uri_refused=refused,
                        detail={"client_id": client_id, "id_token_hint": claims is not None})
    except LogoutRefused as exc:
        ctx.detail.setdefault("error_description", str(exc))
        exc.event_id = record_event(ctx, exc.reason, client_ip=client.ip, user_agent=client.user_agent).id
        raise


def logout_context(decision: RpLogout) -> EventContext:
    """The event of an RP-initiated logout (the chain records it when the session ends)."""
    app = decision.app
    return EventContext(event_type="logout", app_slug=app.slug if app else None,
                        sp_entity_id=app.oidc.client_id if app and app.oidc else None, initiated_by="sp",
                        protocol=OIDC, detail=dict(decision.detail))
