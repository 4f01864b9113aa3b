"""SAML SSO: an AuthnRequest (SP-initiated) or a launch (IdP-initiated) → the gate → a signed Response.

`receive_authn_request` and `start_idp_initiated` validate what arrived and return a `PendingSso`
(or `Denied`); `proceed` takes a pending request and the browser's session through the
protocol-neutral gate (flows.authorize) and returns an outcome: `Issued` (the Response to POST),
`NeedsLogin` / `NeedsReauthentication` / `NeedsSecondFactor` (the request is parked under the
returned token), or `Denied` (reason code, event context, and where the SP is told).

Validation order for SP-initiated requests (each failure has its reason code and issues nothing):
decode → parse → issuer is a registered app → app enabled → the inbound pipeline (flows.inbound:
signature with the app's metadata certificates only → Destination → IssueInstant window → ACS
resolved from metadata → replay cache).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..auth.sessions import SessionView
from ..certs.keystore import KeySet
from ..config import Settings
from ..errors import (
    AccessDenied,
    AcsNotRegistered,
    AppDisabled,
    AppMisconfigured,
    EventContext,
    IdpInitiatedDisabled,
    MalformedRequest,
    MetadataExpired,
    RelayStateNotAllowed,
    SamlFlowError,
    UnknownApp,
    UnknownSp,
    UnsupportedBinding,
)
from ..events import record_event
from ..models import utcnow
from ..policy.model import Decision
from ..reasons import Reason
from ..saml.bindings import BindingError, DecodedMessage, check_relay_state
from ..saml.constants import (
    AC_PASSWORD_PROTECTED,
    BINDING_ARTIFACT,
    BINDING_POST,
    RESPONSE_BINDINGS,
    STATUS_NO_AUTHN_CONTEXT,
    STATUS_NO_PASSIVE,
    STATUS_REQUESTER,
    STATUS_RESPONDER,
    InitiatedBy,
)
from ..saml.encryption import EncryptionError
from ..saml.requests import AuthnRequest, RequestParseError, parse_authn_request, peek_issuer
from ..saml.responses import build_error_response, build_response
from ..saml.sp_metadata import Endpoint, MetadataError
from ..services.apps import AppConfig, app_config_by_entity_id, saml_app_config_by_id, saml_app_config_by_slug
from . import pending as pending_store
from .artifact import issue_artifact
from .assertion import assertion_spec
from .authorize import (
    Allowed,
    AuthzRequest,
    Client,
    LoginRequired,
    PassiveRefused,
    Refused,
    SecondFactorRequired,
    authorize,
)
from .inbound import InboundMessage, InboundRules, check_inbound
from .outcomes import Denied, Issued, NeedsLogin, NeedsReauthentication, NeedsSecondFactor
from .release import release_for, subject_of
from .saml_keys import encryptor_for, signing_for
from .saml_subject import name_id_for, session_index_for


@dataclass(frozen=True, slots=True)
class PendingSso:
    """A validated SSO request waiting for (or ready for) an authenticated session."""

    app_id: int
    initiated_by: str                 # sp | idp
    binding: str | None               # redirect | post | None (IdP-initiated)
    acs_url: str
    relay_state: str | None
    received_at: datetime
    request: dict[str, Any] | None = None   # AuthnRequest.to_dict() for SP-initiated
    acs_binding: str = BINDING_POST         # the chosen ACS's binding: HTTP-POST or HTTP-Artifact

    @property
    def request_id(self) -> str | None:
        return self.request["id"] if self.request else None

    @property
    def force_authn(self) -> bool:
        return bool(self.request and self.request.get("force_authn"))

    @property
    def is_passive(self) -> bool:
        return bool(self.request and self.request.get("is_passive"))

    @property
    def authz(self) -> AuthzRequest:
        """The protocol-neutral view the gate decides on."""
        req = self.request or {}
        return AuthzRequest(app_id=self.app_id, received_at=self.received_at, force_authn=self.force_authn,
                            is_passive=self.is_passive,
                            requested_comparison=req.get("requested_context_comparison"),
                            requested_refs=tuple(req.get("requested_context_refs") or ()),
                            initiated_by=self.initiated_by, binding=self.binding, request_id=self.request_id)

    def to_dict(self) -> dict[str, Any]:
        return {"app_id": self.app_id, "initiated_by": self.initiated_by, "binding": self.binding,
                "acs_url": self.acs_url, "relay_state": self.relay_state,
                "received_at": self.received_at.isoformat(), "request": self.request,
                "acs_binding": self.acs_binding}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PendingSso:
        return cls(app_id=int(d["app_id"]), initiated_by=d["initiated_by"], binding=d.get("binding"),
                   acs_url=d["acs_url"], relay_state=d.get("relay_state"),
                   received_at=datetime.fromisoformat(d["received_at"]), request=d.get("request"),
                   acs_binding=d.get("acs_binding") or BINDING_POST)

    def event_context(self, app: AppConfig | None) -> EventContext:
        return EventContext(app_slug=app.slug if app else None, sp_entity_id=app.entity_id if app else None,
                            initiated_by=self.initiated_by, binding=self.binding, request_id=self.request_id)


@dataclass(frozen=True, slots=True)
class IssuedResponse:
    """What the browser takes to the SP's ACS: the Response to POST, or (HTTP-Artifact) the artifact standing for
    it (saml-bindings-2.0-os §3.6.3), then saml_response is empty."""

    acs_url: str
    saml_response: str                # base64
    relay_state: str | None
    response_id: str
    artifact: str | None = None       # SAMLart when the ACS uses HTTP-Artifact


# ---------------------------------------------------------------- receiving requests

def _fail(exc: SamlFlowError, ctx: EventContext,
          reply_to: tuple[AppConfig, str, str | None, str | None, str] | None = None) -> SamlFlowError:
    exc.context = ctx
    exc.reply_to = reply_to
    return exc


def resolve_acs(app: AppConfig, req: AuthnRequest) -> Endpoint:
    """The ACS to answer at (saml-core §3.4.1, saml-profiles §4.1.4.1): the registered ACS the request names by
    URL (exact match, with its ProtocolBinding when given) or by index, else the metadata's default ACS (of the
    requested ProtocolBinding when given). HTTP-POST and HTTP-Artifact ACSs can be answered at."""
    wanted = req.protocol_binding
    if wanted is not None and wanted not in RESPONSE_BINDINGS:
        raise UnsupportedBinding(f"ProtocolBinding {wanted[:100]} is not supported; use HTTP-POST or HTTP-Artifact")
    if req.acs_url is not None:
        same_url = [ep for ep in app.saml.acs if ep.location == req.acs_url]
        usable = [ep for ep in same_url if ep.binding in RESPONSE_BINDINGS and wanted in (None, ep.binding)]
        if usable:   # no ProtocolBinding and both bindings at one URL: HTTP-POST first
            return min(usable, key=lambda ep: ep.binding != BINDING_POST)
        if same_url and wanted is not None:
            raise UnsupportedBinding(f"the ACS {req.acs_url[:200]!r} is not registered with ProtocolBinding "
                                     f"{wanted[:100]}")
        raise AcsNotRegistered(f"AssertionConsumerServiceURL {req.acs_url[:200]!r} is not registered for this app")
    if req.acs_index is not None:
        match: Endpoint | None = next((ep for ep in app.saml.acs if ep.index == req.acs_index), None)
        if match is None:
            raise AcsNotRegistered(f"AssertionConsumerServiceIndex {req.acs_index} is not registered for this app")
        if match.binding not in RESPONSE_BINDINGS or wanted not in (None, match.binding):
            raise UnsupportedBinding(f"the ACS at index {req.acs_index} does not use HTTP-POST or HTTP-Artifact"
                                     if wanted is None else
                                     f"the ACS at index {req.acs_index} does not use ProtocolBinding {wanted[:100]}")
        return match
    try:
        return app.saml.default_acs(wanted)
    except MetadataError:
        raise UnsupportedBinding(f"this app has no ACS with ProtocolBinding {str(wanted)[:100]}") from None


def _reply_to(app: AppConfig, pending: PendingSso) -> tuple[AppConfig, str, str | None, str | None, str]:
    return (app, pending.acs_url, pending.request_id, pending.relay_state, pending.acs_binding)


def receive_authn_request(msg: DecodedMessage, raw_query: bytes | None, settings: Settings,
                          now: datetime | None = None) -> tuple[AppConfig, PendingSso] | Denied:
    """Validate an SP-initiated AuthnRequest: the app and the pending request, or Denied (with context)."""
    now = now or utcnow()
    ctx = EventContext(initiated_by=InitiatedBy.SP, binding=msg.binding)
    max_bytes = settings.max_inflated_bytes
    try:
        req = parse_authn_request(msg.xml, max_bytes)
    except RequestParseError as exc:
        ctx.sp_entity_id = peek_issuer(msg.xml, max_bytes)
        return Denied(_fail(MalformedRequest(f"the AuthnRequest is malformed: {exc}"), ctx))
    ctx.sp_entity_id, ctx.request_id = req.issuer, req.id
    app = app_config_by_entity_id(req.issuer)
    if app is None:
        return Denied(_fail(UnknownSp(f"no connected app has the entityID {req.issuer[:200]!r}"), ctx))
    ctx.app_slug = app.slug
    if not app.enabled:
        return Denied(_fail(AppDisabled("this app is disabled"), ctx))
    if app.metadata_expired(now):
        return Denied(_fail(_expired(app), ctx))
    rules = InboundRules(endpoint_url=settings.url("/saml/sso"),
                         signature_required=app.requires_signed_requests or settings.want_authn_requests_signed,
                         verify_when_present=bool(app.saml.signing_certs), destination_required=False)
    inbound = InboundMessage(kind="AuthnRequest", id=req.id, issuer=req.issuer, destination=req.destination,
                             issue_instant=req.issue_instant, not_on_or_after=None, root=req.root)
    acs: list[Endpoint] = []
    try:
        ctx.detail.update(check_inbound(msg, raw_query, inbound, app, rules, settings, now,
                                        before_replay=lambda: acs.append(resolve_acs(app, req)),
                                        replay_at_commit=True))
    except SamlFlowError as exc:
        return Denied(_fail(exc, ctx))
    return app, PendingSso(app_id=app.id, initiated_by=InitiatedBy.SP, binding=msg.binding, acs_url=acs[0].location,
                           relay_state=msg.relay_state, received_at=now, request=req.to_dict(),
                           acs_binding=acs[0].binding)


def start_idp_initiated(slug: str, relay_state: str | None,
                        now: datetime | None = None) -> tuple[AppConfig, PendingSso] | Denied:
    ctx = EventContext(initiated_by=InitiatedBy.IDP)
    app = saml_app_config_by_slug(slug)   # an app without SAML settings is no SAML app
    if app is None:
        # not stored as app_slug: anonymous callers must not create new values (metric labels, filters)
        ctx.detail["requested_slug"] = slug[:100]
        return Denied(_fail(UnknownApp(f"no connected app {slug[:100]!r}"), ctx))
    ctx.app_slug = app.slug
    ctx.sp_entity_id = app.entity_id
    if not app.enabled:
        return Denied(_fail(AppDisabled("this app is disabled"), ctx))
    if app.metadata_expired(now or utcnow()):
        return Denied(_fail(_expired(app), ctx))
    if not app.settings.idp_initiated:
        return Denied(_fail(IdpInitiatedDisabled("IdP-initiated sign-in is off for this app"), ctx))
    try:
        relay_state = check_relay_state(relay_state)
    except BindingError as exc:
        return Denied(_fail(MalformedRequest(str(exc)), ctx))
    if relay_state is None:
        relay_state = app.settings.start_url
    elif not app.accepts_relay_state(relay_state):
        ctx.detail["relay_state"] = relay_state   # at most 80 bytes, no markup (check_relay_state)
        return Denied(_fail(RelayStateNotAllowed("RelayState is not in this app's allow-list or under its start "
                                                 "URL"), ctx))
    acs = app.saml.default_acs()
    return app, PendingSso(app_id=app.id, initiated_by=InitiatedBy.IDP, binding=None,
                           acs_url=acs.location, relay_state=relay_state,
                           received_at=now or utcnow(), acs_binding=acs.binding)


# ---------------------------------------------------------------- parking requests across the login detour

KIND = "sso"


def park(pending: PendingSso) -> str:
    return pending_store.park(KIND, pending.to_dict())


def unpark(token: str | None, *, consume: bool) -> PendingSso | None:
    data = pending_store.get(token, KIND, consume=consume)
    return PendingSso.from_dict(data) if data else None


def load_parked(token: str | None) -> tuple[AppConfig | None, PendingSso] | None:
    """A parked request by its token, with its app (None when the app was removed meanwhile)."""
    pending = unpark(token, consume=False)
    if pending is None:
        return None
    return saml_app_config_by_id(pending.app_id), pending


def _authz_from_parked(data: dict[str, Any]) -> AuthzRequest:
    return PendingSso.from_dict(data).authz


pending_store.register_kind(KIND, _authz_from_parked)


# ---------------------------------------------------------------- issuing

def _expired(app: AppConfig) -> MetadataExpired:
    assert app.metadata_expires_at is not None
    return MetadataExpired(f"the app's metadata expired at its validUntil "
                           f"({app.metadata_expires_at:%Y-%m-%d %H:%M} UTC); a fresh signed document is needed")


def _denied(decision: Decision) -> SamlFlowError:
    if decision.reason is Reason.NO_AUTHN_CONTEXT:
        return AccessDenied(decision.explanation, reason=decision.reason, saml_status=STATUS_REQUESTER,
                            saml_sub_status=STATUS_NO_AUTHN_CONTEXT)
    if decision.reason is Reason.APP_DISABLED:
        return AppDisabled(decision.explanation)
    return AccessDenied(decision.explanation, reason=decision.reason, http_status=403)


SsoOutcome = Issued["IssuedResponse"] | NeedsLogin | NeedsReauthentication | NeedsSecondFactor | Denied


def proceed(pending: PendingSso, token: str | None, session: SessionView | None, settings: Settings,
            keys: Callable[[], KeySet], client: Client, now: datetime | None = None) -> SsoOutcome:
    """Answer a pending request for this browser session, or say what the user must do first.

    `token` names the parked request when it came back from a login detour (it is consumed once
    the request is answered or refused; an interaction keeps it, or parks the request anew).
    `keys` is called only when a Response is built, so a broken key store fails only then.
    """
    now = now or utcnow()
    app = saml_app_config_by_id(pending.app_id)
    ctx = pending.event_context(app)
    if session is not None:
        ctx.username = session.user.username
    if app is None:
        _consume(token)
        return Denied(_fail(UnknownApp("the app was removed while the request was pending"), ctx))
    if app.metadata_expired(now):   # expired while the request waited for a login
        _consume(token)
        return Denied(_fail(_expired(app), ctx))
    gate = authorize(pending.authz, app, session, client.ip, now)
    if isinstance(gate, LoginRequired):
        token = token or park(pending)
        return NeedsReauthentication(token) if gate.reauth else NeedsLogin(token)
    if isinstance(gate, SecondFactorRequired):
        return NeedsSecondFactor(token or park(pending), passkey_required=gate.passkey_required)
    _consume(token)
    if isinstance(gate, PassiveRefused):
        passive = AccessDenied(f"IsPassive was requested and the user would have to {_PASSIVE_NEEDS[gate.needed]}",
                               reason=Reason.NO_PASSIVE, saml_status=STATUS_RESPONDER,
                               saml_sub_status=STATUS_NO_PASSIVE)
        return Denied(_fail(passive, ctx, _reply_to(app, pending)))
    ctx.detail["policy"] = gate.decision.to_detail()
    if isinstance(gate, Refused):
        exc = _denied(gate.decision)
        return Denied(_fail(exc, ctx, _reply_to(app, pending) if exc.saml_status else None))
    assert isinstance(gate, Allowed) and session is not None
    try:
        return Issued(_issue(pending, app, session, gate.decision, ctx, settings, keys(), client, now))
    except SamlFlowError as exc:  # a failure while building (key store, pinned key, encryption)
        return Denied(exc if exc.context is not None else _fail(exc, ctx))


_PASSIVE_NEEDS = {"login": "sign in", "reauth": "sign in again", "mfa": "pass a second factor"}


def _consume(token: str | None) -> None:
    if token:
        unpark(token, consume=True)


def _issue(pending: PendingSso, app: AppConfig, session: SessionView, decision: Decision, ctx: EventContext,
           settings: Settings, keys: KeySet, client: Client, now: datetime) -> IssuedResponse:
    """Build, sign and record the Response for an allowed request (SamlFlowError with context otherwise)."""
    user = session.user
    authn_context = decision.authn_context or AC_PASSWORD_PROTECTED
    try:
        released = release_for(app, subject_of(app, user, amr=session.amr, auth_time=session.authn_at,
                                               mfa=session.mfa_at is not None))
        fmt, name_id = name_id_for(app, user, (pending.request or {}).get("nameid_format"), released.nameid_value)
    except SamlFlowError as exc:
        raise _fail(exc, ctx, _reply_to(app, pending)) from None
    session_index = session_index_for(session, app, name_id, fmt)
    spec = assertion_spec(app, session, released, name_id=name_id, name_id_format=fmt, session_index=session_index,
                          destination=pending.acs_url, in_response_to=pending.request_id,
                          authn_context=authn_context, settings=settings, now=now)
    try:
        xml = build_response(spec, signing_for(app, keys), encryptor_for(app))
    except SamlFlowError as exc:
        raise _fail(exc, ctx) from None
    except EncryptionError as exc:
        raise _fail(AppMisconfigured(f"assertion encryption failed: {exc}"), ctx) from None
    except ValueError as exc:   # text XML cannot carry (refused where it enters; this is the last guard)
        raise _fail(AppMisconfigured(f"the response could not be built: {str(exc)[:200]}",
                                     reason=Reason.INTERNAL_ERROR), ctx) from None
    ctx.response_id, ctx.assertion_id = spec.response_id, spec.assertion_id
    ctx.detail["authn_context"] = authn_context
    ctx.detail["nameid_format"] = fmt
    # The event row and the participant row are committed together by the caller's unit of work,
    # before the response leaves.
    if pending.acs_binding == BINDING_ARTIFACT:
        ctx.detail["response_binding"] = "artifact"
        artifact = issue_artifact(app, xml, spec.response_id, settings, now)
        record_event(ctx, Reason.OK, client_ip=client.ip, user_agent=client.user_agent)
        return IssuedResponse(acs_url=pending.acs_url, saml_response="", relay_state=pending.relay_state,
                              response_id=spec.response_id, artifact=artifact)
    record_event(ctx, Reason.OK, client_ip=client.ip, user_agent=client.user_agent)
    return IssuedResponse(acs_url=pending.acs_url, saml_response=base64.b64encode(xml).decode("ascii"),
                          relay_state=pending.relay_state, response_id=spec.response_id)


def error_response(exc: SamlFlowError, settings: Settings, keys: KeySet | None) -> IssuedResponse | None:
    """A signed SAML error Response for the SP, when the failure happened after a registered ACS was known."""
    if exc.reply_to is None or exc.saml_status is None:
        return None
    app, acs_url, in_response_to, relay_state, acs_binding = exc.reply_to
    try:
        signing = signing_for(app, keys) if keys is not None else None  # an error Response is always signed
    except SamlFlowError:
        signing = None
    rid, xml = build_error_response(issuer=app.idp_entity_id(settings.entity_id), destination=acs_url,
                                    in_response_to=in_response_to,
                                    status=exc.saml_status, sub_status=exc.saml_sub_status, message=None,
                                    now=utcnow(), signing=signing)
    if exc.context is not None:
        exc.context.response_id = rid
    if acs_binding == BINDING_ARTIFACT:   # the error Response travels as the ACS expects it: by artifact
        if exc.context is not None:
            exc.context.detail["response_binding"] = "artifact"
        return IssuedResponse(acs_url=acs_url, saml_response="", relay_state=relay_state, response_id=rid,
                              artifact=issue_artifact(app, xml, rid, settings))
    return IssuedResponse(acs_url=acs_url, saml_response=base64.b64encode(xml).decode("ascii"),
                          relay_state=relay_state, response_id=rid)
