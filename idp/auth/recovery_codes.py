"""Recovery codes: ten single-use codes, shown once when the first factor is enrolled, usable in place of it.

A code reads `xxxx-xxxx-xx`: ten symbols from a 31-letter alphabet without look-alikes (no 0/o, 1/l/i), about
49.5 bits from `secrets`. Typing is forgiving: case, spaces and hyphens do not matter.

Why a keyed hash and not argon2: argon2 exists to make guessing *low-entropy, human-chosen* passwords expensive
offline. These codes are machine-chosen and uniformly random; online they are out of reach (the second-factor
throttle allows a few guesses a minute against 2^49 values), and offline a stolen database alone is not enough:
each code is stored as HMAC-SHA256 under a key derived from the data key (auth.datakeys), which lives outside the
database, over the user id and the code (so a hash cannot be moved to another user). A slow hash would cost
~50 ms per candidate code times ten codes at every use, for no gain over the key. Comparison runs over every
unused code without stopping at a match (`hmac.compare_digest`), and a use is a conditional UPDATE, so two
requests racing with the same code cannot both win.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import delete, func, select, update

from ..extensions import db
from ..models import RecoveryCode, User, utcnow
from .totp import data_keys

COUNT = 10
ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
LENGTH = 10
PURPOSE = "recovery_codes.code_hash"


def _new_code() -> str:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"


def normalise(code: str) -> str | None:
    """The code's ten symbols, or None when it cannot be a recovery code (wrong length or letters)."""
    text = "".join(c for c in code[:40].lower() if c not in " -\t")
    if len(text) != LENGTH or any(c not in ALPHABET for c in text):
        return None
    return text


def _message(user: User, normalised: str) -> bytes:
    return f"{user.id}:{normalised}".encode()


def issue(user: User) -> list[str]:
    """Ten new codes for `user` (earlier ones stop working); returns them in clear, to be shown once."""
    clear(user)
    keys = data_keys()
    codes = [_new_code() for _ in range(COUNT)]
    now = utcnow()
    for code in codes:
        norm = normalise(code)
        assert norm is not None
        db.session.add(RecoveryCode(user_id=user.id, code_hash=keys.mac(_message(user, norm), PURPOSE),
                                    created_at=now))
    db.session.flush()
    return codes


def consume(user: User, code: str) -> bool:
    """Use one code: True (and it is spent) when it is one of the user's unused codes."""
    norm = normalise(code)
    if norm is None:
        return False
    keys = data_keys()
    message = _message(user, norm)
    rows = db.session.execute(select(RecoveryCode.id, RecoveryCode.code_hash)
                              .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))).all()
    matched = None
    for row_id, stored in rows:  # every unused code is compared: no early exit on a match
        if keys.mac_matches(stored, message, PURPOSE) and matched is None:
            matched = row_id
    if matched is None:
        return False
    result = db.session.execute(update(RecoveryCode).where(RecoveryCode.id == matched, RecoveryCode.used_at.is_(None))
                                .values(used_at=utcnow()).execution_options(synchronize_session=False))
    return bool(getattr(result, "rowcount", 0))


def remaining(user: User) -> int:
    return db.session.scalar(select(func.count(RecoveryCode.id))
                             .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))) or 0


def clear(user: User) -> None:
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id)
                       .execution_options(synchronize_session=False))


def issued_at(user: User) -> datetime | None:
    return db.session.scalar(select(func.min(RecoveryCode.created_at)).where(RecoveryCode.user_id == user.id))


def last_used_at(user: User) -> datetime | None:
    return db.session.scalar(select(func.max(RecoveryCode.used_at)).where(RecoveryCode.user_id == user.id))
