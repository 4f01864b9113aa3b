"""TOTP second factor (RFC 6238: SHA-1, 6 digits, 30 s): enrolment, QR code, verification with replay guard.

The secret is stored sealed (AES-GCM under the data key, auth.datakeys), never in plain text: `users.totp_secret`
holds `v1:...`; `secret_of(user)` opens it. Rows from before encryption are re-sealed when next read.
"""

from __future__ import annotations

import io
import time
from typing import cast

import pyotp
import qrcode
import qrcode.image.svg

from .. import audit
from ..extensions import component, db
from ..models import User, utcnow
from ..state import shared
from . import totp_guard
from .datakeys import DataKeyError, DataKeys

STEP = 30
ISSUER = "Identity Provider"
PURPOSE = "users.totp_secret"  # bound to the ciphertext: a sealed value only opens in this column


def data_keys() -> DataKeys:
    return cast(DataKeys, component("idp.datakeys"))


def seal(secret: str) -> str:
    return data_keys().seal(secret, PURPOSE)


def secret_of(user: User) -> str | None:
    """The user's TOTP secret in clear (for verification and the enrolment page), or None.

    A value stored before encryption or under an older data key is re-sealed under the current key, in the
    caller's unit of work. Raises DataKeyError (an operator problem) when the key it was sealed with is missing.
    """
    stored = user.totp_secret
    if not stored:
        return None
    keys = data_keys()
    secret = keys.open(stored, PURPOSE)
    if keys.needs_reseal(stored):
        user.totp_secret = keys.seal(secret, PURPOSE)
    return secret


def reseal_stored_secrets() -> tuple[int, int]:
    """Seal every TOTP secret still stored in plain text or under an older key (`idp db upgrade`).

    Returns (re-sealed, unreadable): rows sealed with a key that is not configured are left as they are.
    """
    done = failed = 0
    keys = data_keys()
    for user in db.session.query(User).filter(User.totp_secret.is_not(None)):
        stored = user.totp_secret
        assert stored is not None
        try:
            if keys.needs_reseal(stored):
                user.totp_secret = keys.seal(keys.open(stored, PURPOSE), PURPOSE)
                done += 1
        except DataKeyError:
            failed += 1
    return done, failed


def new_secret() -> str:
    return pyotp.random_base32(32)


def provisioning_uri(user: User, secret: str, issuer: str = ISSUER) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=user.username, issuer_name=issuer)


def qr_svg(uri: str) -> str:
    """An inline SVG QR code (no Pillow needed); safe to embed: it is generated, not user markup."""
    img = qrcode.make(uri, image_factory=qrcode.image.svg.SvgPathImage, box_size=8, border=2)
    buf = io.BytesIO()
    img.save(buf)
    svg = buf.getvalue().decode("utf-8")
    return svg[svg.index("<svg"):]


def matching_step(secret: str, code: str, now: float | None = None) -> int | None:
    """The time step (±1 around now) whose code equals `code`, or None."""
    code = "".join(code.split())
    if not (len(code) == 6 and code.isascii() and code.isdigit()):
        return None
    totp = pyotp.TOTP(secret)
    now = time.time() if now is None else now
    current = int(now // STEP)
    for step in (current, current - 1, current + 1):
        if pyotp.utils.strings_equal(totp.at(step * STEP), code):
            return step
    return None


def consume_step(user_id: int, step: int) -> bool:
    """Atomically record `step` as used; False when this or a later step was already used (a replay).

    A conditional UPDATE (or a Redis compare-and-set), so two sessions racing with the same code
    cannot both succeed, on any instance.
    """
    return shared().consume_totp_step(user_id, step)


def verify_and_consume(user: User, code: str, *, pending_secret: bool = False, now: float | None = None) -> bool:
    if not user.totp_secret or (not user.totp_confirmed and not pending_secret):
        return False
    secret = secret_of(user)
    assert secret is not None
    step = matching_step(secret, code, now)
    return step is not None and consume_step(user.id, step)


def start_enrolment(user: User) -> str:
    """A new unconfirmed secret (replacing an earlier unconfirmed one); confirmed secrets are never replaced here."""
    if user.totp_confirmed:
        raise ValueError("a second factor is already enrolled")
    secret = new_secret()
    user.totp_secret = seal(secret)
    user.totp_last_step = None
    shared().reset_totp(user.id)
    return secret


def confirm_enrolment(user: User, code: str) -> bool:
    if user.totp_confirmed or not user.totp_secret:
        return False
    if not verify_and_consume(user, code, pending_secret=True):
        return False
    user.totp_confirmed = True
    user.totp_enrolled_at = utcnow()
    return True


def reset(user: User) -> None:
    audit.record("user.mfa_reset", "user", user.username)
    user.totp_secret = None
    user.totp_confirmed = False
    user.totp_last_step = None
    user.totp_enrolled_at = None
    totp_guard.clear(user)  # a new factor starts with no wrong codes and no suspension
    shared().reset_totp(user.id)


def is_enrolled(user: User) -> bool:
    """A confirmed TOTP authenticator (User.mfa_enrolled also counts passkeys)."""
    return user.totp_enrolled
