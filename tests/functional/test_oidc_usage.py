"""Usage of OIDC apps: the console (OIDC settings form, add OIDC to a SAML app, register an OIDC app, rotate the
secret, the usage section and its revoke), /account's "Authorized apps" and `idp tokens list / revoke`. Grants and
refresh tokens are seeded through the models (tests/oidc_seed)."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from idp.extensions import db
from idp.models import AdminAudit, OidcGrant, OidcRefreshToken, utcnow
from idp.services import apps as apps_svc
from idp.services import oauth_usage
from idp.services import users as users_svc
from idp.services.apps.oidc import verify_client_secret

from ..conftest import SP_METADATA_DIR
from ..oidc_seed import add_grant, add_oidc_app, add_refresh
from ..webclient import enrol_totp
from .conftest import PASSWORD, events
from .test_admin_apps import csrf_of, field_error, sign_in, text
from .test_cli import cli, fails, ok

NEXTCLOUD = SP_METADATA_DIR / "nextcloud-user-saml-signed-sha256.xml"


@pytest.fixture
def admin(client: FlaskClient, app: Flask) -> str:
    pw = app.extensions["idp.passwords"]
    user = users_svc.add_user("root", email="root@example.com", password_hash=pw.hash(PASSWORD), is_admin=True)
    enrol_totp(user)
    db.session.commit()
    return sign_in(client, "root")


def _grant_live(grant_id: int) -> bool:
    db.session.expire_all()
    return db.session.get(OidcGrant, grant_id).revoked_at is None


def _live_tokens(grant_id: int) -> int:
    db.session.expire_all()
    return db.session.query(OidcRefreshToken).filter(OidcRefreshToken.grant_id == grant_id,
                                                     OidcRefreshToken.revoked_at.is_(None)).count()


def _settings_form(**overrides: Any) -> dict[str, Any]:
    data = {"redirect_uris": "https://crm.example.com/cb\nhttps://crm.example.com/cb2",
            "post_logout_redirect_uris": "https://crm.example.com/bye",
            "grant_types": ["authorization_code", "refresh_token"], "scopes": "openid profile email offline_access",
            "token_endpoint_auth_method": "client_secret_post", "jwks_uri": "",
            "backchannel_logout_uri": "https://crm.example.com/bc", "initiate_login_uri": "https://crm.example.com/go",
            "access_token_lifetime": "5m", "id_token_lifetime": "15m", "refresh_policy": "expire-after",
            "refresh_lifetime": "12h", "ip_policy_refresh": "relax"}
    data.update(overrides)
    return data


# ---------------------------------------------------------------- services


def test_list_grants_counts_live_refresh_families(app, alice, bob):
    crm, _ = add_oidc_app("crm")
    g = add_grant(crm, alice, ("openid", "email"))
    add_refresh(g, session_id="s1")
    add_refresh(g, offline=True, expires_in=timedelta(days=3))
    gone = add_refresh(g, session_id="s1")
    gone.revoked_at = utcnow()
    rotated = add_refresh(g, session_id="s1")
    rotated.rotated_at = utcnow()
    add_refresh(g, session_id="s1", expires_in=timedelta(seconds=-5))   # expired: not live
    add_grant(crm, bob, used=False).revoked_at = utcnow()                 # a revoked grant: not listed
    db.session.commit()
    rows = oauth_usage.list_grants(app_id=crm.id)
    assert [r.username for r in rows] == ["alice"]
    r = rows[0]
    assert (r.offline_tokens, r.session_tokens, r.kind) == (1, 1, "offline+session-bound")
    # the app's default policy is expire-if-unused:30d: the later of the two tokens' ends
    assert r.expires_at is not None and r.expires_at > utcnow() + timedelta(days=29)
    apps_svc.change_oidc(crm, refresh_policy="until-revoked", clear=("refresh_lifetime",))
    db.session.commit()
    assert oauth_usage.list_grants(app_id=crm.id)[0].expires_at is None   # one token never expires
    assert r.to_dict()["refresh_tokens"] == {"offline": 1, "session_bound": 1}


# ---------------------------------------------------------------- console: settings


def test_console_edits_oidc_settings(client, admin):
    crm, _ = add_oidc_app("crm")
    db.session.commit()
    resp = client.post("/admin/apps/crm/oidc", data={"csrf_token": admin, **_settings_form()})
    assert resp.status_code == 303, text(resp)[:2000]
    db.session.expire_all()
    o = apps_svc.get_app("crm").oidc
    assert o.redirect_uris == ["https://crm.example.com/cb", "https://crm.example.com/cb2"]
    assert o.post_logout_redirect_uris == ["https://crm.example.com/bye"]
    assert (o.token_endpoint_auth_method, o.access_token_lifetime, o.id_token_lifetime) == ("client_secret_post",
                                                                                            300, 900)
    assert (o.refresh_policy, o.refresh_lifetime, o.ip_policy_refresh) == ("expire-after", 43200, "relax")
    assert (o.backchannel_logout_uri, o.initiate_login_uri, o.jwks_uri) == (
        "https://crm.example.com/bc", "https://crm.example.com/go", None)
    audit_row = db.session.query(AdminAudit).filter(AdminAudit.action == "app.oidc_settings").one()
    assert audit_row.actor == "web:root"
    # clearing an optional URI and moving to until-revoked
    resp = client.post("/admin/apps/crm/oidc", data={"csrf_token": admin, **_settings_form(
        backchannel_logout_uri="", refresh_policy="until-revoked", refresh_lifetime="")})
    assert resp.status_code == 303
    db.session.expire_all()
    o = apps_svc.get_app("crm").oidc
    assert (o.backchannel_logout_uri, o.refresh_policy, o.refresh_lifetime) == (None, "until-revoked", None)


@pytest.mark.parametrize(("overrides", "field"), [
    ({"redirect_uris": "http://crm.example.com/cb"}, "redirect_uris"),           # plain http off loopback
    ({"redirect_uris": "https://crm.example.com/*"}, "redirect_uris"),
    ({"redirect_uris": ""}, "redirect_uris"),                                     # code grant needs one
    ({"post_logout_redirect_uris": "https://x.example.com/#f"}, "post_logout_redirect_uris"),
    ({"access_token_lifetime": "2d"}, "access_token_lifetime"),
    ({"id_token_lifetime": "soon"}, "id_token_lifetime"),
    ({"refresh_lifetime": ""}, "refresh_lifetime"),
    ({"refresh_policy": "forever"}, "refresh_policy"),
    ({"refresh_policy": "none"}, "refresh_policy"),                              # refresh_token grant kept
    ({"grant_types": ["implicit"]}, "grant_types"),
    ({"token_endpoint_auth_method": "private_key_jwt"}, "jwks_uri"),
    ({"backchannel_logout_uri": "javascript:alert(1)"}, "backchannel_logout_uri"),
    ({"scopes": "openid bad<scope>"}, "scopes"),
])
def test_console_oidc_settings_refusals_sit_next_to_the_field(client, admin, overrides, field):
    crm, _ = add_oidc_app("crm")
    db.session.commit()
    before = apps_svc.get_app("crm").oidc.redirect_uris
    resp = client.post("/admin/apps/crm/oidc", data={"csrf_token": admin, **_settings_form(**overrides)})
    assert resp.status_code == 422
    assert field_error(resp, field)
    db.session.expire_all()
    o = apps_svc.get_app("crm").oidc
    assert o.redirect_uris == before and o.access_token_lifetime == 600


def test_console_oidc_posts_need_csrf_and_an_admin(client, admin, app, alice):
    add_oidc_app("crm")
    db.session.commit()
    assert client.post("/admin/apps/crm/oidc", data=_settings_form()).status_code == 400
    assert client.post("/admin/apps/crm/oidc/secret", data={"overlap": "1d"}).status_code == 400
    other = app.test_client()
    sign_in(other, "alice")
    assert other.get("/admin/apps/crm/oidc/secret").status_code == 403
    assert other.get("/admin/apps/new-oidc").status_code == 403


def test_console_adds_oidc_settings_to_a_saml_app(client, admin):
    apps_svc.register_app(NEXTCLOUD.read_bytes(), slug="nextcloud")
    db.session.commit()
    body = text(client.get("/admin/apps/nextcloud"))
    assert 'id="add-oidc-form"' in body
    resp = client.post("/admin/apps/nextcloud/oidc/add", data={"csrf_token": admin, "redirect_uris": "http://x/cb"})
    assert resp.status_code == 422 and field_error(resp, "redirect_uris")
    resp = client.post("/admin/apps/nextcloud/oidc/add", data={"csrf_token": admin, "client_type": "confidential",
                                                               "redirect_uris": "https://nc.example.com/oidc"})
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-store"
    secret = re.search(r'id="client-secret">([^<]+)<', text(resp)).group(1)
    db.session.expire_all()
    row = apps_svc.get_app("nextcloud")
    assert row.has_saml and row.has_oidc and verify_client_secret(row.oidc.client_id, secret)
    assert secret not in text(client.get("/admin/apps/nextcloud"))
    assert secret not in json.dumps([[a.before, a.after] for a in db.session.query(AdminAudit)])


def test_console_registers_an_oidc_app_and_shows_the_secret_once(client, admin):
    assert 'id="new-oidc-app"' in text(client.get("/admin/apps"))
    assert client.get("/admin/apps/new-oidc").status_code == 200
    resp = client.post("/admin/apps/new-oidc", data={"csrf_token": admin, "name": "", "slug": "Bad Slug",
                                                     "redirect_uris": ""})
    assert resp.status_code == 422
    for name in ("name", "slug", "redirect_uris"):
        assert field_error(resp, name)
    resp = client.post("/admin/apps/new-oidc", data={"csrf_token": admin, "name": "CRM", "slug": "crm",
                                                     "redirect_uris": "https://crm.example.com/cb"})
    assert resp.status_code == 201
    body = text(resp)
    client_id = re.search(r'id="client-id">([^<]+)<', body).group(1)
    secret = re.search(r'id="client-secret">([^<]+)<', body).group(1)
    assert verify_client_secret(client_id, secret)
    assert 'id="secret-once"' in body
    # the slug is taken now: the error is next to the slug
    resp = client.post("/admin/apps/new-oidc", data={"csrf_token": admin, "name": "CRM", "slug": "crm",
                                                     "redirect_uris": "https://crm.example.com/cb"})
    assert resp.status_code == 422 and "taken" in field_error(resp, "slug")
    # a public client gets no secret
    resp = client.post("/admin/apps/new-oidc", data={"csrf_token": admin, "name": "SPA", "slug": "spa",
                                                     "client_type": "public",
                                                     "redirect_uris": "https://spa.example.com/cb"})
    assert resp.status_code == 201 and 'id="no-secret"' in text(resp)
    assert apps_svc.get_app("spa").oidc.client_type == "public"


def test_console_rotates_the_secret_with_an_overlap(client, admin):
    crm, first = add_oidc_app("crm")
    db.session.commit()
    page = client.get("/admin/apps/crm/oidc/secret")
    assert page.status_code == 200 and 'id="rotate-confirm"' in text(page)
    assert client.post("/admin/apps/crm/oidc/secret", data={"csrf_token": admin, "overlap": "5y"}).status_code == 422
    resp = client.post("/admin/apps/crm/oidc/secret", data={"csrf_token": admin, "overlap": "1d"})
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-store"
    body = text(resp)
    new = re.search(r'id="client-secret">([^<]+)<', body).group(1)
    client_id = crm.oidc.client_id
    assert verify_client_secret(client_id, new) and verify_client_secret(client_id, first)
    assert "valid until" in body     # the old secret's expiry is shown
    assert verify_client_secret(client_id, first, now=utcnow() + timedelta(days=1, minutes=1)) is False
    # overlap none: the old secrets stop at once
    resp = client.post("/admin/apps/crm/oidc/secret", data={"csrf_token": admin, "overlap": "0"})
    newest = re.search(r'id="client-secret">([^<]+)<', text(resp)).group(1)
    assert verify_client_secret(client_id, newest) and not verify_client_secret(client_id, new)
    assert db.session.query(AdminAudit).filter(AdminAudit.action == "app.secret_rotate").count() == 2


# ---------------------------------------------------------------- console: usage


def test_console_usage_lists_live_grants_and_revokes_one(client, admin, alice, bob):
    crm, _ = add_oidc_app("crm")
    ga = add_grant(crm, alice, ("openid", "email"))
    add_refresh(ga, session_id="s")
    add_refresh(ga, offline=True)
    gb = add_grant(crm, bob)
    db.session.commit()
    body = text(client.get("/admin/apps/crm"))
    usage = re.search(r'<section class="card" id="oidc-usage".*?</section>', body, re.S).group(0)
    assert "alice" in usage and "bob" in usage and f'id="revoke-{ga.id}"' in usage
    assert "offline+session-bound" in usage
    page = client.get(f"/admin/apps/crm/grants/{ga.id}/revoke")
    assert page.status_code == 200 and 'id="revoke-confirm"' in text(page)
    assert _grant_live(ga.id)                                   # the GET only asks
    assert client.post(f"/admin/apps/crm/grants/{ga.id}/revoke", data={}).status_code == 400   # no CSRF token
    assert _grant_live(ga.id)
    resp = client.post(f"/admin/apps/crm/grants/{ga.id}/revoke", data={"csrf_token": csrf_of(page)})
    assert resp.status_code == 303
    assert not _grant_live(ga.id) and _live_tokens(ga.id) == 0 and _grant_live(gb.id)
    ev = events(event_type="token")[-1]
    assert (ev.reason, ev.protocol, ev.username, ev.app_slug, ev.initiated_by) == (
        "token_revoked", "oidc", "alice", "crm", "admin")
    assert ev.detail["refresh_tokens_revoked"] == 2
    row = db.session.query(AdminAudit).filter(AdminAudit.action == "oidc.grant_revoke").one()
    assert (row.actor, row.target) == ("web:root", "alice")
    assert "alice" not in re.search(r'id="oidc-usage".*?</section>', text(client.get("/admin/apps/crm")), re.S)[0]
    # a revoked grant, or another app's grant, is not found under this app
    assert client.get(f"/admin/apps/crm/grants/{ga.id}/revoke").status_code == 404
    other, _ = add_oidc_app("other")
    go = add_grant(other, alice)
    db.session.commit()
    assert client.post(f"/admin/apps/crm/grants/{go.id}/revoke", data={"csrf_token": csrf_of(page)}).status_code == 404
    assert _grant_live(go.id)


# ---------------------------------------------------------------- /account


def test_account_lists_and_revokes_own_authorized_apps(app, client, alice, bob):
    crm, _ = add_oidc_app("crm")
    ga = add_grant(crm, alice, ("openid", "profile"))
    add_refresh(ga, offline=True)
    gb = add_grant(crm, bob)
    db.session.commit()
    sign_in(client, "alice")
    page = client.get("/account")
    body = text(page)
    assert 'id="authorized-table"' in body and f'id="grant-{ga.id}"' in body and f'id="grant-{gb.id}"' not in body
    assert "CRM" in body and "<code>profile</code>" in body
    # CSRF required
    assert client.post(f"/account/apps/{ga.id}/revoke").status_code == 400
    assert _grant_live(ga.id)
    # bob's grant cannot be revoked by alice
    resp = client.post(f"/account/apps/{gb.id}/revoke", data={"csrf_token": csrf_of(page)})
    assert resp.status_code == 303 and _grant_live(gb.id)
    resp = client.post(f"/account/apps/{ga.id}/revoke", data={"csrf_token": csrf_of(page)})
    assert resp.status_code == 303
    assert not _grant_live(ga.id) and _live_tokens(ga.id) == 0
    ev = events(event_type="token")[-1]
    assert (ev.reason, ev.username, ev.initiated_by, ev.protocol) == ("token_revoked", "alice", "user", "oidc")
    assert 'id="authorized-empty"' in text(client.get("/account"))


# ---------------------------------------------------------------- CLI


def test_cli_tokens_list(app, alice, bob):
    crm, _ = add_oidc_app("crm")
    apps_svc.change_oidc(crm, refresh_policy="until-revoked", clear=("refresh_lifetime",))
    wiki, _ = add_oidc_app("wiki")
    ga = add_grant(crm, alice, ("openid", "email"))
    add_refresh(ga, offline=True)
    gb = add_grant(wiki, bob)
    add_refresh(gb, session_id="s", expires_in=timedelta(days=2))
    db.session.commit()
    out = ok(app, "tokens", "list").output
    assert out.splitlines()[0].startswith("ID\tAPP\tUSER")
    assert f"{ga.id}\tcrm\talice\topenid email\t" in out and "offline (1)" in out and "until revoked" in out
    assert f"{gb.id}\twiki\tbob\t" in out and "session-bound (1)" in out
    rows = json.loads(ok(app, "tokens", "list", "--app", "crm", "--format", "json").output)
    assert [r["id"] for r in rows] == [ga.id]
    assert rows[0]["refresh_tokens"] == {"offline": 1, "session_bound": 0} and rows[0]["kind"] == "offline"
    assert set(rows[0]) >= {"id", "app", "user", "scopes", "created", "last_used", "expires"}
    rows = json.loads(ok(app, "tokens", "list", "--user", "bob", "--format", "json").output)
    assert [r["app"] for r in rows] == ["wiki"] and rows[0]["expires"] is not None
    fails(app, "tokens", "list", "--user", "nobody", fragment="nobody")
    fails(app, "tokens", "list", "--app", "nope", fragment="nope")


def test_cli_tokens_revoke(app, alice, bob):
    crm, _ = add_oidc_app("crm")
    wiki, _ = add_oidc_app("wiki")
    ga = add_grant(crm, alice)
    add_refresh(ga, session_id="s")
    gb = add_grant(crm, bob)
    gw = add_grant(wiki, alice)
    db.session.commit()
    fails(app, "tokens", "revoke", fragment="exactly one")
    fails(app, "tokens", "revoke", "--app", "crm", "--user", "alice", fragment="exactly one")
    fails(app, "tokens", "revoke", "--id", "99999", fragment="no live grant")
    out = ok(app, "tokens", "revoke", "--id", str(ga.id)).output
    assert f"revoked grant {ga.id}: app crm, user alice" in out and "1 refresh token" in out
    assert not _grant_live(ga.id) and _live_tokens(ga.id) == 0
    fails(app, "tokens", "revoke", "--id", str(ga.id), fragment="no live grant")
    out = ok(app, "tokens", "revoke", "--user", "alice").output
    assert f"revoked grant {gw.id}: app wiki" in out and _grant_live(gb.id)
    out = ok(app, "tokens", "revoke", "--app", "crm").output
    assert f"revoked grant {gb.id}" in out and not _grant_live(gb.id)
    assert "nothing to revoke" in ok(app, "tokens", "revoke", "--app", "crm").output
    evs = events(event_type="token", reason="token_revoked")
    assert [(e.username, e.app_slug, e.initiated_by) for e in evs] == [
        ("alice", "crm", "cli"), ("alice", "wiki", "cli"), ("bob", "crm", "cli")]
    assert db.session.query(AdminAudit).filter(AdminAudit.action == "oidc.grant_revoke").count() == 3
    assert "--id ID" in cli(app, "tokens", "revoke", "--help").output
