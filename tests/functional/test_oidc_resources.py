"""RFC 8707 resource indicators: only the resources registered for the client (its allowlist) may be asked for at
/oauth2/authorize and /oauth2/token; refresh tokens keep the resources their family was issued for (section 2.2)
and a refresh may narrow them, never widen them. The allowlist through the CLI, the console and the consent page."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from idp.extensions import db
from idp.flows.oidc_codes import peek_code
from idp.models import OidcRefreshToken
from idp.services import ServiceError
from idp.services import apps as apps_svc

from ..oidc_token_kit import check_jwt, exchange, seed_code, token
from ..oidc_token_kit import make_client as make_token_client
from ..webclient import Browser
from .oidc_authz import at_rp, authorize_url, is_consent_page, is_login_page, last_event, make_client, sign_in
from .test_admin_apps import field_error, text
from .test_cli import fails, ok, show
from .test_oidc_token import err
from .test_oidc_token import ok as ok_json
from .test_oidc_usage import _settings_form, admin  # noqa: F401 - the admin fixture

API = "https://api.example.com/orders"
API2 = "https://api2.example.com/"
EVIL = "https://evil.example.com/"
CB = "https://crm.example.com/oidc/callback"


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize(("resource", "fragment"), [
    ("http://api.example.com/", "must use https"),
    ("https://api.example.com/#f", "fragment"),
    ("api.example.com", "absolute https"),
    ("https://api.example.com/*", "wildcard"),
    ("https://u:p@api.example.com/", "user info"),
])
def test_resources_are_validated_like_redirect_uris(app: Flask, resource: str, fragment: str) -> None:
    with pytest.raises(ServiceError) as exc:
        apps_svc.register_oidc_app(name="CRM", slug="crm", settings=apps_svc.initial_settings(
            redirect_uris=(CB,), resources=(resource,)))
    assert exc.value.field == "resources" and fragment in str(exc.value)
    row, _ = apps_svc.register_oidc_app(name="CRM", slug="crm", settings=apps_svc.initial_settings(
        redirect_uris=(CB,), resources=(API, "http://localhost:8080/api")))
    assert row.oidc is not None and row.oidc.resources == [API, "http://localhost:8080/api"]


def test_cli_resource_flags(app: Flask) -> None:
    ok(app, "apps", "add", "--oidc", "--name", "CRM", "--slug", "crm", "--redirect-uri", CB, "--resource", API)
    assert show(app, "crm")["oidc"]["resources"] == [API]
    assert "resources" in ok(app, "apps", "show", "crm").stdout
    ok(app, "apps", "set", "crm", "--resource", API2, "--resource", API)
    assert show(app, "crm")["oidc"]["resources"] == [API2, API]
    fails(app, "apps", "set", "crm", "--resource", "http://api.example.com/", fragment="must use https")
    fails(app, "apps", "set", "crm", "--resource", API, "--clear-resources", fragment="--clear-resources")
    fails(app, "apps", "add", "--name", "X", "--slug", "x", "--resource", API, fragment="add --oidc")
    assert show(app, "crm")["oidc"]["resources"] == [API2, API]
    ok(app, "apps", "set", "crm", "--clear-resources")
    assert show(app, "crm")["oidc"]["resources"] == []


def test_console_edits_resources(client: FlaskClient, admin: str) -> None:  # noqa: F811
    apps_svc.register_oidc_app(name="CRM", slug="crm", settings=apps_svc.initial_settings(
        redirect_uris=("https://crm.example.com/cb",), resources=(API,)))
    db.session.commit()
    body = text(client.get("/admin/apps/crm"))
    assert 'id="resources"' in body and API in body
    resp = client.post("/admin/apps/crm/oidc", data={"csrf_token": admin, **_settings_form(
        resources=f"{API2}\n{API}\n")})
    assert resp.status_code == 303, text(resp)[:2000]
    db.session.expire_all()
    assert apps_svc.get_app("crm").oidc.resources == [API2, API]  # type: ignore[union-attr]
    resp = client.post("/admin/apps/crm/oidc", data={"csrf_token": admin, **_settings_form(
        resources="https://api.example.com/#x")})
    assert resp.status_code == 422 and field_error(resp, "resources")
    resp = client.post("/admin/apps/crm/oidc", data={"csrf_token": admin, **_settings_form(resources="")})
    assert resp.status_code == 303
    db.session.expire_all()
    assert apps_svc.get_app("crm").oidc.resources == []  # type: ignore[union-attr]


# ---------------------------------------------------------------- the authorization endpoint


def test_authorize_refuses_a_resource_not_registered(app: Flask, browser: Browser, alice: Any) -> None:
    client_id = make_client(resources=(API,))
    sign_in(browser, authorize_url(client_id))
    for resource in (EVIL, API + "/", "https://api.example.com/Orders"):
        got = at_rp(browser.get(authorize_url(client_id, resource=resource)))
        assert got["error"] == "invalid_target" and got["state"] == "st-1" and "code" not in got
        ev = last_event()
        assert ev.detail["error"] == "invalid_target" and ev.outcome != "success"
    got = at_rp(browser.get(authorize_url(client_id, resource=API)))
    record = peek_code(got["code"])
    assert record is not None and record.resources == (API,)


def test_authorize_without_an_allowlist_refuses_every_resource(app: Flask, browser: Browser, alice: Any) -> None:
    client_id = make_client()
    sign_in(browser, authorize_url(client_id))
    assert at_rp(browser.get(authorize_url(client_id, resource=API)))["error"] == "invalid_target"


def test_consent_page_names_the_resources(app: Flask, browser: Browser, alice: Any) -> None:
    client_id = make_client(resources=(API, API2))
    resp = browser.get(authorize_url(client_id, resource=API))
    assert is_login_page(resp)
    resp = browser.login(resp, "alice", "correct horse battery")
    assert is_consent_page(resp)
    body = resp.get_data(as_text=True)
    assert f"Access to: {API}" in body and API2 not in body


def test_resource_removed_while_the_request_was_parked(app: Flask, browser: Browser, alice: Any) -> None:
    client_id = make_client(resources=(API,))
    resp = browser.get(authorize_url(client_id, resource=API))
    assert is_login_page(resp)
    apps_svc.change_oidc(apps_svc.get_app("rp"), resources=(API2,))
    db.session.commit()
    resp = browser.login(resp, "alice", "correct horse battery")
    assert at_rp(resp)["error"] == "invalid_target"


# ---------------------------------------------------------------- the token endpoint


def _aud(client: FlaskClient, access_token: str) -> Any:
    return check_jwt(client, access_token)[1]["aud"]


def test_code_exchange_resource_must_be_registered_and_requested(client: FlaskClient, alice: Any) -> None:
    row, cid, secret = make_token_client("crm", resources=(API, API2))
    code, _ = seed_code(row, alice, resources=(API, API2))
    body = ok_json(exchange(client, code, cid, secret, resource=API2))
    assert _aud(client, body["access_token"]) == API2
    code, _ = seed_code(row, alice, resources=(API,))
    err(exchange(client, code, cid, secret, resource=API2), 400, "invalid_target")      # not asked for
    code, _ = seed_code(row, alice, resources=(API,))
    err(exchange(client, code, cid, secret, resource=EVIL), 400, "invalid_target")
    # a code whose resource was dropped from the allowlist since: no token for it
    code, _ = seed_code(row, alice, resources=(API, API2))
    apps_svc.change_oidc(row, resources=(API,))
    db.session.commit()
    err(exchange(client, code, cid, secret, resource=API2), 400, "invalid_target")
    code, _ = seed_code(row, alice, resources=(API, API2))
    body = ok_json(exchange(client, code, cid, secret))
    assert _aud(client, body["access_token"]) == API
    apps_svc.change_oidc(row, resources=())
    db.session.commit()
    code, _ = seed_code(row, alice, resources=(API,))
    err(exchange(client, code, cid, secret), 400, "invalid_target")


def _refresh(client: FlaskClient, cid: str, secret: str | None, rt: str, **extra: str) -> Any:
    return token(client, {"grant_type": "refresh_token", "refresh_token": rt, **extra}, (cid, secret))


def test_refresh_keeps_the_family_resources_and_only_narrows(client: FlaskClient, alice: Any) -> None:
    row, cid, secret = make_token_client("crm", resources=(API, API2))
    code, _ = seed_code(row, alice, resources=(API, API2))
    first = ok_json(exchange(client, code, cid, secret, resource=API))
    assert _aud(client, first["access_token"]) == API
    stored = db.session.query(OidcRefreshToken).one()
    assert stored.resources == [API, API2]          # the family's resources, not the first token's narrowing
    second = ok_json(_refresh(client, cid, secret, first["refresh_token"]))
    assert sorted(_aud(client, second["access_token"])) == sorted([API, API2])
    third = ok_json(_refresh(client, cid, secret, second["refresh_token"], resource=API2))
    assert _aud(client, third["access_token"]) == API2
    err(_refresh(client, cid, secret, third["refresh_token"], resource=EVIL), 400, "invalid_target")
    # a refused narrowing does not spend the token
    fourth = ok_json(_refresh(client, cid, secret, third["refresh_token"]))
    db.session.expire_all()
    assert [r.resources for r in db.session.query(OidcRefreshToken).order_by(OidcRefreshToken.id)] == \
        [[API, API2]] * 4
    # the allowlist shrinks: the family keeps only what is still registered
    apps_svc.change_oidc(row, resources=(API2,))
    db.session.commit()
    fifth = ok_json(_refresh(client, cid, secret, fourth["refresh_token"]))
    assert _aud(client, fifth["access_token"]) == API2
    err(_refresh(client, cid, secret, fifth["refresh_token"], resource=API), 400, "invalid_target")


def test_refresh_of_a_family_without_resources_cannot_widen(client: FlaskClient, alice: Any) -> None:
    row, cid, secret = make_token_client("crm", resources=(API,))
    code, _ = seed_code(row, alice)
    first = ok_json(exchange(client, code, cid, secret))
    assert _aud(client, first["access_token"]) == cid
    err(_refresh(client, cid, secret, first["refresh_token"], resource=API), 400, "invalid_target")
    second = ok_json(_refresh(client, cid, secret, first["refresh_token"]))
    assert _aud(client, second["access_token"]) == cid
