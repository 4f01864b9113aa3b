"""Connected apps with OIDC/OAuth client settings: the services (secrets hashed, shown once, rotated with an overlap;
every change audited without a secret), the `idp apps` commands and the console's read-only view."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from idp.extensions import db
from idp.models import AdminAudit, ConnectedApp, OidcClient, OidcClientSecret, utcnow
from idp.services import ServiceError
from idp.services import apps as apps_svc
from idp.services import users as users_svc
from idp.services.apps.oidc import secret_hash

from ..conftest import SP_METADATA_DIR
from ..webclient import enrol_totp
from .test_admin_apps import sign_in, text
from .test_cli import cli, fails, ok, show

NEXTCLOUD = SP_METADATA_DIR / "nextcloud-user-saml-signed-sha256.xml"
CB = "https://crm.example.com/oidc/callback"


def _audit_text() -> str:
    return json.dumps([[r.action, r.before, r.after] for r in db.session.query(AdminAudit).order_by(AdminAudit.id)])


def _secrets(slug: str) -> list[OidcClientSecret]:
    db.session.expire_all()
    return list(apps_svc.get_app(slug).oidc.secrets)  # type: ignore[union-attr]


def _client_lines(out: str) -> dict[str, str]:
    return dict(re.findall(r"^(client_id|client_secret): (\S+)$", out, re.M))


# ---------------------------------------------------------------- services


def test_register_oidc_app_stores_only_a_hash_and_verifies_the_secret(app: Flask) -> None:
    row, secret = apps_svc.register_oidc_app(
        name="CRM", slug="crm", settings=apps_svc.initial_settings(redirect_uris=(CB,)))
    assert secret is not None and len(secret) >= 43          # 32 random bytes, URL-safe
    assert row.entity_id is None and row.sp is None and row.metadata_xml is None
    client = row.oidc
    assert client is not None and len(client.client_id) >= 32 and client.client_id not in ("crm", "CRM")
    [stored] = client.secrets
    assert stored.secret_hash == secret_hash(secret) and secret not in stored.secret_hash
    assert apps_svc.verify_client_secret(client.client_id, secret)
    assert not apps_svc.verify_client_secret(client.client_id, secret + "x")
    assert not apps_svc.verify_client_secret("someone-else", secret)
    assert secret not in _audit_text()
    # another app gets another random client id
    other, _ = apps_svc.register_oidc_app(name="Other", slug="other",
                                          settings=apps_svc.initial_settings(redirect_uris=(CB,)))
    assert other.oidc is not None and other.oidc.client_id != client.client_id
    # the read path sees it by client id, never as a SAML app
    cfg = apps_svc.app_config_by_client_id(client.client_id)
    assert cfg is not None and cfg.slug == "crm" and cfg.protocols == ("oidc",)
    assert cfg.oidc is not None and cfg.oidc.redirect_uris == (CB,)
    assert apps_svc.saml_app_config_by_slug("crm") is None and apps_svc.saml_app_config_by_id(row.id) is None


def test_disabled_app_secret_is_not_valid(app: Flask) -> None:
    row, secret = apps_svc.register_oidc_app(name="CRM", slug="crm",
                                             settings=apps_svc.initial_settings(redirect_uris=(CB,)))
    apps_svc.change_settings(row, enabled=False)
    assert secret is not None and row.oidc is not None
    assert not apps_svc.verify_client_secret(row.oidc.client_id, secret)


def test_public_client_has_no_secret(app: Flask) -> None:
    row, secret = apps_svc.register_oidc_app(
        name="Mobile", slug="mobile", settings=apps_svc.initial_settings(public=True,
                                                                         redirect_uris=("http://127.0.0.1:7000/cb",)))
    assert secret is None and row.oidc is not None and row.oidc.secrets == []
    assert row.oidc.token_endpoint_auth_method == "none" and row.oidc.require_pkce
    with pytest.raises(ServiceError) as exc:
        apps_svc.rotate_secret(row)
    assert exc.value.field == "token_endpoint_auth_method"
    with pytest.raises(ServiceError) as exc:
        apps_svc.change_oidc(row, grant_types=("client_credentials",))
    assert exc.value.field == "grant_types"


def test_rotation_overlap(app: Flask) -> None:
    row, first = apps_svc.register_oidc_app(name="CRM", slug="crm",
                                            settings=apps_svc.initial_settings(redirect_uris=(CB,)))
    assert first is not None and row.oidc is not None
    cid = row.oidc.client_id
    now = utcnow()
    second = apps_svc.rotate_secret(row, overlap=3600, now=now)
    # both valid during the overlap, only the new one after it
    assert apps_svc.verify_client_secret(cid, first, now=now + timedelta(minutes=59))
    assert apps_svc.verify_client_secret(cid, second, now=now + timedelta(minutes=59))
    assert not apps_svc.verify_client_secret(cid, first, now=now + timedelta(minutes=61))
    assert apps_svc.verify_client_secret(cid, second, now=now + timedelta(days=400))
    # a rotation without overlap ends the others at once; a later overlap never extends an earlier end
    third = apps_svc.rotate_secret(row)
    assert not apps_svc.verify_client_secret(cid, second)
    assert apps_svc.verify_client_secret(cid, third)
    assert len(apps_svc.secret_status(row)) == 1
    for bad in (0, 30, 31 * 86400):
        with pytest.raises(ServiceError) as exc:
            apps_svc.rotate_secret(row, overlap=bad)
        assert exc.value.field == "overlap"
    audit_rows = [r for r in db.session.query(AdminAudit) if r.action == "app.secret_rotate"]
    assert len(audit_rows) == 2
    for s in (first, second, third):
        assert s not in _audit_text() and secret_hash(s) not in _audit_text()


def test_change_oidc_validates_first_and_audits(app: Flask) -> None:
    row, _ = apps_svc.register_oidc_app(name="CRM", slug="crm", settings=apps_svc.initial_settings(redirect_uris=(CB,)))
    version = row.version
    before = row.oidc.redirect_uris  # type: ignore[union-attr]
    with pytest.raises(ServiceError) as exc:
        apps_svc.change_oidc(row, token_endpoint_auth_method="private_key_jwt")
    assert exc.value.field == "jwks_uri" and row.oidc.redirect_uris == before and row.version == version  # type: ignore[union-attr]
    new, secret = apps_svc.change_oidc(row, token_endpoint_auth_method="private_key_jwt",
                                       jwks_uri="https://crm.example.com/jwks")
    assert secret is None and new.token_endpoint_auth_method == "private_key_jwt" and row.version > version
    # moving back to a secret: the old one ended with the move, so a new one is made (shown once)
    _, secret = apps_svc.change_oidc(row, token_endpoint_auth_method="client_secret_post", clear=("jwks_uri",))
    assert secret is not None and row.oidc.jwks_uri is None  # type: ignore[union-attr]
    last = db.session.query(AdminAudit).filter_by(action="app.oidc_settings").order_by(AdminAudit.id.desc()).first()
    assert last is not None and last.before["token_endpoint_auth_method"] == "private_key_jwt"
    with pytest.raises(ServiceError):
        apps_svc.change_oidc(row, client_type="public")


def test_changing_to_a_secret_method_without_a_valid_secret_makes_one(app: Flask) -> None:
    row, _ = apps_svc.register_oidc_app(
        name="Svc", slug="svc", settings=apps_svc.initial_settings(
            grant_types=("client_credentials",), token_endpoint_auth_method="private_key_jwt",
            jwks_uri="https://svc.example.com/jwks"))
    assert row.oidc is not None and row.oidc.secrets == []
    _, secret = apps_svc.change_oidc(row, token_endpoint_auth_method="client_secret_basic")
    assert secret is not None and apps_svc.verify_client_secret(row.oidc.client_id, secret)


def test_leaving_the_secret_methods_ends_the_secrets_and_coming_back_makes_a_new_one(app: Flask) -> None:
    row, first = apps_svc.register_oidc_app(name="CRM", slug="crm",
                                            settings=apps_svc.initial_settings(redirect_uris=(CB,)))
    rotated = apps_svc.rotate_secret(row, overlap=3600)          # two valid secrets, one in its overlap
    assert first is not None and row.oidc is not None
    cid = row.oidc.client_id
    # between the secret methods the secrets stay
    _, secret = apps_svc.change_oidc(row, token_endpoint_auth_method="client_secret_post")
    assert secret is None and apps_svc.verify_client_secret(cid, rotated)
    _, secret = apps_svc.change_oidc(row, token_endpoint_auth_method="private_key_jwt",
                                     jwks_uri="https://crm.example.com/jwks")
    db.session.commit()
    assert secret is None and apps_svc.secret_status(row) == []
    assert all(s.expires_at is not None and s.expires_at <= utcnow() for s in _secrets("crm"))
    last = db.session.query(AdminAudit).filter_by(action="app.oidc_settings").order_by(AdminAudit.id.desc()).first()
    assert last is not None and last.after["secrets_ended"] == 2
    # back to a secret method: the old (maybe leaked) secrets stay dead, a new one is made
    row = apps_svc.get_app("crm")
    _, secret = apps_svc.change_oidc(row, token_endpoint_auth_method="client_secret_basic", clear=("jwks_uri",))
    db.session.commit()
    assert secret is not None and secret not in (first, rotated)
    assert not apps_svc.verify_client_secret(cid, first) and not apps_svc.verify_client_secret(cid, rotated)
    assert apps_svc.verify_client_secret(cid, secret)
    assert len(apps_svc.secret_status(apps_svc.get_app("crm"))) == 1
    assert secret not in _audit_text()


def test_cli_leaving_and_coming_back_to_a_secret_method(app: Flask) -> None:
    shown = _client_lines(ok(app, "apps", "add", "--oidc", "--name", "CRM", "--slug", "crm",
                             "--redirect-uri", CB).stdout)
    r = ok(app, "apps", "set", "crm", "--token-auth", "private_key_jwt", "--jwks-uri", "https://crm.example.com/jwks")
    assert "client_secret" not in r.stdout
    db.session.expire_all()
    assert not apps_svc.verify_client_secret(shown["client_id"], shown["client_secret"])
    assert show(app, "crm")["oidc"]["secrets"] == []
    r = ok(app, "apps", "set", "crm", "--token-auth", "client_secret_post", "--jwks-uri", "")
    again = _client_lines(r.stdout)
    assert again["client_id"] == shown["client_id"] and again["client_secret"] != shown["client_secret"]
    assert "shown only now" in r.stderr
    db.session.expire_all()
    assert apps_svc.verify_client_secret(again["client_id"], again["client_secret"])
    assert not apps_svc.verify_client_secret(shown["client_id"], shown["client_secret"])
    # the secret is printed once: the next change prints none
    assert "client_secret" not in ok(app, "apps", "set", "crm", "--scope", "openid").stdout


def test_saml_app_gets_oidc_and_oidc_app_gets_saml(app: Flask) -> None:
    saml = apps_svc.register_app(NEXTCLOUD.read_bytes(), slug="nextcloud")
    _, secret = apps_svc.add_oidc(saml, apps_svc.initial_settings(redirect_uris=(CB,)))
    assert secret is not None
    cfg = apps_svc.app_config_by_slug("nextcloud")
    assert cfg is not None and cfg.protocols == ("saml", "oidc")
    with pytest.raises(ServiceError) as exc:
        apps_svc.add_oidc(saml, apps_svc.initial_settings(redirect_uris=(CB,)))
    assert exc.value.field == "oidc"
    # an OIDC-only app takes SAML metadata, unless another app already has that entityID
    oidc_only, _ = apps_svc.register_oidc_app(name="CRM", slug="crm",
                                              settings=apps_svc.initial_settings(redirect_uris=(CB,)))
    with pytest.raises(ServiceError) as exc:
        apps_svc.update_metadata(oidc_only, NEXTCLOUD.read_bytes())
    assert exc.value.field == "entity_id" and oidc_only.entity_id is None
    apps_svc.remove_app("nextcloud")
    assert apps_svc.update_metadata(oidc_only, NEXTCLOUD.read_bytes())
    cfg = apps_svc.app_config_by_slug("crm")
    assert cfg is not None and cfg.protocols == ("saml", "oidc") and cfg.entity_id == oidc_only.entity_id
    assert apps_svc.saml_app_config_by_slug("crm") is not None
    assert apps_svc.app_config_by_entity_id(oidc_only.entity_id or "") is not None


def test_removing_an_app_removes_its_client_and_secrets(app: Flask) -> None:
    apps_svc.register_oidc_app(name="CRM", slug="crm", settings=apps_svc.initial_settings(redirect_uris=(CB,)))
    db.session.commit()
    apps_svc.remove_app("crm")
    db.session.commit()
    assert db.session.query(OidcClient).count() == 0 and db.session.query(OidcClientSecret).count() == 0


# ---------------------------------------------------------------- CLI


def test_cli_add_oidc_prints_client_id_and_secret_once(app: Flask) -> None:
    r = ok(app, "apps", "add", "--oidc", "--name", "CRM", "--slug", "crm", "--redirect-uri", CB,
           "--redirect-uri", "http://localhost:3000/cb", "--grant", "authorization_code", "--grant", "refresh_token")
    assert r.stdout.splitlines()[0] == "crm"
    shown = _client_lines(r.stdout)
    assert set(shown) == {"client_id", "client_secret"}
    assert "shown only now" in r.stderr
    assert apps_svc.verify_client_secret(shown["client_id"], shown["client_secret"])
    d = show(app, "crm")
    assert d["protocols"] == ["oidc"] and "entity_id" not in d and "launch_url" not in d
    assert d["oidc"]["client_id"] == shown["client_id"]
    assert d["oidc"]["redirect_uris"] == [CB, "http://localhost:3000/cb"]
    assert d["oidc"]["grant_types"] == ["authorization_code", "refresh_token"]
    assert len(d["oidc"]["secrets"]) == 1
    text_out = ok(app, "apps", "show", "crm").stdout + ok(app, "apps", "list").stdout + \
        ok(app, "apps", "list", "--format", "json").stdout
    assert shown["client_secret"] not in text_out and secret_hash(shown["client_secret"]) not in text_out
    assert shown["client_id"] in ok(app, "apps", "list").stdout
    assert shown["client_secret"] not in _audit_text()


def test_cli_add_public_and_refusals(app: Flask) -> None:
    r = ok(app, "apps", "add", "--oidc", "--name", "Mobile", "--slug", "mobile", "--public",
           "--redirect-uri", "http://127.0.0.1:7000/cb")
    assert set(_client_lines(r.stdout)) == {"client_id"}
    assert show(app, "mobile")["oidc"]["token_endpoint_auth_method"] == "none"
    fails(app, "apps", "add", "--oidc", "--name", "X", "--slug", "x", "--public", "--grant", "client_credentials",
          fragment="public client cannot use the client_credentials grant")
    fails(app, "apps", "add", "--oidc", "--name", "X", "--slug", "x", "--redirect-uri", "http://evil.example/cb",
          fragment="must use https")
    fails(app, "apps", "add", "--oidc", "--name", "X", "--slug", "x", "--redirect-uri", "https://a.example/*",
          fragment="wildcard")
    fails(app, "apps", "add", "--oidc", "--name", "X", "--slug", "x", fragment="at least one redirect URI")
    fails(app, "apps", "add", "--oidc", "--name", "X", "--slug", "mobile", "--redirect-uri", CB,
          fragment="already taken")
    fails(app, "apps", "add", "--oidc", "--slug", "x", "--redirect-uri", CB, fragment="needs --name")
    fails(app, "apps", "add", "--name", "X", fragment="give --metadata")
    fails(app, "apps", "add", "--metadata", str(NEXTCLOUD), "--public", fragment="add --oidc")
    # client credentials only: no redirect URI needed
    r = ok(app, "apps", "add", "--oidc", "--name", "Batch", "--slug", "batch", "--grant", "client_credentials")
    assert "client_secret" in _client_lines(r.stdout)
    db.session.expire_all()
    assert {a.slug for a in apps_svc.list_apps()} == {"mobile", "batch"}


def test_cli_add_metadata_and_oidc_together(app: Flask) -> None:
    r = ok(app, "apps", "add", "--metadata", str(NEXTCLOUD), "--slug", "nextcloud", "--oidc", "--redirect-uri", CB)
    assert "client_secret" in _client_lines(r.stdout)
    assert show(app, "nextcloud")["protocols"] == ["saml", "oidc"]


def test_cli_set_gives_a_saml_app_oidc_settings_and_changes_them(app: Flask, tmp_path: Path) -> None:
    ok(app, "apps", "add", "--metadata", str(NEXTCLOUD), "--slug", "nextcloud")
    fails(app, "apps", "set", "nextcloud", "--redirect-uri", CB, fragment="has no OIDC settings")
    fails(app, "apps", "set", "nextcloud", "--public", fragment="--public goes with --oidc")
    r = ok(app, "apps", "set", "nextcloud", "--oidc", "--redirect-uri", CB, "--scope", "openid", "--scope", "groups")
    shown = _client_lines(r.stdout)
    assert set(shown) == {"client_id", "client_secret"}
    fails(app, "apps", "set", "nextcloud", "--oidc", "--redirect-uri", CB, fragment="already has OIDC settings")
    ok(app, "apps", "set", "nextcloud", "--redirect-uri", "https://nc.example.com/cb",
       "--post-logout-redirect-uri", "https://nc.example.com/bye", "--scope", "openid", "--scope", "profile",
       "--scope", "api:read", "--refresh-policy", "expire-after:90d", "--access-token-lifetime", "30m",
       "--id-token-lifetime", "1h", "--backchannel-logout-uri", "https://nc.example.com/bc",
       "--initiate-login-uri", "https://nc.example.com/login", "--ip-policy-refresh", "relax",
       "--grant", "authorization_code", "--grant", "refresh_token")
    o = show(app, "nextcloud")["oidc"]
    assert o["redirect_uris"] == ["https://nc.example.com/cb"]
    assert o["post_logout_redirect_uris"] == ["https://nc.example.com/bye"]
    assert o["scopes"] == ["openid", "profile", "api:read"]
    assert (o["refresh_policy"], o["access_token_lifetime"], o["id_token_lifetime"]) == ("expire-after:90d", "30m",
                                                                                       "1h")
    assert o["backchannel_logout_uri"] == "https://nc.example.com/bc" and o["ip_policy_refresh"] == "relax"
    assert o["client_id"] == shown["client_id"]
    # private_key_jwt needs keys; '' removes an optional URI
    fails(app, "apps", "set", "nextcloud", "--token-auth", "private_key_jwt", fragment="needs the client's public")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{"kty": "RSA", "kid": "rp1", "n": "sXch", "e": "AQAB"}]}))
    ok(app, "apps", "set", "nextcloud", "--token-auth", "private_key_jwt", "--jwks", str(jwks),
       "--backchannel-logout-uri", "", "--refresh-policy", "until-revoked")
    o = show(app, "nextcloud")["oidc"]
    assert o["token_endpoint_auth_method"] == "private_key_jwt" and o["jwks"] == ["rp1"]
    assert o["backchannel_logout_uri"] is None and o["refresh_policy"] == "until-revoked"
    jwks.write_text(json.dumps({"keys": [{"kty": "RSA", "n": "sXch", "e": "AQAB", "d": "private"}]}))
    fails(app, "apps", "set", "nextcloud", "--jwks", str(jwks), fragment="private key")
    fails(app, "apps", "set", "nextcloud", "--access-token-lifetime", "2d", fragment="out of range")
    fails(app, "apps", "set", "nextcloud", "--access-token-lifetime", "soon", fragment="not a duration")
    fails(app, "apps", "set", "nextcloud", "--refresh-policy", "forever", fragment="refresh policy must be")
    fails(app, "apps", "set", "nextcloud", "--refresh-policy", "none", fragment="drop the refresh_token grant")
    fails(app, "apps", "set", "nextcloud", "--redirect-uri", "https://nc.example.com/cb#x", fragment="fragment")
    fails(app, "apps", "set", "nextcloud", "--scope", "two words", fragment="scope")
    ok(app, "apps", "set", "nextcloud", "--refresh-policy", "none", "--grant", "authorization_code")
    assert show(app, "nextcloud")["oidc"]["refresh_policy"] == "none"
    assert shown["client_secret"] not in _audit_text()


def test_cli_set_metadata_gives_an_oidc_app_saml_settings(app: Flask) -> None:
    ok(app, "apps", "add", "--oidc", "--name", "CRM", "--slug", "crm", "--redirect-uri", CB)
    fails(app, "apps", "set", "crm", "--entity-id", "x", fragment="--entity-id goes with --metadata")
    r = ok(app, "apps", "set", "crm", "--metadata", str(NEXTCLOUD))
    assert "SAML metadata updated" in r.stdout
    d = show(app, "crm")
    assert d["protocols"] == ["saml", "oidc"] and d["entity_id"] and d["acs"]
    ok(app, "apps", "add", "--oidc", "--name", "Other", "--slug", "other", "--redirect-uri", CB)
    fails(app, "apps", "set", "other", "--metadata", str(NEXTCLOUD), fragment="already has the entityID")


def test_cli_secret_rotate(app: Flask) -> None:
    first = _client_lines(ok(app, "apps", "add", "--oidc", "--name", "CRM", "--slug", "crm",
                             "--redirect-uri", CB).stdout)
    r = ok(app, "apps", "secret", "rotate", "crm", "--overlap", "1h")
    second = _client_lines(r.stdout)
    assert second["client_id"] == first["client_id"] and second["client_secret"] != first["client_secret"]
    assert "valid for 1h" in r.stderr
    db.session.expire_all()
    assert apps_svc.verify_client_secret(first["client_id"], first["client_secret"])
    assert apps_svc.verify_client_secret(first["client_id"], second["client_secret"])
    assert [s["expires_at"] is not None for s in show(app, "crm")["oidc"]["secrets"]] == [True, False]
    third = _client_lines(ok(app, "apps", "secret", "rotate", "crm").stdout)
    db.session.expire_all()
    assert not apps_svc.verify_client_secret(first["client_id"], first["client_secret"])
    assert not apps_svc.verify_client_secret(first["client_id"], second["client_secret"])
    assert apps_svc.verify_client_secret(first["client_id"], third["client_secret"])
    fails(app, "apps", "secret", "rotate", "crm", "--overlap", "forever", fragment="not a duration")
    fails(app, "apps", "secret", "rotate", "crm", "--overlap", "90d", fragment="between 1m and 30d")
    fails(app, "apps", "secret", "rotate", "nope", fragment="no app with slug")
    ok(app, "apps", "add", "--metadata", str(NEXTCLOUD), "--slug", "nextcloud")
    fails(app, "apps", "secret", "rotate", "nextcloud", fragment="has no OIDC settings")
    audit = _audit_text()
    for s in (first, second, third):
        assert s["client_secret"] not in audit


def test_cli_output_for_a_saml_only_app_is_unchanged(app: Flask) -> None:
    ok(app, "apps", "add", "--metadata", str(NEXTCLOUD), "--slug", "nextcloud")
    d = show(app, "nextcloud")
    assert d["protocols"] == ["saml"] and "oidc" not in d and d["launch_url"].endswith("/apps/nextcloud/sso")
    r = cli(app, "apps", "list")
    assert "saml" in r.stdout and r.exit_code == 0


# ---------------------------------------------------------------- console


@pytest.fixture
def admin(client: FlaskClient, app: Flask) -> str:
    pw = app.extensions["idp.passwords"]
    from .conftest import PASSWORD

    user = users_svc.add_user("root", email="root@example.com", password_hash=pw.hash(PASSWORD), is_admin=True)
    enrol_totp(user)
    db.session.commit()
    return sign_in(client, "root")


def _oidc_app(slug: str = "crm", **values: Any) -> ConnectedApp:
    row, _ = apps_svc.register_oidc_app(name=slug.upper(), slug=slug, settings=apps_svc.initial_settings(
        redirect_uris=(CB,), **values))
    db.session.commit()
    return row


def test_console_list_shows_protocols(client: FlaskClient, admin: str) -> None:
    row = _oidc_app()
    apps_svc.register_app(NEXTCLOUD.read_bytes(), slug="nextcloud")
    db.session.commit()
    body = text(client.get("/admin/apps"))
    crm = re.search(r'<tr id="app-row-crm".*?</tr>', body, re.S)
    nc = re.search(r'<tr id="app-row-nextcloud".*?</tr>', body, re.S)
    assert crm and nc
    assert 'data-protocol="oidc"' in crm.group(0) and 'data-protocol="saml"' not in crm.group(0)
    assert row.oidc is not None and row.oidc.client_id in crm.group(0)
    assert 'data-protocol="saml"' in nc.group(0) and 'data-protocol="oidc"' not in nc.group(0)
    assert row.oidc.client_id in text(client.get("/admin/apps?q=" + row.oidc.client_id))


def test_console_app_page_shows_oidc_settings(client: FlaskClient, admin: str) -> None:
    row = _oidc_app(scopes=("openid", "groups"), post_logout_redirect_uris=("https://crm.example.com/bye",))
    resp = client.get("/admin/apps/crm")
    body = text(resp)
    assert resp.status_code == 200
    assert row.oidc is not None and f'id="oidc-client-id">{row.oidc.client_id}<' in body
    for fragment in (CB, "https://crm.example.com/bye", "authorization_code", "groups", "10m",
                     '<option value="expire-if-unused" selected>', 'value="30d"',
                     '<option value="client_secret_basic" selected>'):
        assert fragment in body, fragment
    assert 'id="saml-settings"' not in body and 'id="sp-facts"' not in body and 'id="idp-values"' not in body
    assert 'id="no-saml"' in body and 'id="add-saml-link"' in body
    assert 'id="policy-form"' in body     # the access policy applies to OIDC apps too
    # the OIDC settings are edited on the page (tests/functional/test_oidc_console.py), and its attributes (its
    # claims) on their own form (tests/functional/test_admin_attribute_release.py); nothing edits SAML settings
    actions = set(re.findall(r'<form method="post" action="([^"]+)"', body))
    assert actions - {"/logout/saml"} == {"/admin/apps/crm/status", "/admin/apps/crm/policy#access-policy",
                                          "/admin/apps/crm/oidc", "/admin/apps/crm/attributes#attribute-release",
                                          "/admin/apps/crm/provisioning#provisioning"}
    # SAML settings cannot be posted to an app without SAML
    resp = client.post("/admin/apps/crm/saml", data={"csrf_token": admin, "name": "x", "nameid_format": "email",
                                                     "nameid_field": "email", "sign": "both",
                                                     "signature_algorithm": "rsa-sha256"})
    assert resp.status_code == 409
    # a SAML app's page says it has no OIDC settings
    apps_svc.register_app(NEXTCLOUD.read_bytes(), slug="nextcloud")
    db.session.commit()
    body = text(client.get("/admin/apps/nextcloud"))
    assert 'id="no-oidc"' in body and 'id="saml-settings"' in body


def test_console_adds_saml_metadata_to_an_oidc_app(client: FlaskClient, admin: str) -> None:
    _oidc_app()
    resp = client.get("/admin/apps/crm/refresh")
    assert resp.status_code == 200 and 'id="adding-saml"' in text(resp)
    resp = client.post("/admin/apps/crm/refresh", data={"csrf_token": admin, "metadata_xml": NEXTCLOUD.read_text()})
    assert resp.status_code == 200 and 'id="refresh-diff"' in text(resp)
    db.session.expire_all()
    assert apps_svc.get_app("crm").entity_id is None     # a preview changes nothing
    token = re.search(r'name="token" value="([^"]+)"', text(resp))
    assert token
    resp = client.post("/admin/apps/crm/refresh/apply", data={"csrf_token": admin, "token": token.group(1)})
    assert resp.status_code == 303
    db.session.expire_all()
    row = apps_svc.get_app("crm")
    assert row.has_saml and row.has_oidc
    body = text(client.get("/admin/apps/crm"))
    assert 'id="saml-settings"' in body and 'id="oidc-client-id"' in body


def test_console_leaving_and_coming_back_to_a_secret_method(client: FlaskClient, admin: str) -> None:
    row, first = apps_svc.register_oidc_app(name="CRM", slug="crm",
                                            settings=apps_svc.initial_settings(redirect_uris=(CB,)))
    db.session.commit()
    assert row.oidc is not None and first is not None
    cid = row.oidc.client_id
    form = {"csrf_token": admin, "redirect_uris": CB, "post_logout_redirect_uris": "", "resources": "",
            "grant_types": ["authorization_code"], "scopes": "openid profile email",
            "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "https://crm.example.com/jwks",
            "backchannel_logout_uri": "", "initiate_login_uri": "", "access_token_lifetime": "10m",
            "id_token_lifetime": "10m", "refresh_policy": "expire-if-unused", "refresh_lifetime": "30d",
            "ip_policy_refresh": "enforce"}
    resp = client.post("/admin/apps/crm/oidc", data=form)
    assert resp.status_code == 303, text(resp)[:2000]
    db.session.expire_all()
    assert not apps_svc.verify_client_secret(cid, first)
    resp = client.post("/admin/apps/crm/oidc", data={**form, "token_endpoint_auth_method": "client_secret_basic",
                                                      "jwks_uri": ""})
    body = text(resp)
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-store"
    secret = re.search(r'id="client-secret">([^<]+)<', body)
    assert secret and 'id="secret-once"' in body and secret.group(1) != first
    db.session.expire_all()
    assert apps_svc.verify_client_secret(cid, secret.group(1)) and not apps_svc.verify_client_secret(cid, first)
    assert secret.group(1) not in text(client.get("/admin/apps/crm"))
