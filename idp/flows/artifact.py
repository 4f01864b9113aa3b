"""HTTP-Artifact responses: park a signed Response under a one-time artifact; resolve it over SOAP for the app it
was issued to (saml-bindings-2.0-os §3.6.5, saml-core-2.0-os §3.5.3).

The message lives in the shared state (database or Redis, like parked requests), so any instance can resolve
it. Resolution order (each refusal is an `artifact` event with its reason, and nothing is released):
SOAP envelope → ArtifactResolve shape → Issuer is a registered, enabled app → the inbound pipeline (signature
required, with the app's metadata certificates only → Destination → IssueInstant window → replay of the
ArtifactResolve ID) → the artifact: known, issued to this app, not expired, not resolved before. A request
that cannot be authenticated gets Status Requester/RequestDenied; an authenticated request for an artifact
it may not have gets Success with no message (core §3.5.3: "even if it does not return the corresponding
message").
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..certs.keystore import KeyFamily, KeySet
from ..config import Settings
from ..errors import AppDisabled, EventContext, MalformedRequest, MetadataExpired, SamlFlowError, UnknownSp
from ..events import record_event
from ..models import utcnow
from ..reasons import Reason
from ..saml.artifact import (
    ArtifactError,
    ArtifactResolve,
    build_artifact_response,
    new_artifact,
    parse_artifact,
    parse_artifact_resolve,
    source_id,
)
from ..saml.bindings import DecodedMessage
from ..saml.constants import (
    STATUS_REQUEST_DENIED,
    STATUS_REQUESTER,
    STATUS_SUCCESS,
    BindingName,
    SignatureAlgorithm,
)
from ..saml.requests import RequestParseError, peek_issuer
from ..saml.responses import SigningChoice
from ..saml.soap import SoapError, parse_soap_message
from ..saml.soap import build_soap_fault as soap_fault
from ..services.apps import AppConfig, app_config_by_entity_id
from ..state import shared
from .authorize import Client
from .inbound import InboundMessage, InboundRules, check_inbound
from .saml_keys import algorithm_for, signing_key_for

KIND = "artifact"
ENDPOINT_PATH = "/saml/artifact"
# an expired artifact is kept this much longer, so that a late resolve is told "expired", not "unknown"
EXPIRED_GRACE_S = 300
_RESOLVED_PREFIX = "#artifact"


def _token(handle_hex: str) -> str:
    return f"art_{handle_hex}"


def issue_artifact(app: AppConfig, message: bytes, response_id: str, settings: Settings,
                   now: datetime | None = None) -> str:
    """Store the signed message for one resolution by `app` and return the SAMLart value for the browser."""
    now = now or utcnow()
    art = new_artifact(app.idp_entity_id(settings.entity_id))
    shared().put_at(_token(art.handle_hex), {
        "kind": KIND, "app_id": app.id, "response_id": response_id,
        "message": base64.b64encode(message).decode("ascii"),
        "expires_at": (now + timedelta(seconds=settings.artifact_ttl_s)).isoformat(),
    }, settings.artifact_ttl_s + EXPIRED_GRACE_S)
    return art.encode()


@dataclass(frozen=True, slots=True)
class SoapAnswer:
    """What goes back on the SOAP connection: a SOAP envelope and its HTTP status (500 only with a SOAP fault)."""

    body: bytes
    status: int = 200


class _Refused(Exception):
    """An authenticated ArtifactResolve for an artifact it may not have: answered Success with no message."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


def resolve_artifact(body: bytes, settings: Settings, keys: Callable[[], KeySet], client: Client,
                     now: datetime | None = None) -> SoapAnswer:
    """Answer one SOAP ArtifactResolve; records the event (the caller commits)."""
    now = now or utcnow()
    ctx = EventContext(event_type="artifact", binding="soap", protocol="saml")
    app: AppConfig | None = None
    try:
        keyset = keys()   # before anything is consumed: no key, no answer, the artifact stays
    except SamlFlowError as exc:
        _record(ctx, exc, client)
        return SoapAnswer(soap_fault("the identity provider cannot sign its answer now", server=True), 500)
    try:
        xml = parse_soap_message(body, settings.max_request_bytes)
        req = parse_artifact_resolve(xml, settings.max_request_bytes)
    except (SoapError, RequestParseError) as exc:
        ctx.sp_entity_id = _peek(body, settings)
        _record(ctx, MalformedRequest(f"the ArtifactResolve is malformed: {exc}"), client)
        return SoapAnswer(soap_fault("the request is not a SOAP-wrapped SAML ArtifactResolve"), 500)
    ctx.sp_entity_id, ctx.request_id = req.issuer, req.id
    try:
        app = _authenticate(req, xml, ctx, settings, now)
    except SamlFlowError as exc:     # not authenticated: the requester learns nothing about artifacts
        _record(ctx, exc, client)
        return SoapAnswer(_answer(_default_signing(keyset), settings.entity_id, req.id, None, denied=True))
    issuer = app.idp_entity_id(settings.entity_id)
    try:
        signing = _app_signing(app, keyset)
    except SamlFlowError as exc:     # the app is pinned to a key that is gone: refuse, consume nothing
        _record(ctx, exc, client)
        return SoapAnswer(soap_fault("the identity provider cannot sign its answer now", server=True), 500)
    try:
        message = _take(req.artifact, app, ctx, settings, now)
    except _Refused as exc:
        ctx.detail["message"] = exc.message
        record_event(ctx, exc.reason, client_ip=client.ip, user_agent=client.user_agent)
        return SoapAnswer(_answer(signing, issuer, req.id, None, denied=False))
    record_event(ctx, Reason.OK, client_ip=client.ip, user_agent=client.user_agent)
    return SoapAnswer(_answer(signing, issuer, req.id, message, denied=False))


def _peek(body: bytes, settings: Settings) -> str | None:
    try:
        return peek_issuer(parse_soap_message(body, settings.max_request_bytes), settings.max_request_bytes)
    except SoapError:
        return None


def _record(ctx: EventContext, exc: SamlFlowError, client: Client) -> None:
    ctx.detail.setdefault("message", exc.message)
    record_event(ctx, exc.reason, client_ip=client.ip, user_agent=client.user_agent)


def _authenticate(req: ArtifactResolve, xml: bytes, ctx: EventContext, settings: Settings,
                  now: datetime) -> AppConfig:
    app = app_config_by_entity_id(req.issuer)
    if app is None:
        raise UnknownSp(f"no connected app has the entityID {req.issuer[:200]!r}")
    ctx.app_slug = app.slug
    if not app.enabled:
        raise AppDisabled("this app is disabled")
    if app.metadata_expired(now):
        raise MetadataExpired("the app's metadata expired at its validUntil")
    rules = InboundRules(endpoint_url=settings.url(ENDPOINT_PATH), signature_required=True,
                         verify_when_present=True, destination_required=False, signed_needs_destination=False)
    inbound = InboundMessage(kind="ArtifactResolve", id=req.id, issuer=req.issuer, destination=req.destination,
                             issue_instant=req.issue_instant, not_on_or_after=None, root=req.root)
    msg = DecodedMessage(xml=xml, relay_state=None, binding=BindingName.POST, signed_query=False)  # enveloped
    ctx.detail.update(check_inbound(msg, None, inbound, app, rules, settings, now))
    return app


def _take(value: str, app: AppConfig, ctx: EventContext, settings: Settings, now: datetime) -> bytes:
    """Consume the artifact for `app` and return its message; _Refused otherwise."""
    try:
        art = parse_artifact(value)
    except ArtifactError as exc:
        raise _Refused(Reason.UNKNOWN_ARTIFACT, str(exc)) from None
    ctx.detail["artifact_handle"] = art.handle_hex[:8]   # a prefix: enough to correlate, useless to resolve
    if art.source_id != source_id(app.idp_entity_id(settings.entity_id)):
        raise _Refused(Reason.UNKNOWN_ARTIFACT, "the artifact's SourceID is not this IdP's (for this app)")
    token = _token(art.handle_hex)
    store = shared()
    data = store.get(token, KIND, consume=False)
    if data is None:
        if store.was_remembered(f"{_RESOLVED_PREFIX}\n{art.handle_hex}"):
            raise _Refused(Reason.ARTIFACT_REPLAYED, "the artifact was already resolved")
        raise _Refused(Reason.UNKNOWN_ARTIFACT, "no such artifact (never issued, or long expired)")
    if data.get("app_id") != app.id:
        # not consumed: the app it was issued to can still resolve it
        raise _Refused(Reason.ARTIFACT_WRONG_APP, "the artifact was issued to another app")
    ctx.response_id = data.get("response_id")
    if datetime.fromisoformat(data["expires_at"]) <= now:
        store.get(token, KIND, consume=True)
        raise _Refused(Reason.ARTIFACT_EXPIRED, f"the artifact expired after {settings.artifact_ttl_s}s")
    taken = store.get(token, KIND, consume=True)
    store.remember_once(f"{_RESOLVED_PREFIX}\n{art.handle_hex}", 2 * (settings.artifact_ttl_s + EXPIRED_GRACE_S))
    if taken is None:   # another resolve consumed it in between
        raise _Refused(Reason.ARTIFACT_REPLAYED, "the artifact was already resolved")
    return base64.b64decode(taken["message"])


def _default_signing(keyset: KeySet) -> SigningChoice:
    key = keyset.active
    algorithm = SignatureAlgorithm.ECDSA_SHA256 if key.key_type == KeyFamily.EC else SignatureAlgorithm.RSA_SHA256
    return SigningChoice(key=key.private_key, algorithm=algorithm, cert_b64=key.cert_b64)


def _app_signing(app: AppConfig, keyset: KeySet) -> SigningChoice:
    """The app's key (its pin, or the active key) and algorithm, whatever it signs in SSO Responses: the
    ArtifactResponse is always signed."""
    key = signing_key_for(app, keyset)
    return SigningChoice(key=key.private_key, algorithm=algorithm_for(app, key), cert_b64=key.cert_b64)


def _answer(signing: SigningChoice, issuer: str, in_response_to: str, message: bytes | None, *,
            denied: bool) -> bytes:
    """The signed ArtifactResponse in its SOAP envelope."""
    return build_artifact_response(
        issuer=issuer, in_response_to=in_response_to,
        status=STATUS_REQUESTER if denied else STATUS_SUCCESS,
        sub_status=STATUS_REQUEST_DENIED if denied else None,
        message=message, now=utcnow(), signing=signing)
