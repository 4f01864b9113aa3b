"""Single logout (saml-profiles-2.0-os §4.4): SP-initiated LogoutRequests and front-channel propagation.

A LogoutRequest must be signed with a certificate from the app's metadata and must name a
(NameID, SessionIndex) this IdP issued to that app; only then is that IdP session ended. The
other apps of the session are then sent signed LogoutRequests one after another through the
browser, and finally the initiating app gets a signed LogoutResponse. Apps whose metadata lists only a SOAP
SingleLogoutService (no Redirect or POST one) are logged out over the back channel first (flows.slo_soap).

The chain is bound to the browser that runs it: its token travels in RelayState, which every SP of the chain
sees, so a LogoutResponse advances it only when it comes with the chain's browser cookie (`BROWSER_COOKIE`,
a random value kept in the chain's state). An answer is trusted only when it is signed by the app the request
went to, answers that request (InResponseTo) and carries a Success status; any other answer from the bound
browser still moves the chain on (the user wants out of every app) but counts that app as failed, and the
initiator's final LogoutResponse then says PartialLogout. Each app's outcome is an event of its own.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from idp.auth.sessions import end_session
from idp.certs.keystore import KeySet
from idp.config import Settings
from idp.errors import (
    EventContext,
    LogoutNotBound,
    MalformedRequest,
    MetadataExpired,
    SamlFlowError,
    UnknownSession,
    UnknownSp,
)
from idp.events import record_event
from idp.extensions import db
from idp.flows import pending as pending_store
from idp.flows.authorize import Client
from idp.flows.inbound import InboundMessage, InboundRules, check_inbound
from idp.flows.oidc_logout import deliver_backchannel, record_deliveries, revoke_and_collect
from idp.flows.saml_keys import signing_for
from idp.flows.slo_soap import has_front_channel, logout_over_soap, record_outcomes, soap_endpoint
from idp.models import IdpSession, SessionParticipant, utcnow
from idp.reasons import Reason
from idp.saml.bindings import DecodedMessage, encode_post, encode_redirect_url
from idp.saml.constants import (
    BINDING_POST,
    BINDING_REDIRECT,
    STATUS_PARTIAL_LOGOUT,
    STATUS_SUCCESS,
    BindingName,
    InitiatedBy,
)
from idp.saml.requests import (
    LogoutRequest,
    LogoutResponse,
    RequestParseError,
    parse_logout_request,
    parse_logout_response,
    peek_issuer,
)
from idp.saml.responses import build_logout_request, build_logout_response
from idp.saml.sp_metadata import Endpoint
from idp.services.apps import AppConfig, app_config_by_entity_id, saml_app_config_by_id


@dataclass(frozen=True, slots=True)
class Outgoing:
    """Where the browser goes next: a redirect URL, or a POST form (url + field + value + relay state)."""

    binding: str            # a BindingName, or "page" (the logged-out page)
    url: str
    field: str | None = None
    value: str | None = None
    relay_state: str | None = None
    # a chain just started: the value of BROWSER_COOKIE the web layer sets, binding the chain to this browser
    bind_browser: str | None = None


# the cookie that binds a logout chain to the browser running it (path /saml/slo; see the module doc)
BROWSER_COOKIE = "idp_slo"


def _slo_endpoint(app: AppConfig, prefer: str | None = None) -> Endpoint | None:
    eps = [e for e in app.saml.slo if e.binding in (BINDING_REDIRECT, BINDING_POST)]
    if prefer:
        eps.sort(key=lambda e: e.binding != prefer)
    return eps[0] if eps else None


def receive_logout_request(msg: DecodedMessage, raw_query: bytes | None, settings: Settings,
                           client: Client, now: datetime | None = None) -> tuple[AppConfig, LogoutRequest,
                                                                                 IdpSession | None]:
    """Validate an SP's LogoutRequest; returns the IdP session it legitimately names (or None)."""
    now = now or utcnow()
    ctx = EventContext(event_type="logout", initiated_by=InitiatedBy.SP, binding=msg.binding)
    try:
        try:
            req = parse_logout_request(msg.xml, settings.max_inflated_bytes)
        except RequestParseError as exc:
            ctx.sp_entity_id = peek_issuer(msg.xml, settings.max_inflated_bytes)
            raise MalformedRequest(f"the LogoutRequest is malformed: {exc}") from None
        ctx.sp_entity_id, ctx.request_id = req.issuer, req.id
        app = app_config_by_entity_id(req.issuer)
        if app is None:
            raise UnknownSp(f"no connected app has the entityID {req.issuer[:200]!r}")
        ctx.app_slug = app.slug
        if app.metadata_expired(now):
            raise MetadataExpired("the app's metadata expired at its validUntil: its LogoutRequest is refused")
        # saml-profiles-2.0-os §4.4.4.1: a LogoutRequest must be signed (or otherwise authenticated)
        rules = InboundRules(endpoint_url=settings.url("/saml/slo"), signature_required=True,
                             verify_when_present=True, destination_required=True)
        inbound = InboundMessage(kind="LogoutRequest", id=req.id, issuer=req.issuer, destination=req.destination,
                                 issue_instant=req.issue_instant, not_on_or_after=req.not_on_or_after,
                                 root=req.root)
        ctx.detail.update(check_inbound(msg, raw_query, inbound, app, rules, settings, now))
    except SamlFlowError as exc:
        exc.context = ctx
        raise
    q = (select(SessionParticipant, IdpSession)
         .join(IdpSession, IdpSession.id == SessionParticipant.session_id)
         .where(SessionParticipant.app_id == app.id, SessionParticipant.name_id == req.name_id,
                SessionParticipant.protocol == "saml", IdpSession.ended_at.is_(None)))
    if req.session_indexes:
        q = q.where(SessionParticipant.session_index.in_(req.session_indexes))
    rows = db.session.execute(q).all()
    session = rows[0][1] if len(rows) == 1 else None
    return app, req, session


Checkpoint = Callable[[], None]


def start_logout_chain(session: IdpSession, origin: dict[str, Any] | None, settings: Settings, keys: KeySet,
                       ctx: EventContext, client: Client, exclude_app_id: int | None = None, *,
                       front_channel: bool = True, checkpoint: Checkpoint | None = None) -> Outgoing:
    """End the session, record the event, tell the back-channel apps (OIDC RPs, SAML apps with only a SOAP
    endpoint), then walk the other apps' SLO endpoints through the browser.

    `origin`: the SAML SP whose LogoutRequest started this (it gets the LogoutResponse at the end), or
    {"oidc_redirect": url} for an RP-initiated OIDC logout (the browser goes there at the end), or None.
    `front_channel` False: the browser running this is not the session's own (flows run it only when it is), so
    no front-channel LogoutRequest (with another app's NameID and SessionIndex) is shown to it: those apps count
    as not contacted and the initiator's answer says PartialLogout.
    `checkpoint`: the caller's commit, called once the session is ended and before any network exchange, so no
    database transaction (on SQLite: the one write lock) is held while remote apps answer (or time out)."""
    parts = end_session(session)
    queue = []
    soap: list[tuple[AppConfig, dict[str, Any]]] = []
    for p in parts:
        if p.app_id == exclude_app_id or p.protocol != "saml":  # OIDC RPs get the back channel, not SAML
            continue
        item = {"app_id": p.app_id, "name_id": p.name_id, "name_id_format": p.name_id_format,
                "session_index": p.session_index}
        app = saml_app_config_by_id(p.app_id)
        # an app with a SOAP endpoint and no front-channel one is told over the back channel, before the browser
        # chain starts; an app with both keeps the front channel (flows.slo_soap, README "Single logout")
        if app is not None and soap_endpoint(app) is not None and not has_front_channel(app):
            soap.append((app, item))
        else:
            queue.append(item)
    ctx.username = session.user.username
    ctx.detail["propagate_to"] = [q["app_id"] for q in queue] + [app.id for app, _ in soap]
    if not front_channel:
        ctx.detail["front_channel"] = "skipped: the request did not come from the session's browser"
    record_event(ctx, Reason.LOGOUT, client_ip=client.ip, user_agent=client.user_agent)
    oidc_targets = revoke_and_collect(session, parts)
    if checkpoint is not None:
        checkpoint()
    deliveries = deliver_backchannel(oidc_targets, settings, keys)   # network only: no database access
    outcomes = logout_over_soap(soap, settings, keys)
    record_deliveries(deliveries, ctx.username, client)
    record_outcomes(outcomes, ctx.username, client)
    statuses: dict[str, str] = {}
    for o in outcomes:
        statuses[str(o.app_id)] = "success" if o.ok else "failed"
    for (app, _), d in zip(oidc_targets, deliveries, strict=True):
        if not d.delivered:   # an RP that was not told is not logged out either
            statuses[f"oidc:{app.id}"] = "failed"
    if not front_channel:
        for item in queue:
            statuses[str(item["app_id"])] = "not_contacted"
        queue = []
    return _begin({"kind": "logout", "origin": origin, "queue": queue, "statuses": statuses,
                   "username": ctx.username}, settings, keys)


def _begin(state: dict[str, Any], settings: Settings, keys: KeySet) -> Outgoing:
    nonce = secrets.token_urlsafe(24)
    state["browser"] = nonce
    token = pending_store.put(state)
    out = next_step(token, settings, keys)
    return Outgoing(binding=out.binding, url=out.url, field=out.field, value=out.value,
                    relay_state=out.relay_state, bind_browser=nonce)


def answer_unknown_session(origin: dict[str, Any], settings: Settings, keys: KeySet, ctx: EventContext,
                           client: Client) -> Outgoing:
    """A valid LogoutRequest naming no live session: nothing to end, an event, and a success answer to the SP."""
    ctx.detail["message"] = "no live session matches the NameID and SessionIndex; nothing was ended"
    record_event(ctx, Reason.UNKNOWN_SESSION, client_ip=client.ip, user_agent=client.user_agent)
    return _begin({"kind": "logout", "origin": origin, "queue": [], "statuses": {}}, settings, keys)


def next_step(token: str, settings: Settings, keys: KeySet) -> Outgoing:
    state = pending_store.get(token, "logout", consume=False)
    if state is None:
        return Outgoing(binding="page", url="")
    now = utcnow()
    while state["queue"]:
        item = state["queue"].pop(0)
        app = saml_app_config_by_id(item["app_id"])
        ep = _slo_endpoint(app, BINDING_REDIRECT) if app else None
        if app is None or ep is None:   # removed meanwhile, or no front-channel SLO endpoint: not logged out
            state["statuses"][str(item["app_id"])] = "not_contacted"
            continue
        signing = signing_for(app, keys)
        redirect = ep.binding == BINDING_REDIRECT  # Redirect: the query is signed, not the XML
        request_id, xml = build_logout_request(issuer=app.idp_entity_id(settings.entity_id), destination=ep.location,
                                      name_id=item["name_id"],
                                      name_id_format=item["name_id_format"], session_index=item["session_index"],
                                      now=now, lifetime=timedelta(minutes=5), signing=None if redirect else signing)
        state["current"] = {"app_id": app.id, "request_id": request_id}
        pending_store.replace(token, state)
        if redirect:
            url = encode_redirect_url(ep.location, "SAMLRequest", xml, token, signing.key, signing.algorithm)
            return Outgoing(binding=BindingName.REDIRECT, url=url)
        return Outgoing(binding=BindingName.POST, url=ep.location, field="SAMLRequest", value=encode_post(xml),
                        relay_state=token)
    pending_store.get(token, "logout", consume=True)
    origin = state.get("origin")
    if not origin:
        return Outgoing(binding="page", url="")
    if origin.get("oidc_redirect"):  # an RP-initiated logout: its registered post-logout URI (flows.oidc_logout)
        return Outgoing(binding=BindingName.REDIRECT, url=origin["oidc_redirect"])
    app = saml_app_config_by_id(origin["app_id"])
    ep = _slo_endpoint(app, origin.get("binding")) if app else None
    if app is None or ep is None:
        return Outgoing(binding="page", url="")
    dest = ep.response_location or ep.location
    signing = signing_for(app, keys)
    redirect = ep.binding == BINDING_REDIRECT
    partial = any(v != "success" for v in state["statuses"].values())
    _, xml = build_logout_response(issuer=app.idp_entity_id(settings.entity_id), destination=dest,
                                   in_response_to=origin["request_id"], status=STATUS_SUCCESS,
                                   sub_status=STATUS_PARTIAL_LOGOUT if partial else None,
                                   now=now, signing=None if redirect else signing)
    if redirect:
        url = encode_redirect_url(dest, "SAMLResponse", xml, origin.get("relay_state"), signing.key,
                                  signing.algorithm)
        return Outgoing(binding=BindingName.REDIRECT, url=url)
    return Outgoing(binding=BindingName.POST, url=dest, field="SAMLResponse", value=encode_post(xml),
                    relay_state=origin.get("relay_state"))


def receive_logout_response(msg: DecodedMessage, raw_query: bytes | None, browser: str | None, settings: Settings,
                            client: Client, now: datetime | None = None) -> str:
    """An app answered our LogoutRequest: returns the chain token to continue with.

    Refused (a SamlFlowError, the chain unchanged) when the token names no chain in progress or `browser` (the
    chain cookie the request came with) is not the chain's. From the chain's browser, the answer is then checked
    against the request it answers; whatever the check finds, the app's outcome is recorded (an event, and its
    status in the chain: only a verified Success counts as logged out) and the chain goes on."""
    now = now or utcnow()
    ctx = EventContext(event_type="logout", initiated_by=InitiatedBy.IDP, binding=msg.binding,
                       detail={"propagated": True})
    token = msg.relay_state
    state = pending_store.get(token, "logout", consume=False)
    if state is not None:
        ctx.username = state.get("username")
    err: SamlFlowError | None = None
    expected = str((state or {}).get("browser") or "")
    if state is None or token is None:
        err = UnknownSession("this LogoutResponse belongs to no logout in progress (finished or expired)")
    elif not browser or not expected or not hmac.compare_digest(browser.encode(), expected.encode()):
        err = LogoutNotBound("a LogoutResponse for a logout running in another browser was refused")
    elif state.get("current") is None:   # no request outstanding (a second answer to the same step)
        err = MalformedRequest("no LogoutRequest of this logout is waiting for an answer")
    if err is not None:
        err.context = ctx
        raise err
    assert state is not None and token is not None
    current = state.pop("current")
    app = saml_app_config_by_id(current["app_id"])
    ok = False
    try:
        if app is None:
            raise UnknownSp("the app this LogoutRequest went to was removed meanwhile")
        ctx.app_slug, ctx.sp_entity_id, ctx.request_id = app.slug, app.entity_id, current["request_id"]
        resp = _verified_answer(msg, raw_query, app, current["request_id"], settings, now, ctx)
        if resp.status != STATUS_SUCCESS:
            ctx.detail["status"] = resp.status[:200]
            raise SamlFlowError(f"the app answered the LogoutRequest with {resp.status[:200]}",
                                reason=Reason.LOGOUT_FAILED)
        ok = True
        record_event(ctx, Reason.LOGOUT, client_ip=client.ip, user_agent=client.user_agent)
    except SamlFlowError as exc:
        ctx.detail["message"] = exc.message[:500]
        record_event(ctx, exc.reason, client_ip=client.ip, user_agent=client.user_agent)
    state["statuses"][str(current["app_id"])] = "success" if ok else "failed"
    pending_store.replace(token, state)
    return token


def _verified_answer(msg: DecodedMessage, raw_query: bytes | None, app: AppConfig, request_id: str,
                     settings: Settings, now: datetime, ctx: EventContext) -> LogoutResponse:
    """The LogoutResponse, once it is shown to be `app`'s answer to `request_id`: the Issuer is the app, it is
    signed with a certificate of the app's metadata (saml-profiles-2.0-os 4.4.4.2: signed or otherwise
    authenticated; the front channel authenticates nothing), InResponseTo names the request, Destination and
    IssueInstant pass the inbound checks, and its ID was not seen before."""
    try:
        resp = parse_logout_response(msg.xml, settings.max_inflated_bytes)
    except RequestParseError as exc:
        raise MalformedRequest(f"the LogoutResponse is malformed: {exc}") from None
    ctx.detail["response_id"] = resp.id[:100]
    if resp.issuer != app.entity_id:
        raise MalformedRequest(f"the LogoutResponse was issued by {resp.issuer[:200]!r}, not by the app the "
                               f"LogoutRequest went to")
    if resp.in_response_to != request_id:
        raise MalformedRequest("the LogoutResponse does not answer the LogoutRequest this IdP sent (InResponseTo)")
    rules = InboundRules(endpoint_url=settings.url("/saml/slo"), signature_required=True,
                         verify_when_present=True, destination_required=False)
    inbound = InboundMessage(kind="LogoutResponse", id=resp.id, issuer=resp.issuer, destination=resp.destination,
                             issue_instant=resp.issue_instant, not_on_or_after=None, root=resp.root,
                             param="SAMLResponse")
    ctx.detail.update(check_inbound(msg, raw_query, inbound, app, rules, settings, now))
    return resp


def origin_for(app: AppConfig, req: LogoutRequest, msg: DecodedMessage) -> dict[str, Any]:
    return {"app_id": app.id, "request_id": req.id, "relay_state": msg.relay_state,
            "binding": msg.binding.uri}

