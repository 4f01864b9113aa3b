"""Secrets at rest: the instance folder is 0700 and every file in it 0600 (database, -wal, -shm, secret_key, data
key, metrics spool), and TOTP secrets are stored sealed under a data key that is not in the database.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest
from flask import Flask
from sqlalchemy import text

from idp import create_app, metrics
from idp.auth import totp
from idp.auth.datakeys import DataKeyError, new_key_text
from idp.config import Settings
from idp.extensions import db
from idp.services import users as users_svc

from ..conftest import IsolatedClient
from ..webclient import Browser, continuation, saml_form
from .conftest import PASSWORD
from .test_policy_flows import code_for, set_policy

ROOT = Path(__file__).resolve().parents[2]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The usual 022: without the IdP's own care every new file would be world-readable."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def raw_secret(username: str) -> str | None:
    db.session.commit()
    return db.session.execute(text("SELECT totp_secret FROM users WHERE username = :u"), {"u": username}).scalar()


# ---------------------------------------------------------------- file modes


def test_instance_folder_and_files_are_private_after_db_init_and_login(tmp_path: Path, loose_umask: None) -> None:
    idp = Path(sys.executable).parent / "idp"
    if not idp.exists():
        idp = ROOT / ".venv" / "bin" / "idp"
    instance = tmp_path / "instance"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "IDP_INSTANCE_DIR": str(instance), "IDP_CERT_DIR": str(tmp_path / "certs"),
           "IDP_BASE_URL": "http://localhost", "IDP_ARGON2_TIME_COST": "1", "IDP_ARGON2_MEMORY_KIB": "1024",
           "IDP_ARGON2_PARALLELISM": "1", "IDP_ADMIN_PASSWORD": "an admin password"}
    proc = subprocess.run([str(idp), "db", "init"], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([str(idp), "users", "mfa-enroll", "admin"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert mode(instance) == 0o700
    for name in ("idp.sqlite3", "secret_key", "data_key"):
        assert mode(instance / name) == 0o600, name

    # a real login through the web app, in this process (umask 022): SQLite creates -wal and -shm now
    from idp.config import load_settings
    settings = load_settings(env)
    app = create_app(settings, TESTING=True)
    app.test_client_class = IsolatedClient
    metrics.configure(settings.metrics_dir)  # as idp.wsgi does: the spool folder and files
    try:
        with app.app_context():
            client = app.test_client()
            page = client.get("/login").get_data(as_text=True)
            token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
            resp = client.post("/login", data={"csrf_token": token, "username": "admin",
                                               "password": "an admin password", "next": "/"})
            assert resp.status_code == 303
            metrics.collect()
            for suffix in ("-wal", "-shm"):  # present while a connection is open (removed at the last close)
                assert mode(instance / f"idp.sqlite3{suffix}") == 0o600, suffix
            db.session.remove()
            db.engine.dispose()
    finally:
        metrics.configure(None)  # type: ignore[arg-type]
    files = sorted(p for p in instance.rglob("*") if p.is_file())
    assert any(p.suffix == ".json" for p in files), "the metrics spool was written"
    for p in files:
        assert mode(p) == 0o600, p
    for d in (p for p in instance.rglob("*") if p.is_dir()):
        assert mode(d) == 0o700, d


def test_wal_and_shm_files_are_private(app: Flask, alice, loose_umask: None) -> None:  # type: ignore[no-untyped-def]
    db_path = Path(app.extensions["idp.settings"].instance_dir) / "idp.sqlite3"
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite only")
    users_svc.get_user("alice").first_name = "Al"
    db.session.commit()
    for suffix in ("", "-wal", "-shm"):
        path = db_path.with_name(db_path.name + suffix)
        assert path.exists() and mode(path) == 0o600, path
    assert mode(db_path.parent) == 0o700


def test_an_open_instance_folder_is_tightened_and_logged(settings: Settings, loose_umask: None,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    if not settings.database_url.startswith("sqlite"):
        pytest.skip("SQLite only")
    instance = settings.instance_dir
    instance.mkdir(parents=True, exist_ok=True)
    os.chmod(instance, 0o755)
    (instance / "idp.sqlite3").write_bytes(b"")
    os.chmod(instance / "idp.sqlite3", 0o644)
    (instance / "secret_key").write_text("x\n")
    os.chmod(instance / "secret_key", 0o644)
    with caplog.at_level(logging.WARNING, logger="idp"):
        create_app(settings, TESTING=True)
    assert mode(instance) == 0o700
    assert mode(instance / "idp.sqlite3") == 0o600 and mode(instance / "secret_key") == 0o600
    assert "tightened to 0700" in caplog.text and "tightened to 0600" in caplog.text


# ---------------------------------------------------------------- TOTP secrets sealed


def test_cli_and_web_enrolment_store_only_a_sealed_secret(app: Flask, client, alice, bob) -> None:  # type: ignore[no-untyped-def]
    from .test_cli import ok
    uri = ok(app, "users", "mfa-enroll", "alice").stdout.strip()   # stderr: the recovery codes
    secret = pyotp.parse_uri(uri).secret
    stored = raw_secret("alice")
    assert stored is not None and stored.startswith("v1:")
    assert secret not in stored
    assert totp.verify_and_consume(users_svc.get_user("alice"), pyotp.TOTP(secret).now())

    from idp.services import org
    org.add_trusted_range("127.0.0.0/8")   # self-enrolment is allowed from the trusted ranges
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    client.post("/login", data={"csrf_token": token, "username": "bob", "password": PASSWORD, "next": "/"})
    page = client.get("/mfa/enroll").get_data(as_text=True)
    shown = re.search(r'<code id="totp-secret">([A-Z2-7]+)</code>', page)
    assert shown is not None, page[:500]
    stored = raw_secret("bob")
    assert stored is not None and stored.startswith("v1:") and shown.group(1) not in stored
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    resp = client.post("/mfa/enroll", data={"csrf_token": token, "code": pyotp.TOTP(shown.group(1)).now(),
                                            **continuation(page)})
    assert resp.status_code == 200 and 'id="mfa-enrolled"' in resp.get_data(as_text=True)
    db.session.expire_all()
    assert totp.is_enrolled(users_svc.get_user("bob")) and raw_secret("bob") == stored


def test_a_plain_text_secret_from_before_still_verifies_and_is_sealed(make_sp, browser, alice) -> None:  # type: ignore[no-untyped-def]
    sp = make_sp("onelogin")
    set_policy(sp, require_mfa=True)
    secret = pyotp.random_base32(32)
    db.session.commit()
    db.session.execute(text("UPDATE users SET totp_secret = :s, totp_confirmed = :t WHERE username = 'alice'"),
                       {"s": secret, "t": True})
    db.session.commit()
    db.session.expire_all()
    req = sp.authn_request("redirect")
    resp = browser.sso(req, "alice", PASSWORD)
    body = resp.get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', body).group(1)  # type: ignore[union-attr]
    resp = browser.follow(browser.client.post("/mfa", data={"csrf_token": token,
                                                             "code": code_for(pyotp.TOTP(secret)),
                                                             **continuation(body)}))
    assert saml_form(resp) is not None
    stored = raw_secret("alice")
    assert stored is not None and stored.startswith("v1:") and secret not in stored


def test_db_upgrade_seals_plain_text_secrets(app: Flask, alice) -> None:  # type: ignore[no-untyped-def]
    import flask_migrate

    from idp.extensions import MIGRATIONS_DIR

    from .test_cli import ok
    secret = pyotp.random_base32(32)
    db.session.commit()
    db.session.execute(text("UPDATE users SET totp_secret = :s, totp_confirmed = :t WHERE username = 'alice'"),
                       {"s": secret, "t": True})
    db.session.commit()
    flask_migrate.stamp(directory=MIGRATIONS_DIR, revision="head")  # the test schema is the latest one
    out = ok(app, "db", "upgrade").output
    assert "sealed 1 TOTP secret" in out and secret not in out
    stored = raw_secret("alice")
    assert stored is not None and stored.startswith("v1:") and secret not in stored
    db.session.expire_all()
    assert totp.secret_of(users_svc.get_user("alice")) == secret


@pytest.mark.parametrize("problem", ["another key", "no key file"])
def test_a_wrong_or_missing_data_key_fails_clearly_at_login(app: Flask, settings: Settings, make_sp, alice,  # type: ignore[no-untyped-def]
                                                            caplog: pytest.LogCaptureFixture, problem: str) -> None:
    sp = make_sp("onelogin")
    set_policy(sp, require_mfa=True)
    secret = totp.start_enrolment(alice)
    alice.totp_confirmed = True
    db.session.commit()
    if problem == "another key":
        other = create_app(dataclasses.replace(settings, data_key=new_key_text()), TESTING=True)
    else:
        (settings.instance_dir / "data_key").unlink()
        other = create_app(settings, TESTING=True)
    other.test_client_class = IsolatedClient
    with other.app_context():
        browser = Browser(other.test_client())
        resp = browser.sso(sp.authn_request("redirect"), "alice", PASSWORD)
        body = resp.get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', body).group(1)  # type: ignore[union-attr]
        with caplog.at_level(logging.ERROR, logger="idp"):
            resp = browser.client.post("/mfa", data={"csrf_token": token, "code": pyotp.TOTP(secret).now(),
                                                     **continuation(body)})
        page = resp.get_data(as_text=True)
        assert resp.status_code == 503, page[:300]
        assert "SAMLResponse" not in page and "Traceback" not in page and "temporarily unavailable" in page
        assert "data key" in caplog.text and "Traceback" not in caplog.text
        db.session.remove()


def test_a_malformed_data_key_setting_stops_the_start(settings: Settings) -> None:
    with pytest.raises(DataKeyError, match="IDP_DATA_KEY"):
        create_app(dataclasses.replace(settings, data_key="not a key"), TESTING=True)


def test_a_malformed_data_key_environment_variable_is_a_config_error(tmp_path: Path) -> None:
    from idp.config import ConfigError, load_settings
    base = {"IDP_INSTANCE_DIR": str(tmp_path / "instance"), "IDP_SECRET_KEY": "k"}
    for bad in ("short", new_key_text()[:-4], "!" * 43, new_key_text() + ",nope"):
        with pytest.raises(ConfigError, match="IDP_DATA_KEY"):
            load_settings({**base, "IDP_DATA_KEY": bad})
    good = f"{new_key_text()}, {new_key_text()}"
    assert load_settings({**base, "IDP_DATA_KEY": good}).data_key == good
    assert good not in repr(load_settings({**base, "IDP_DATA_KEY": good}))


def test_rotation_the_first_key_seals_older_keys_open_and_values_are_resealed(app: Flask, settings: Settings,  # type: ignore[no-untyped-def]
                                                                              alice) -> None:
    old_key, new_key = new_key_text(), new_key_text()
    db.session.commit()
    with create_app(dataclasses.replace(settings, data_key=old_key), TESTING=True).app_context():
        secret = totp.start_enrolment(users_svc.get_user("alice"))
        db.session.commit()
        sealed_old = raw_secret("alice")
        db.session.remove()
    with create_app(dataclasses.replace(settings, data_key=f"{new_key},{old_key}"), TESTING=True).app_context():
        assert totp.secret_of(users_svc.get_user("alice")) == secret
        db.session.commit()
        sealed_new = raw_secret("alice")
        db.session.remove()
    assert sealed_old and sealed_new and sealed_old.split(":")[1] != sealed_new.split(":")[1]
    with create_app(dataclasses.replace(settings, data_key=new_key), TESTING=True).app_context():
        assert totp.secret_of(users_svc.get_user("alice")) == secret
        db.session.remove()


def test_sealed_values_are_bound_to_their_key_and_purpose(tmp_path: Path) -> None:
    from idp.auth.datakeys import DataKeys
    keys = DataKeys(new_key_text(), tmp_path)
    sealed = keys.seal("JBSWY3DPEHPK3PXP", "users.totp_secret")
    assert keys.open(sealed, "users.totp_secret") == "JBSWY3DPEHPK3PXP"
    assert keys.seal("JBSWY3DPEHPK3PXP", "users.totp_secret") != sealed  # a fresh nonce every time
    with pytest.raises(DataKeyError):
        keys.open(sealed, "another.column")
    flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(DataKeyError):
        keys.open(flipped, "users.totp_secret")
    assert keys.open("JBSWY3DPEHPK3PXP", "users.totp_secret") == "JBSWY3DPEHPK3PXP"  # stored before sealing
    assert not (tmp_path / "data_key").exists()  # IDP_DATA_KEY set: no key file written
