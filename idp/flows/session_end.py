"""End IdP sessions without their browser: the user signing out another device from /account, an admin ending a
user's sessions from the console or the CLI.

With no browser to carry front-channel messages, the SAML apps of such a session are told over the SOAP back
channel when their metadata lists a SOAP SingleLogoutService (flows.slo_soap: all apps of all the sessions in
parallel, each bounded by IDP_SAML_BACKCHANNEL_TIMEOUT, each app's outcome an event of its own); apps with only
front-channel endpoints are not told (they keep their own session until it expires). The OIDC RPs get their
back-channel logout tokens and the session's refresh tokens are revoked, as in every logout (flows.oidc_logout).
Each ended session is a `logout` event naming who ended it (initiated_by user | admin), the apps told over SOAP
with their outcome (saml_apps_notified: slug -> reason) and the apps left signed in (saml_apps_not_notified).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from idp.auth.sessions import end_session
from idp.certs.keystore import KeySet
from idp.config import Settings
from idp.errors import EventContext
from idp.events import record_event
from idp.flows.authorize import Client
from idp.flows.oidc_logout import BackchannelTarget, deliver_backchannel, record_deliveries, revoke_and_collect
from idp.flows.slo_soap import SoapOutcome, logout_over_soap, record_outcomes, soap_endpoint
from idp.models import IdpSession
from idp.reasons import Reason
from idp.services.apps import AppConfig, saml_app_config_by_id
from idp.services.user_sessions import handle_of


def end_remotely(sessions: list[IdpSession], settings: Settings, keys: KeySet, client: Client, *,
                 initiated_by: str, checkpoint: Callable[[], None] | None = None) -> int:
    """End each live session of `sessions` (already-ended ones are skipped); returns how many were ended.

    `checkpoint`: the caller's commit, called once the sessions are ended and before the back-channel exchanges,
    so no database transaction is held while remote apps answer; the events follow in the next transaction."""
    ended: list[tuple[IdpSession, list[str], list[BackchannelTarget]]] = []
    soap: list[tuple[AppConfig, dict[str, Any]]] = []
    soap_session: list[int] = []   # index into `ended` of each SOAP exchange
    for s in sessions:
        if s.ended_at is not None:
            continue
        parts = end_session(s)
        saml_left: list[str] = []
        for p in parts:
            if p.protocol != "saml":
                continue
            app = saml_app_config_by_id(p.app_id)
            if app is None:
                continue
            if soap_endpoint(app) is not None:
                soap.append((app, {"name_id": p.name_id, "name_id_format": p.name_id_format,
                                   "session_index": p.session_index}))
                soap_session.append(len(ended))
            elif app.slug not in saml_left:
                saml_left.append(app.slug)
        ended.append((s, saml_left, revoke_and_collect(s, parts)))
    if checkpoint is not None:
        checkpoint()
    # the network: SOAP exchanges in parallel, then the OIDC back channel; no database access meanwhile
    outcomes = logout_over_soap(soap, settings, keys)
    deliveries = [deliver_backchannel(targets, settings, keys) for _, _, targets in ended]
    by_session: dict[int, list[SoapOutcome]] = {}
    for index, outcome in zip(soap_session, outcomes, strict=True):
        by_session.setdefault(index, []).append(outcome)
    for index, (s, saml_left, _) in enumerate(ended):
        told = by_session.get(index, [])
        detail: dict[str, Any] = {"session": handle_of(s.id), "saml_apps_not_notified": saml_left}
        if told:
            detail["saml_apps_notified"] = {o.app_slug: str(o.reason) for o in told}
        ctx = EventContext(event_type="logout", initiated_by=initiated_by, username=s.user.username, detail=detail)
        record_event(ctx, Reason.LOGOUT, client_ip=client.ip, user_agent=client.user_agent)
        record_outcomes(told, s.user.username, client, {"session": handle_of(s.id)})
        record_deliveries(deliveries[index], s.user.username, client)
    return len(ended)
