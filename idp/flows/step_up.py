"""Account security changes need a recent second factor: changing the password (for a user who has a factor),
adding, renaming or removing a factor, regenerating recovery codes. A session counts when it passed a second
factor at most IDP_STEP_UP_MAX_AGE ago, so neither a stolen password nor a session left open long ago changes
the account's factors; the pages send the user to step up (/mfa?next=<the page>) and back. A refused change is a
`step_up_required` event (type `account`) and nothing is changed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from ..auth.sessions import SessionView
from ..errors import EventContext
from ..events import record_event
from ..models import User, utcnow
from ..reasons import Reason
from .authorize import Client
from .signin import ACCOUNT_EVENT


def passed_second_factor_recently(view: SessionView | None, max_age: timedelta,
                                  now: datetime | None = None) -> bool:
    """Whether this signed-in session passed a second factor at most `max_age` ago (the one rule for every
    account security change)."""
    if view is None or view.mfa_at is None:
        return False
    return (now or utcnow()) - view.mfa_at <= max_age


def step_up_missing(view: SessionView | None, max_age: timedelta) -> str:
    """Why a session does not count (for the event's detail)."""
    if view is None or view.mfa_at is None:
        return "the session has not passed a second factor"
    return f"the session's second factor is older than {int(max_age.total_seconds()) // 60} minutes"


def record_step_up_required(user: User, change: str, client: Client,
                            why: str = "the session has not passed a second factor recently") -> int:
    """A `step_up_required` event: `change` (e.g. "password", "passkey_remove") was refused; returns its id."""
    ctx = EventContext(event_type=ACCOUNT_EVENT, username=user.username,
                       detail={"message": f"{change.replace('_', ' ')} refused: {why}", "change": change})
    return record_event(ctx, Reason.STEP_UP_REQUIRED, client_ip=client.ip, user_agent=client.user_agent).id
