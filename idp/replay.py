"""Replay cache for inbound request IDs: an atomic insert that fails when (issuer, ID) was seen."""

from __future__ import annotations

from datetime import datetime, timedelta

from .models import utcnow
from .state import shared


def remember_request(issuer: str, request_id: str, keep_until: datetime) -> bool:
    """True when this (issuer, ID) is new; False when it was already seen (a replay), in any binding.

    Atomic across processes and instances (unique constraint, or Redis SET NX EX).
    """
    ttl = max(1, int((keep_until - utcnow()).total_seconds()))
    return shared().remember_once(f"{issuer}\n{request_id}", ttl)


def replay_window(max_age_s: int) -> timedelta:
    """How long an ID must be remembered: the whole window in which its IssueInstant is acceptable."""
    return timedelta(seconds=2 * max_age_s + 60)
