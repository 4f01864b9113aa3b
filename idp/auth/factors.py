"""A user's authentication factors as one list, for `idp users factors`, the console and /account."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from ..models import User
from . import passkeys, recovery_codes, totp, totp_guard


@dataclass(frozen=True, slots=True)
class Factor:
    kind: str                       # totp | recovery_codes (passkeys add "passkey")
    name: str
    created_at: datetime | None
    last_used_at: datetime | None
    id: str | None = None
    detail: str = ""                # e.g. "suspended", "7 of 10 left"

    def to_dict(self) -> dict[str, object]:
        def iso(d: datetime | None) -> str | None:
            return d.isoformat().replace("+00:00", "Z") if d else None
        return {"kind": self.kind, "name": self.name, "id": self.id, "created_at": iso(self.created_at),
                "last_used_at": iso(self.last_used_at), "detail": self.detail}


def list_factors(user: User) -> list[Factor]:
    found: list[Factor] = []
    if totp.is_enrolled(user):
        last = datetime.fromtimestamp(user.totp_last_step * totp.STEP, UTC) if user.totp_last_step else None
        found.append(Factor("totp", "Authenticator app (TOTP)", user.totp_enrolled_at, last, "totp",
                            "suspended" if totp_guard.is_suspended(user) else ""))
    for key in passkeys.passkeys_of(user):
        found.append(Factor("passkey", key.name, key.created_at, key.last_used_at, f"passkey-{key.id}",
                            "synced" if key.backup_eligible else "device-bound"))
    left = recovery_codes.remaining(user)
    issued = recovery_codes.issued_at(user)
    if issued is not None:
        found.append(Factor("recovery_codes", "Recovery codes", issued, recovery_codes.last_used_at(user),
                            "recovery_codes", f"{left} of {recovery_codes.COUNT} left"))
    return found
