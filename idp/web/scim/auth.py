"""Who is calling /scim/v2: a bearer token an admin issued with the scope `scim` (`idp tokens api create NAME
--scope scim`), checked by the shared API-token service. A refusal is an event (type "scim", reason invalid_token
or insufficient_scope; the detail names the scope, never the token), committed on its own: the request did
nothing else yet."""

from __future__ import annotations

from flask import request
from scim2_models import ForbiddenException, UnauthorizedException

from ...errors import EventContext
from ...events import record_event
from ...reasons import Reason
from ...services import api_tokens
from ...services.api_tokens import ApiAuthError, ApiPrincipal
from .. import uow
from ..context import current_client

SCIM_SCOPE = "scim"
__all__ = ["SCIM_SCOPE", "ApiPrincipal", "authenticate"]


def authenticate(authorization_header: str | None, ip: str | None, required_scope: str) -> ApiPrincipal:
    """The principal of a live token with `required_scope` (its last use recorded at most once a minute);
    UnauthorizedException (401) for a missing, unknown, revoked or expired token, ForbiddenException (403) for one
    without the scope."""
    try:
        return api_tokens.authenticate(authorization_header, ip, required_scope)
    except ApiAuthError as exc:
        client = current_client()
        ctx = EventContext(event_type="scim", protocol="scim",
                           detail={"method": request.method, "path": request.path[:200], "scope": required_scope,
                                   "why": exc.description})
        record_event(ctx, Reason.INSUFFICIENT_SCOPE if exc.status == 403 else Reason.INVALID_TOKEN,
                     client_ip=client.ip, user_agent=client.user_agent)
        uow.commit()
        if exc.status == 403:
            raise ForbiddenException(detail=exc.description) from None
        raise UnauthorizedException(detail=exc.description) from None
