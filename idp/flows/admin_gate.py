"""The admin console's gate: an admin, from an allowed address, in a session that passed a recent second factor.

A password alone (perhaps a stolen one) opens no admin page and performs no admin action. A page asked for without
the second factor sends the admin to prove it (step-up, or enrolment for an admin without any factor) and back; an
action (any unsafe method) is refused with an event, never half done. Outside the org's admin IP ranges the console
is closed, whatever the factors.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from ..auth.sessions import SessionView
from ..errors import EventContext
from ..events import record_event
from ..extensions import db
from ..models import User
from ..reasons import Reason
from ..services import org
from .authorize import Client
from .step_up import passed_second_factor_recently, step_up_missing

ADMIN_EVENT = "admin"  # event_type of a refused console request
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class ConsoleAllowed:
    pass


@dataclass(frozen=True, slots=True)
class NeedsSecondFactor:
    """A page asked for without a recent second factor: prove one (`enrol`: the admin has none yet), then return.
    Not a denial: nothing is recorded."""

    enrol: bool


@dataclass(frozen=True, slots=True)
class ConsoleRefused:
    """403: the event (with its reason) is written; `message` is what the admin may read on the page."""

    reason: Reason
    message: str
    event_id: int
    step_up: NeedsSecondFactor | None = None   # a recent second factor would let the request through: offer it


ConsoleOutcome = ConsoleAllowed | NeedsSecondFactor | ConsoleRefused


def check_console_access(view: SessionView, client: Client, *, method: str, path: str,
                         mfa_max_age: timedelta) -> ConsoleOutcome:
    """Whether this signed-in session may have this console request (`path` without its query: never logged)."""
    if not view.user.is_admin:
        return _refuse(view, client, method, path, Reason.ADMIN_REQUIRED, "You do not have access to this page.",
                       "not an admin")
    if not org.admin_ip_allowed(client.ip):
        return _refuse(view, client, method, path, Reason.ADMIN_IP_DENIED,
                       "The admin console cannot be used from your network address.",
                       f"client address {client.ip or 'unknown'} is outside the admin IP ranges",
                       ranges=list(org.admin_ip_ranges()))
    if passed_second_factor_recently(view, mfa_max_age):
        return ConsoleAllowed()
    why = step_up_missing(view, mfa_max_age)
    if method.upper() in SAFE_METHODS:
        return NeedsSecondFactor(enrol=not has_factor(view.user_id))
    return _refuse(view, client, method, path, Reason.ADMIN_MFA_REQUIRED,
                   "Admin changes need a recent second factor. Confirm it is you, then submit the form again. "
                   "Nothing was changed.", why, step_up=NeedsSecondFactor(enrol=not has_factor(view.user_id)))


def has_factor(user_id: int) -> bool:
    """Whether the user has a second factor to step up with (else they are sent to enrol one)."""
    user = db.session.get(User, user_id)
    return user is not None and user.mfa_enrolled


def _refuse(view: SessionView, client: Client, method: str, path: str, reason: Reason, message: str, why: str,
            *, step_up: NeedsSecondFactor | None = None, **detail: object) -> ConsoleRefused:
    ctx = EventContext(event_type=ADMIN_EVENT, username=view.user.username,
                       detail={"message": why, "method": method.upper()[:10], "path": path[:512], **detail})
    event = record_event(ctx, reason, client_ip=client.ip, user_agent=client.user_agent)
    return ConsoleRefused(reason, message, event.id, step_up)
