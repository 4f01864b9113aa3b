"""Signing keys: never served over HTTP, never logged, never echoed in errors, written with private modes."""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from idp.certs.keystore import KeyStore
from idp.config import load_settings

from ..raw_requests import redirect_query
from ..sp_harness import make_keypair
from ..webclient import login_admin
from .conftest import ADMIN_PASSWORD
from .saml_tools import assertion_count, authn_request, case, register_sp, sign_in


def key_fragments(cert_dir: Path) -> list[str]:
    """Distinctive pieces of every private key under cert_dir (archive included): base64 lines of the PEM body.

    A line that also occurs in a certificate's base64 is left out: an RSA private key holds the public modulus
    too, and when its bytes sit at the same offset modulo 3 in both DER encodings, a line of it reads the same
    in the certificate that metadata rightly publishes (the test then failed on one key store in a few)."""
    public = "".join("".join(ln for ln in crt.read_text().splitlines() if "-----" not in ln)
                     for crt in cert_dir.rglob("*.crt"))
    frags = []
    for path in cert_dir.rglob("*.key"):
        lines = [ln for ln in path.read_text().splitlines() if ln and "-----" not in ln]
        frags += [ln for ln in lines[1:-1] if ln not in public]
    assert len(frags) >= 10
    return frags


def assert_no_key(text: str, fragments: list[str]) -> None:
    assert "PRIVATE KEY" not in text
    for frag in fragments:
        assert frag not in text


def active_kid(cert_dir: Path) -> str:
    state = json.loads((cert_dir / "keystore.json").read_text())
    entries = state["keys"] if isinstance(state, dict) and "keys" in state else state
    kids = [e["kid"] for e in entries if e.get("state") == "active"]
    assert kids, state
    return kids[0]


def test_private_keys_are_never_served(app, client, admin, settings):  # type: ignore[no-untyped-def]
    cert_dir = settings.cert_dir
    kid = active_kid(cert_dir)
    frags = key_fragments(cert_dir)
    sp = register_sp("https://sp1.example.com")
    static = Path(app.static_folder or "")
    rel = os.path.relpath(cert_dir, static)
    paths = [
        "/saml/metadata", "/saml/metadata?signed=1", "/saml/metadata?download=1", f"/saml/metadata?app={sp.slug}",
        "/saml/certificate", f"/saml/certificate?kid={kid}", f"/saml/certificate?kid={kid}.key",
        f"/saml/certificate?kid=../{kid}.key", f"/saml/certificate?app={sp.slug}", "/saml/certificate?kid=keystore",
        f"/static/{rel}/{kid}.key", f"/static/{rel.replace('/', '%2f')}%2f{kid}.key",
        f"/static/%2e%2e/%2e%2e/certs/{kid}.key", f"/static/..%5c..%5ccerts%5c{kid}.key",
        f"/static/{cert_dir}/{kid}.key", f"/static//{cert_dir}/{kid}.key", f"/certs/{kid}.key", f"/{kid}.key",
        "/certs/keystore.json", "/instance/secret_key", "/static/../../certs/keystore.json", "/.env",
        "/healthz", "/readyz", "/metrics",
    ]
    for path in paths:
        with case(path):
            resp = client.get(path)
            assert resp.status_code < 500
            assert_no_key(resp.get_data(as_text=True), frags)
    assert login_admin(client, "admin", ADMIN_PASSWORD).status_code == 303
    for path in ("/admin/certs", "/admin/certs/rotate", "/admin/certs/activate", "/admin/certs/retire",
                 f"/admin/apps/{sp.slug}", "/account"):
        with case(path):
            resp = client.get(path)
            assert resp.status_code == 200
            assert_no_key(resp.get_data(as_text=True), frags)
            assert settings.secret_key not in resp.get_data(as_text=True)


def test_a_corrupt_key_is_reported_without_its_bytes(app, client, alice, settings):  # type: ignore[no-untyped-def]
    cert_dir = settings.cert_dir
    kid = active_kid(cert_dir)
    frags = key_fragments(cert_dir)
    sp = register_sp("https://sp1.example.com")
    key_file = cert_dir / f"{kid}.key"
    lines = key_file.read_text().splitlines()
    key_file.write_text("\n".join(lines[: len(lines) // 2] + ["!!corrupt!!", lines[-1]]) + "\n")
    (cert_dir / "keystore.json").write_text((cert_dir / "keystore.json").read_text() + " ")  # make it reload
    for label, resp in [
        ("metadata", client.get("/saml/metadata")),
        ("certificate", client.get("/saml/certificate")),
        ("sso", client.get("/saml/sso?" + redirect_query(authn_request(sp)))),
        ("readyz", client.get("/readyz")),
    ]:
        with case(label):
            assert resp.status_code in (302, 303, 503), resp.status_code
            assert_no_key(resp.get_data(as_text=True), frags)
    result = app.test_cli_runner().invoke(args=["certs", "status"])
    assert result.exit_code != 0
    assert_no_key(result.output, frags)


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every log record at DEBUG, including loggers that do not propagate to the root."""
    caplog.set_level(logging.DEBUG)
    extra = [logging.getLogger(n) for n in ("idp", "idp.events", "werkzeug", "flask.app")]
    for lg in extra:
        lg.addHandler(caplog.handler)
    yield caplog
    for lg in extra:
        lg.removeHandler(caplog.handler)


def _record_text(record: logging.LogRecord) -> str:
    parts = [record.getMessage(), str(record.args), record.exc_text or ""]
    parts += [f"{k}={v}" for k, v in vars(record).items() if k not in ("msg", "args", "message")]
    return "\n".join(parts)


def test_keys_are_never_logged(app, client, alice, admin, settings, sp_keys, all_logs):  # type: ignore[no-untyped-def]
    runner = app.test_cli_runner()
    outputs = []
    sp = register_sp("https://sp1.example.com", keypair=sp_keys["sp1"], signs=True)
    sign_in(client, sp)
    for args in (["certs", "rotate", "--key-type", "rsa2048", "--days", "30"], ["certs", "activate"],
                 ["certs", "status"], ["certs", "status", "--format", "json"]):
        result = runner.invoke(args=args)
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    # after the rotation, another round trip signed with the new key; then a broken key store at start-up
    other = app.test_client()
    resp = other.get("/saml/sso?" + redirect_query(authn_request(sp), key_pem=sp.keypair.key_pem))
    assert resp.status_code == 303
    from ..webclient import Browser

    assert assertion_count(Browser(other).login(Browser(other).follow(resp), "alice", "correct horse battery")) == 1
    frags = key_fragments(settings.cert_dir) + [sp_keys["sp1"].key_pem.splitlines()[3]]
    result = runner.invoke(args=["certs", "retire"])
    assert result.exit_code == 0, result.output
    outputs.append(result.output)
    for key in settings.cert_dir.glob("*.key"):
        key.write_text(key.read_text()[:200])
    (settings.cert_dir / "keystore.json").write_text((settings.cert_dir / "keystore.json").read_text() + " ")
    from idp import check_keys_at_start

    check_keys_at_start(app.extensions["idp.keystore"])
    client.get("/saml/metadata")
    assert all_logs.records, "nothing was logged at all: the capture is not working"
    for record in all_logs.records:
        assert_no_key(_record_text(record), frags)
    for out in outputs:
        assert_no_key(out, frags)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """umask 000: every private mode must come from the code itself, not from a friendly umask."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_generated_files_have_private_modes(tmp_path, open_umask):  # type: ignore[no-untyped-def]
    certs = tmp_path / "certs"
    certs.mkdir(mode=0o755)  # pre-created by someone else, world-readable
    store = KeyStore(certs)
    store.generate_first("https://idp.example.test/saml/metadata", "ec-p256", 30)
    store.rotate("https://idp.example.test/saml/metadata", "ec-p256", 30)
    store.activate()
    store.retire()
    pem = make_keypair(tmp_path / "ext", "ext")
    os.chmod(pem.key_path, 0o644)  # an externally issued key lying around with loose permissions
    store.import_pair(pem.key_pem.encode(), pem.cert_pem.encode())
    assert _mode(certs) == 0o700
    keys = list(certs.rglob("*.key"))
    assert len(keys) == 3, keys
    for path in keys + [certs / "keystore.json"]:
        with case(str(path.relative_to(tmp_path))):
            assert _mode(path) == 0o600
    for path in [p for p in certs.rglob("*") if p.is_dir()]:
        with case(str(path.relative_to(tmp_path))):
            assert _mode(path) == 0o700
    for path in certs.rglob("*"):
        with case(str(path.relative_to(tmp_path))):
            assert not _mode(path) & 0o002, "world-writable"
            if path.suffix != ".crt":
                assert not _mode(path) & 0o077, "readable by group or others"
    # the generated session secret
    instance = tmp_path / "instance"
    settings = load_settings({"IDP_INSTANCE_DIR": str(instance), "IDP_CERT_DIR": str(certs)})
    assert settings.secret_key and _mode(instance / "secret_key") == 0o600


def test_cli_key_operations_write_private_files(app: Flask, settings, open_umask) -> None:  # type: ignore[no-untyped-def]
    runner = app.test_cli_runner()
    assert runner.invoke(args=["certs", "rotate", "--key-type", "ec-p256", "--days", "30"]).exit_code == 0
    assert runner.invoke(args=["certs", "activate"]).exit_code == 0
    assert runner.invoke(args=["certs", "retire"]).exit_code == 0
    for path in settings.cert_dir.rglob("*"):
        with case(path.name):
            if path.is_dir():
                assert _mode(path) == 0o700
            elif path.suffix == ".key" or path.name in ("keystore.json", ".lock"):
                assert _mode(path) == 0o600
