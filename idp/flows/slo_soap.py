"""SAML single logout over the SOAP binding (saml-profiles-2.0-os §4.4.3.4, §4.4.4; saml-bindings-2.0-os §3.2).

For each SAML app of an ending IdP session whose metadata lists a SingleLogoutService with the SOAP binding, the
IdP POSTs a signed LogoutRequest (enveloped signature; the app's NameID, format and SessionIndex from the
session's participant row; the app's issuer) in a SOAP 1.1 envelope and reads the answer on the same connection.
No browser is involved, so this reaches apps when nobody's browser can carry a message (an admin ending a
session) and apps that publish only a SOAP endpoint.

The answer counts as a logout only when it is a LogoutResponse that answers our request (InResponseTo), comes
from the app (Issuer), is fresh (IssueInstant within IDP_REQUEST_MAX_AGE) and says Success, and when the app is
authenticated: either the LogoutResponse is signed with a certificate of the app's metadata (a signature that is
present is always verified), or, unsigned, it came over https from the endpoint URL of the app's metadata, where
TLS (system CAs, the host name checked, the vetted address pinned, no redirect followed) authenticated the
responder (saml-profiles-2.0-os §4.4.4.2 "signed or otherwise authenticated"; saml-bindings-2.0-os §3.2.2.2).
An unsigned answer over plain http authenticates nothing and is refused. A SOAP fault, a non-200 answer, a
timeout or a refused address is a failure. Nothing stops the logout: every app's outcome is an event. Destination
is not checked and no replay cache is consulted: the SOAP binding needs no Destination, and the answer comes back
on the IdP's own connection, bound to a fresh request by InResponseTo.

Database reads happen before the exchange (the caller's thread), the exchanges run in parallel in a small
thread pool (no database session there, each bounded by IDP_SAML_BACKCHANNEL_TIMEOUT), and the events are
written after, in the caller's unit of work (which therefore stays open, with the ended session's row written,
for at most about one timeout).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from ..certs.keystore import KeySet
from ..config import Settings
from ..errors import EventContext, SamlFlowError
from ..events import record_event
from ..models import utcnow
from ..reasons import Reason
from ..saml.constants import BINDING_POST, BINDING_REDIRECT, BINDING_SOAP, STATUS_SUCCESS
from ..saml.requests import RequestParseError, parse_logout_response
from ..saml.responses import build_logout_request
from ..saml.signing import SignatureError, allowed_algorithms, has_signature, verify_enveloped
from ..saml.soap import SOAP_ACTION, SOAP_CONTENT_TYPE, SoapError, SoapFault, build_soap_envelope, parse_soap_message
from ..saml.sp_metadata import Endpoint
from ..services import ServiceError
from ..services.apps import AppConfig
from ..services.fetch import http_request
from .authorize import Client
from .saml_keys import signing_for

BINDING = "soap"                # the binding events name
MAX_PARALLEL = 8                # exchanges at once (one logout rarely has more SOAP apps)
MAX_ANSWER_BYTES = 256 * 1024   # a LogoutResponse is a few kB; the hardened parser gets at most this
REQUEST_LIFETIME = timedelta(minutes=5)


def soap_endpoint(app: AppConfig) -> Endpoint | None:
    """The app's SOAP SingleLogoutService (the first one in its metadata), or None."""
    return next((e for e in app.saml.slo if e.binding == BINDING_SOAP), None)


def has_front_channel(app: AppConfig) -> bool:
    return any(e.binding in (BINDING_REDIRECT, BINDING_POST) for e in app.saml.slo)


@dataclass(frozen=True, slots=True)
class SoapTarget:
    """One prepared exchange: everything the worker thread needs, no database objects."""

    app_id: int
    app_slug: str
    entity_id: str
    url: str
    request_id: str
    envelope: bytes = field(repr=False)
    certs: tuple[str, ...] = field(repr=False)
    algorithms: frozenset[str] = field(repr=False)


@dataclass(frozen=True, slots=True)
class SoapOutcome:
    """One app's result: Reason.LOGOUT when it verifiably logged out, else the reason it did not."""

    app_id: int
    app_slug: str
    entity_id: str
    request_id: str | None
    reason: Reason
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.reason == Reason.LOGOUT


class _Refused(Exception):
    def __init__(self, reason: Reason, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.reason = reason
        self.detail = {"error_description": message[:500], **detail}


def prepare(app: AppConfig, participant: Mapping[str, Any], settings: Settings, keys: KeySet,
            now: datetime) -> SoapTarget | SoapOutcome:
    """Build and sign the LogoutRequest for `app`'s SOAP endpoint (the caller checked it has one); a signing
    failure (a pinned key that is gone) is an outcome at once."""
    ep = soap_endpoint(app)
    assert ep is not None  # noqa: S101 - the caller picked apps with a SOAP endpoint
    entity_id = str(app.entity_id)
    try:
        signing = signing_for(app, keys)
    except SamlFlowError as exc:
        return SoapOutcome(app.id, app.slug, entity_id, None, exc.reason, {"error_description": exc.message[:500]})
    request_id, xml = build_logout_request(
        issuer=app.idp_entity_id(settings.entity_id), destination=ep.location, name_id=participant["name_id"],
        name_id_format=participant["name_id_format"], session_index=participant["session_index"], now=now,
        lifetime=REQUEST_LIFETIME, signing=signing)
    return SoapTarget(app.id, app.slug, entity_id, ep.location, request_id, build_soap_envelope(xml),
                      tuple(app.saml.signing_certs), allowed_algorithms(app.settings.allow_sha1))


def exchange_all(targets: list[SoapTarget], settings: Settings) -> list[SoapOutcome]:
    """Run the exchanges in parallel (at most MAX_PARALLEL at once), each bounded by the timeout; outcomes in
    the order of `targets`. Never raises."""
    if not targets:
        return []
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(targets)), thread_name_prefix="saml-soap") as pool:
        return list(pool.map(lambda t: _exchange_safely(t, settings), targets))


def _exchange_safely(target: SoapTarget, settings: Settings) -> SoapOutcome:
    try:
        return _exchange(target, settings)
    except _Refused as exc:
        return SoapOutcome(target.app_id, target.app_slug, target.entity_id, target.request_id, exc.reason,
                           exc.detail)
    except Exception as exc:  # noqa: BLE001 - one app's surprise must not stop the others' logout
        return SoapOutcome(target.app_id, target.app_slug, target.entity_id, target.request_id,
                           Reason.INTERNAL_ERROR, {"error_description": f"{exc.__class__.__name__}"})


def _exchange(target: SoapTarget, settings: Settings) -> SoapOutcome:
    client_cert = None
    if settings.saml_backchannel_client_cert and settings.saml_backchannel_client_key:
        client_cert = (settings.saml_backchannel_client_cert, settings.saml_backchannel_client_key)
    timeout = settings.saml_backchannel_timeout_s
    started = time.monotonic()
    try:
        answer = http_request("POST", target.url, body=target.envelope, headers={
            "Content-Type": SOAP_CONTENT_TYPE, "SOAPAction": f'"{SOAP_ACTION}"', "Accept": "text/xml",
            "Cache-Control": "no-store"}, allow_private=settings.saml_backchannel_allow_private, timeout=timeout,
            max_bytes=MAX_ANSWER_BYTES, what="SOAP logout endpoint", switch="IDP_SAML_BACKCHANNEL_ALLOW_PRIVATE",
            client_cert=client_cert, user_agent="idp-saml-backchannel/1")
    except ServiceError as exc:
        failure = "timeout" if time.monotonic() - started >= timeout else "not_delivered"
        raise _Refused(Reason.BACKCHANNEL_LOGOUT_FAILED, str(exc), failure=failure) from None
    detail: dict[str, Any] = {"http_status": answer.status}
    try:
        xml = parse_soap_message(answer.body, MAX_ANSWER_BYTES)
    except SoapFault as exc:
        raise _Refused(Reason.BACKCHANNEL_LOGOUT_FAILED, str(exc), failure="soap_fault", soap_fault=exc.code,
                       http_status=answer.status) from None
    except SoapError as exc:
        if answer.status != 200:
            raise _Refused(Reason.BACKCHANNEL_LOGOUT_FAILED, f"the SOAP endpoint answered HTTP {answer.status}",
                           failure="http_status", http_status=answer.status) from None
        raise _Refused(Reason.MALFORMED_REQUEST, str(exc), http_status=answer.status) from None
    if answer.status != 200:   # saml-bindings-2.0-os §3.2.3.3: a SAML answer comes with 200 OK
        raise _Refused(Reason.BACKCHANNEL_LOGOUT_FAILED, f"the SOAP endpoint answered HTTP {answer.status}",
                       failure="http_status", http_status=answer.status)
    try:
        resp = parse_logout_response(xml, MAX_ANSWER_BYTES)
    except RequestParseError as exc:
        raise _Refused(Reason.MALFORMED_REQUEST, f"the LogoutResponse is malformed: {exc}", **detail) from None
    detail["response_id"] = resp.id[:100]
    if resp.issuer != target.entity_id:
        raise _Refused(Reason.MALFORMED_REQUEST, f"the LogoutResponse was issued by {resp.issuer[:200]!r}, not by "
                                                 f"the app the LogoutRequest went to", **detail)
    if resp.in_response_to != target.request_id:
        raise _Refused(Reason.MALFORMED_REQUEST, "the LogoutResponse does not answer the LogoutRequest this IdP "
                                                 "sent (InResponseTo)", **detail)
    if has_signature(resp.root):
        try:
            detail["signature_algorithm"] = verify_enveloped(resp.root, target.certs, target.algorithms)
        except SignatureError as exc:
            raise _Refused(Reason.BAD_SIGNATURE, f"the LogoutResponse signature was rejected: {exc}",
                           **detail) from None
        detail["authenticated_by"] = "signature"
    elif urlsplit(target.url).scheme == "https":
        detail["authenticated_by"] = "tls"
    else:
        raise _Refused(Reason.BAD_SIGNATURE, "the LogoutResponse is not signed and came over plain http: nothing "
                                             "authenticates it (sign it, or serve the endpoint over https)", **detail)
    now = utcnow()
    if abs(now - resp.issue_instant) > timedelta(seconds=settings.request_max_age_s):
        raise _Refused(Reason.REQUEST_EXPIRED, f"IssueInstant {resp.issue_instant.isoformat()} is outside the "
                                               f"allowed {settings.request_max_age_s}s window", **detail)
    if resp.status != STATUS_SUCCESS:
        detail["status"] = resp.status[:200]
        raise _Refused(Reason.LOGOUT_FAILED, f"the app answered the LogoutRequest with {resp.status[:200]}",
                       **detail)
    return SoapOutcome(target.app_id, target.app_slug, target.entity_id, target.request_id, Reason.LOGOUT, detail)


def record_outcomes(outcomes: Iterable[SoapOutcome], username: str | None, client: Client,
                    extra: Mapping[str, Any] | None = None) -> None:
    """One `logout` event per app (binding soap, detail.propagated), in the caller's unit of work."""
    for o in outcomes:
        ctx = EventContext(event_type="logout", app_slug=o.app_slug, sp_entity_id=o.entity_id, username=username,
                           initiated_by="idp", binding=BINDING, request_id=o.request_id,
                           detail={"propagated": True, **(extra or {}), **o.detail})
        record_event(ctx, o.reason, client_ip=client.ip, user_agent=client.user_agent)


def logout_over_soap(apps: Sequence[tuple[AppConfig, Mapping[str, Any]]], settings: Settings, keys: KeySet,
                     now: datetime | None = None) -> list[SoapOutcome]:
    """Prepare (caller's thread), exchange (in parallel): one outcome per (app, participant), in order."""
    now = now or utcnow()
    prepared = [prepare(app, part, settings, keys, now) for app, part in apps]
    targets = [p for p in prepared if isinstance(p, SoapTarget)]
    done = iter(exchange_all(targets, settings))
    return [next(done) if isinstance(p, SoapTarget) else p for p in prepared]
