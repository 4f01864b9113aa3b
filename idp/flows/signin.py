"""Sign-in steps that depend on the request being signed into (not on how the page is shown).

The parked request arrives as its token (flows.pending); nothing here parses a URL.
"""

from __future__ import annotations

from ..errors import EventContext
from ..events import record_event
from ..models import User
from ..reasons import Reason
from ..services.apps import app_config_by_id
from . import pending as pending_store
from .authorize import Client, second_factor_needed


def needs_second_factor(token: str | None, user: User, client_ip: str | None) -> bool:
    """After the password: whether the parked request needs a second factor (then no session opens yet)."""
    found = pending_store.authz_request(token)
    if found is None:
        return False
    req = found[1]
    app = app_config_by_id(req.app_id)
    if app is None:
        return False
    return second_factor_needed(req, app, user, client_ip)


def record_second_factor_failure(token: str | None, user: User, client: Client, why: str) -> int | None:
    """An `mfa_failed` event when the failed second factor was for a parked request; returns the event id."""
    found = pending_store.authz_request(token)
    if found is None:
        return None
    req = found[1]
    app = app_config_by_id(req.app_id)
    ctx = EventContext(app_slug=app.slug if app else None, sp_entity_id=app.entity_id if app else None,
                       username=user.username, initiated_by=req.initiated_by, binding=req.binding,
                       request_id=req.request_id, detail={"message": why})
    return record_event(ctx, Reason.MFA_FAILED, client_ip=client.ip, user_agent=client.user_agent).id
