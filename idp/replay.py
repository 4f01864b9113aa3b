"""Replay cache for inbound request IDs: an atomic insert that fails when (issuer, ID) was seen."""

from __future__ import annotations

from .state import shared


def remember_request(issuer: str, request_id: str, max_age_s: int, *, at_commit: bool = False) -> bool:
    """True when this (issuer, ID) is new; False when it was already seen (a replay), in any binding.

    The ID is remembered for the whole window in which its IssueInstant is acceptable (max_age
    either side of now, plus a minute). Atomic across processes and instances (unique
    constraint, or Redis SET NX EX). `at_commit`: checked now, recorded by the caller's commit (which raises
    RecordedFirstElsewhere when a concurrent request recorded it first): see DbState.remember_at_commit.
    """
    key, ttl_s = f"{issuer}\n{request_id}", 2 * max_age_s + 60
    return shared().remember_at_commit(key, ttl_s) if at_commit else shared().remember_once(key, ttl_s)


def replayed_key(key: str) -> tuple[str, str]:
    """(issuer, request ID) of a key made by remember_request."""
    issuer, _, request_id = key.partition("\n")
    return issuer, request_id
