"""Passkeys (WebAuthn Level 3) on py_webauthn: the registration and authentication ceremonies and the stored
credentials. No CBOR, COSE or signature code of our own: py_webauthn parses and verifies.

- Relying party: the RP ID is the host of IDP_BASE_URL, the one accepted origin is scheme://host[:port] of it
  (browsers refuse an IP address as RP ID: serve the IdP under a name). IDP_PASSKEY_RP_NAME is the display name.
- User verification is required in both ceremonies (a PIN or biometric on the authenticator), and registration
  asks for a discoverable credential (resident key), so a passkey also signs in without a username.
- The user handle is 32 random bytes per user (`users.webauthn_user_id`), never the username.
- Challenges: 32 random bytes kept in the shared state (idp.state: the database, or Redis when configured, so
  every instance sees them) under an unguessable ceremony token, for CHALLENGE_TTL_S, bound to the purpose
  (register / authenticate) and the user, and consumed atomically at the first attempt, right or wrong.
- Sign counter (WebAuthn §6.1.1): a non-zero counter that does not increase means a cloned authenticator; the
  assertion is refused (code "counter") after its signature was verified. The update is a compare-and-set, so
  two concurrent uses of the same counter value cannot both pass. Backup eligibility is fixed at registration
  (WebAuthn §6.1.3): an assertion that changes it is refused; the backup state is stored at each use.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

from sqlalchemy import delete, exists, select, update
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    base64url_to_bytes,
    bytes_to_base64url,
    decode_credential_public_key,
    decoded_public_key_to_cryptography,
    parse_authentication_credential_json,
    parse_registration_credential_json,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticationCredential,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    RegistrationCredential,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from ..config import Settings
from ..extensions import component, db
from ..models import Passkey, User, utcnow
from ..state import shared

CHALLENGE_TTL_S = 300          # a ceremony token (and its challenge) lives 5 minutes, and is used once
TIMEOUT_MS = 120_000           # the browser's hint for how long the user may take
STATE_KIND = "passkey"         # kind of the shared-state entry (idp.state.get checks it)
NAME_MAX = 64
MAX_PER_USER = 20              # registrations beyond this are refused (the options list all of them)
REGISTER, AUTHENTICATE = "register", "authenticate"


class PasskeyError(Exception):
    """A refused ceremony. `code` says why (for the event log); the message is safe to show the user.

    Codes: challenge (expired, used, or another purpose/user), invalid (malformed, bad signature, wrong origin or
    RP ID, no user verification), unknown_credential, wrong_user, counter (cloned authenticator), backup_eligible,
    duplicate, limit.
    """

    def __init__(self, message: str, code: str, *, passkey: Passkey | None = None, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.passkey = passkey
        self.detail = detail or message   # for admins (event detail): the library's own words, never key material


@dataclass(frozen=True, slots=True)
class RelyingParty:
    id: str
    origin: str
    name: str


def relying_party(settings: Settings | None = None) -> RelyingParty:
    s = settings or cast(Settings, component("idp.settings"))
    parts = urlsplit(s.base_url)
    host = (parts.hostname or "").lower()
    default_port = {"http": 80, "https": 443}[parts.scheme]
    netloc = host if parts.port in (None, default_port) else f"{host}:{parts.port}"
    if ":" in host:  # an IPv6 literal (never a valid RP ID, but keep the origin well-formed)
        netloc = f"[{host}]" if parts.port in (None, default_port) else f"[{host}]:{parts.port}"
    return RelyingParty(id=host, origin=f"{parts.scheme}://{netloc}", name=s.passkey_rp_name)


# ------------------------------------------------------------------ stored credentials

def has_passkey(user: User) -> bool:
    return bool(db.session.scalar(select(exists().where(Passkey.user_id == user.id))))


def passkeys_of(user: User) -> list[Passkey]:
    """The user's passkeys, oldest first (for /account, the console and `idp users factors`)."""
    return list(db.session.scalars(select(Passkey).where(Passkey.user_id == user.id)
                                   .order_by(Passkey.created_at, Passkey.id)))


def find_own(user: User, passkey_id: int) -> Passkey | None:
    row = db.session.get(Passkey, passkey_id)
    return row if row is not None and row.user_id == user.id else None


def amr_value(passkey: Passkey) -> str:
    """RFC 8176: "swk" for a synced passkey (backup-eligible: a software-protected key that can leave the device),
    "hwk" for a device-bound one (security key, platform authenticator without sync)."""
    return "swk" if passkey.backup_eligible else "hwk"


def clean_name(name: str | None, fallback: str) -> str:
    text = " ".join("".join(c for c in (name or "") if c.isprintable()).split())[:NAME_MAX]
    return text or fallback


def rename(passkey: Passkey, name: str) -> None:
    passkey.name = clean_name(name, passkey.name)


def remove(passkey: Passkey) -> None:
    db.session.delete(passkey)
    db.session.flush()


def remove_all(user: User) -> int:
    result = db.session.execute(delete(Passkey).where(Passkey.user_id == user.id)
                                .execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


def user_handle(user: User) -> bytes:
    """The user's WebAuthn user handle: made once (32 random bytes), stored base64url; never the username."""
    if not user.webauthn_user_id:
        user.webauthn_user_id = bytes_to_base64url(secrets.token_bytes(32))
        db.session.flush()
    return base64url_to_bytes(user.webauthn_user_id)


# ------------------------------------------------------------------ challenges (shared state)

def _new_ceremony(purpose: str, user_id: int | None) -> tuple[bytes, str]:
    challenge = secrets.token_bytes(32)
    token = shared().put({"kind": STATE_KIND, "purpose": purpose, "user_id": user_id,
                          "challenge": bytes_to_base64url(challenge)}, CHALLENGE_TTL_S)
    return challenge, token


def _take_challenge(token: str | None, purpose: str, user_id: int | None) -> bytes:
    """The ceremony's challenge, consumed (single use whatever happens next); refused when expired, used, or
    issued for another purpose or user."""
    data = None
    if token and len(token) <= 64 and token.isascii():
        data = shared().get(token, STATE_KIND, consume=True)
    if data is None:
        raise PasskeyError("This passkey request expired or was already used. Try again.", "challenge",
                           detail="unknown, expired or already used challenge")
    if data.get("purpose") != purpose or data.get("user_id") != user_id:
        raise PasskeyError("This passkey request is not valid here. Try again.", "challenge",
                           detail=f"challenge issued for {data.get('purpose')} of another subject")
    return base64url_to_bytes(str(data["challenge"]))


# ------------------------------------------------------------------ registration

def registration_options(user: User, settings: Settings | None = None) -> tuple[str, str]:
    """(PublicKeyCredentialCreationOptions as JSON, ceremony token)."""
    rp = relying_party(settings)
    limit = _too_many(user)
    if limit is not None:
        raise limit
    existing = passkeys_of(user)
    challenge, token = _new_ceremony(REGISTER, user.id)
    display = " ".join(p for p in (user.first_name, user.last_name) if p) or user.username
    options = generate_registration_options(
        rp_id=rp.id, rp_name=rp.name, user_name=user.username, user_id=user_handle(user),
        user_display_name=display, challenge=challenge, timeout=TIMEOUT_MS,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED, require_resident_key=True,
            user_verification=UserVerificationRequirement.REQUIRED),
        exclude_credentials=[_descriptor(p) for p in existing])
    return options_to_json(options), token


def _no_credential() -> PasskeyError:
    return PasskeyError("The browser sent no passkey. Try again.", "invalid",
                        detail="no credential in the request (missing, not an object, or too large)")


def _too_many(user: User) -> PasskeyError | None:
    if len(passkeys_of(user)) >= MAX_PER_USER:
        return PasskeyError(f"You already have {MAX_PER_USER} passkeys. Remove one first.", "limit",
                            detail=f"already {MAX_PER_USER} passkeys")
    return None


def _check_public_key(cose_key: bytes) -> None:
    """The credential public key must decode (COSE) and load (`cryptography`: a point on its curve, a sane RSA
    key), or it is never stored: a "none" attestation checks no signature made with it."""
    try:
        decoded_public_key_to_cryptography(decode_credential_public_key(cose_key))
    except Exception as exc:  # noqa: BLE001 - any failure of a hostile key is a refusal, never a 500
        raise PasskeyError("The passkey could not be verified. Try again, or use another authenticator.",
                           "invalid", detail=f"unusable credential public key ({exc.__class__.__name__})"
                           ) from None


def register(user: User, token: str | None, credential: dict[str, Any] | str | None, name: str | None,
             settings: Settings | None = None) -> Passkey:
    """Verify the authenticator's answer to registration_options and store the passkey (raises PasskeyError).

    Whatever the answer holds (malformed JSON, CBOR or COSE, wrong types), the outcome is a PasskeyError and the
    challenge stays consumed: py_webauthn raises more than its own exceptions on hostile input (IndexError,
    AttributeError, …), so every exception of the parse and verification is a refusal."""
    challenge = _take_challenge(token, REGISTER, user.id)
    if credential is None:
        raise _no_credential()
    limit = _too_many(user)   # checked again here: options may have been issued before other registrations
    if limit is not None:
        raise limit
    rp = relying_party(settings)
    try:
        parsed: RegistrationCredential = parse_registration_credential_json(credential)
        verified = verify_registration_response(credential=parsed, expected_challenge=challenge,
                                                expected_rp_id=rp.id, expected_origin=rp.origin,
                                                require_user_verification=True)
    except Exception as exc:  # noqa: BLE001 - see above
        raise PasskeyError("The passkey could not be verified. Try again, or use another authenticator.",
                           "invalid", detail=f"registration refused: {_why(exc)}"[:300]) from None
    _check_public_key(verified.credential_public_key)
    if len(verified.credential_id) > 1023:
        raise PasskeyError("This authenticator's credential is too large.", "invalid", detail="credential id > 1023")
    if db.session.scalar(select(exists().where(Passkey.credential_id == verified.credential_id))):
        raise PasskeyError("This passkey is already registered.", "duplicate", detail="credential id already stored")
    transports = [t.value for t in (parsed.response.transports or []) if isinstance(t, AuthenticatorTransport)]
    count = len(passkeys_of(user))
    row = Passkey(user_id=user.id, credential_id=verified.credential_id,
                  public_key=verified.credential_public_key, sign_count=verified.sign_count,
                  transports=transports[:8], aaguid=str(verified.aaguid)[:36],
                  backup_eligible=verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
                  backup_state=bool(verified.credential_backed_up),
                  name=clean_name(name, f"Passkey {count + 1}"), created_at=utcnow())
    db.session.add(row)
    db.session.flush()
    return row


def _why(exc: Exception) -> str:
    """The library's words for an admin (event detail): its own exceptions say what failed; anything else (an
    IndexError deep in CBOR/COSE decoding) only by its class, as the message may quote attacker bytes."""
    if isinstance(exc, WebAuthnException):
        return str(exc)
    return f"malformed ({exc.__class__.__name__})"


# ------------------------------------------------------------------ authentication

def authentication_options(user: User | None, settings: Settings | None = None) -> tuple[str, str]:
    """(PublicKeyCredentialRequestOptions as JSON, ceremony token). With a user (second factor after the
    password) the options list that user's passkeys and the challenge is bound to them; without one
    (passwordless) the authenticator offers its discoverable credentials for this RP."""
    rp = relying_party(settings)
    challenge, token = _new_ceremony(AUTHENTICATE, user.id if user is not None else None)
    allow = [_descriptor(p) for p in passkeys_of(user)] if user is not None else []
    options = generate_authentication_options(rp_id=rp.id, challenge=challenge, timeout=TIMEOUT_MS,
                                              allow_credentials=allow,
                                              user_verification=UserVerificationRequirement.REQUIRED)
    return options_to_json(options), token


def authenticate(token: str | None, credential: dict[str, Any] | str | None, *, user: User | None,
                 settings: Settings | None = None) -> Passkey:
    """Verify an assertion; returns the passkey used (its user is the one signing in). Raises PasskeyError.

    `user`: the password-verified user when the passkey is the second factor (the passkey must be theirs);
    None for a passwordless sign-in.
    """
    challenge = _take_challenge(token, AUTHENTICATE, user.id if user is not None else None)
    if credential is None:
        raise _no_credential()
    rp = relying_party(settings)
    try:
        parsed: AuthenticationCredential = parse_authentication_credential_json(credential)
    except Exception as exc:  # noqa: BLE001 - any failure on hostile input is a refusal, never a 500
        raise PasskeyError("The passkey answer was not understood. Try again.", "invalid",
                           detail=f"malformed assertion: {_why(exc)}"[:300]) from None
    row = db.session.scalar(select(Passkey).where(Passkey.credential_id == parsed.raw_id))
    if row is None:
        raise PasskeyError("This passkey is not registered here. Sign in with your password, or use another "
                           "passkey.", "unknown_credential", detail="unknown credential id")
    if user is not None and row.user_id != user.id:
        raise PasskeyError("This passkey belongs to another account.", "wrong_user", passkey=row,
                           detail="the passkey of another user was offered as the second factor")
    owner = db.session.get(User, row.user_id)
    assert owner is not None
    handle = parsed.response.user_handle
    if user is None and not handle:
        # WebAuthn §7.2 step 6: when the user was not identified before the ceremony (passwordless), the
        # response must carry the user handle, and it must be the credential's user's
        raise PasskeyError("The passkey answer was not understood. Try again.", "invalid", passkey=row,
                           detail="passwordless assertion without a user handle")
    if handle is not None and (owner.webauthn_user_id is None
                               or not secrets.compare_digest(handle, base64url_to_bytes(owner.webauthn_user_id))):
        raise PasskeyError("This passkey belongs to another account.", "wrong_user", passkey=row,
                           detail="user handle does not match the credential's user")
    try:
        # current count 0: py_webauthn checks the counter before the signature; we check it after (below), so a
        # "cloned authenticator" event is only ever raised by a genuine signature
        verified = verify_authentication_response(credential=parsed, expected_challenge=challenge,
                                                  expected_rp_id=rp.id, expected_origin=rp.origin,
                                                  credential_public_key=row.public_key,
                                                  credential_current_sign_count=0,
                                                  require_user_verification=True)
    except Exception as exc:  # noqa: BLE001 - as in register()
        raise PasskeyError("The passkey could not be verified. Try again.", "invalid", passkey=row,
                           detail=f"assertion refused: {_why(exc)}"[:300]) from None
    old, new = row.sign_count, verified.new_sign_count
    if (old or new) and new <= old:
        raise PasskeyError("This passkey was refused: its signature counter went backwards, which happens when "
                           "an authenticator was copied. Ask your administrator.", "counter", passkey=row,
                           detail=f"sign counter {new} not greater than the stored {old}: possible cloned "
                                  "authenticator")
    eligible = verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE
    if eligible != row.backup_eligible:
        raise PasskeyError("This passkey was refused: the authenticator changed how it is backed up.",
                           "backup_eligible", passkey=row,
                           detail=f"backup-eligible flag changed from {row.backup_eligible} to {eligible}")
    result = db.session.execute(
        update(Passkey).where(Passkey.id == row.id, Passkey.sign_count == old)
        .values(sign_count=new, backup_state=bool(verified.credential_backed_up), last_used_at=utcnow())
        .execution_options(synchronize_session=False))
    if not getattr(result, "rowcount", 0):
        raise PasskeyError("This passkey was refused: it was used twice at the same time.", "counter", passkey=row,
                           detail="sign counter changed concurrently")
    db.session.refresh(row)
    return row


def _descriptor(p: Passkey) -> PublicKeyCredentialDescriptor:
    transports = []
    for t in p.transports or []:
        try:
            transports.append(AuthenticatorTransport(t))
        except ValueError:
            continue
    return PublicKeyCredentialDescriptor(id=p.credential_id, transports=transports or None)
