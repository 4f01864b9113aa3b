"""End IdP sessions without their browser: the user signing out another device from /account, an admin ending a
user's sessions from the console or the CLI.

With no browser to carry front-channel messages, the SAML apps of such a session are not told (they keep their
own session until it expires); the OIDC RPs get their back-channel logout tokens and the session's refresh
tokens are revoked, as in every logout (flows.oidc_logout). Each ended session is a `logout` event naming who
ended it (initiated_by user | admin) and the apps left signed in.
"""

from __future__ import annotations

from idp.auth.sessions import end_session
from idp.certs.keystore import KeySet
from idp.config import Settings
from idp.errors import EventContext
from idp.events import record_event
from idp.flows.authorize import Client
from idp.flows.oidc_logout import end_oidc_sessions
from idp.models import IdpSession
from idp.reasons import Reason
from idp.services.apps import saml_app_config_by_id
from idp.services.user_sessions import handle_of


def end_remotely(sessions: list[IdpSession], settings: Settings, keys: KeySet, client: Client, *,
                 initiated_by: str) -> int:
    """End each live session of `sessions` (already-ended ones are skipped); returns how many were ended."""
    ended = 0
    for s in sessions:
        if s.ended_at is not None:
            continue
        parts = end_session(s)
        saml_left = []
        for p in parts:
            if p.protocol == "saml":
                app = saml_app_config_by_id(p.app_id)
                if app is not None and app.slug not in saml_left:
                    saml_left.append(app.slug)
        ctx = EventContext(event_type="logout", initiated_by=initiated_by, username=s.user.username,
                           detail={"session": handle_of(s.id), "saml_apps_not_notified": saml_left})
        record_event(ctx, Reason.LOGOUT, client_ip=client.ip, user_agent=client.user_agent)
        end_oidc_sessions(s, parts, settings, keys, client)
        ended += 1
    return ended
