"""The interface both shared-state backends implement."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class ThrottleRule:
    """After `free` failures inside `window`, each further failure locks for base * 2^(n-free) s (capped)."""

    free: int = 5
    window: timedelta = timedelta(minutes=15)
    base_lock_s: int = 2
    max_lock_s: int = 15 * 60

    def lock_for(self, failures: int) -> int:
        if failures < self.free:
            return 0
        return int(min(self.max_lock_s, self.base_lock_s * 2 ** min(failures - self.free, 30)))


class RecordedFirstElsewhere(Exception):
    """A key deferred with `remember_at_commit` was recorded by another transaction in the meantime: the commit
    that would have recorded it is refused (the caller rolls back and answers as for a replay)."""

    def __init__(self, key: str) -> None:
        super().__init__("recorded by a concurrent request")
        self.key = key


class SharedState(Protocol):
    name: str

    def remember_once(self, key: str, ttl_s: int) -> bool:
        """Atomically record `key`; False when it was already recorded and not yet expired."""

    def remember_at_commit(self, key: str, ttl_s: int) -> bool:
        """False when `key` is recorded and live now; else True, and `key` is recorded when the caller's unit of
        work commits. The atomicity stays with the commit: when a concurrent request recorded the key first,
        that commit raises RecordedFirstElsewhere and writes nothing. (Backends without a write lock to
        shorten may record at once.)"""

    def was_remembered(self, key: str) -> bool:
        """Whether `key` was recorded by remember_once and has not expired (a check only: records nothing)."""

    def put(self, data: dict[str, Any], ttl_s: int) -> str:
        """Store data under a new unguessable token."""

    def put_at(self, token: str, data: dict[str, Any], ttl_s: int) -> None:
        """Store data under a token the caller drew (an artifact's random MessageHandle)."""

    def get(self, token: str, kind: str, *, consume: bool) -> dict[str, Any] | None:
        """The data of `token` if its kind matches and it has not expired (deleted when consumed)."""

    def replace(self, token: str, data: dict[str, Any], ttl_s: int) -> None:
        """Overwrite the data of an existing token."""

    def retry_after(self, key: str) -> int:
        """Seconds to wait before `key` may try again (0: go ahead)."""

    def record_failure(self, key: str, rule: ThrottleRule) -> int:
        """Count a failure; returns the lock-out it triggered, in seconds (0: none)."""

    def reset_failures(self, key: str) -> None: ...

    def consume_totp_step(self, user_id: int, step: int) -> bool:
        """Atomically move the user's last used TOTP step forward to `step`; False if not greater (a replay)."""

    def reset_totp(self, user_id: int) -> None: ...

    def ping(self) -> None:
        """Raise when the backend is unreachable."""
