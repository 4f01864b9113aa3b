"""The OIDC / OAuth 2.0 authorization endpoint's use case: request → gate → consent → authorization code.

`receive` validates what arrived (oidc.authorize_request) and returns a `PendingAuthorization`, or the answer
to a bad request: an `ErrorPage` while the client or its redirect URI is not trusted (RFC 6749 4.1.2.1: never a
redirect), a `RedirectToClient` with `error` afterwards. `proceed` takes a pending request and the browser's
session through the protocol-neutral gate (flows.authorize), exactly as SAML does: the request is parked
(flows.pending, kind "oidc") across a login or second-factor detour, and a `prompt=none` request gets
login_required / interaction_required / consent_required instead. Then consent (the Salesforce model: a
self-authorize app asks once per scope set, a pre-authorized app never asks), then the code.

Every answer is recorded as an event (protocol "oidc", reason code) in the caller's unit of work; the web layer
commits before the response leaves.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..auth.sessions import SessionView
from ..certs.keystore import KeySet, KeyStoreError
from ..config import Settings
from ..errors import EventContext, SamlFlowError
from ..events import record_event
from ..extensions import db
from ..models import SessionParticipant, utcnow
from ..oidc import acr as acr_map
from ..oidc.authorize_request import (
    AuthorizationRequest,
    RawParams,
    check_resources_registered,
    collect_params,
    parse_authorization_request,
    read_client_params,
    redirect_uri_registered,
)
from ..oidc.codes import AuthorizationCode
from ..oidc.consent import ScopeLine, consent_needed, describe_scopes
from ..oidc.errors import (
    AccessDenied,
    ConsentRequired,
    InteractionRequired,
    InvalidClient,
    InvalidRequest,
    LoginRequired,
    OAuthError,
    ServerError,
    TemporarilyUnavailable,
)
from ..oidc.jose import TokenInvalid, verify_jwt
from ..policy.model import Decision, PermittedUsers
from ..reasons import Reason
from ..services.apps import AppConfig, app_config_by_client_id, app_config_by_id
from ..services.oidc_consent import ADMIN_CONSENT, USER_CONSENT, live_scopes, mark_used, record_grant
from . import pending as pending_store
from .authorize import (
    Allowed,
    AuthzRequest,
    Client,
    PassiveRefused,
    Refused,
    SecondFactorRequired,
    authorize,
)
from .authorize import (
    LoginRequired as GateLoginRequired,
)
from .oidc_codes import issue_code
from .oidc_subject import subject_for
from .outcomes import NeedsLogin, NeedsReauthentication, NeedsSecondFactor
from .release import check_release, subject_of

KIND = "oidc"
ID_TOKEN_TYP = "JWT"  # noqa: S105 - a media type: our ID tokens' header typ (access tokens: at+jwt)
INITIATED_BY = "rp"
SID_FORMAT = "oidc"        # SessionParticipant.name_id_format of an OIDC participant


# ---------------------------------------------------------------- the pending request

@dataclass(frozen=True, slots=True)
class PendingAuthorization:
    """A validated authorization request waiting for (or ready for) a session, a second factor or consent."""

    app_id: int
    request: AuthorizationRequest
    received_at: datetime
    consent_user_id: int | None = None      # who was shown the consent page: only their answer counts

    @property
    def authz(self) -> AuthzRequest:
        """The protocol-neutral view the gate decides on (prompt=login is ForceAuthn, prompt=none IsPassive;
        acr_values become a minimum requested class). Session-dependent forcing (max_age, id_token_hint) is
        added by `proceed`."""
        refs = acr_map.requested_classes(self.request.acr_values)
        return AuthzRequest(app_id=self.app_id, received_at=self.received_at, force_authn=self.request.prompt_login,
                            is_passive=self.request.prompt_none,
                            requested_comparison=acr_map.COMPARISON if refs else None, requested_refs=refs,
                            initiated_by=INITIATED_BY)

    def to_dict(self) -> dict[str, Any]:
        return {"app_id": self.app_id, "request": self.request.to_dict(), "received_at": self.received_at.isoformat(),
                "consent_user_id": self.consent_user_id}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PendingAuthorization:
        return cls(app_id=int(d["app_id"]), request=AuthorizationRequest.from_dict(d["request"]),
                   received_at=datetime.fromisoformat(d["received_at"]),
                   consent_user_id=d.get("consent_user_id"))


def park(pending: PendingAuthorization) -> str:
    return pending_store.park(KIND, pending.to_dict())


def load_parked(token: str | None) -> PendingAuthorization | None:
    data = pending_store.get(token, KIND, consume=False)
    return PendingAuthorization.from_dict(data) if data is not None else None


def _consume(token: str | None) -> None:
    if token:
        pending_store.get(token, KIND, consume=True)


def _authz_from_parked(data: dict[str, Any]) -> AuthzRequest:
    return PendingAuthorization.from_dict(data).authz


pending_store.register_kind(KIND, _authz_from_parked)


# ---------------------------------------------------------------- outcomes

@dataclass(frozen=True, slots=True)
class RedirectToClient:
    """Send the browser to the client's registered redirect URI (a code, or an error), `url` complete."""

    url: str


@dataclass(frozen=True, slots=True)
class ErrorPage:
    """The client or its redirect URI is not trusted: the IdP's own page, never a redirect."""

    status: int
    reason: Reason
    event_id: int


@dataclass(frozen=True, slots=True)
class NeedsConsent:
    """A self-authorize app the user has not (or not for these scopes) authorized: ask, Allow / Deny."""

    token: str
    app_name: str
    username: str
    scopes: list[ScopeLine]
    resources: tuple[str, ...] = ()     # RFC 8707: the APIs the access token will be for (registered ones only)


AuthorizeOutcome = RedirectToClient | ErrorPage | NeedsLogin | NeedsReauthentication | NeedsSecondFactor | NeedsConsent


# ---------------------------------------------------------------- events and answers

def _context(app: AppConfig | None, client_id: str | None, session: SessionView | None) -> EventContext:
    ctx = EventContext(event_type="sso", protocol="oidc", initiated_by=INITIATED_BY,
                       app_slug=app.slug if app else None, sp_entity_id=client_id if app else None,
                       username=session.user.username if session is not None else None)
    if app is not None and client_id:
        ctx.detail["client_id"] = client_id
    return ctx


def _request_detail(ctx: EventContext, req: AuthorizationRequest) -> None:
    ctx.detail.update({"scopes": list(req.scopes), "response_type": req.response_type,
                       "grant_type": "authorization_code", "grant": "authorization_code"})


def _page(exc: OAuthError, ctx: EventContext, client: Client) -> ErrorPage:
    ctx.detail["error"] = exc.error
    ctx.detail["error_description"] = exc.description
    event = record_event(ctx, exc.reason, client_ip=client.ip, user_agent=client.user_agent)
    return ErrorPage(status=400 if exc.status < 500 else exc.status, reason=exc.reason, event_id=event.id)


def redirect_with(uri: str, params: Iterable[tuple[str, str | None]]) -> str:
    """`uri` with `params` added to its query (RFC 6749 3.1.2: a registered query component is kept)."""
    parts = urlsplit(uri)
    added = urlencode([(k, v) for k, v in params if v is not None])
    return urlunsplit(parts._replace(query=f"{parts.query}&{added}" if parts.query else added))


def _safe_description(text: str) -> str:
    """RFC 6749 4.1.2.1: error_description is %x20-21 / %x23-5B / %x5D-7E."""
    return "".join(c for c in text if 0x20 <= ord(c) <= 0x7E and c not in '"\\')[:300]


def _error_redirect(exc: OAuthError, redirect_uri: str, state: str | None, ctx: EventContext, settings: Settings,
                    client: Client) -> RedirectToClient:
    ctx.detail["error"] = exc.error
    ctx.detail["error_description"] = exc.description
    record_event(ctx, exc.reason, client_ip=client.ip, user_agent=client.user_agent)
    return RedirectToClient(redirect_with(redirect_uri, [("error", exc.error),
                                                         ("error_description", _safe_description(exc.description)),
                                                         ("state", state), ("iss", settings.base_url)]))


# ---------------------------------------------------------------- receiving a request

def receive(pairs: Iterable[tuple[str, str]], settings: Settings, client: Client, session: SessionView | None,
            now: datetime | None = None) -> PendingAuthorization | RedirectToClient | ErrorPage:
    """Validate an authorization request. Order: client_id → app enabled → redirect_uri registered (errors so far:
    the IdP page) → the rest (errors: a redirect with `error`, `state` and `iss`)."""
    raw: RawParams = collect_params(pairs)
    ctx = _context(None, None, session)
    try:
        params = read_client_params(raw)
    except InvalidRequest as exc:
        return _page(exc, ctx, client)
    app = app_config_by_client_id(params.client_id)
    if app is None or app.oidc is None:
        # not stored as sp_entity_id: anonymous callers must not create new values (filters, metric labels)
        ctx.detail["requested_client_id"] = params.client_id[:64]
        return _page(InvalidClient("unknown client_id"), ctx, client)
    ctx = _context(app, params.client_id, session)
    if not app.enabled:
        return _page(InvalidClient("the app is disabled", reason=Reason.APP_DISABLED), ctx, client)
    if not redirect_uri_registered(params.redirect_uri, app.oidc.redirect_uris):
        ctx.detail["redirect_uri"] = (params.redirect_uri or "")[:300] or None
        return _page(InvalidRequest("redirect_uri is missing or not registered for this client",
                                    reason=Reason.REDIRECT_URI_MISMATCH), ctx, client)
    assert params.redirect_uri is not None
    try:
        req = parse_authorization_request(raw, app.oidc, params.redirect_uri)
    except OAuthError as exc:
        ctx.detail["response_type"] = (raw.values.get("response_type") or "")[:40] or None
        return _error_redirect(exc, params.redirect_uri, raw.state, ctx, settings, client)
    return PendingAuthorization(app_id=app.id, request=req, received_at=now or utcnow())


# ---------------------------------------------------------------- answering it

def _hint_subject(req: AuthorizationRequest, keys: Callable[[], KeySet], settings: Settings,
                  now: datetime) -> str | None:
    """The `sub` of a valid id_token_hint (an ID token, typ JWT, signed by us for this client; an expired one is
    fine, OIDC Core 3.1.2.1); InvalidRequest when it is not ours. The typ check keeps out our access tokens
    (typ at+jwt), which carry the same iss, aud and sub (RFC 8725 3.11), as the logout endpoint does."""
    if req.id_token_hint is None:
        return None
    try:
        claims = verify_jwt(req.id_token_hint, keys(), issuer=settings.base_url, audience=req.client_id, now=now,
                            typ=ID_TOKEN_TYP, check_exp=False)
    except KeyStoreError:
        raise TemporarilyUnavailable("the signing keys are unavailable") from None
    except TokenInvalid as exc:
        raise InvalidRequest(f"id_token_hint is not valid: {exc.reason}") from None
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise InvalidRequest("id_token_hint has no sub")
    return sub


def _max_age_exceeded(req: AuthorizationRequest, session: SessionView | None, now: datetime) -> bool:
    return req.max_age is not None and session is not None and (now - session.authn_at).total_seconds() > req.max_age


_PASSIVE: dict[str, type[OAuthError]] = {"login": LoginRequired, "reauth": LoginRequired, "mfa": InteractionRequired}
_PASSIVE_TEXT = {"login": "the user is not signed in", "reauth": "the user would have to sign in again",
                 "mfa": "the user would have to pass a second factor"}


def proceed(pending: PendingAuthorization, token: str | None, session: SessionView | None, settings: Settings,
            keys: Callable[[], KeySet], client: Client, now: datetime | None = None, *,
            consented: bool = False) -> AuthorizeOutcome:
    """Answer a pending request for this browser session, or say what the user must do first.

    `token` names the parked request when it came back from a detour (consumed once answered; an interaction
    keeps it). `consented`: the session's user has just clicked Allow on this request's consent page.
    """
    now = now or utcnow()
    req = pending.request
    app = app_config_by_id(pending.app_id)
    ctx = _context(app, req.client_id, session)
    _request_detail(ctx, req)
    if app is None or app.oidc is None or app.oidc.client_id != req.client_id:
        _consume(token)
        return _page(InvalidClient("the app was removed while the request was pending"), ctx, client)
    if not redirect_uri_registered(req.redirect_uri, app.oidc.redirect_uris):
        _consume(token)
        return _page(InvalidRequest("redirect_uri is no longer registered for this client",
                                    reason=Reason.REDIRECT_URI_MISMATCH), ctx, client)

    def refuse(exc: OAuthError) -> RedirectToClient:
        _consume(token)
        return _error_redirect(exc, req.redirect_uri, req.state, ctx, settings, client)

    try:
        # again here: the allowlist may have shrunk while the request waited for a login or consent
        check_resources_registered(req.resources, app.oidc.resources)
        hint_sub = _hint_subject(req, keys, settings, now)
    except OAuthError as exc:
        return refuse(exc)
    other_user = hint_sub is not None and session is not None and subject_for(session.user) != hint_sub
    if other_user and req.prompt_none:
        return refuse(LoginRequired("the signed-in user is not the one in id_token_hint"))
    force = req.prompt_login or other_user or _max_age_exceeded(req, session, now)
    gate = authorize(replace(pending.authz, force_authn=force), app, session, client.ip, now)
    if isinstance(gate, GateLoginRequired):
        token = token or park(pending)
        return NeedsReauthentication(token) if gate.reauth else NeedsLogin(token)
    if isinstance(gate, SecondFactorRequired):
        return NeedsSecondFactor(token or park(pending), passkey_required=gate.passkey_required)
    if isinstance(gate, PassiveRefused):
        return refuse(_PASSIVE[gate.needed](f"prompt=none was requested and {_PASSIVE_TEXT[gate.needed]}"))
    ctx.detail["policy"] = gate.decision.to_detail()
    if isinstance(gate, Refused):
        # the event says which check refused and why; the client (and so the user) learns only "access denied"
        return refuse(AccessDenied("the user may not use this application", reason=gate.decision.reason))
    assert isinstance(gate, Allowed) and session is not None
    user = session.user
    try:
        check_release(app, subject_of(app, user, amr=session.amr, auth_time=session.authn_at,
                                      mfa=session.mfa_at is not None))
    except SamlFlowError as exc:  # attribute_unavailable (on-missing deny) or a release that no longer compiles
        if exc.reason == Reason.ATTRIBUTE_UNAVAILABLE:
            return refuse(AccessDenied("the user's account lacks information this application needs",
                                       reason=exc.reason))
        return refuse(ServerError("this application is not set up correctly", reason=exc.reason))
    if app.settings.policy.permitted == PermittedUsers.ALL:
        consent = USER_CONSENT
        if not consented and consent_needed(req.scopes, live_scopes(app.id, user.id, consent=USER_CONSENT),
                                            prompt_consent=req.prompt_consent):
            if req.prompt_none:
                return refuse(ConsentRequired("prompt=none was requested and the user has not consented"))
            asking = replace(pending, consent_user_id=user.id)
            if token is None:
                token = park(asking)
            elif pending.consent_user_id != user.id:
                pending_store.replace(token, {"kind": KIND, **asking.to_dict()})
            return NeedsConsent(token=token, app_name=app.name, username=user.username,
                                scopes=describe_scopes(req.scopes), resources=req.resources)
    else:
        consent = ADMIN_CONSENT    # pre-authorized: permitted users and groups passed the policy; no page
    _consume(token)
    if consented and consent == USER_CONSENT:
        # recorded with the code it leads to (same unit of work): a consent the gate then refused leaves nothing
        given = _context(app, req.client_id, session)
        _request_detail(given, req)
        record_event(given, Reason.CONSENT_GIVEN, client_ip=client.ip, user_agent=client.user_agent)
    return RedirectToClient(_issue(pending, app, session, gate.decision, consent, ctx, settings, client, now))


def answer_consent(token: str | None, allow: bool, session: SessionView | None, settings: Settings,
                   keys: Callable[[], KeySet], client: Client) -> AuthorizeOutcome | None:
    """The consent page's Allow / Deny for the parked request `token` (None: unknown or expired).

    Only the user who was shown the page can answer it; anyone else (or nobody) is taken through the request
    again from the start (which asks them, if at all, on their own page)."""
    pending = load_parked(token)
    if pending is None:
        return None
    if session is None or pending.consent_user_id != session.user_id:
        return proceed(pending, token, session, settings, keys, client)
    if allow:
        return proceed(pending, token, session, settings, keys, client, consented=True)
    req = pending.request
    app = app_config_by_id(pending.app_id)
    ctx = _context(app, req.client_id, session)
    _request_detail(ctx, req)
    _consume(token)
    if app is None or app.oidc is None or not redirect_uri_registered(req.redirect_uri, app.oidc.redirect_uris):
        return _page(InvalidClient("the app was removed while the request was pending"), ctx, client)
    return _error_redirect(AccessDenied("the user denied the request", reason=Reason.CONSENT_DENIED),
                           req.redirect_uri, req.state, ctx, settings, client)


def _issue(pending: PendingAuthorization, app: AppConfig, session: SessionView, decision: Decision, consent: str,
           ctx: EventContext, settings: Settings, client: Client, now: datetime) -> str:
    """Record the grant and the session participant, store the code record, record the event: the redirect URL."""
    req, user = pending.request, session.user
    grant = record_grant(app.id, user.id, req.scopes, consent, now)
    mark_used(grant, now)
    sub = subject_for(user)
    sid = participant_sid(session, app, sub)
    acr = acr_map.acr_claim(decision.authn_context, req.acr_values)
    code = issue_code(AuthorizationCode(
        app_id=app.id, client_id=req.client_id, user_id=user.id, username=user.username,
        redirect_uri=req.redirect_uri, scopes=req.scopes, grant_id=grant.id, session_id=session.id, sid=sid,
        auth_time=int(session.authn_at.timestamp()), issued_at=int(now.timestamp()), amr=tuple(session.amr),
        acr=acr, nonce=req.nonce, code_challenge=req.code_challenge,
        code_challenge_method=req.code_challenge_method, resources=req.resources,
        claims_locales=req.claims_locales))
    ctx.detail["acr"] = acr
    ctx.detail["consent"] = consent
    if req.resources:
        ctx.detail["resources"] = list(req.resources)
    record_event(ctx, Reason.OK, client_ip=client.ip, user_agent=client.user_agent)
    return redirect_with(req.redirect_uri, [("code", code), ("state", req.state), ("iss", settings.base_url)])


def participant_sid(session: SessionView, app: AppConfig, sub: str) -> str:
    """The `sid` of this (IdP session, app): recorded on first use as an OIDC session participant (name_id = sub),
    reused afterwards. An app that also speaks SAML has its own SAML row beside it (one row per protocol)."""
    row = _oidc_participant(session, app)
    if row is not None:
        return row.session_index
    sid = secrets.token_urlsafe(24)
    try:
        with db.session.begin_nested():
            db.session.add(SessionParticipant(session_id=session.id, app_id=app.id, name_id=sub,
                                              name_id_format=SID_FORMAT, session_index=sid, protocol="oidc",
                                              created_at=utcnow()))
    except IntegrityError:   # a concurrent authorization in the same session recorded it first
        row = _oidc_participant(session, app)
        if row is None:
            raise
        return row.session_index
    return sid


def _oidc_participant(session: SessionView, app: AppConfig) -> SessionParticipant | None:
    return db.session.scalar(select(SessionParticipant).where(SessionParticipant.session_id == session.id,
                                                             SessionParticipant.app_id == app.id,
                                                             SessionParticipant.protocol == "oidc"))
