"""Short-lived server-side state referenced by an unguessable token (parked SSO requests, logout chains)."""

from __future__ import annotations

from typing import Any

from idp.state import shared

TTL_S = 30 * 60


def put(data: dict[str, Any]) -> str:
    return shared().put(data, TTL_S)


def get(token: str | None, kind: str, *, consume: bool) -> dict[str, Any] | None:
    if not token or len(token) > 64:
        return None
    return shared().get(token, kind, consume=consume)


def replace(token: str, data: dict[str, Any]) -> None:
    shared().replace(token, data, TTL_S)
