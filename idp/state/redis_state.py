"""Shared state in Redis: SET NX EX for the replay cache, GETDEL for single use, Lua for compare-and-set."""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

import redis

from .base import ThrottleRule

_PREFIX = "idp:"

# KEYS[1] = the user's last step; ARGV[1] = step. Set only if greater; returns 1 when set.
_TOTP_CAS = """
local cur = redis.call('GET', KEYS[1])
if cur and tonumber(cur) >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""

# KEYS[1] = counter, KEYS[2] = lock; ARGV: window_s, free, base, max. Returns the lock seconds set (0: none).
_FAILURE = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1])) end
local free = tonumber(ARGV[2])
if n < free then return 0 end
local lock = tonumber(ARGV[3]) * (2 ^ math.min(n - free, 30))
if lock > tonumber(ARGV[4]) then lock = tonumber(ARGV[4]) end
lock = math.floor(lock)
redis.call('SET', KEYS[2], '1', 'EX', lock)
local ttl = redis.call('TTL', KEYS[1])
if ttl < lock then redis.call('EXPIRE', KEYS[1], lock + tonumber(ARGV[1])) end
return lock
"""


class RedisState:
    name = "redis"

    def __init__(self, url: str, *, connect_timeout_s: float = 2.0, timeout_s: float = 2.0) -> None:
        self.client = redis.Redis.from_url(url, socket_connect_timeout=connect_timeout_s, socket_timeout=timeout_s,
                                           health_check_interval=30, retry_on_timeout=False)
        self._totp_cas = self.client.register_script(_TOTP_CAS)
        self._failure = self.client.register_script(_FAILURE)

    def remember_once(self, key: str, ttl_s: int) -> bool:
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()  # bounded key size whatever the issuer
        return bool(self.client.set(f"{_PREFIX}seen:{digest}", b"1", nx=True, ex=max(1, ttl_s)))

    def remember_at_commit(self, key: str, ttl_s: int) -> bool:
        """Recorded at once: SET NX takes no lock that a later commit would hold longer."""
        return self.remember_once(key, ttl_s)

    def was_remembered(self, key: str) -> bool:
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        return bool(self.client.exists(f"{_PREFIX}seen:{digest}"))

    def put(self, data: dict[str, Any], ttl_s: int) -> str:
        token = secrets.token_urlsafe(24)
        self.client.set(f"{_PREFIX}pending:{token}", json.dumps(data), ex=max(1, ttl_s))
        return token

    def put_at(self, token: str, data: dict[str, Any], ttl_s: int) -> None:
        self.client.set(f"{_PREFIX}pending:{token}", json.dumps(data), ex=max(1, ttl_s))

    def get(self, token: str, kind: str, *, consume: bool) -> dict[str, Any] | None:
        key = f"{_PREFIX}pending:{token}"
        raw = self.client.getdel(key) if consume else self.client.get(key)
        if raw is None:
            return None
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("kind") != kind:
            if consume:  # not ours to consume: put it back untouched
                ttl = self.client.ttl(key)
                self.client.set(key, raw, ex=max(1, int(ttl) if isinstance(ttl, int) and ttl > 0 else 60))
            return None
        return data

    def replace(self, token: str, data: dict[str, Any], ttl_s: int) -> None:
        self.client.set(f"{_PREFIX}pending:{token}", json.dumps(data), ex=max(1, ttl_s), xx=True)

    def retry_after(self, key: str) -> int:
        ttl = self.client.ttl(f"{_PREFIX}lock:{key}")
        return int(ttl) if isinstance(ttl, int) and ttl > 0 else 0

    def record_failure(self, key: str, rule: ThrottleRule) -> int:
        return int(self._failure(keys=[f"{_PREFIX}fail:{key}", f"{_PREFIX}lock:{key}"],
                                 args=[int(rule.window.total_seconds()), rule.free, rule.base_lock_s,
                                       rule.max_lock_s]))

    def reset_failures(self, key: str) -> None:
        self.client.delete(f"{_PREFIX}fail:{key}", f"{_PREFIX}lock:{key}")

    def consume_totp_step(self, user_id: int, step: int) -> bool:
        return bool(self._totp_cas(keys=[f"{_PREFIX}totp:{user_id}"], args=[step]))

    def reset_totp(self, user_id: int) -> None:
        self.client.delete(f"{_PREFIX}totp:{user_id}")

    def ping(self) -> None:
        self.client.ping()
