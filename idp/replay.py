"""Replay cache for inbound request IDs: an atomic insert that fails when (issuer, ID) was seen."""

from __future__ import annotations

from .state import shared


def remember_request(issuer: str, request_id: str, max_age_s: int) -> bool:
    """True when this (issuer, ID) is new; False when it was already seen (a replay), in any binding.

    The ID is remembered for the whole window in which its IssueInstant is acceptable (max_age
    either side of now, plus a minute). Atomic across processes and instances (unique
    constraint, or Redis SET NX EX).
    """
    return shared().remember_once(f"{issuer}\n{request_id}", 2 * max_age_s + 60)
