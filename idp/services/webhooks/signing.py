"""Webhook signatures as the Standard Webhooks spec (https://www.standardwebhooks.com/) defines them.

A secret reads `whsec_<base64 of 24-64 random bytes>`; the HMAC key is the decoded bytes. Each attempt carries
`webhook-id` (the notice id: the same on every retry, the receiver's idempotency key), `webhook-timestamp` (unix
seconds of this attempt) and `webhook-signature`: `v1,<base64 HMAC-SHA256(key, id + "." + timestamp + "." +
body)>`, several space-separated while a rotated secret's overlap lasts (the receiver accepts any one).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from .. import ServiceError

PREFIX = "whsec_"
NEW_SECRET_BYTES = 32
MIN_SECRET_BYTES, MAX_SECRET_BYTES = 24, 64


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(NEW_SECRET_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_` secret; ServiceError when it is not one."""
    text = secret.strip()
    if not text.startswith(PREFIX):
        raise ServiceError("a webhook secret reads whsec_<base64 of 24-64 random bytes>", field="secret")
    try:
        raw = base64.b64decode(text[len(PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise ServiceError("the webhook secret after whsec_ is not base64", field="secret") from None
    if not MIN_SECRET_BYTES <= len(raw) <= MAX_SECRET_BYTES:
        raise ServiceError(f"the webhook secret must hold {MIN_SECRET_BYTES}-{MAX_SECRET_BYTES} random bytes, "
                           f"got {len(raw)}", field="secret")
    return raw


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def signature_header(secrets_: list[str], msg_id: str, timestamp: int, body: bytes) -> str:
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets_)


def signed_headers(secrets_: list[str], msg_id: str, body: bytes, *, now: float | None = None) -> dict[str, str]:
    timestamp = int(now if now is not None else time.time())
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(secrets_, msg_id, timestamp, body)}


@dataclass(frozen=True, slots=True)
class SecretSet:
    """What an endpoint's sealed secret holds: the current secret and, for a while after a rotation, the
    previous one (both sign until `previous_until`, unix seconds)."""

    current: str
    previous: str | None = None
    previous_until: int | None = None

    def signing(self, *, now: float | None = None) -> list[str]:
        now = now if now is not None else time.time()
        if self.previous and self.previous_until and now < self.previous_until:
            return [self.current, self.previous]
        return [self.current]

    def dump(self) -> str:
        if not self.previous:
            return self.current
        return json.dumps({"current": self.current, "previous": self.previous, "previous_until": self.previous_until})

    @classmethod
    def load(cls, text: str) -> SecretSet:
        if not text.startswith("{"):
            return cls(text)
        data = json.loads(text)
        return cls(str(data["current"]), data.get("previous"), data.get("previous_until"))
