"""The key store in IDP_CERT_DIR: key files plus keystore.json holding each key's state.

States: next (published, not used), active (signs), retiring (published, not used), retired
(archived). Keys are loaded once per change of keystore.json and shared by every request:
loading a PEM private key costs ~29 ms (RSA key check), signing costs ~0.3 ms.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import NotRequired, TypedDict, cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .files import ensure_private_dir, write_atomic
from .generate import DEFAULT_KEY_TYPE, generate_key_pair

STATE_FILE = "keystore.json"


class KeyState(StrEnum):
    """Where a key is in its rotation, as keystore.json records it."""

    NEXT = "next"            # published, not used
    ACTIVE = "active"        # signs
    RETIRING = "retiring"    # published, not used
    RETIRED = "retired"      # archived


PUBLISHED_STATES = (KeyState.NEXT, KeyState.ACTIVE, KeyState.RETIRING)


class KeyFamily(StrEnum):
    """The kind of a loaded key pair: what it can sign with."""

    RSA = "rsa"
    EC = "ec"


class KeyEntry(TypedDict):
    """One key in keystore.json. Only `kid` is checked on reading; the rest is as this module wrote it."""

    kid: str
    state: NotRequired[str]               # a KeyState
    key_type: NotRequired[str]            # a KeyType, or rsaNNNN / ec-CURVE for imported keys
    source: NotRequired[str]              # generated | imported
    created_at: NotRequired[str]          # ISO 8601, UTC, to the second
    activated_at: NotRequired[str]
    retiring_since: NotRequired[str]
    retired_at: NotRequired[str]


class KeyStoreState(TypedDict):
    """keystore.json."""

    version: NotRequired[int]
    keys: list[KeyEntry]


class KeyStatus(TypedDict):
    """One row of `status()`: the entry's own fields, then what loading its files found (or the error)."""

    kid: str
    state: str | None
    key_type: str | None
    source: str | None
    created_at: str | None
    fingerprint_sha256: NotRequired[str]
    not_after: NotRequired[str]            # ISO 8601
    days_left: NotRequired[int]
    error: NotRequired[str | None]
EXPIRY_WARNING_DAYS = 30
STAGE_WARNING_DAYS = 60


def expiry_warning(kid: str, state: str, days_left: int, not_after: str) -> str:
    """One wording for a published key close to expiry (certs status, the console, the key.expiring notice)."""
    when = f" ({not_after[:10]})" if not_after else ""
    if days_left < 0:
        return f"the {state} certificate of key {kid} has expired{when}"
    return f"the {state} certificate of key {kid} expires in {days_left} days{when}"


class KeyStoreError(RuntimeError):
    """The key store cannot provide a usable signing key; the message tells the operator what to do."""


@dataclass(frozen=True, slots=True)
class LoadedKey:
    kid: str
    state: str                    # a KeyState
    cert_pem: str
    cert_b64: str                 # DER base64, as in ds:X509Certificate
    fingerprint_sha256: str       # colon-separated hex
    not_after: datetime
    key_type: KeyFamily
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey   # XML and Redirect-binding signatures

    @property
    def days_left(self) -> int:
        return (self.not_after - datetime.now(UTC)).days


@dataclass(frozen=True, slots=True)
class KeySet:
    active: LoadedKey
    keys: tuple[LoadedKey, ...]   # every non-retired key

    @property
    def published(self) -> tuple[LoadedKey, ...]:
        order: dict[str, int] = {s: i for i, s in enumerate(PUBLISHED_STATES)}
        return tuple(sorted((k for k in self.keys if k.state in order), key=lambda k: order[k.state]))

    def get(self, kid: str) -> LoadedKey | None:
        return next((k for k in self.keys if k.kid == kid), None)


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def load_key_files(kid: str, state: str, key_path: Path, cert_path: Path) -> LoadedKey:
    """Load and cross-check one key pair; any problem is a KeyStoreError naming the file."""
    try:
        key_pem = key_path.read_bytes()
    except OSError as exc:
        raise KeyStoreError(f"signing key {kid}: cannot read {key_path.name}: {exc.strerror}") from None
    try:
        cert_pem = cert_path.read_bytes()
    except OSError as exc:
        raise KeyStoreError(f"signing key {kid}: cannot read {cert_path.name}: {exc.strerror}") from None
    try:
        private_key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise KeyStoreError(f"signing key {kid}: {key_path.name} is not a valid unencrypted PEM private key") from None
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise KeyStoreError(f"signing key {kid}: {cert_path.name} is not a valid PEM certificate") from None
    pub = private_key.public_key()
    if not isinstance(private_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise KeyStoreError(f"signing key {kid}: only RSA and EC keys are supported")
    raw = serialization.PublicFormat.SubjectPublicKeyInfo
    if pub.public_bytes(serialization.Encoding.DER, raw) != cert.public_key().public_bytes(
        serialization.Encoding.DER, raw
    ):
        raise KeyStoreError(f"signing key {kid}: {key_path.name} does not match the certificate {cert_path.name}")
    der = cert.public_bytes(serialization.Encoding.DER)
    return LoadedKey(
        kid=kid,
        state=state,
        cert_pem=cert_pem.decode("ascii"),
        cert_b64=base64.b64encode(der).decode("ascii"),
        fingerprint_sha256=_fingerprint(cert),
        not_after=cert.not_valid_after_utc,
        key_type=KeyFamily.RSA if isinstance(private_key, rsa.RSAPrivateKey) else KeyFamily.EC,
        private_key=private_key,
    )


class KeyStore:
    """Reads the key store, caching the loaded keys until keystore.json changes."""

    def __init__(self, cert_dir: Path) -> None:
        self.cert_dir = Path(cert_dir)
        self._lock = threading.Lock()
        self._stamp: object = "unloaded"
        self._cached: KeySet | None = None
        self._error: KeyStoreError | None = None

    @property
    def state_path(self) -> Path:
        return self.cert_dir / STATE_FILE

    def _stat(self) -> tuple[tuple[str, int, int, int], ...] | None:
        """A cheap fingerprint of keystore.json and the key files: any change triggers a reload."""
        try:
            entries = os.scandir(self.cert_dir)
        except OSError:  # missing or unreadable: read_state() then says which, as a KeyStoreError
            return None
        with entries:
            stamp = []
            for e in entries:
                if e.name == STATE_FILE or e.name.endswith((".key", ".crt")):
                    try:
                        st = e.stat()
                    except FileNotFoundError:  # archived by a retire between the scan and the stat
                        continue
                    stamp.append((e.name, st.st_ino, st.st_mtime_ns, st.st_size))
        if not any(name == STATE_FILE for name, *_ in stamp):
            return None
        return tuple(sorted(stamp))

    def read_state(self) -> KeyStoreState:
        try:
            raw = self.state_path.read_bytes()
        except FileNotFoundError:
            if any(self.cert_dir.glob("*.key")) or any(self.cert_dir.glob("*.pem")):
                raise KeyStoreError(
                    f"{self.cert_dir} holds key files but no {STATE_FILE}; "
                    "register them with `idp certs import --key K --cert C`"
                ) from None
            raise KeyStoreError("no signing key: run `idp certs generate` (make certs)") from None
        except OSError as exc:
            raise KeyStoreError(f"cannot read {STATE_FILE}: {exc.strerror}") from None
        try:
            state = json.loads(raw)
        except ValueError:
            state = None
        if not (isinstance(state, dict) and isinstance(state.get("keys"), list)
                and all(isinstance(e, dict) and isinstance(e.get("kid"), str) for e in state["keys"])):
            raise KeyStoreError(f"{STATE_FILE} is corrupt; restore it from a backup")
        return cast(KeyStoreState, state)  # its shape was checked just above

    def current(self) -> KeySet:
        """The loaded keys; raises KeyStoreError (never falls back to another key)."""
        stamp = self._stat()
        if stamp is not None and stamp == self._stamp:
            if self._cached is not None:
                return self._cached
            assert self._error is not None
            raise self._error
        with self._lock:
            stamp = self._stat()
            if stamp is None or stamp != self._stamp:
                try:
                    self._cached, self._error = self._load(), None
                except KeyStoreError as exc:
                    self._cached, self._error = None, exc
                self._stamp = stamp
            if self._cached is None:
                assert self._error is not None
                raise self._error
            return self._cached

    def _load(self) -> KeySet:
        state = self.read_state()
        loaded = []
        for entry in state["keys"]:
            if entry.get("state") == KeyState.RETIRED:
                continue
            kid = str(entry.get("kid", ""))
            loaded.append(
                load_key_files(kid, str(entry.get("state")), self.cert_dir / f"{kid}.key", self.cert_dir / f"{kid}.crt")
            )
        active = [k for k in loaded if k.state == KeyState.ACTIVE]
        if len(active) != 1:
            raise KeyStoreError(f"{STATE_FILE} must name exactly one active key, found {len(active)}")
        return KeySet(active=active[0], keys=tuple(loaded))

    def write_state(self, state: KeyStoreState) -> None:
        write_atomic(self.state_path, (json.dumps(state, indent=2, sort_keys=True) + "\n").encode(), 0o600)

    def is_empty(self) -> bool:
        if not self.cert_dir.exists():
            return True
        return not any(p.suffix in {".key", ".crt", ".pem"} or p.name == STATE_FILE for p in self.cert_dir.iterdir())

    def add_key(self, key_pem: bytes, cert_pem: bytes, state: str, key_type: str, source: str) -> str:
        """Write a key pair's files, then record it in keystore.json (files first: a crash leaves orphans only)."""
        ensure_private_dir(self.cert_dir)
        kid = datetime.now(UTC).strftime("%Y%m%d") + "-" + secrets.token_hex(4)
        write_atomic(self.cert_dir / f"{kid}.key", key_pem, 0o600)
        write_atomic(self.cert_dir / f"{kid}.crt", cert_pem, 0o644)
        try:
            st = self.read_state()
        except KeyStoreError:
            st = KeyStoreState(version=1, keys=[])
        st["keys"].append(KeyEntry(kid=kid, state=state, key_type=key_type, source=source,
                                   created_at=datetime.now(UTC).isoformat(timespec="seconds")))
        self.write_state(st)
        return kid

    @contextmanager
    def mutation(self) -> Iterator[None]:
        """Serialise state changes between processes (two admins rotating at once) with an flock."""
        ensure_private_dir(self.cert_dir)
        fd = os.open(self.cert_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # ------------------------------------------------------------ rotation state machine
    # Each transition is a single atomic rewrite of keystore.json (key files are written before,
    # archived after), so a process killed at any point leaves exactly one active key whose
    # certificate is published: the state file is either the old one or the new one.

    def _entries(self) -> tuple[KeyStoreState, list[KeyEntry]]:
        state = self.read_state()
        return state, state["keys"]

    def _one(self, entries: list[KeyEntry], st: KeyState) -> KeyEntry | None:
        found = [e for e in entries if e.get("state") == st]
        return found[0] if found else None

    def rotate(self, common_name: str, key_type: str = DEFAULT_KEY_TYPE, days: int = 730) -> str:
        """Stage a new key pair as `next`: published in metadata, not yet used to sign."""
        _, entries = self._entries()
        if self._one(entries, KeyState.NEXT) is not None:
            raise KeyStoreError("a next key is already staged; activate it (idp certs activate) before rotating again")
        if self._one(entries, KeyState.ACTIVE) is None:
            raise KeyStoreError("there is no active key; run `idp certs generate` first")
        gen = generate_key_pair(common_name, key_type, days)
        return self.add_key(gen.key_pem, gen.cert_pem, KeyState.NEXT, key_type, "generated")

    def activate(self) -> tuple[str, str]:
        """next → active, active → retiring (still published so cached SP metadata keeps validating)."""
        state, entries = self._entries()
        nxt, active = self._one(entries, KeyState.NEXT), self._one(entries, KeyState.ACTIVE)
        if nxt is None:
            raise KeyStoreError("no next key is staged; run `idp certs rotate` first")
        if self._one(entries, KeyState.RETIRING) is not None:
            raise KeyStoreError("a key is still retiring; run `idp certs retire` before activating another")
        # refuse to activate a key that does not load: never switch to something unusable
        kid = nxt["kid"]
        load_key_files(kid, KeyState.NEXT, self.cert_dir / f"{kid}.key", self.cert_dir / f"{kid}.crt")
        now = datetime.now(UTC).isoformat(timespec="seconds")
        nxt["state"], nxt["activated_at"] = KeyState.ACTIVE, now
        old = ""
        if active is not None:
            active["state"], active["retiring_since"] = KeyState.RETIRING, now
            old = active["kid"]
        self.write_state(state)
        return nxt["kid"], old

    def retire(self, pinned_by: dict[str, list[str]] | None = None) -> str:
        """retiring → retired: leaves the metadata; files move to archive/ (kept, never deleted)."""
        state, entries = self._entries()
        retiring = self._one(entries, KeyState.RETIRING)
        if retiring is None:
            raise KeyStoreError("no key is retiring; nothing to retire")
        apps = (pinned_by or {}).get(retiring["kid"], [])
        if apps:
            raise KeyStoreError(f"key {retiring['kid']} is pinned by app(s) {', '.join(sorted(apps))}; "
                                "move them to another key first (idp apps set SLUG --signing-key active)")
        retiring["state"], retiring["retired_at"] = KeyState.RETIRED, datetime.now(UTC).isoformat(timespec="seconds")
        self.write_state(state)
        self.archive_retired()
        return str(retiring["kid"])

    def archive_retired(self) -> None:
        """Move files of retired keys into archive/ (idempotent: also finishes an interrupted retire)."""
        try:
            entries = self.read_state()["keys"]
        except KeyStoreError:
            return
        archive = self.cert_dir / "archive"
        for e in entries:
            if e.get("state") != KeyState.RETIRED:
                continue
            for suffix in (".key", ".crt"):
                src = self.cert_dir / f"{e['kid']}{suffix}"
                if src.exists():
                    ensure_private_dir(archive)
                    os.replace(src, archive / src.name)

    def import_pair(self, key_pem: bytes, cert_pem: bytes) -> tuple[str, str]:
        """Register an externally issued key pair: `next` when an active key exists, else `active`."""
        try:
            private_key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError):
            raise KeyStoreError("the key is not an unencrypted PEM private key") from None
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
        except ValueError:
            raise KeyStoreError("the certificate is not a PEM X.509 certificate") from None
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        if private_key.public_key().public_bytes(serialization.Encoding.DER, spki) != cert.public_key().public_bytes(
                serialization.Encoding.DER, spki):
            raise KeyStoreError("the key does not match the certificate")
        if cert.not_valid_after_utc <= datetime.now(UTC):
            raise KeyStoreError("the certificate has already expired")
        if isinstance(private_key, rsa.RSAPrivateKey):
            if private_key.key_size < 2048:
                raise KeyStoreError("RSA keys must be at least 2048 bits")
            key_type = f"rsa{private_key.key_size}"
        elif isinstance(private_key, ec.EllipticCurvePrivateKey):
            key_type = f"ec-{private_key.curve.name}"
        else:
            raise KeyStoreError("only RSA and EC keys are supported")
        if self.is_empty():
            state_name = KeyState.ACTIVE
        else:
            _, entries = self._entries()
            if self._one(entries, KeyState.NEXT) is not None:
                raise KeyStoreError("a next key is already staged; activate or discard it first")
            state_name = KeyState.NEXT if self._one(entries, KeyState.ACTIVE) is not None else KeyState.ACTIVE
        normalised = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption())
        kid = self.add_key(normalised, cert.public_bytes(serialization.Encoding.PEM), state_name, key_type, "imported")
        return kid, state_name

    def status(self) -> list[KeyStatus]:
        """Every key with state, fingerprint and expiry, readable even when a key file is broken."""
        rows = []
        for e in self.read_state()["keys"]:
            row = KeyStatus(kid=e["kid"], state=e.get("state"), key_type=e.get("key_type"), source=e.get("source"),
                            created_at=e.get("created_at"))
            retired = e.get("state") == KeyState.RETIRED
            folder = self.cert_dir / "archive" if retired else self.cert_dir
            try:
                if retired:  # only the certificate is kept
                    cert = x509.load_pem_x509_certificate((folder / f"{e['kid']}.crt").read_bytes())
                    fingerprint, not_after = _fingerprint(cert), cert.not_valid_after_utc
                else:  # the whole pair, cross-checked as signing will load it
                    loaded = load_key_files(e["kid"], str(e.get("state")), folder / f"{e['kid']}.key",
                                            folder / f"{e['kid']}.crt")
                    fingerprint, not_after = loaded.fingerprint_sha256, loaded.not_after
                row["fingerprint_sha256"] = fingerprint
                row["not_after"] = not_after.isoformat()
                row["days_left"] = (not_after - datetime.now(UTC)).days
                row["error"] = None
            except (KeyStoreError, OSError, ValueError) as exc:
                row["error"] = str(exc)
            rows.append(row)
        return rows

    def warnings(self, rows: list[KeyStatus] | None = None) -> list[str]:
        """What an operator must act on: broken keys, not exactly one active key, and every published key (next,
        active, retiring: any of them may be the one an SP or a pinned app validates with) whose certificate
        expires within EXPIRY_WARNING_DAYS."""
        rows = self.status() if rows is None else rows
        out = [f"key {r['kid']} ({r['state']}): {r['error']}" for r in rows if r.get("error")]
        active = [r for r in rows if r["state"] == KeyState.ACTIVE]
        if len(active) != 1:
            out.append(f"expected exactly one active key, found {len(active)}")
        for r in rows:
            days = r.get("days_left")
            if r["state"] in PUBLISHED_STATES and days is not None and days < EXPIRY_WARNING_DAYS:
                out.append(expiry_warning(r["kid"], str(r["state"]), days, r.get("not_after", "")))
        for r in active:
            days = r.get("days_left")
            if days is not None and days < STAGE_WARNING_DAYS and not any(x["state"] == KeyState.NEXT for x in rows):
                out.append(f"no next key is staged and the active certificate expires in {days} days: "
                           "run `make rotate-certs` now and give SPs time to refresh metadata")
        return out

    def generate_first(self, common_name: str, key_type: str = DEFAULT_KEY_TYPE, days: int = 730) -> str:
        """First key pair on an empty store; refuses when any key material exists (never overwrites)."""
        if not self.is_empty():
            raise KeyStoreError(f"{self.cert_dir} already holds keys; use `idp certs rotate` to add one")
        gen = generate_key_pair(common_name, key_type, days)
        return self.add_key(gen.key_pem, gen.cert_pem, KeyState.ACTIVE, key_type, "generated")
