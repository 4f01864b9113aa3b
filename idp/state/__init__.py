"""Shared short-lived state (replay cache, parked requests, throttling, TOTP last step).

Everything security-relevant that several IdP instances must agree on lives here, in the
database by default or in Redis when IDP_REDIS_URL is set (then the database is not touched on
these hot paths). Never in process memory only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from ..extensions import component

if TYPE_CHECKING:
    from .base import SharedState


def shared() -> SharedState:
    return cast("SharedState", component("idp.state"))
