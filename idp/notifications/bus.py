"""The notification bus: events.record_event and audit.record offer every change here; subscribers that want
its type get a Notice and enqueue their work (outbox jobs) in the same session, so it commits with the change.

Built for the sign-in path: a notice is only built when a subscriber wants its type (`wants` is a set lookup on
a cached subscription list), so an IdP without webhooks pays one function call per event. Subscribers must not
do network I/O or anything slow in `deliver`: they write rows, the worker sends.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session, scoped_session

from . import catalog

log = logging.getLogger("idp.notifications")

# the request's scoped db.session or a Session of its own (audit rows of key operations)
AnySession = Session | scoped_session[Any]


@dataclass(frozen=True, slots=True)
class Notice:
    """One thing that happened, as every channel sends it. `id` is unique per notice and stays the same for
    every delivery attempt of it (the webhook-id / idempotency key); `data` has the fields of the event log row
    (or of the audit row) it came from."""

    type: str
    time: datetime
    subject: str | None            # the username, app slug or key id the notice is about (ordering key)
    app_slug: str | None
    outcome: str | None
    reason: str | None
    data: dict[str, Any]
    source: str = "event"          # event | audit | system
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


class Subscriber(Protocol):
    name: str

    def wants(self, type_: str, app_slug: str | None) -> bool:
        """Cheap (no query per call): whether a notice of this type (for this app) would be delivered."""

    def deliver(self, notice: Notice, session: AnySession) -> None:
        """Enqueue the work for `notice` in `session` (the change's unit of work); no network I/O here."""


SUBSCRIBERS: list[Subscriber] = []


def subscribe(subscriber: Subscriber) -> None:
    """Register a channel (at import of its module); registering the same name again replaces it."""
    SUBSCRIBERS[:] = [s for s in SUBSCRIBERS if s.name != subscriber.name]
    SUBSCRIBERS.append(subscriber)


def publish(type_: str, app_slug: str | None, build: Callable[[], Notice], session: AnySession) -> None:
    """Offer a notice of `type_`: `build` runs only when some subscriber wants it. A subscriber that fails
    raises: the change and its notifications commit together or not at all."""
    if not SUBSCRIBERS:
        return
    interested = [s for s in SUBSCRIBERS if s.wants(type_, app_slug)]
    if not interested:
        return
    notice = build()
    for s in interested:
        s.deliver(notice, session)


def publish_notice(notice: Notice, session: AnySession) -> None:
    """Offer a notice built by the caller (system notices: key.expiring, webhook.disabled)."""
    if not catalog.is_known(notice.type):
        raise ValueError(f"unknown notification type {notice.type!r}")
    publish(notice.type, notice.app_slug, lambda: notice, session)
