"""The admin REST API (/api/v1) end to end through the test client: per-scope authorization of every operation,
round trips that equal what the CLI shows, problem+json naming the field, keyset pages, audit actor api:NAME."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from idp.extensions import db
from idp.models import AdminAudit, IdpSession, SsoEvent, User, utcnow
from idp.services import api_tokens
from idp.web.api import SCOPE_OF

from .test_cli import ok

PROBLEM = "application/problem+json"


def token(*scopes: str, name: str | None = None) -> str:
    _, secret = api_tokens.create_token(name or "t-" + "-".join(s.replace(":", "_") for s in scopes), list(scopes))
    db.session.commit()
    return secret


def call(client: FlaskClient, method: str, path: str, secret: str | None = None, body: Any = None,
         **kw: Any) -> Any:
    headers = kw.pop("headers", {})
    if secret is not None:
        headers["Authorization"] = f"Bearer {secret}"
    if body is not None:
        kw["json"] = body
    return client.open(path, method=method, headers=headers, **kw)


def problem(resp: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == PROBLEM, resp.mimetype
    doc = resp.get_json(force=True)
    assert {"type", "title", "status", "detail"} <= doc.keys() and doc["status"] == status
    if field is not None:
        assert doc.get("field") == field, doc
    return doc


ALL = tuple(api_tokens.SCOPES)


@pytest.fixture
def admin_token(app: Flask) -> str:
    return token(*[s for s in ALL if s != "scim"], name="admin-all")


# ---------------------------------------------------------------- authorization matrix

# one request per operation: (method, path, body); paths name things that exist after `world`
OPERATIONS: list[tuple[str, str, Any]] = [
    ("GET", "/api/v1/apps", None),
    ("GET", "/api/v1/apps/crm", None),
    ("POST", "/api/v1/apps", {"name": "New", "slug": "newapp", "oidc": {"redirect_uris": ["https://n.example/cb"]}}),
    ("PATCH", "/api/v1/apps/crm", {"require_mfa": True}),
    ("DELETE", "/api/v1/apps/crm", None),
    ("GET", "/api/v1/users", None),
    ("GET", "/api/v1/users/carol", None),
    ("POST", "/api/v1/users", {"username": "dave", "email": "dave@example.com"}),
    ("PATCH", "/api/v1/users/carol", {"first_name": "Caro"}),
    ("POST", "/api/v1/users/carol/disable", None),
    ("POST", "/api/v1/users/carol/enable", None),
    ("DELETE", "/api/v1/users/carol", None),
    ("GET", "/api/v1/groups", None),
    ("GET", "/api/v1/groups/staff", None),
    ("POST", "/api/v1/groups", {"name": "newgroup"}),
    ("DELETE", "/api/v1/groups/staff", None),
    ("POST", "/api/v1/groups/staff/members", {"username": "dan"}),
    ("DELETE", "/api/v1/groups/staff/members/carol", None),
    ("GET", "/api/v1/fields", None),
    ("POST", "/api/v1/fields", {"name": "cost_center", "type": "string"}),
    ("DELETE", "/api/v1/fields/department", None),
    ("GET", "/api/v1/keys", None),
    ("POST", "/api/v1/keys/rotate", {"key_type": "ec-p256", "days": 30}),
    ("POST", "/api/v1/keys/activate", None),
    ("POST", "/api/v1/keys/retire", None),
    ("GET", "/api/v1/events", None),
    ("GET", "/api/v1/audit", None),
]


def _endpoint(app: Flask, method: str, path: str) -> str:
    adapter = app.url_map.bind("localhost")
    endpoint, _ = adapter.match(path, method=method)
    return str(endpoint)


def test_every_operation_is_in_the_matrix(app: Flask) -> None:
    covered = {_endpoint(app, m, p) for m, p, _ in OPERATIONS}
    assert covered == set(SCOPE_OF), set(SCOPE_OF) ^ covered


@pytest.fixture
def world(app: Flask, client: FlaskClient) -> None:
    ok(app, "groups", "add", "staff")
    ok(app, "users", "add", "carol", "--email", "carol@example.com", "--group", "staff")
    ok(app, "users", "add", "dan", "--email", "dan@example.com")
    ok(app, "fields", "add", "department", "--type", "string")
    ok(app, "apps", "add", "--oidc", "--name", "CRM", "--slug", "crm", "--redirect-uri", "https://crm.example/cb")


@pytest.mark.parametrize(("method", "path", "body"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS])
def test_each_operation_needs_its_scope(app: Flask, client: FlaskClient, world: None, method: str, path: str,
                                        body: Any) -> None:
    needed = SCOPE_OF[_endpoint(app, method, path)]
    others = token(*[s for s in ALL if s != needed], name="all-but")
    # no token, a wrong one, one without the scope: refused before anything runs
    resp = call(client, method, path, None, body)
    problem(resp, 401)
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    resp = call(client, method, path, "idp_" + "x" * 43, body)
    problem(resp, 401)
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    before = db.session.query(AdminAudit).count()
    resp = call(client, method, path, others, body)
    problem(resp, 403)
    assert 'error="insufficient_scope"' in resp.headers["WWW-Authenticate"]
    assert f'scope="{needed}"' in resp.headers["WWW-Authenticate"]
    assert db.session.query(AdminAudit).count() == before
    # each refusal is an event with its reason (no token, a wrong one: invalid_token; no scope: insufficient_scope)
    refused = db.session.query(SsoEvent).filter(SsoEvent.event_type == "api").order_by(SsoEvent.id).all()
    assert [(e.reason, e.outcome) for e in refused[-3:]] == [("invalid_token", "denied"), ("invalid_token", "denied"),
                                                             ("insufficient_scope", "denied")]
    assert refused[-1].detail["scope"] == needed and "idp_" not in str(refused[-1].detail)
    # the scope alone is enough (activating or retiring with no key staged is refused by the key store: 409)
    resp = call(client, method, path, token(needed, name="only"), body)
    assert resp.status_code in ((200, 201, 204, 409) if "/keys/" in path else (200, 201, 204)), \
        resp.get_data(as_text=True)
    assert "Set-Cookie" not in resp.headers


def test_a_session_cookie_is_not_a_credential(app: Flask, client: FlaskClient, world: None) -> None:
    """An admin signed in to the console still needs a token: the API reads no cookie."""
    from ..webclient import Browser
    pw = app.extensions["idp.passwords"]
    user = db.session.scalar(select(User).where(User.username == "carol"))
    user.password_hash, user.is_admin = pw.hash("correct horse battery"), True
    db.session.commit()
    browser = Browser(client)
    browser.login(browser.get("/login"), "carol", "correct horse battery")
    assert db.session.query(IdpSession).count() == 1
    problem(client.get("/api/v1/users"), 401)


def test_revoked_and_expired_tokens(app: Flask, client: FlaskClient) -> None:
    secret = token("users:read", name="short")
    assert call(client, "GET", "/api/v1/users", secret).status_code == 200
    row = api_tokens.find_token("short")
    assert row is not None and row.last_used_at is not None and row.last_used_ip == "127.0.0.1"
    row.expires_at = utcnow()
    db.session.commit()
    assert "expired" in problem(call(client, "GET", "/api/v1/users", secret), 401)["detail"]
    row.expires_at = None
    api_tokens.revoke_token("short")
    db.session.commit()
    assert "revoked" in problem(call(client, "GET", "/api/v1/users", secret), 401)["detail"]


# ---------------------------------------------------------------- round trips equal to the CLI

def cli_json(app: Flask, *args: str) -> Any:
    return json.loads(ok(app, *args, "--format", "json").stdout)


def test_user_round_trip_equals_the_cli(app: Flask, client: FlaskClient, admin_token: str) -> None:
    ok(app, "groups", "add", "sales")
    ok(app, "fields", "add", "employee_number", "--type", "string", "--unique")
    ok(app, "fields", "add", "projects", "--type", "list")
    resp = call(client, "POST", "/api/v1/users", admin_token, {
        "username": "erin", "email": "erin@example.com", "first_name": "Erin", "groups": ["sales"],
        "password": "a long password", "fields": {"employee_number": "E-1", "projects": ["a", "b"]}})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    assert resp.headers["Location"].endswith("/api/v1/users/erin")
    created = resp.get_json()
    shown = cli_json(app, "users", "show", "erin")
    assert {k: created[k] for k in shown} == shown
    assert shown["fields"] == {"employee_number": "E-1", "projects": ["a", "b"]} and shown["has_password"]
    resp = call(client, "PATCH", "/api/v1/users/erin", admin_token,
                {"last_name": "Example", "groups": [], "fields": {"projects": None}, "disabled": True})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    patched = resp.get_json()
    shown = cli_json(app, "users", "show", "erin")
    assert {k: patched[k] for k in shown} == shown
    assert (shown["last_name"], shown["groups"], shown["disabled"], shown["fields"]) == \
        ("Example", [], True, {"employee_number": "E-1"})
    assert call(client, "POST", "/api/v1/users/erin/enable", admin_token).get_json()["disabled"] is False
    enabled = call(client, "GET", "/api/v1/users/erin", admin_token).get_json()
    assert enabled["version"] > patched["version"]       # a change: the SCIM ETag and lastModified move
    assert {k: v for k, v in enabled.items() if k not in ("version", "updated_at")} == \
        {k: v for k, v in {**patched, "disabled": False}.items() if k not in ("version", "updated_at")}
    actors = {a.actor for a in db.session.scalars(select(AdminAudit).where(AdminAudit.target == "erin"))}
    assert actors == {"api:admin-all"}
    assert call(client, "DELETE", "/api/v1/users/erin", admin_token).status_code == 204
    assert all(u["username"] != "erin" for u in cli_json(app, "users", "list"))
    problem(call(client, "GET", "/api/v1/users/erin", admin_token), 404, "username")


def test_app_round_trip_equals_the_cli(app: Flask, client: FlaskClient, admin_token: str) -> None:
    ok(app, "groups", "add", "staff")
    resp = call(client, "POST", "/api/v1/apps", admin_token, {
        "name": "Wiki", "slug": "wiki", "oidc": {"redirect_uris": ["https://wiki.example/cb"],
                                                 "access_token_lifetime": "30m"}})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    created = resp.get_json()
    assert created["client_secret"] and created["oidc"]["access_token_lifetime"] == "30m"
    secret = created["client_secret"]
    resp = call(client, "PATCH", "/api/v1/apps/wiki", admin_token, {
        "permitted": "admin-approved", "allow_groups": ["staff"], "require_mfa": True, "session_timeout": 60,
        "oidc": {"redirect_uris": ["https://wiki.example/cb", "https://wiki.example/cb2"]}})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    patched = resp.get_json()
    assert patched["client_secret"] is None and patched["policy"]["allow_groups"] == ["staff"]
    shown = cli_json(app, "apps", "show", "wiki")
    assert shown["settings"] == patched["settings"]
    assert {k: shown[k] for k in ("slug", "name", "enabled", "protocols")} == \
        {k: patched[k] for k in ("slug", "name", "enabled", "protocols")}
    assert {k: v for k, v in shown["oidc"].items() if k != "secrets"} == \
        {k: v for k, v in patched["oidc"].items() if k != "secrets"}
    listed = call(client, "GET", "/api/v1/apps", admin_token).get_json()["items"]
    assert [a["slug"] for a in listed] == [a["slug"] for a in cli_json(app, "apps", "list")]
    assert secret not in json.dumps(listed)
    # null clears an optional setting
    resp = call(client, "PATCH", "/api/v1/apps/wiki", admin_token, {"session_timeout": None})
    assert resp.get_json()["policy"]["session_timeout"] is None
    audit_rows = db.session.scalars(select(AdminAudit).where(AdminAudit.target == "wiki")).all()
    assert {a.actor for a in audit_rows} == {"api:admin-all"}
    assert secret not in json.dumps([a.after for a in audit_rows])
    assert call(client, "DELETE", "/api/v1/apps/wiki", admin_token).status_code == 204
    assert cli_json(app, "apps", "list") == []


def test_app_from_saml_metadata(app: Flask, client: FlaskClient, admin_token: str) -> None:
    from ..conftest import SP_METADATA_DIR
    path = next(iter(sorted(SP_METADATA_DIR.glob("*.xml"))))
    resp = call(client, "POST", "/api/v1/apps", admin_token,
                {"metadata_xml": path.read_text(encoding="utf-8"), "slug": "sp1"})
    if resp.status_code != 201:   # an aggregate needs entity_id: the problem names it
        problem(resp, 400)
        pytest.skip("first golden metadata is not a single SP")
    body = resp.get_json()
    assert body["protocols"] == ["saml"] and body["saml"]["entity_id"]
    assert body["saml"] ["idp_metadata_url"].endswith("/saml/metadata/sp1")
    assert cli_json(app, "apps", "show", "sp1")["entity_id"] == body["saml"]["entity_id"]
    problem(call(client, "POST", "/api/v1/apps", admin_token, {"metadata_xml": "<nope/>"}), 400)


def test_groups_and_fields_round_trip(app: Flask, client: FlaskClient, admin_token: str) -> None:
    ok(app, "users", "add", "carol", "--email", "carol@example.com")
    assert call(client, "POST", "/api/v1/groups", admin_token, {"name": "ops"}).status_code == 201
    resp = call(client, "POST", "/api/v1/groups/ops/members", admin_token, {"username": "carol"})
    assert resp.get_json()["members"] == ["carol"]
    assert cli_json(app, "users", "show", "carol")["groups"] == ["ops"]
    assert "ops\t1 members" in ok(app, "groups", "list").stdout
    assert call(client, "GET", "/api/v1/groups", admin_token).get_json() == {"items": [{"name": "ops", "members": 1}]}
    problem(call(client, "POST", "/api/v1/groups/ops/members", admin_token, {"username": "carol"}), 400, "username")
    assert call(client, "DELETE", "/api/v1/groups/ops/members/carol", admin_token).get_json()["members"] == []
    assert call(client, "DELETE", "/api/v1/groups/ops", admin_token).status_code == 204
    problem(call(client, "GET", "/api/v1/groups/ops", admin_token), 404, "name")

    resp = call(client, "POST", "/api/v1/fields", admin_token, {"name": "badge", "type": "string", "unique": True})
    assert resp.status_code == 201
    api_fields = call(client, "GET", "/api/v1/fields", admin_token).get_json()["items"]
    assert api_fields == cli_json(app, "fields", "list")
    problem(call(client, "POST", "/api/v1/fields", admin_token, {"name": "Bad Name", "type": "string"}), 400, "name")
    assert call(client, "DELETE", "/api/v1/fields/badge", admin_token).status_code == 204
    assert cli_json(app, "fields", "list") == []


# ---------------------------------------------------------------- problems

def test_bad_input_is_a_problem_naming_the_field_and_writes_nothing(app: Flask, client: FlaskClient,
                                                                    admin_token: str) -> None:
    ok(app, "fields", "add", "badge", "--type", "string", "--unique")
    ok(app, "users", "add", "carol", "--email", "carol@example.com", "--field", "badge=B1")
    audit_before = db.session.query(AdminAudit).count()
    cases: list[tuple[str, str, Any, int, str | None]] = [
        ("POST", "/api/v1/users", {"username": "x y", "email": "x@example.com"}, 400, "username"),
        ("POST", "/api/v1/users", {"username": "xy", "email": "not-an-address"}, 400, "email"),
        ("POST", "/api/v1/users", {"username": "xy"}, 400, "email"),                    # schema: required
        ("POST", "/api/v1/users", {"username": "xy", "email": "x@example.com", "bogus": 1}, 400, "bogus"),
        ("POST", "/api/v1/users", {"username": "xy", "email": "x@example.com", "groups": ["nope"]}, 400, "group"),
        ("POST", "/api/v1/users", {"username": "xy", "email": "x@example.com", "password": "short"}, 400,
         "password"),
        # a unique value held by carol: the user is not created either (one unit of work)
        ("POST", "/api/v1/users", {"username": "xy", "email": "x@example.com", "fields": {"badge": "b1"}}, 400,
         "badge"),
        ("PATCH", "/api/v1/users/carol", {"email": "bad", "first_name": "Changed"}, 400, "email"),
        ("PATCH", "/api/v1/users/carol", {"first_name": "Changed", "fields": {"nofield": "1"}}, 400, "nofield"),
        ("PATCH", "/api/v1/users/carol", {"email": None}, 400, "email"),
        ("POST", "/api/v1/apps", {"name": "A", "slug": "bad slug!", "oidc": {}}, 400, "slug"),
        ("POST", "/api/v1/apps", {"name": "A", "oidc": {"redirect_uris": ["http://evil.example/cb"]}}, 400,
         "redirect_uris"),
        ("POST", "/api/v1/fields", {"name": "x", "type": "float"}, 400, "type"),
        ("GET", "/api/v1/users?limit=0", None, 400, "limit"),
        ("GET", "/api/v1/users?cursor=%25%25%25", None, 400, "cursor"),
        ("GET", "/api/v1/events?outcome=maybe", None, 400, "outcome"),
        ("GET", "/api/v1/events?cursor=abc", None, 400, "cursor"),
        ("GET", "/api/v1/audit?cursor=abc", None, 400, "cursor"),
    ]
    for method, path, body, status, field in cases:
        problem(call(client, method, path, admin_token, body), status, field)
    assert db.session.query(User).count() == 1
    db.session.expire_all()
    carol = db.session.scalar(select(User).where(User.username == "carol"))
    assert carol is not None and carol.first_name == "" and carol.email == "carol@example.com"
    assert db.session.query(AdminAudit).count() == audit_before
    # not JSON, or not even JSON-typed
    problem(call(client, "POST", "/api/v1/groups", admin_token, data="{", content_type="application/json"), 400,
            "body")
    problem(call(client, "POST", "/api/v1/groups", admin_token, data="name=x",
                 content_type="application/x-www-form-urlencoded"), 415)
    # unknown paths and methods under /api answer problems too
    problem(call(client, "GET", "/api/v1/nothing", admin_token), 404)
    problem(call(client, "PUT", "/api/v1/users", admin_token, {}), 405)
    problem(call(client, "GET", "/api/v1/apps/nope", admin_token), 404, "slug")


def test_users_and_audit_pages(app: Flask, client: FlaskClient, admin_token: str) -> None:
    for n in range(5):
        ok(app, "users", "add", f"user{n}", "--email", f"user{n}@example.com")
    seen: list[str] = []
    url: str | None = "/api/v1/users?limit=2&q=user"
    while url:
        resp = call(client, "GET", url.replace("http://localhost", ""), admin_token)
        body = resp.get_json()
        seen += [u["username"] for u in body["items"]]
        url = body["next"]
        if url:
            assert resp.headers["Link"] == f'<{url}>; rel="next"' and "q=user" in url
    assert seen == [f"user{n}" for n in range(5)]
    audit_ids: list[int] = []
    url = "/api/v1/audit?limit=3"
    while url:
        body = call(client, "GET", url.replace("http://localhost", ""), admin_token).get_json()
        audit_ids += [a["id"] for a in body["items"]]
        url = body["next"]
    assert audit_ids == sorted(audit_ids, reverse=True) and len(audit_ids) == db.session.query(AdminAudit).count()
    shown = cli_json(app, "audit", "--limit", "100")
    assert [a["action"] for a in shown] == [a["action"] for a in
                                            call(client, "GET", "/api/v1/audit?limit=200", admin_token)
                                            .get_json()["items"]]


def test_keys_status_and_rotation(app: Flask, client: FlaskClient, admin_token: str) -> None:
    status = call(client, "GET", "/api/v1/keys", admin_token).get_json()
    assert [k["state"] for k in status["keys"]] == ["active"]
    assert cli_json(app, "certs", "status")["keys"][0]["kid"] == status["keys"][0]["kid"]
    problem(call(client, "POST", "/api/v1/keys/activate", admin_token), 409)
    kid = call(client, "POST", "/api/v1/keys/rotate", admin_token, {"key_type": "ec-p256", "days": 30}).get_json()
    assert kid["kid"] in [k["kid"] for k in cli_json(app, "certs", "status")["keys"] if k["state"] == "next"]
    done = call(client, "POST", "/api/v1/keys/activate", admin_token).get_json()
    assert done["kid"] == kid["kid"] and done["retiring"] == status["keys"][0]["kid"]
    assert call(client, "POST", "/api/v1/keys/retire", admin_token).get_json()["kid"] == status["keys"][0]["kid"]
    actors = {a.actor for a in db.session.scalars(select(AdminAudit).where(AdminAudit.target_type == "certs"))}
    assert actors == {"api:admin-all"}


def test_events_use_the_console_filters_and_pages(app: Flask, client: FlaskClient, admin_token: str) -> None:
    from idp.models import SsoEvent
    base = utcnow()
    for n in range(5):
        db.session.add(SsoEvent(at=base, event_type="sso", app_slug="crm" if n % 2 else "wiki", username="carol",
                                outcome="success", reason="ok", protocol="saml"))
    db.session.commit()
    got: list[int] = []
    url: str | None = "/api/v1/events?app=crm&limit=1"
    while url:
        body = call(client, "GET", url.replace("http://localhost", ""), admin_token).get_json()
        got += [e["id"] for e in body["items"]]
        assert all(e["app_slug"] == "crm" for e in body["items"])
        url = body["next"]
    cli_ids = [e["id"] for e in json.loads(ok(app, "events", "--app", "crm", "--format", "json").stdout)]
    assert got == cli_ids and len(got) == 2


@pytest.mark.parametrize("path", ["/api/v1/audit?cursor=%C2%B2", "/api/v1/users?q=%00", "/api/v1/users/%00",
                                  "/api/v1/events?user=a%0Ab"])
def test_odd_parameters_are_problems_not_500s(client: FlaskClient, admin_token: str, path: str) -> None:
    resp = call(client, "GET", path, admin_token)
    assert resp.status_code == 400 and resp.mimetype == PROBLEM, resp.get_data(as_text=True)


def test_administrators_need_admins_write(app: Flask, client: FlaskClient) -> None:
    """users:write (an HR feed) cannot create an admin or change, disable, delete or reset an admin; with
    admins:write it can."""
    hr = token("users:read", "users:write", name="hr")
    boss = token("users:read", "users:write", "admins:write", name="boss")
    resp = call(client, "POST", "/api/v1/users", hr, {"username": "eve", "email": "eve@example.com", "admin": True})
    problem(resp, 403, "admin")
    assert call(client, "POST", "/api/v1/users", boss,
                {"username": "root2", "email": "root2@example.com", "admin": True}).status_code == 201
    for method, path, body in [("PATCH", "/api/v1/users/root2", {"email": "evil@example.com"}),
                               ("PATCH", "/api/v1/users/root2", {"password": "a takeover passphrase"}),
                               ("POST", "/api/v1/users/root2/disable", None),
                               ("DELETE", "/api/v1/users/root2", None)]:
        problem(call(client, method, path, hr, body), 403, "admin")
    assert call(client, "PATCH", "/api/v1/users/root2", boss, {"first_name": "Root"}).status_code == 200
    db.session.expire_all()
    root = db.session.scalar(select(User).where(User.username == "root2"))
    assert root is not None and root.email == "root2@example.com" and not root.disabled and root.is_admin
