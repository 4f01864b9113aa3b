"""THE use case: an SSO request (SP- or IdP-initiated) + a user session → checks → signed Response → event.

Validation order for SP-initiated requests (each failure has its reason code and issues nothing):
decode → parse → issuer is a registered app → app enabled → signature (only the app's metadata
certificates) → Destination → IssueInstant window → ACS resolved from metadata → replay cache.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, select, update

from idp.auth.sessions import SessionView, UserView
from idp.certs.keystore import KeyFamily, KeySet, LoadedKey
from idp.config import Settings
from idp.errors import (
    AccessDenied,
    AcsNotRegistered,
    AppDisabled,
    AppMisconfigured,
    BadSignature,
    EventContext,
    MalformedRequest,
    ReplayedRequest,
    RequestExpired,
    SamlFlowError,
    SigningKeyUnavailable,
    UnknownApp,
    UnknownSp,
    UnsupportedBinding,
    WrongDestination,
)
from idp.events import record_event
from idp.extensions import db
from idp.flows import pending as pending_store
from idp.models import PersistentId, SessionParticipant, User, utcnow
from idp.policy.engine import evaluate
from idp.policy.model import AccessContext, Decision, Effect
from idp.prepared import Prepared
from idp.reasons import Reason
from idp.replay import remember_request
from idp.saml.bindings import BindingError, DecodedMessage, check_relay_state
from idp.saml.constants import (
    AC_PASSWORD_PROTECTED,
    BINDING_POST,
    NAMEID_EMAIL,
    NAMEID_FORMATS,
    NAMEID_PERSISTENT,
    NAMEID_TRANSIENT,
    NAMEID_UNSPECIFIED,
    STATUS_INVALID_NAMEID_POLICY,
    STATUS_NO_AUTHN_CONTEXT,
    STATUS_NO_PASSIVE,
    STATUS_REQUESTER,
    STATUS_RESPONDER,
    InitiatedBy,
    SignatureAlgorithm,
    SignMode,
)
from idp.saml.encryption import EncryptionError, encrypt_assertion_xml
from idp.saml.requests import AuthnRequest, RequestParseError, parse_authn_request, peek_issuer
from idp.saml.responses import AssertionSpec, SigningChoice, build_error_response, build_response, map_attributes
from idp.saml.signing import SignatureError, allowed_algorithms, is_signed, verify_message
from idp.saml.sp_metadata import Endpoint
from idp.services.apps import AppConfig, app_config_by_entity_id, app_config_by_id, app_config_by_slug
from idp.services.org import trusted_ranges
from idp.services.users import user_fields


@dataclass(frozen=True, slots=True)
class Client:
    ip: str | None
    user_agent: str | None


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

    @property
    def request_id(self) -> str | None:
        return self.request["id"] if self.request else None

    @property
    def force_authn(self) -> bool:
        return bool(self.request and self.request.get("force_authn"))

    @property
    def is_passive(self) -> bool:
        return bool(self.request and self.request.get("is_passive"))

    def to_dict(self) -> dict[str, Any]:
        return {"app_id": self.app_id, "initiated_by": self.initiated_by, "binding": self.binding,
                "acs_url": self.acs_url, "relay_state": self.relay_state,
                "received_at": self.received_at.isoformat(), "request": self.request}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PendingSso:
        return cls(app_id=int(d["app_id"]), initiated_by=d["initiated_by"], binding=d.get("binding"),
                   acs_url=d["acs_url"], relay_state=d.get("relay_state"),
                   received_at=datetime.fromisoformat(d["received_at"]), request=d.get("request"))

    def event_context(self, app: AppConfig | None) -> EventContext:
        return EventContext(app_slug=app.slug if app else None, sp_entity_id=app.entity_id if app else None,
                            initiated_by=self.initiated_by, binding=self.binding, request_id=self.request_id)


@dataclass(frozen=True, slots=True)
class IssuedResponse:
    """What the browser must POST to the SP's ACS."""

    acs_url: str
    saml_response: str                # base64
    relay_state: str | None
    response_id: str


# ---------------------------------------------------------------- receiving requests

def _fail(exc: SamlFlowError, ctx: EventContext, reply_to: tuple[AppConfig, str, str | None, str | None] | None = None
          ) -> SamlFlowError:
    exc.context = ctx
    exc.reply_to = reply_to
    return exc


def resolve_acs(app: AppConfig, req: AuthnRequest) -> str:
    """The ACS URL to answer at: exact match against the app's registered HTTP-POST ACS (saml-core §3.4.1)."""
    if req.protocol_binding is not None and req.protocol_binding != BINDING_POST:
        raise UnsupportedBinding(f"ProtocolBinding {req.protocol_binding[:100]} is not supported; use HTTP-POST")
    if req.acs_url is not None:
        for ep in app.sp.acs:
            if ep.location == req.acs_url:
                if ep.binding != BINDING_POST:
                    continue
                return ep.location
        raise AcsNotRegistered(f"AssertionConsumerServiceURL {req.acs_url[:200]!r} is not registered for this app")
    if req.acs_index is not None:
        match: Endpoint | None = next((ep for ep in app.sp.acs if ep.index == req.acs_index), None)
        if match is None:
            raise AcsNotRegistered(f"AssertionConsumerServiceIndex {req.acs_index} is not registered for this app")
        if match.binding != BINDING_POST:
            raise UnsupportedBinding(f"the ACS at index {req.acs_index} does not use HTTP-POST")
        return match.location
    return app.sp.default_post_acs().location


def receive_authn_request(msg: DecodedMessage, raw_query: bytes | None, settings: Settings,
                          now: datetime | None = None) -> tuple[AppConfig, PendingSso]:
    """Validate an SP-initiated AuthnRequest; raises SamlFlowError (with context) on any problem."""
    now = now or utcnow()
    ctx = EventContext(initiated_by=InitiatedBy.SP, binding=msg.binding)
    max_bytes = settings.max_inflated_bytes
    try:
        req = parse_authn_request(msg.xml, max_bytes)
    except RequestParseError as exc:
        ctx.sp_entity_id = peek_issuer(msg.xml, max_bytes)
        raise _fail(MalformedRequest(f"the AuthnRequest is malformed: {exc}"), ctx) from None
    ctx.sp_entity_id, ctx.request_id = req.issuer, req.id
    app = app_config_by_entity_id(req.issuer)
    if app is None:
        raise _fail(UnknownSp(f"no connected app has the entityID {req.issuer[:200]!r}"), ctx)
    ctx.app_slug = app.slug
    if not app.enabled:
        raise _fail(AppDisabled("this app is disabled"), ctx)
    # Signature before anything else is trusted.
    allowed = allowed_algorithms(app.settings.allow_sha1)
    certs = app.sp.signing_certs
    signed = is_signed(msg.binding, msg.signed_query, req.root)
    required = app.requires_signed_requests or settings.want_authn_requests_signed
    if signed and (certs or required):
        try:
            ctx.detail["signature_algorithm"] = verify_message(msg.binding, raw_query, req.root, "SAMLRequest",
                                                               certs, allowed)
        except SignatureError as exc:
            raise _fail(BadSignature(f"the request signature was rejected: {exc}"), ctx) from None
    elif required:
        raise _fail(BadSignature("this app must sign its AuthnRequests and this one is not signed"), ctx)
    verified = signed and bool(certs or required)
    if req.destination is not None and req.destination != settings.url("/saml/sso"):
        raise _fail(WrongDestination(f"Destination {req.destination[:200]!r} is not this IdP's SSO URL"), ctx)
    if req.destination is None and verified:
        # saml-bindings-2.0-os §3.4.5.2 / §3.5.5.2: a signed request MUST carry Destination
        raise _fail(WrongDestination("a signed request must carry a Destination"), ctx)
    window = timedelta(seconds=settings.request_max_age_s)
    if abs(now - req.issue_instant) > window:
        raise _fail(RequestExpired(f"IssueInstant {req.issue_instant.isoformat()} is outside the allowed "
                                   f"{settings.request_max_age_s}s window"), ctx)
    try:
        acs_url = resolve_acs(app, req)
    except SamlFlowError as exc:
        raise _fail(exc, ctx) from None
    if not remember_request(req.issuer, req.id, settings.request_max_age_s):
        raise _fail(ReplayedRequest(f"request {req.id[:100]!r} from this app was already used"), ctx)
    pending = PendingSso(app_id=app.id, initiated_by=InitiatedBy.SP, binding=msg.binding, acs_url=acs_url,
                         relay_state=msg.relay_state, received_at=now, request=req.to_dict())
    return app, pending


def start_idp_initiated(slug: str, relay_state: str | None, now: datetime | None = None) -> tuple[AppConfig,
                                                                                                PendingSso]:
    ctx = EventContext(initiated_by=InitiatedBy.IDP)
    app = app_config_by_slug(slug)
    if app is None:
        # not stored as app_slug: anonymous callers must not create new values (metric labels, filters)
        ctx.detail["requested_slug"] = slug[:100]
        raise _fail(UnknownApp(f"no connected app {slug[:100]!r}"), ctx)
    ctx.app_slug = app.slug
    ctx.sp_entity_id = app.entity_id
    if not app.enabled:
        raise _fail(AppDisabled("this app is disabled"), ctx)
    try:
        relay_state = check_relay_state(relay_state)
    except BindingError as exc:
        raise _fail(MalformedRequest(str(exc)), ctx) from None
    return app, PendingSso(app_id=app.id, initiated_by=InitiatedBy.IDP, binding=None,
                           acs_url=app.sp.default_post_acs().location, relay_state=relay_state,
                           received_at=now or utcnow())


# ---------------------------------------------------------------- parking requests across the login detour

def park(pending: PendingSso) -> str:
    return pending_store.put({"kind": "sso", **pending.to_dict()})


def unpark(token: str, *, consume: bool) -> PendingSso | None:
    data = pending_store.get(token, "sso", consume=consume)
    return PendingSso.from_dict(data) if data else None


# ---------------------------------------------------------------- issuing

def _name_id(app: AppConfig, user: User | UserView, requested_format: str | None) -> tuple[str, str]:
    """(format URI, value): the request's NameIDPolicy wins when it names a format we can produce."""
    fmt = app.nameid_format_uri
    if requested_format and requested_format != NAMEID_UNSPECIFIED and requested_format != fmt:
        if requested_format not in NAMEID_FORMATS.values():
            raise AccessDenied(f"NameID format {requested_format[:100]} is not supported",
                               reason=Reason.UNSUPPORTED_NAMEID_FORMAT, saml_status=STATUS_REQUESTER,
                               saml_sub_status=STATUS_INVALID_NAMEID_POLICY)
        fmt = requested_format
    if fmt == NAMEID_EMAIL:
        return fmt, user.email
    if fmt == NAMEID_PERSISTENT:
        return fmt, persistent_id(user, app.entity_id)
    if fmt == NAMEID_TRANSIENT:
        return fmt, "_" + secrets.token_hex(16)
    value = str(user_fields(user)[app.settings.nameid_field])
    return fmt, value


def persistent_id(user: User | UserView, entity_id: str) -> str:
    """Pairwise, opaque, stable: stored on first use so it survives restarts and secret changes."""
    row = db.session.scalar(select(PersistentId).where(PersistentId.user_id == user.id,
                                                       PersistentId.app_entity_id == entity_id))
    if row is not None:
        return row.value
    seed = hmac.new(secrets.token_bytes(32), f"{user.id}|{entity_id}".encode(), hashlib.sha256).digest()
    value = base64.b32encode(seed[:20]).decode("ascii").lower()
    db.session.add(PersistentId(user_id=user.id, app_entity_id=entity_id, value=value))
    db.session.flush()
    return value


_PARTICIPANT = Prepared(select(SessionParticipant.id, SessionParticipant.session_index, SessionParticipant.name_id)
                        .where(SessionParticipant.session_id == bindparam("sid"),
                               SessionParticipant.app_id == bindparam("aid")))
_PARTICIPANT_INSERT = Prepared(insert(SessionParticipant).values(
    session_id=bindparam("sid"), app_id=bindparam("aid"), name_id=bindparam("nid"), name_id_format=bindparam("fmt"),
    session_index=bindparam("idx"), created_at=bindparam("now")))
_PARTICIPANT_UPDATE = Prepared(update(SessionParticipant).where(SessionParticipant.id == bindparam("pid"))
                               .values(name_id=bindparam("nid"), name_id_format=bindparam("fmt")))


def _participant(session: SessionView, app: AppConfig, name_id: str, fmt: str) -> str:
    """Record that `app` got an assertion in this session (for single logout); returns its SessionIndex.

    Prepared statements, not the ORM: this runs on every SSO. A second SSO into the same app keeps
    the SessionIndex and takes the latest NameID (transient IDs change every time).
    """
    row = _PARTICIPANT.first({"sid": session.id, "aid": app.id})
    if row is None:
        index = "_" + secrets.token_hex(16)
        _PARTICIPANT_INSERT.run({"sid": session.id, "aid": app.id, "nid": name_id, "fmt": fmt, "idx": index,
                                 "now": utcnow()})
        return index
    participant_id, index, current_name_id = row
    if current_name_id != name_id:
        _PARTICIPANT_UPDATE.run({"pid": participant_id, "nid": name_id, "fmt": fmt})
    return str(index)


_FAMILY_SWAP: dict[str, str] = {
    SignatureAlgorithm.RSA_SHA256: SignatureAlgorithm.ECDSA_SHA256,
    SignatureAlgorithm.RSA_SHA384: SignatureAlgorithm.ECDSA_SHA384,
    SignatureAlgorithm.RSA_SHA512: SignatureAlgorithm.ECDSA_SHA512,
    SignatureAlgorithm.RSA_SHA1: SignatureAlgorithm.ECDSA_SHA256,
}
_FAMILY_SWAP_BACK = {v: k for k, v in _FAMILY_SWAP.items() if k != SignatureAlgorithm.RSA_SHA1}


def signing_key_for(app: AppConfig, keys: KeySet) -> LoadedKey:
    """The app's pinned key (any published one) or the active key; never silently another one."""
    kid = app.settings.signing_key
    if not kid:
        return keys.active
    key = keys.get(kid)
    if key is None:
        raise SigningKeyUnavailable(f"the app is pinned to signing key {kid}, which is no longer available")
    return key


def algorithm_for(app: AppConfig, key: LoadedKey) -> str:
    """The app's algorithm, in the family of the key (an EC key cannot make an RSA signature)."""
    alg = app.settings.signature_algorithm
    if key.key_type == KeyFamily.EC:
        return _FAMILY_SWAP.get(alg, alg)
    return _FAMILY_SWAP_BACK.get(alg, alg)


def signing_for(app: AppConfig, keys: KeySet) -> SigningChoice:
    mode = SignMode(app.settings.sign)
    key = signing_key_for(app, keys)
    return SigningChoice(key=key.private_key, cert_b64=key.cert_b64, algorithm=algorithm_for(app, key),
                         sign_response=mode.signs_response, sign_assertion=mode.signs_assertion)


def encryptor_for(app: AppConfig) -> Callable[[bytes], Any] | None:
    if not app.settings.encrypt_assertion:
        return None
    certs = app.sp.encryption_certs
    if not certs:
        raise AppMisconfigured("assertion encryption is on but the app's metadata has no encryption certificate")
    algorithm = app.settings.encryption_algorithm
    return lambda assertion_xml: encrypt_assertion_xml(assertion_xml, certs[0], algorithm)


class InteractionRequired(Exception):
    """The user must do something first: "reauth" (password again) or "mfa" (second factor)."""

    def __init__(self, kind: str, decision: Decision) -> None:
        super().__init__(kind)
        self.kind = kind
        self.decision = decision


def access_context(app: AppConfig, user: User | UserView, pending: PendingSso | None, client_ip: str | None, *,
                   authn_at: datetime | None, mfa_passed: bool, now: datetime,
                   org_ranges: tuple[str, ...] | None = None) -> AccessContext:
    req = (pending.request if pending else None) or {}
    return AccessContext(
        app_slug=app.slug, app_enabled=app.enabled, policy=app.settings.policy,
        username=user.username, user_disabled=user.disabled, user_groups=frozenset(user.group_names),
        client_ip=client_ip, org_ip_ranges=trusted_ranges() if org_ranges is None else org_ranges,
        session_age_s=(now - authn_at).total_seconds() if authn_at else None,
        mfa_passed=mfa_passed, mfa_enrolled=user.mfa_enrolled,
        requested_comparison=req.get("requested_context_comparison"),
        requested_refs=tuple(req.get("requested_context_refs") or ()),
    )


def decide(pending: PendingSso, app: AppConfig, user: User | UserView, client_ip: str | None, *,
           authn_at: datetime | None, mfa_passed: bool, now: datetime | None = None) -> Decision:
    now = now or utcnow()
    return evaluate(access_context(app, user, pending, client_ip, authn_at=authn_at, mfa_passed=mfa_passed, now=now))


def _denied(decision: Decision) -> SamlFlowError:
    if decision.reason is Reason.NO_AUTHN_CONTEXT:
        return AccessDenied(decision.explanation, reason=decision.reason, saml_status=STATUS_REQUESTER,
                            saml_sub_status=STATUS_NO_AUTHN_CONTEXT)
    if decision.reason is Reason.APP_DISABLED:
        return AppDisabled(decision.explanation)
    exc = AccessDenied(decision.explanation, reason=decision.reason, http_status=403)
    return exc


def issue_response(pending: PendingSso, session: SessionView, settings: Settings, keys: KeySet, client: Client,
                   now: datetime | None = None) -> IssuedResponse:
    """Run the policy for this user and app, then build, sign and record.

    Raises SamlFlowError on a denial, InteractionRequired when the user must re-authenticate or
    pass a second factor first (the caller parks the request and sends the browser there).
    """
    now = now or utcnow()
    app = app_config_by_id(pending.app_id)
    ctx = pending.event_context(app)
    user = session.user
    ctx.username = user.username
    if app is None:
        raise _fail(UnknownApp("the app was removed while the request was pending"), ctx)
    reply = (app, pending.acs_url, pending.request_id, pending.relay_state)
    decision = decide(pending, app, user, client.ip, authn_at=session.authn_at,
                      mfa_passed=session.mfa_at is not None, now=now)
    ctx.detail["policy"] = decision.to_detail()
    if decision.effect is Effect.STEP_UP:
        raise InteractionRequired("mfa", decision)
    if decision.effect is Effect.REAUTH:
        raise InteractionRequired("reauth", decision)
    if decision.effect is not Effect.ALLOW:
        exc = _denied(decision)
        raise _fail(exc, ctx, reply if exc.saml_status else None)
    authn_context = decision.authn_context or AC_PASSWORD_PROTECTED
    try:
        fmt, name_id = _name_id(app, user, (pending.request or {}).get("nameid_format"))
    except SamlFlowError as exc:
        raise _fail(exc, ctx, reply) from None
    session_index = _participant(session, app, name_id, fmt)
    fields = user_fields(user)
    session_end = session.created_at + timedelta(seconds=settings.session_lifetime_s)
    if app.settings.session_timeout:
        session_end = min(session_end, session.authn_at + timedelta(minutes=app.settings.session_timeout))
    spec = AssertionSpec(
        issuer=settings.entity_id, audience=app.entity_id, destination=pending.acs_url,
        in_response_to=pending.request_id, name_id=name_id, name_id_format=fmt,
        session_index=session_index, authn_instant=session.authn_at, authn_context=authn_context,
        now=now, lifetime=timedelta(seconds=settings.assertion_lifetime_s),
        clock_skew=timedelta(seconds=settings.clock_skew_s),
        session_not_on_or_after=session_end,
        attributes=map_attributes(app.settings.attributes, fields),
        sp_name_qualifier=app.entity_id if fmt == NAMEID_PERSISTENT else None,
    )
    try:
        xml = build_response(spec, signing_for(app, keys), encryptor_for(app))
    except SamlFlowError as exc:
        raise _fail(exc, ctx) from None
    except EncryptionError as exc:
        raise _fail(AppMisconfigured(f"assertion encryption failed: {exc}"), ctx) from None
    ctx.response_id, ctx.assertion_id = spec.response_id, spec.assertion_id
    ctx.detail["authn_context"] = authn_context
    ctx.detail["nameid_format"] = fmt
    # The event row and the participant row commit together, before the response leaves.
    record_event(ctx, Reason.OK, client_ip=client.ip, user_agent=client.user_agent)
    return IssuedResponse(acs_url=pending.acs_url, saml_response=base64.b64encode(xml).decode("ascii"),
                          relay_state=pending.relay_state, response_id=spec.response_id)


def error_response(exc: SamlFlowError, settings: Settings, keys: KeySet | None) -> IssuedResponse | None:
    """A signed SAML error Response for the SP, when the failure happened after a registered ACS was known."""
    if exc.reply_to is None or exc.saml_status is None:
        return None
    app, acs_url, in_response_to, relay_state = exc.reply_to
    try:
        signing = signing_for(app, keys) if keys is not None else None  # an error Response is always signed
    except SamlFlowError:
        signing = None
    rid, xml = build_error_response(issuer=settings.entity_id, destination=acs_url, in_response_to=in_response_to,
                                    status=exc.saml_status, sub_status=exc.saml_sub_status, message=None,
                                    now=utcnow(), signing=signing)
    if exc.context is not None:
        exc.context.response_id = rid
    return IssuedResponse(acs_url=acs_url, saml_response=base64.b64encode(xml).decode("ascii"),
                          relay_state=relay_state, response_id=rid)


def no_passive(pending: PendingSso, app: AppConfig) -> SamlFlowError:
    exc = AccessDenied("IsPassive was requested and there is no session", reason=Reason.NO_PASSIVE,
                       saml_status=STATUS_RESPONDER, saml_sub_status=STATUS_NO_PASSIVE)
    return _fail(exc, pending.event_context(app), (app, pending.acs_url, pending.request_id, pending.relay_state))


_RESUME_PREFIX = "/saml/continue/"


def pending_from_next(next_url: str) -> tuple[str, PendingSso] | None:
    """The parked SSO request a login/MFA page will resume, if `next` points at one."""
    if not next_url.startswith(_RESUME_PREFIX):
        return None
    token = next_url[len(_RESUME_PREFIX):].split("?", 1)[0]
    pending = unpark(token, consume=False)
    return (token, pending) if pending else None


def needs_mfa_at_login(next_url: str, user: User, client_ip: str | None) -> bool:
    """Whether the request being resumed needs a second factor: then the password alone opens no session."""
    found = pending_from_next(next_url)
    if found is None:
        return False
    app = app_config_by_id(found[1].app_id)
    if app is None:
        return False
    now = utcnow()
    decision = decide(found[1], app, user, client_ip, authn_at=now, mfa_passed=False, now=now)
    return decision.effect is Effect.STEP_UP


def record_mfa_failure(next_url: str, user: User, client: Client, why: str) -> int | None:
    """An `mfa_failed` event when the failed second factor was for a pending SSO; returns the event id."""
    found = pending_from_next(next_url)
    if found is None:
        return None
    app = app_config_by_id(found[1].app_id)
    ctx = found[1].event_context(app)
    ctx.username = user.username
    ctx.detail["message"] = why
    return record_event(ctx, Reason.MFA_FAILED, client_ip=client.ip, user_agent=client.user_agent).id
