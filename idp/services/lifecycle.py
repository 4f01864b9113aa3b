"""Lifecycle hooks: the services that change users, groups and app policies call these, in their unit of work,
so outbound provisioning (and later webhooks) learn of every change through the outbox. Kept free of any
provisioning detail: services.provisioning registers what happens (PROVISIONING_HOOKS)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# event name -> callables(**details); filled by services.provisioning at import
LISTENERS: dict[str, list[Callable[..., None]]] = {}

USER_CHANGED = "user.changed"          # user_id: created, updated, groups or fields changed, re-enabled
USER_DEACTIVATED = "user.deactivated"  # user_id: disabled (SCIM active=false, console, CLI)
USER_DELETED = "user.deleted"          # user_id, username, external_id: before the row goes
GROUP_CHANGED = "group.changed"        # group_id: members or name changed
GROUP_DELETED = "group.deleted"        # group_id, name, external_id: before the row goes
APP_ACCESS_CHANGED = "app.access_changed"   # app_id: the app's policy (who may use it) changed


def listen(event: str, fn: Callable[..., None]) -> None:
    LISTENERS.setdefault(event, []).append(fn)


def emit(event: str, **details: Any) -> None:
    """Tell the listeners (in the caller's unit of work: what they enqueue commits with the change)."""
    for fn in LISTENERS.get(event, ()):
        fn(**details)
