"""Signing keys: staged rotation seen by independent SPs, crash safety, pins, algorithms, encryption, metadata."""

from __future__ import annotations

import base64
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lxml import etree

from idp.certs.generate import generate_key_pair
from idp.certs.keystore import KeyStore
from idp.services import apps as apps_svc

from ..sp_harness import OneLoginSP, Pysaml2SP, SPValidationError
from ..webclient import saml_form
from .conftest import PASSWORD, last_event

MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
ROOT = Path(__file__).resolve().parents[2]


def md_certs(xml: str | bytes) -> list[str]:
    root = etree.fromstring(xml if isinstance(xml, bytes) else xml.encode())
    return [c.text for c in root.iter(f"{{{DS}}}X509Certificate")
            if c.getparent().getparent().getparent().tag == f"{{{MD}}}KeyDescriptor"]


def sso(browser, sp, **kw):  # type: ignore[no-untyped-def]
    req = sp.authn_request("redirect", **kw)
    form = saml_form(browser.sso(req, "alice", PASSWORD))
    assert form is not None
    return form, req


def cli(app, *args):  # type: ignore[no-untyped-def]
    r = app.test_cli_runner().invoke(args=list(args))
    assert "Traceback" not in r.output
    return r


@pytest.mark.parametrize("kind", ["pysaml2", "onelogin"])
def test_staged_rotation_walkthrough(app, client, browser, alice, tmp_path, sp_keys, kind):
    cls = {"pysaml2": Pysaml2SP, "onelogin": OneLoginSP}[kind]
    md_before = client.get("/saml/metadata").get_data(as_text=True)
    assert len(md_certs(md_before)) == 1
    stale = cls(tmp_path / "stale", md_before, base_url="https://stale.example.com", keypair=sp_keys["sp1"])
    apps_svc.register_app(stale.metadata_xml().encode(), slug="stale")

    assert cli(app, "certs", "rotate", "--key-type", "rsa2048").exit_code == 0
    md_next = client.get("/saml/metadata").get_data(as_text=True)
    assert len(md_certs(md_next)) == 2, "next phase publishes active and next"
    fresh = cls(tmp_path / "fresh", md_next, base_url="https://fresh.example.com", keypair=sp_keys["sp2"])
    apps_svc.register_app(fresh.metadata_xml().encode(), slug="fresh")
    # still signed with the old active key: everyone validates
    for sp in (stale, fresh):
        form, req = sso(browser, sp)
        assert sp.process_response(form.saml_response, req.request_id).name_id == "alice"

    assert cli(app, "certs", "activate").exit_code == 0
    md_active = client.get("/saml/metadata").get_data(as_text=True)
    assert md_certs(md_active) == md_certs(md_next)[::-1] or set(md_certs(md_active)) == set(md_certs(md_next))
    form, req = sso(browser, fresh)
    assert fresh.process_response(form.saml_response, req.request_id).name_id == "alice"
    # an SP that never refreshed the metadata only knows the old certificate: it cannot validate the new key
    form, req = sso(browser, stale)
    with pytest.raises(SPValidationError):
        stale.process_response(form.saml_response, req.request_id)

    assert cli(app, "certs", "retire").exit_code == 0
    md_after = client.get("/saml/metadata").get_data(as_text=True)
    assert len(md_certs(md_after)) == 1 and md_certs(md_after)[0] in md_certs(md_next)
    assert md_certs(md_after)[0] not in md_certs(md_before)
    form, req = sso(browser, fresh)
    assert fresh.process_response(form.saml_response, req.request_id).name_id == "alice"
    store = app.extensions["idp.keystore"]
    archived = list((store.cert_dir / "archive").iterdir())
    assert len(archived) == 2 and all(stat.S_IMODE(p.stat().st_mode) in (0o600, 0o644) for p in archived)
    assert stat.S_IMODE((store.cert_dir / "archive").stat().st_mode) == 0o700


def test_rotation_commands_refuse_out_of_order(app):
    assert "no next key" in cli(app, "certs", "activate").output
    assert "no key is retiring" in cli(app, "certs", "retire").output
    assert cli(app, "certs", "rotate", "--key-type", "rsa2048").exit_code == 0
    r = cli(app, "certs", "rotate", "--key-type", "rsa2048")
    assert r.exit_code != 0 and "already staged" in r.output
    assert cli(app, "certs", "generate").exit_code != 0
    assert cli(app, "certs", "activate").exit_code == 0
    r = cli(app, "certs", "rotate", "--key-type", "rsa2048")
    assert r.exit_code == 0
    r = cli(app, "certs", "activate")
    assert r.exit_code != 0 and "still retiring" in r.output


def test_pinned_app_keeps_its_key_until_moved(app, browser, alice, make_sp):
    store = app.extensions["idp.keystore"]
    old = store.current().active.kid
    pinned = make_sp("onelogin", slug="legacy")
    r = cli(app, "apps", "set", "legacy", "--signing-key", old)
    assert r.exit_code == 0, r.output
    cli(app, "certs", "rotate", "--key-type", "rsa2048")
    cli(app, "certs", "activate")
    form, req = sso(browser, pinned)  # still signed with the (now retiring) pinned key
    assert pinned.process_response(form.saml_response, req.request_id).name_id == "alice"
    md = app.test_client().get("/saml/metadata?app=legacy").get_data(as_text=True)
    assert md_certs(md) == [store.current().get(old).cert_b64]
    r = cli(app, "certs", "retire")
    assert r.exit_code != 0 and "pinned" in r.output and "legacy" in r.output
    assert cli(app, "apps", "set", "legacy", "--signing-key", "active").exit_code == 0
    assert cli(app, "certs", "retire").exit_code == 0
    assert cli(app, "apps", "set", "legacy", "--signing-key", "nope").exit_code != 0


def test_status_shows_keys_and_warnings(app):
    r = cli(app, "certs", "status")
    assert r.exit_code == 0 and "active" in r.output and "SHA-256" in r.output
    r = cli(app, "certs", "status", "--format", "json")
    import json
    data = json.loads(r.output)
    assert data["keys"][0]["state"] == "active" and len(data["keys"][0]["fingerprint_sha256"]) == 95
    # a certificate close to expiry warns, and says to stage the next key
    store = app.extensions["idp.keystore"]
    gen = generate_key_pair("short", "rsa2048", days=10)
    key_path, cert_path = store.cert_dir.parent / "s.key", store.cert_dir.parent / "s.crt"
    key_path.write_bytes(gen.key_pem)
    cert_path.write_bytes(gen.cert_pem)
    assert cli(app, "certs", "import", "--key", str(key_path), "--cert", str(cert_path)).exit_code == 0
    assert cli(app, "certs", "activate").exit_code == 0
    r = cli(app, "certs", "status")
    assert "expires in 9 days" in r.output and "no next key is staged" in r.output


def test_broken_key_files_are_reported(app, settings):
    store = KeyStore(settings.cert_dir)
    kid = store.current().active.kid
    (settings.cert_dir / f"{kid}.key").write_text("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    r = cli(app, "certs", "status")
    assert r.exit_code == 1 and "ERROR" in r.output and "not a valid unencrypted PEM private key" in r.output
    other = generate_key_pair("other", "rsa2048", 30)
    (settings.cert_dir / f"{kid}.key").write_bytes(other.key_pem)
    r = cli(app, "certs", "status")
    assert r.exit_code == 1 and "does not match the certificate" in r.output
    (settings.cert_dir / f"{kid}.key").unlink()
    r = cli(app, "certs", "status")
    assert r.exit_code == 1 and "cannot read" in r.output


def test_import_refuses_bad_pairs(app, tmp_path):
    a, b = generate_key_pair("a", "rsa2048", 30), generate_key_pair("b", "rsa2048", 30)
    (tmp_path / "a.key").write_bytes(a.key_pem)
    (tmp_path / "b.crt").write_bytes(b.cert_pem)
    (tmp_path / "junk").write_text("junk")
    r = cli(app, "certs", "import", "--key", str(tmp_path / "a.key"), "--cert", str(tmp_path / "b.crt"))
    assert r.exit_code != 0 and "does not match" in r.output
    r = cli(app, "certs", "import", "--key", str(tmp_path / "junk"), "--cert", str(tmp_path / "b.crt"))
    assert r.exit_code != 0 and "PEM private key" in r.output


def test_key_files_modes(settings):
    store = KeyStore(settings.cert_dir)
    store.rotate("x", "rsa2048", 30)
    assert stat.S_IMODE(settings.cert_dir.stat().st_mode) == 0o700
    for p in settings.cert_dir.glob("*.key"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert stat.S_IMODE((settings.cert_dir / "keystore.json").stat().st_mode) == 0o600


def _check_consistent(cert_dir: Path) -> None:
    keys = KeyStore(cert_dir).current()  # loads every non-retired key and requires exactly one active
    assert keys.active.state == "active"
    assert keys.active.cert_b64 in [k.cert_b64 for k in keys.published]


def test_killed_rotation_commands_leave_a_consistent_store(tmp_path, key_template):
    """SIGKILL `idp certs rotate/activate/retire` at random moments; the store must always load with one active key."""
    import shutil
    cert_dir = tmp_path / "certs"
    shutil.copytree(key_template, cert_dir)
    env = {**os.environ, "IDP_CERT_DIR": str(cert_dir), "IDP_INSTANCE_DIR": str(tmp_path / "instance"),
           "IDP_BASE_URL": "http://localhost", "IDP_SECRET_KEY": "k"}
    idp = str(Path(sys.executable).parent / "idp")
    rng = random.Random(1234)
    kills = 0
    for _ in range(14):
        state = KeyStore(cert_dir).read_state()["keys"]
        states = {e["state"] for e in state}
        if "retiring" in states:
            cmd = ["certs", "retire"]
        elif "next" in states:
            cmd = ["certs", "activate"]
        else:
            cmd = ["certs", "rotate", "--key-type", "rsa2048"]
        proc = subprocess.Popen([idp, *cmd], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.25, 1.2))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        _check_consistent(cert_dir)
        for p in cert_dir.glob("*.key"):
            assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert kills >= 1, "the test must actually interrupt some commands"


@pytest.mark.parametrize("kind", ["pysaml2", "onelogin"])
@pytest.mark.parametrize("algorithm", ["aes256-gcm", "aes128-gcm", "aes256-cbc"])
def test_encrypted_assertions_decrypt_at_both_sps(make_sp, browser, alice, kind, algorithm):
    sp = make_sp(kind, want_assertions_encrypted=True)
    r = browser.client.application.test_cli_runner().invoke(
        args=["apps", "set", sp.slug, "--encrypt-assertion", "--encryption-algorithm", algorithm])
    assert r.exit_code == 0, r.output
    form, req = sso(browser, sp)
    xml = base64.b64decode(form.saml_response).decode()
    assert "EncryptedAssertion" in xml and "<saml:Assertion" not in xml and "alice" not in xml
    res = sp.process_response(form.saml_response, req.request_id)
    assert res.name_id == "alice"
    assert last_event().outcome == "success"


def test_encryption_needs_an_encryption_certificate(app, make_sp):
    sp = make_sp("onelogin")  # its metadata carries no encryption key
    r = cli(app, "apps", "set", sp.slug, "--encrypt-assertion")
    assert r.exit_code != 0 and "no encryption certificate" in r.output


@pytest.mark.parametrize("alg,kind", [("rsa-sha512", "onelogin"), ("rsa-sha384", "pysaml2")])
def test_per_app_signature_algorithm(app, make_sp, browser, alice, alg, kind):
    sp = make_sp(kind)
    assert cli(app, "apps", "set", sp.slug, "--signature-algorithm", alg).exit_code == 0
    form, req = sso(browser, sp)
    assert alg.split("-")[1] in base64.b64decode(form.saml_response).decode().split("SignatureMethod")[1][:120]
    assert sp.process_response(form.saml_response, req.request_id).name_id == "alice"


def test_sha1_signing_only_by_explicit_opt_in(app, make_sp, browser, alice):
    sp = make_sp("pysaml2")
    r = cli(app, "apps", "set", sp.slug, "--signature-algorithm", "rsa-sha1")
    assert r.exit_code != 0 and "allow-sha1" in r.output
    assert cli(app, "apps", "set", sp.slug, "--signature-algorithm", "rsa-sha1", "--allow-sha1").exit_code == 0
    form, req = sso(browser, sp)
    assert "rsa-sha1" in base64.b64decode(form.saml_response).decode()
    assert sp.process_response(form.saml_response, req.request_id).name_id == "alice"


@pytest.mark.parametrize("kind", ["pysaml2", "onelogin"])
def test_ec_key_signs_with_ecdsa(app, client, browser, alice, tmp_path, sp_keys, kind):
    gen = generate_key_pair("ec", "ec-p256", 30)
    (tmp_path / "ec.key").write_bytes(gen.key_pem)
    (tmp_path / "ec.crt").write_bytes(gen.cert_pem)
    assert cli(app, "certs", "import", "--key", str(tmp_path / "ec.key"), "--cert", str(tmp_path / "ec.crt")
               ).exit_code == 0
    assert cli(app, "certs", "activate").exit_code == 0
    cls = {"pysaml2": Pysaml2SP, "onelogin": OneLoginSP}[kind]
    sp = cls(tmp_path / "ecsp", client.get("/saml/metadata").get_data(as_text=True), keypair=sp_keys["sp1"])
    apps_svc.register_app(sp.metadata_xml().encode(), slug="ec-app")
    form, req = sso(browser, sp)
    assert "ecdsa-sha256" in base64.b64decode(form.saml_response).decode()
    assert sp.process_response(form.saml_response, req.request_id).name_id == "alice"


def test_signed_metadata_verifies(client, app):
    from signxml import XMLVerifier
    resp = client.get("/saml/metadata?signed=1")
    cert = app.extensions["idp.keystore"].current().active.cert_pem
    root = etree.fromstring(resp.data)
    assert root[0].tag == f"{{{DS}}}Signature", "the signature is the first child of EntityDescriptor"
    XMLVerifier().verify(resp.data, x509_cert=cert, expect_references=1)
    assert root.get("validUntil") and root.get("cacheDuration")
    unsigned = etree.fromstring(client.get("/saml/metadata").data)
    assert unsigned.find(f"{{{DS}}}Signature") is None
    from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser
    parsed = OneLogin_Saml2_IdPMetadataParser.parse(resp.data.decode())
    assert parsed["idp"]["entityId"] == "http://localhost/saml/metadata"


def test_certificate_download(client, app):
    resp = client.get("/saml/certificate")
    assert resp.status_code == 200 and resp.data.startswith(b"-----BEGIN CERTIFICATE-----")
    assert b"PRIVATE" not in resp.data
    assert client.get("/saml/certificate?kid=nope").status_code == 404
    assert client.get("/saml/metadata?app=nope").status_code == 404
