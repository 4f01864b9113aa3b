"""Secrets at rest (TOTP seeds): AES-256-GCM under a data key kept outside the database.

A sealed value reads `v1:<kid>:<base64url(nonce || ciphertext+tag)>`. `v1` names the format, `kid` the key
(the first 8 hex digits of a SHA-256 over it), so keys can rotate: the first configured key seals, every
configured key opens, and a value sealed under an older key (or stored before encryption, in plain text)
is re-sealed under the current one when it is next read. The purpose ("users.totp_secret") is bound as
associated data, so a value cannot be moved to another column.

The same keys also give keyed hashes (`mac`, `mac_matches`: HMAC-SHA256 under a key derived from each data key,
stored as `<kid>:<hex>`) for secrets that are only ever compared, never read back (recovery codes).

Keys come from IDP_DATA_KEY (base64 of 32 bytes; several separated by commas, current first) or else from
the file `data_key` in the instance folder (one key a line, current first; created 0600 on the first seal).
Every instance sharing a database must have the same keys, like IDP_SECRET_KEY.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..private_files import write_private_once

FORMAT = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12
KEY_FILE = "data_key"


class DataKeyError(Exception):
    """The data key is missing, malformed or not the one a value was sealed with; the message is for the
    operator (it names the setting and the key id, never key material)."""


@dataclass(frozen=True, slots=True)
class DataKey:
    kid: str
    aead: AESGCM
    mac_key: bytes = b""   # derived from the key for keyed hashes; never the data key itself


def new_key_text() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode().rstrip("=")


def parse_keys(text: str, source: str) -> list[DataKey]:
    """Keys from text (commas, spaces or lines between them; `#` starts a comment line), current first."""
    keys: list[DataKey] = []
    for line in text.splitlines():
        if line.strip().startswith("#"):
            continue
        for item in line.replace(",", " ").split():
            try:
                raw = base64.urlsafe_b64decode(item.replace("+", "-").replace("/", "_") + "=" * (-len(item) % 4))
            except (binascii.Error, ValueError):
                raise DataKeyError(f"{source}: a key is not base64") from None
            if len(raw) != KEY_BYTES:
                raise DataKeyError(f"{source}: a key must be {KEY_BYTES} bytes (base64 of 32 random bytes, "
                                   f"e.g. `openssl rand -base64 32`), got {len(raw)}")
            keys.append(DataKey(hashlib.sha256(b"idp data key " + raw).hexdigest()[:8], AESGCM(raw),
                                hmac.new(raw, b"idp keyed hash v1", hashlib.sha256).digest()))
    if not keys:
        raise DataKeyError(f"{source}: no key")
    return keys


def is_sealed(stored: str) -> bool:
    return stored.startswith(FORMAT + ":")


class DataKeys:
    """The configured data keys, loaded on first use (the key file may be created later by another process)."""

    def __init__(self, env_value: str | None, instance_dir: Path) -> None:
        self._env = env_value
        self._file = instance_dir / KEY_FILE
        self._keys: list[DataKey] | None = None
        self._lock = threading.Lock()
        if env_value:
            self._keys = parse_keys(env_value, "IDP_DATA_KEY")  # a malformed setting stops the start

    @property
    def source(self) -> str:
        return "IDP_DATA_KEY" if self._env else f"the key file {self._file}"

    def _load(self, *, create: bool) -> list[DataKey]:
        if self._keys is not None:
            return self._keys
        with self._lock:
            if self._keys is None:
                try:
                    text = self._file.read_text()
                except FileNotFoundError:
                    if not create:
                        raise DataKeyError(f"no data key: {self._file} is missing and IDP_DATA_KEY is not set "
                                           "(restore the key file or set IDP_DATA_KEY to the key the secrets "
                                           "were sealed with)") from None
                    text = write_private_once(self._file, "# data key for secrets at rest (first line seals); "
                                                          "keep it secret, back it up apart from the database\n"
                                              + new_key_text() + "\n")
                self._keys = parse_keys(text, str(self._file))
            return self._keys

    def current_kid(self) -> str:
        return self._load(create=True)[0].kid

    def seal(self, plaintext: str, purpose: str) -> str:
        key = self._load(create=True)[0]
        nonce = secrets.token_bytes(NONCE_BYTES)
        blob = key.aead.encrypt(nonce, plaintext.encode(), self._aad(key.kid, purpose))
        return f"{FORMAT}:{key.kid}:" + base64.urlsafe_b64encode(nonce + blob).decode().rstrip("=")

    def open(self, stored: str, purpose: str) -> str:
        """The plaintext of a sealed value; a value stored before encryption (no `v1:` prefix) as it is."""
        if not is_sealed(stored):
            return stored
        try:
            _, kid, b64 = stored.split(":", 2)
            raw = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))
        except (ValueError, binascii.Error):
            raise DataKeyError(f"a sealed {purpose} value is malformed") from None
        key = next((k for k in self._load(create=False) if k.kid == kid), None)
        if key is None:
            raise DataKeyError(f"a {purpose} value was sealed with data key {kid}, which {self.source} does not "
                               "hold (every instance needs the same IDP_DATA_KEY or data_key file)")
        try:
            return key.aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], self._aad(kid, purpose)).decode()
        except InvalidTag:
            raise DataKeyError(f"a {purpose} value does not decrypt with data key {kid} "
                               "(altered in the database, or a different key with a colliding id)") from None

    def needs_reseal(self, stored: str) -> bool:
        """Stored in plain text, or sealed under a key that is no longer the current one."""
        if not is_sealed(stored):
            return True
        # reading a sealed value never creates a key file (that would hide a lost one behind a new key)
        return stored.split(":", 2)[1] != self._load(create=False)[0].kid

    @staticmethod
    def _aad(kid: str, purpose: str) -> bytes:
        return f"{FORMAT}:{kid}:{purpose}".encode()

    def mac(self, message: bytes, purpose: str) -> str:
        """A keyed hash of `message` under the current key: `<kid>:<hex HMAC-SHA256>`."""
        key = self._load(create=True)[0]
        return f"{key.kid}:{self._digest(key, message, purpose)}"

    def mac_matches(self, stored: str, message: bytes, purpose: str) -> bool:
        """Whether `stored` (from `mac`) is the keyed hash of `message`, compared in constant time."""
        kid, _, digest = stored.partition(":")
        key = next((k for k in self._load(create=False) if k.kid == kid), None)
        if key is None:
            raise DataKeyError(f"a {purpose} value was hashed with data key {kid}, which {self.source} does not "
                               "hold (every instance needs the same IDP_DATA_KEY or data_key file)")
        return hmac.compare_digest(self._digest(key, message, purpose), digest)

    @staticmethod
    def _digest(key: DataKey, message: bytes, purpose: str) -> str:
        return hmac.new(key.mac_key, f"{FORMAT}:{purpose}:".encode() + message, hashlib.sha256).hexdigest()
