"""Unit tests for idp.certs.keystore and idp.certs.files: the key store on disk, its cache and its refusals."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from idp.certs import files
from idp.certs.files import ensure_private_dir, write_atomic
from idp.certs.generate import generate_key_pair
from idp.certs.keystore import STATE_FILE, KeyStore, KeyStoreError

CN = "https://idp.example/saml/metadata"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def snapshot(directory: Path) -> dict[str, tuple[bytes, int, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino) for p in sorted(directory.iterdir())}


@pytest.fixture(autouse=True)
def known_umask() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One store made by generate_first on an empty (not yet existing) directory; tests get copies."""
    old = os.umask(0o022)
    try:
        certs = tmp_path_factory.mktemp("keystore") / "certs"
        kid = KeyStore(certs).generate_first(CN, "rsa2048", 30)
    finally:
        os.umask(old)
    return certs, kid


@pytest.fixture(scope="module")
def other_pair() -> tuple[bytes, bytes]:
    gen = generate_key_pair("someone-else", "rsa2048", 30)
    return gen.key_pem, gen.cert_pem


@pytest.fixture
def store(template: tuple[Path, str], tmp_path: Path) -> tuple[KeyStore, str]:
    src, kid = template
    dst = tmp_path / "certs"
    shutil.copytree(src, dst)
    return KeyStore(dst), kid


def state_of(ks: KeyStore) -> dict:
    return json.loads(ks.state_path.read_text())


# ---------------------------------------------------------------- generate_first


def test_generate_first_layout(template: tuple[Path, str]) -> None:
    certs, kid = template
    assert sorted(p.name for p in certs.iterdir()) == sorted([f"{kid}.key", f"{kid}.crt", STATE_FILE])
    assert mode(certs) == 0o700
    assert mode(certs / f"{kid}.key") == 0o600
    assert mode(certs / f"{kid}.crt") == 0o644
    assert mode(certs / STATE_FILE) == 0o600
    state = json.loads((certs / STATE_FILE).read_text())
    assert state["version"] == 1
    assert [(k["kid"], k["state"], k["key_type"], k["source"]) for k in state["keys"]] == [
        (kid, "active", "rsa2048", "generated")]
    assert kid.startswith(datetime.now(UTC).strftime("%Y%m"))


def test_generate_first_loads(store: tuple[KeyStore, str]) -> None:
    ks, kid = store
    keys = ks.current()
    active = keys.active
    assert (active.kid, active.state, active.key_type) == (kid, "active", "rsa")
    assert keys.keys == (active,)
    assert keys.published == (active,)
    assert keys.get(kid) is active
    assert keys.get("nope") is None
    cert = x509.load_pem_x509_certificate(active.cert_pem.encode())
    assert cert.subject.rfc4514_string() == f"CN={CN}"
    assert base64.b64decode(active.cert_b64) == cert.public_bytes(serialization.Encoding.DER)
    assert active.fingerprint_sha256 == cert.fingerprint(hashes.SHA256()).hex(":").upper()
    assert 28 <= active.days_left <= 30
    assert active.private_key.key_size == 2048


def test_generate_first_ec(tmp_path: Path) -> None:
    ks = KeyStore(tmp_path / "certs")
    assert ks.is_empty()
    kid = ks.generate_first(CN, "ec-p256", 10)
    assert not ks.is_empty()
    assert ks.current().active.kid == kid
    assert ks.current().active.key_type == "ec"


@pytest.mark.parametrize(
    "existing",
    [None, "stray.pem", "old.key", "old.crt", STATE_FILE],
    ids=["full-store", "pem", "key", "crt", "state-only"],
)
def test_generate_first_refuses_when_keys_exist(store: tuple[KeyStore, str], tmp_path: Path,
                                                existing: str | None) -> None:
    ks, _ = store
    if existing is not None:
        ks = KeyStore(tmp_path / "other")
        ensure_private_dir(ks.cert_dir)
        (ks.cert_dir / existing).write_bytes(b"precious")
    before = snapshot(ks.cert_dir)
    with pytest.raises(KeyStoreError, match="already holds keys; use `idp certs rotate`"):
        ks.generate_first(CN, "ec-p256", 10)
    assert snapshot(ks.cert_dir) == before


def test_unrelated_files_do_not_count_as_keys(tmp_path: Path) -> None:
    ks = KeyStore(tmp_path)
    (tmp_path / "README").write_text("x")
    assert ks.is_empty()


# ---------------------------------------------------------------- cache


def test_current_is_cached(store: tuple[KeyStore, str]) -> None:
    ks, _ = store
    first = ks.current()
    assert ks.current() is first
    assert ks.current().active is first.active


def test_current_reloads_after_state_change(store: tuple[KeyStore, str], other_pair: tuple[bytes, bytes]) -> None:
    ks, kid = store
    first = ks.current()
    new_kid = ks.add_key(*other_pair, state="next", key_type="rsa2048", source="imported")
    second = ks.current()
    assert second is not first
    assert [(k.kid, k.state) for k in second.published] == [(new_kid, "next"), (kid, "active")]
    assert second.active.kid == kid
    assert mode(ks.cert_dir / f"{new_kid}.key") == 0o600

    state = state_of(ks)
    for entry in state["keys"]:
        entry["state"] = {kid: "retiring", new_kid: "active"}[entry["kid"]]
    ks.write_state(state)
    third = ks.current()
    assert third.active.kid == new_kid
    assert [k.kid for k in third.published] == [new_kid, kid]
    assert ks.current() is third


def test_retired_keys_are_not_loaded(store: tuple[KeyStore, str], other_pair: tuple[bytes, bytes]) -> None:
    ks, kid = store
    old = ks.add_key(*other_pair, state="retired", key_type="rsa2048", source="imported")
    (ks.cert_dir / f"{old}.key").unlink()  # archived elsewhere: its absence must not matter
    keys = ks.current()
    assert [k.kid for k in keys.keys] == [kid]


def test_error_is_cached_until_the_state_changes(store: tuple[KeyStore, str]) -> None:
    ks, kid = store
    state = state_of(ks)
    ks.write_state({"version": 1, "keys": state["keys"] * 2})
    with pytest.raises(KeyStoreError, match="found 2") as first:
        ks.current()
    with pytest.raises(KeyStoreError) as second:
        ks.current()
    assert second.value is first.value
    ks.write_state(state)
    assert ks.current().active.kid == kid


# ---------------------------------------------------------------- refusals, each with a message for the operator


def break_missing_key(ks: KeyStore, kid: str, other: tuple[bytes, bytes]) -> None:
    (ks.cert_dir / f"{kid}.key").unlink()


def break_missing_cert(ks: KeyStore, kid: str, other: tuple[bytes, bytes]) -> None:
    (ks.cert_dir / f"{kid}.crt").unlink()


def break_corrupt_key(ks: KeyStore, kid: str, other: tuple[bytes, bytes]) -> None:
    (ks.cert_dir / f"{kid}.key").write_bytes(b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")


def break_encrypted_key(ks: KeyStore, kid: str, other: tuple[bytes, bytes]) -> None:
    key = serialization.load_pem_private_key((ks.cert_dir / f"{kid}.key").read_bytes(), None)
    (ks.cert_dir / f"{kid}.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))


def break_corrupt_cert(ks: KeyStore, kid: str, other: tuple[bytes, bytes]) -> None:
    (ks.cert_dir / f"{kid}.crt").write_bytes(b"not a certificate")


def break_swapped_cert(ks: KeyStore, kid: str, other: tuple[bytes, bytes]) -> None:
    (ks.cert_dir / f"{kid}.crt").write_bytes(other[1])


def break_swapped_key(ks: KeyStore, kid: str, other: tuple[bytes, bytes]) -> None:
    (ks.cert_dir / f"{kid}.key").write_bytes(other[0])


def break_corrupt_state(ks: KeyStore, kid: str, other: tuple[bytes, bytes]) -> None:
    ks.state_path.write_bytes(b'{"version": 1, "keys": [')


def break_state_without_keys(ks: KeyStore, kid: str, other: tuple[bytes, bytes]) -> None:
    ks.state_path.write_bytes(b'{"version": 1}')


def break_state_keys_not_a_list(ks: KeyStore, kid: str, other: tuple[bytes, bytes]) -> None:
    ks.state_path.write_bytes(b'{"version": 1, "keys": "all"}')


def break_state_not_an_object(ks: KeyStore, kid: str, other: tuple[bytes, bytes]) -> None:
    ks.state_path.write_bytes(b"[]")


def break_state_entry_not_an_object(ks: KeyStore, kid: str, other: tuple[bytes, bytes]) -> None:
    ks.state_path.write_bytes(b'{"version": 1, "keys": ["' + kid.encode() + b'"]}')


def break_two_active(ks: KeyStore, kid: str, other: tuple[bytes, bytes]) -> None:
    ks.add_key(*other, state="active", key_type="rsa2048", source="imported")


def break_no_active(ks: KeyStore, kid: str, other: tuple[bytes, bytes]) -> None:
    state = state_of(ks)
    state["keys"][0]["state"] = "next"
    ks.write_state(state)


def break_no_state_but_keys(ks: KeyStore, kid: str, other: tuple[bytes, bytes]) -> None:
    ks.state_path.unlink()


def break_empty_dir(ks: KeyStore, kid: str, other: tuple[bytes, bytes]) -> None:
    for p in ks.cert_dir.iterdir():
        p.unlink()


def break_no_dir(ks: KeyStore, kid: str, other: tuple[bytes, bytes]) -> None:
    shutil.rmtree(ks.cert_dir)


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (break_missing_key, r"signing key {kid}: cannot read {kid}\.key: No such file"),
        (break_missing_cert, r"signing key {kid}: cannot read {kid}\.crt: No such file"),
        (break_corrupt_key, r"{kid}\.key is not a valid unencrypted PEM private key"),
        (break_encrypted_key, r"{kid}\.key is not a valid unencrypted PEM private key"),
        (break_corrupt_cert, r"{kid}\.crt is not a valid PEM certificate"),
        (break_swapped_cert, r"{kid}\.key does not match the certificate {kid}\.crt"),
        (break_swapped_key, r"{kid}\.key does not match the certificate {kid}\.crt"),
        (break_corrupt_state, r"keystore\.json is corrupt; restore it from a backup"),
        (break_state_without_keys, r"keystore\.json is corrupt"),
        (break_state_keys_not_a_list, r"keystore\.json is corrupt"),
        (break_state_not_an_object, r"keystore\.json is corrupt; restore it from a backup"),
        (break_state_entry_not_an_object, r"keystore\.json is corrupt; restore it from a backup"),
        (break_two_active, r"keystore\.json must name exactly one active key, found 2"),
        (break_no_active, r"keystore\.json must name exactly one active key, found 0"),
        (break_no_state_but_keys, r"holds key files but no keystore\.json; register them with `idp certs import"),
        (break_empty_dir, r"no signing key: run `idp certs generate`"),
        (break_no_dir, r"no signing key: run `idp certs generate`"),
    ],
    ids=lambda v: v.__name__.removeprefix("break_") if callable(v) else None,
)
def test_refusals(store: tuple[KeyStore, str], other_pair: tuple[bytes, bytes], breakage, message: str) -> None:
    ks, kid = store
    breakage(ks, kid, other_pair)
    with pytest.raises(KeyStoreError, match=message.replace("{kid}", kid)):
        ks.current()


def test_refusal_after_a_good_load_is_not_hidden_by_the_cache(store: tuple[KeyStore, str],
                                                             other_pair: tuple[bytes, bytes]) -> None:
    ks, _ = store
    ks.current()
    ks.add_key(*other_pair, state="active", key_type="rsa2048", source="imported")
    with pytest.raises(KeyStoreError, match="found 2"):
        ks.current()


# ---------------------------------------------------------------- files


@pytest.mark.parametrize("file_mode", [0o600, 0o644, 0o640])
def test_write_atomic(tmp_path: Path, file_mode: int) -> None:
    target = tmp_path / "secret.key"
    write_atomic(target, b"payload", file_mode)
    assert target.read_bytes() == b"payload"
    assert mode(target) == file_mode
    assert [p.name for p in tmp_path.iterdir()] == ["secret.key"]


def test_write_atomic_replaces_and_resets_mode(tmp_path: Path) -> None:
    target = tmp_path / "keystore.json"
    target.write_bytes(b"old")
    target.chmod(0o666)
    inode = target.stat().st_ino
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert mode(target) == 0o600
    assert target.stat().st_ino != inode  # renamed over, never rewritten in place
    assert [p.name for p in tmp_path.iterdir()] == ["keystore.json"]


def test_write_atomic_failure_keeps_old_file_and_leaves_no_temp(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "keystore.json"
    target.write_bytes(b"old")

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["keystore.json"]


def test_write_atomic_survives_a_stale_temp_file(tmp_path: Path) -> None:
    """A temp file left by a crashed process with the same PID must not block later writes."""
    target = tmp_path / "keystore.json"
    stale = tmp_path / f".keystore.json.tmp-{os.getpid()}"
    stale.write_bytes(b"left by a crash")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert mode(target) == 0o600
    assert stale.read_bytes() == b"left by a crash"  # someone else's file: neither reused nor clobbered
    # the write left no temp file of its own behind
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["keystore.json", stale.name])
    write_atomic(target, b"newer")
    assert target.read_bytes() == b"newer"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["keystore.json", stale.name])


def test_ensure_private_dir(tmp_path: Path) -> None:
    fresh = tmp_path / "a" / "b"
    ensure_private_dir(fresh)
    assert mode(fresh) == 0o700
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    ensure_private_dir(loose)
    assert mode(loose) == 0o700


def test_unreadable_state_file_is_a_keystore_error(store: tuple[KeyStore, str]) -> None:
    """Any I/O error on keystore.json (here a folder in its place, unreadable even for root) is a
    KeyStoreError, which every caller turns into a 503, never an unhandled exception."""
    ks, _ = store
    ks.state_path.unlink()
    ks.state_path.mkdir()
    with pytest.raises(KeyStoreError, match=f"cannot read {STATE_FILE}"):
        KeyStore(ks.cert_dir).current()
