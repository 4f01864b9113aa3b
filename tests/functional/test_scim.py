"""/scim/v2 end to end through the test client: authentication, CRUD, filters, sorting, paging, PATCH paths,
ETags, errors, the delete setting, custom fields, the audit actor, and what deactivation ends."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from idp.auth.sessions import start_session
from idp.extensions import db
from idp.models import AdminAudit, IdpSession, OidcGrant, OidcRefreshToken, User, utcnow
from idp.services import accounts, lifecycle, org
from idp.services import apps as apps_svc
from idp.services import user_fields as fields_svc
from idp.services import users as users_svc
from idp.services.oidc_consent import record_grant

from ..conftest import SP_METADATA_DIR
from ..scim_kit import ENTERPRISE_URN, GROUP_URN, IDP_URN, USER_URN, Scim, make_token


@pytest.fixture
def scim(client: FlaskClient) -> Scim:
    return Scim(client, make_token("hr-sync"))


def _ids(resp: Any) -> list[str]:
    return [r["userName"] if "userName" in r else r["displayName"] for r in resp.get_json()["Resources"]]


def _filter(scim: Scim, endpoint: str, expression: str, **params: str) -> Any:
    extra = "".join(f"&{k}={quote(v)}" for k, v in params.items())
    return scim.get(f"/{endpoint}?filter={quote(expression)}{extra}")


# ------------------------------------------------------------------ authentication

def test_tokens_are_checked(client: FlaskClient) -> None:
    good = make_token("good")
    cases = {
        "none": None,
        "unknown": "idp_" + secrets.token_urlsafe(32),
        "revoked": make_token("old", revoked=True),
        "expired": make_token("late", expires_in=timedelta(seconds=-1)),
    }
    for label, secret in cases.items():
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        resp = client.get("/scim/v2/Users", headers=headers)
        assert resp.status_code == 401, label
        assert resp.headers["Content-Type"].startswith("application/scim+json")
        assert resp.get_json()["status"] == "401"
        assert "Bearer" in resp.headers.get("WWW-Authenticate", "")
    no_scope = make_token("reader", scopes=("users:read",))
    resp = client.get("/scim/v2/Users", headers={"Authorization": f"Bearer {no_scope}"})
    assert resp.status_code == 403
    # every refusal is an event (type scim) with its reason; never the token
    from idp.models import SsoEvent
    refused = db.session.scalars(select(SsoEvent).where(SsoEvent.event_type == "scim").order_by(SsoEvent.id)).all()
    assert [e.reason for e in refused] == ["invalid_token"] * 4 + ["insufficient_scope"]
    assert all(e.protocol == "scim" and e.outcome == "denied" for e in refused)
    assert not any(str(secret) in str(e.detail) for e in refused for secret in [*cases.values(), no_scope] if secret)
    resp = client.get("/scim/v2/Users", headers={"Authorization": f"Bearer {good}"})
    assert resp.status_code == 200 and resp.get_json()["totalResults"] == 0
    from idp.models import ApiToken
    row = db.session.scalar(select(ApiToken).where(ApiToken.name == "good"))
    assert row is not None and row.last_used_at is not None and row.last_used_ip == "127.0.0.1"
    # the service provider configuration needs no token (RFC 7644 §4)
    spc = client.get("/scim/v2/ServiceProviderConfig").get_json()
    assert spc["bulk"]["supported"] is False and spc["filter"]["maxResults"] == 200
    assert spc["etag"]["supported"] is True and spc["patch"]["supported"] is True


# ------------------------------------------------------------------ users

def test_user_crud_and_meta(scim: Scim) -> None:
    created = scim.create_user("bjensen", name={"givenName": "Barbara", "familyName": "Jensen"}, externalId="hr-1",
                               nickName="Babs", password="a good long password")
    uid = created["id"]
    assert created["displayName"] == "Barbara Jensen" and created["active"] is True
    assert created["meta"]["resourceType"] == "User" and created["meta"]["location"].endswith(f"/Users/{uid}")
    assert created["meta"]["version"].startswith('W/"') and "nickName" not in created and "password" not in created
    user = users_svc.find_user("bjensen")
    assert user is not None and user.external_id == "hr-1" and user.password_hash
    got = scim.get(f"/Users/{uid}")
    assert got.status_code == 200 and got.headers["ETag"] == created["meta"]["version"]
    replaced = scim.put(f"/Users/{uid}", {"schemas": [USER_URN], "userName": "barbara", "active": False,
                                          "emails": [{"value": "b@example.org", "type": "home"},
                                                     {"value": "bj@example.com", "type": "work", "primary": True}]})
    assert replaced.status_code == 200, replaced.get_data(as_text=True)
    body = replaced.get_json()
    assert body["userName"] == "barbara" and body["active"] is False and "name" not in body
    assert body["meta"]["version"] != created["meta"]["version"]
    assert body["meta"]["lastModified"] >= created["meta"]["lastModified"]
    db.session.expire_all()
    user = db.session.get(User, user.id)
    assert user is not None and user.email == "bj@example.com" and user.disabled and user.first_name == ""
    assert [e["value"] for e in body["emails"]] == ["b@example.org", "bj@example.com"]
    # the address changed in the console: SCIM then shows that one address
    accounts.update_user(user, accounts.UserInput(email="new@example.com"))
    db.session.commit()
    assert scim.get(f"/Users/{uid}").get_json()["emails"] == [{"value": "new@example.com", "primary": True}]


def test_user_delete_follows_the_org_setting(scim: Scim, app: Flask) -> None:
    uid = scim.create_user("leaver")["id"]
    assert org.scim_delete() == "deactivate"
    assert scim.delete(f"/Users/{uid}").status_code == 204
    got = scim.get(f"/Users/{uid}").get_json()
    assert got["active"] is False   # deactivated, kept
    result = app.test_cli_runner().invoke(args=["org", "set", "--scim-delete", "delete"])
    assert result.exit_code == 0, result.output
    assert scim.delete(f"/Users/{uid}").status_code == 204
    assert scim.get(f"/Users/{uid}").status_code == 404
    assert users_svc.find_user("leaver") is None
    bad = app.test_cli_runner().invoke(args=["org", "set", "--scim-delete", "shred"])
    assert bad.exit_code != 0


def test_an_id_is_never_reassigned(scim: Scim) -> None:
    org.set_scim_delete("delete")
    db.session.commit()
    first = scim.create_user("one")["id"]
    assert scim.delete(f"/Users/{first}").status_code == 204
    second = scim.create_user("two")["id"]      # SQLite hands out the same row number again
    assert second != first
    assert scim.get(f"/Users/{first}").status_code == 404


# ------------------------------------------------------------------ filters, sorting, paging

@pytest.fixture
def people(scim: Scim) -> dict[str, str]:
    ids = {}
    for name, email, ext, given in (("alice", "alice@corp.example", "e-1", "Alice"),
                                    ("Albert", "albert@other.example", "e-2", "Albert"),
                                    ("bob", "bob@corp.example", None, "Bob"),
                                    ("carol", "carol@corp.example", "E-3", "Carol")):
        extra: dict[str, Any] = {"name": {"givenName": given, "familyName": "X"}}
        if ext:
            extra["externalId"] = ext
        ids[name] = scim.create_user(name, email, **extra)["id"]
    return ids


@pytest.mark.parametrize(("expression", "expected"), [
    ('userName eq "ALICE"', ["alice"]),
    ('userName co "L"', ["alice", "Albert", "carol"]),
    ('userName sw "al"', ["alice", "Albert"]),
    ('userName ew "OB"', ["bob"]),
    ('userName ne "bob"', ["alice", "Albert", "carol"]),
    ('emails co "@corp."', ["alice", "bob", "carol"]),
    ('emails.value eq "BOB@corp.example"', ["bob"]),
    ('emails[value sw "car"]', ["carol"]),
    ('externalId eq "e-1"', ["alice"]),
    ('externalId eq "e-3"', []),                      # case-exact (RFC 7643: externalId caseExact)
    ("externalId pr", ["alice", "Albert", "carol"]),
    ('name.givenName eq "bob"', ["bob"]),
    ('userName sw "a" and emails co "corp"', ["alice"]),
    ('userName eq "bob" or externalId eq "E-3"', ["bob", "carol"]),
    ('not (userName sw "a")', ["bob", "carol"]),
    ("active eq true", ["alice", "Albert", "bob", "carol"]),
    ('meta.lastModified gt "2000-01-01T00:00:00Z"', ["alice", "Albert", "bob", "carol"]),
    ('meta.lastModified lt "2000-01-01T00:00:00Z"', []),
])
def test_user_filters(scim: Scim, people: dict[str, str], expression: str, expected: list[str]) -> None:
    resp = _filter(scim, "Users", expression)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert sorted(_ids(resp)) == sorted(expected)
    assert resp.get_json()["totalResults"] == len(expected)


def test_last_modified_follows_changes(scim: Scim, people: dict[str, str]) -> None:
    before = max(scim.get(f"/Users/{uid}").get_json()["meta"]["lastModified"] for uid in people.values())
    scim.patch(f"/Users/{people['bob']}", {"op": "replace", "path": "name.familyName", "value": "Builder"})
    resp = _filter(scim, "Users", f'meta.lastModified gt "{before}"')
    assert _ids(resp) == ["bob"]
    assert _ids(_filter(scim, "Users", f'meta.lastModified le "{before}"')) == ["alice", "Albert", "carol"]


def test_sorting_and_paging(scim: Scim, people: dict[str, str]) -> None:
    resp = scim.get("/Users?sortBy=userName&sortOrder=descending")
    assert _ids(resp) == ["carol", "bob", "alice", "Albert"]
    resp = scim.get("/Users?sortBy=userName&startIndex=2&count=2")
    body = resp.get_json()
    assert _ids(resp) == ["alice", "bob"]
    assert body["totalResults"] == 4 and body["startIndex"] == 2 and body["itemsPerPage"] == 2
    resp = scim.get("/Users?sortBy=emails.value&count=1")
    assert _ids(resp) == ["Albert"] and resp.get_json()["totalResults"] == 4
    assert scim.get("/Users?count=0").get_json()["Resources"] == [] if "Resources" in scim.get(
        "/Users?count=0").get_json() else True
    assert scim.get("/Users?count=0").get_json()["totalResults"] == 4
    capped = scim.get("/Users?count=100000").get_json()
    assert capped["itemsPerPage"] == 4   # 4 < the 200 cap; the cap itself: test_count_is_capped


def test_count_is_capped(scim: Scim) -> None:
    for i in range(203):
        users_svc.add_user(f"u{i:03d}", email=f"u{i}@example.com", password_hash=None)
    db.session.commit()
    body = scim.get("/Users?count=1000").get_json()
    assert body["totalResults"] == 203 and body["itemsPerPage"] == 200 and len(body["Resources"]) == 200


@pytest.mark.parametrize("expression", [
    'userName eq',                      # syntax
    'nickName eq "x"',                  # not an attribute of the published schema
    'displayName eq "x"',               # published, but computed: not filterable
    'meta.lastModified gt "yesterday"',
    'userName eq "a" and (',
])
def test_bad_filters_are_invalid_filter(scim: Scim, people: dict[str, str], expression: str) -> None:
    resp = _filter(scim, "Users", expression)
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert resp.get_json()["scimType"] == "invalidFilter"


def test_group_filters_and_sorting(scim: Scim, people: dict[str, str]) -> None:
    for name in ("Engineering", "Sales", "eng-leads"):
        assert scim.post("/Groups", {"schemas": [GROUP_URN], "displayName": name,
                                     "members": [{"value": people["alice"]}]}).status_code == 201
    assert _ids(_filter(scim, "Groups", 'displayName eq "engineering"')) == ["Engineering"]
    assert sorted(_ids(_filter(scim, "Groups", 'displayName sw "ENG"'))) == ["Engineering", "eng-leads"]
    assert len(_ids(_filter(scim, "Groups", f'members.value eq "{people["alice"]}"'))) == 3
    assert _ids(_filter(scim, "Groups", f'members eq "{people["bob"]}"')) == []
    assert _ids(scim.get("/Groups?sortBy=displayName&sortOrder=descending")) == ["Sales", "Engineering", "eng-leads"]


# ------------------------------------------------------------------ PATCH

def test_patch_paths_on_users(scim: Scim) -> None:
    uid = scim.create_user("pat", "pat@work.example", name={"givenName": "Pat"},
                           emails=[{"value": "pat@work.example", "type": "work", "primary": True},
                                   {"value": "pat@home.example", "type": "home"}])["id"]
    resp = scim.patch(f"/Users/{uid}",
                      {"op": "replace", "path": 'emails[type eq "work"].value', "value": "patricia@work.example"},
                      {"op": "add", "path": "name.familyName", "value": "Smith"},
                      {"op": "replace", "value": {"externalId": "hr-77"}},
                      headers={"Accept": "application/scim+json"})
    assert resp.status_code in (200, 204), resp.get_data(as_text=True)
    body = scim.get(f"/Users/{uid}").get_json()
    assert body["name"] == {"givenName": "Pat", "familyName": "Smith"} and body["externalId"] == "hr-77"
    assert {e["type"]: e["value"] for e in body["emails"]} == {"work": "patricia@work.example",
                                                               "home": "pat@home.example"}
    user = users_svc.find_user("pat")
    assert user is not None and user.email == "patricia@work.example"
    assert scim.patch(f"/Users/{uid}", {"op": "remove", "path": 'emails[type eq "home"]'}).status_code in (200, 204)
    assert [e["type"] for e in scim.get(f"/Users/{uid}").get_json()["emails"]] == ["work"]
    resp = scim.patch(f"/Users/{uid}", {"op": "remove", "path": "name.givenName"})
    assert resp.status_code in (200, 204), resp.get_data(as_text=True)
    db.session.expire_all()   # the test's own session holds the row loaded above
    assert users_svc.find_user("pat").first_name == ""  # type: ignore[union-attr]


def test_patch_members_with_value_filters(scim: Scim, people: dict[str, str]) -> None:
    gid = scim.post("/Groups", {"schemas": [GROUP_URN], "displayName": "ops", "externalId": "grp-ops"}).get_json()["id"]
    resp = scim.patch(f"/Groups/{gid}", {"op": "add", "path": "members",
                                         "value": [{"value": people["alice"]}, {"value": people["bob"]}]})
    assert resp.status_code in (200, 204), resp.get_data(as_text=True)
    assert sorted(users_svc.get_group("ops").members, key=lambda u: u.id) == [users_svc.find_user("alice"),
                                                                             users_svc.find_user("bob")]
    resp = scim.patch(f"/Groups/{gid}", {"op": "remove", "path": f'members[value eq "{people["alice"]}"]'})
    assert resp.status_code in (200, 204)
    group = scim.get(f"/Groups/{gid}").get_json()
    assert [m["value"] for m in group["members"]] == [people["bob"]] and group["externalId"] == "grp-ops"
    # the user's read-only `groups` shows the membership
    assert [g["display"] for g in scim.get(f"/Users/{people['bob']}").get_json()["groups"]] == ["ops"]
    assert "groups" not in scim.get(f"/Users/{people['alice']}").get_json()
    # an unknown member, a group rename, and a group named in an app policy
    bad = scim.patch(f"/Groups/{gid}", {"op": "add", "path": "members", "value": [{"value": "u999-abc"}]})
    assert bad.status_code == 400 and bad.get_json()["scimType"] == "invalidValue"
    assert scim.patch(f"/Groups/{gid}", {"op": "replace", "path": "displayName", "value": "operations"}
                      ).status_code in (200, 204)
    assert users_svc.find_group("operations") is not None


def test_group_in_an_access_policy_cannot_be_renamed_or_deleted(scim: Scim, people: dict[str, str]) -> None:
    gid = scim.post("/Groups", {"schemas": [GROUP_URN], "displayName": "finance"}).get_json()["id"]
    row, _secret = apps_svc.register_oidc_app(name="Ledger", slug="ledger", settings=apps_svc.initial_settings(
        redirect_uris=("https://ledger.example/cb",)))
    apps_svc.change_settings(row, allow_groups=("finance",))
    db.session.commit()
    resp = scim.patch(f"/Groups/{gid}", {"op": "replace", "path": "displayName", "value": "fin"})
    assert resp.status_code == 409 and "access policy" in resp.get_json()["detail"]
    assert scim.delete(f"/Groups/{gid}").status_code == 409
    assert users_svc.find_group("finance") is not None


# ------------------------------------------------------------------ ETags

def test_etags(scim: Scim) -> None:
    created = scim.create_user("etag")
    uid, version = created["id"], created["meta"]["version"]
    assert scim.get(f"/Users/{uid}", headers={"If-None-Match": version}).status_code == 304
    assert scim.get(f"/Users/{uid}", headers={"If-None-Match": 'W/"999"'}).status_code == 200
    stale = scim.patch(f"/Users/{uid}", {"op": "replace", "path": "active", "value": False},
                       headers={"If-Match": 'W/"999"'})
    assert stale.status_code == 412
    assert users_svc.find_user("etag").disabled is False  # type: ignore[union-attr]
    ok = scim.patch(f"/Users/{uid}", {"op": "replace", "path": "active", "value": False},
                    headers={"If-Match": version})
    assert ok.status_code in (200, 204)
    assert scim.delete(f"/Users/{uid}", headers={"If-Match": version}).status_code == 412


# ------------------------------------------------------------------ errors

def test_errors_are_scim_errors_and_write_nothing(scim: Scim, client: FlaskClient) -> None:
    taken = scim.create_user("taken", externalId="x-1")
    audit_rows = db.session.query(AdminAudit).count()
    cases = [
        (scim.post("/Users", None, raw=b"{not json"), 400, "invalidSyntax"),
        (scim.post("/Users", {"schemas": [USER_URN], "userName": "TAKEN",
                              "emails": [{"value": "t@example.com"}]}), 409, "uniqueness"),
        (scim.post("/Users", {"schemas": [USER_URN], "userName": "other", "externalId": "x-1",
                              "emails": [{"value": "o@example.com"}]}), 409, "uniqueness"),
        (scim.post("/Users", {"schemas": [USER_URN], "userName": "bad name!",
                              "emails": [{"value": "b@example.com"}]}), 400, "invalidValue"),
        (scim.post("/Users", {"schemas": [USER_URN], "userName": "nomail"}), 400, None),
        (scim.post("/Users", {"schemas": [USER_URN], "userName": "weak", "password": "short",
                              "emails": [{"value": "w@example.com"}]}), 400, "invalidValue"),
        (scim.patch(f"/Users/{taken['id']}", {"op": "replace", "path": "nickName[", "value": "x"}), 400,
         "invalidPath"),
        (scim.patch(f"/Users/{taken['id']}", {"op": "replace", "path": 'emails[type eq "other"].value',
                                              "value": "x@example.com"}), None, None),
        (scim.patch(f"/Users/{taken['id']}", {"op": "replace", "path": "groups", "value": []}), 400, "mutability"),
        (scim.patch(f"/Users/{taken['id']}", {"op": "explode", "path": "active"}), 400, None),
        (scim.get("/Users/u12345-zz"), 404, None),
        (scim.get("/Users/not-an-id"), 404, None),
        (scim.request("PUT", "/Users"), 405, None),
        (scim.get("/Users?startIndex=abc"), 400, None),
    ]
    for resp, status, scim_type in cases:
        body = resp.get_json(silent=True) or {}
        assert resp.status_code < 500, resp.get_data(as_text=True)
        if status is not None:
            assert resp.status_code == status, (status, resp.get_data(as_text=True))
            assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
            assert body["status"] == str(status)
        if scim_type is not None:
            assert body.get("scimType") == scim_type, body
    assert users_svc.find_user("other") is None and users_svc.find_user("nomail") is None
    assert db.session.query(AdminAudit).count() == audit_rows + 1   # + the one created by the email filter PATCH


def test_request_size_is_limited(scim: Scim, app: Flask) -> None:
    limit = app.extensions["idp.settings"].max_request_bytes
    big = {"schemas": [USER_URN], "userName": "big", "emails": [{"value": "big@example.com"}],
           "nickName": "x" * (limit + 10)}
    resp = scim.post("/Users", big)
    assert resp.status_code == 413 and resp.get_json()["status"] == "413"
    assert users_svc.find_user("big") is None


def test_bulk_is_not_supported(scim: Scim) -> None:
    resp = scim.post("/Bulk", {"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": []})
    assert resp.status_code == 501


# ------------------------------------------------------------------ extensions (custom fields)

def test_custom_fields_and_enterprise_extension(scim: Scim) -> None:
    fields_svc.add_field("department", "string")
    fields_svc.add_field("employee_number", "string", unique=True)
    fields_svc.add_field("manager", "string")
    fields_svc.add_field("badge", "string", unique=True)
    fields_svc.add_field("tags", "list")
    fields_svc.add_field("contractor", "bool")
    fields_svc.add_field("start_date", "date")
    db.session.commit()
    schemas = {s["id"]: s for s in scim.get("/Schemas").get_json()["Resources"]}
    assert {a["name"] for a in schemas[ENTERPRISE_URN]["attributes"]} == {"department", "employeeNumber", "manager"}
    idp_attrs = {a["name"]: a for a in schemas[IDP_URN]["attributes"]}
    assert set(idp_attrs) == {"badge", "tags", "contractor", "start_date"}
    assert idp_attrs["tags"]["multiValued"] is True and idp_attrs["contractor"]["type"] == "boolean"
    assert idp_attrs["badge"]["uniqueness"] == "server"
    created = scim.create_user("emp", **{
        "schemas": [USER_URN, ENTERPRISE_URN, IDP_URN],
        ENTERPRISE_URN: {"employeeNumber": "701984", "department": "Tour Operations", "costCenter": "4130",
                         "manager": {"value": "u1-x"}},
        IDP_URN: {"badge": "B-1", "tags": ["a", "b"], "contractor": True, "start_date": "2026-01-05"}})
    user = users_svc.find_user("emp")
    assert user is not None and user.custom_fields == {
        "employee_number": "701984", "department": "Tour Operations", "manager": "u1-x", "badge": "B-1",
        "tags": ["a", "b"], "contractor": True, "start_date": "2026-01-05"}
    assert created[ENTERPRISE_URN] == {"employeeNumber": "701984", "department": "Tour Operations",
                                       "manager": {"value": "u1-x"}}
    uid = created["id"]
    resp = scim.patch(f"/Users/{uid}", {"op": "add", "path": f"{IDP_URN}:tags", "value": ["c"]},
                      {"op": "remove", "path": f"{ENTERPRISE_URN}:department"})
    assert resp.status_code in (200, 204), resp.get_data(as_text=True)
    body = scim.get(f"/Users/{uid}").get_json()
    assert body[IDP_URN]["tags"] == ["a", "b", "c"]      # add appends to a multi-valued attribute
    assert "department" not in body[ENTERPRISE_URN]
    # a unique value another user holds, and a value the field's type refuses
    clash = scim.post("/Users", {"schemas": [USER_URN, IDP_URN], "userName": "emp2",
                                 "emails": [{"value": "e2@example.com"}], IDP_URN: {"badge": "b-1"}})
    assert clash.status_code == 409 and clash.get_json()["scimType"] == "uniqueness"
    bad_date = scim.patch(f"/Users/{uid}", {"op": "replace", "path": f"{IDP_URN}:start_date", "value": "soon"})
    assert bad_date.status_code == 400 and bad_date.get_json()["scimType"] == "invalidValue"
    assert users_svc.find_user("emp2") is None


# ------------------------------------------------------------------ audit and lifecycle

def test_changes_are_audited_as_the_token(scim: Scim) -> None:
    emitted: list[tuple[str, dict[str, Any]]] = []
    for event in (lifecycle.USER_CHANGED, lifecycle.USER_DEACTIVATED, lifecycle.USER_DELETED,
                  lifecycle.GROUP_CHANGED):
        lifecycle.listen(event, lambda _e=event, **d: emitted.append((_e, d)))
    try:
        uid = scim.create_user("audited")["id"]
        scim.patch(f"/Users/{uid}", {"op": "replace", "path": "active", "value": False})
        org.set_scim_delete("delete")
        db.session.commit()
        scim.delete(f"/Users/{uid}")
    finally:
        for event in (lifecycle.USER_CHANGED, lifecycle.USER_DEACTIVATED, lifecycle.USER_DELETED,
                      lifecycle.GROUP_CHANGED):
            lifecycle.LISTENERS[event].pop()
    rows = db.session.scalars(select(AdminAudit).where(AdminAudit.target == "audited")
                              .order_by(AdminAudit.id)).all()
    assert [r.action for r in rows][:1] == ["user.add"] and "user.delete" in [r.action for r in rows]
    assert "user.deactivate" in [r.action for r in rows]
    assert {r.actor for r in rows} == {"api:hr-sync"}
    kinds = [e for e, _d in emitted]
    assert kinds.count(lifecycle.USER_CHANGED) == 1          # once per request, however many services touched it
    assert kinds.count(lifecycle.USER_DEACTIVATED) == 1
    deleted = [d for e, d in emitted if e == lifecycle.USER_DELETED]
    assert deleted and deleted[0]["username"] == "audited"


def _signed_in_with_grant(app: Flask, username: str) -> tuple[User, IdpSession, OidcGrant]:
    user = users_svc.add_user(username, email=f"{username}@example.com", password_hash=None)
    session = start_session(user, "10.0.0.1")
    row, _secret = apps_svc.register_oidc_app(name=f"App {username}", slug=f"app-{username}",
                                              settings=apps_svc.initial_settings(
                                                  redirect_uris=("https://app.example/cb",)))
    grant = record_grant(row.id, user.id, ["openid", "offline_access"], "user")
    for offline in (True, False):
        db.session.add(OidcRefreshToken(
            token_hash=secrets.token_hex(32), family_id=secrets.token_urlsafe(16), grant_id=grant.id,
            app_id=row.id, user_id=user.id, scopes=["openid", "offline_access"] if offline else ["openid"],
            session_id=session.id, auth_time=utcnow()))
    db.session.commit()
    return user, session, grant


def _assert_access_ended(user_id: int, session_id: str, grant_id: int) -> None:
    db.session.expire_all()
    assert db.session.get(IdpSession, session_id).ended_at is not None  # type: ignore[union-attr]
    assert db.session.get(OidcGrant, grant_id).revoked_at is not None  # type: ignore[union-attr]
    live = db.session.scalars(select(OidcRefreshToken).where(OidcRefreshToken.user_id == user_id,
                                                             OidcRefreshToken.revoked_at.is_(None))).all()
    assert live == []


def test_scim_deactivation_ends_sessions_and_revokes_grants(scim: Scim, app: Flask) -> None:
    user, session, grant = _signed_in_with_grant(app, "quitter")
    uid = _filter(scim, "Users", 'userName eq "quitter"').get_json()["Resources"][0]["id"]
    resp = scim.patch(f"/Users/{uid}", {"op": "replace", "path": "active", "value": False})
    assert resp.status_code in (200, 204)
    _assert_access_ended(user.id, session.id, grant.id)
    row = db.session.scalar(select(AdminAudit).where(AdminAudit.action == "user.deactivate"))
    assert row is not None and row.actor == "api:hr-sync"
    assert row.after["sessions_ended"] == 1 and row.after["grants_revoked"] == 1


@pytest.mark.parametrize("path", ["console", "cli"])
def test_every_disable_path_ends_access(app: Flask, path: str) -> None:
    user, session, grant = _signed_in_with_grant(app, f"gone-{path}")
    if path == "console":
        accounts.set_disabled(user, True)
        db.session.commit()
    else:
        result = app.test_cli_runner().invoke(args=["users", "set", user.username, "--disabled"])
        assert result.exit_code == 0, result.output
    _assert_access_ended(user.id, session.id, grant.id)


@pytest.mark.parametrize("admins", [1, 2])
def test_administrators_are_not_managed_over_scim(scim: Scim, admins: int) -> None:
    """A provisioning token must not take over, disable or delete an admin (any admin, not only the last one):
    the password, the name, the emails, the state and DELETE are refused with 403; reading is allowed."""
    rows = [users_svc.add_user(f"root{i}", email=f"root{i}@example.com", password_hash=None, is_admin=True)
            for i in range(admins)]
    org.set_scim_delete("delete")
    db.session.commit()
    before = {u.id: (u.username, u.email, u.password_hash, u.disabled, u.version) for u in rows}
    uid = _filter(scim, "Users", 'userName eq "root0"').get_json()["Resources"][0]["id"]
    for op in ({"op": "replace", "path": "active", "value": False},
               {"op": "replace", "path": "password", "value": "a new long password"},
               {"op": "replace", "path": "userName", "value": "mallory"},
               {"op": "replace", "path": "emails", "value": [{"value": "m@evil.example", "primary": True}]}):
        resp = scim.patch(f"/Users/{uid}", op)
        assert resp.status_code == 403 and "administrator" in resp.get_json()["detail"], op
    assert scim.delete(f"/Users/{uid}").status_code == 403
    assert scim.get(f"/Users/{uid}").status_code == 200
    db.session.expire_all()
    assert {u.id: (u.username, u.email, u.password_hash, u.disabled, u.version)
            for u in (db.session.get(User, r.id) for r in rows) if u is not None} == before


def test_a_rename_is_refused_while_a_policy_assigns_the_user_by_name(scim: Scim) -> None:
    """Otherwise a rename hands the assignment to whoever takes the old name next (mallory renamed to alice)."""
    users_svc.add_user("alice", email="alice@example.com", password_hash=None)
    db.session.commit()
    apps_svc.change_settings(apps_svc.register_app((SP_METADATA_DIR / "nextcloud-user-saml-signed-sha256.xml")
                                                   .read_bytes(), slug="nc"), permitted="admin-approved",
                             assigned_users=("alice",))
    db.session.commit()
    uid = _filter(scim, "Users", 'userName eq "alice"').get_json()["Resources"][0]["id"]
    resp = scim.patch(f"/Users/{uid}", {"op": "replace", "path": "userName", "value": "alice.old"})
    assert resp.status_code == 409 and "access policy" in resp.get_json()["detail"]
    assert users_svc.find_user("alice") is not None


def test_active_defaults_to_true_and_search_with_a_body(scim: Scim) -> None:
    resp = scim.post("/Users", {"schemas": [USER_URN], "userName": "quiet", "emails": [{"value": "q@example.com"}]})
    assert resp.status_code == 201 and resp.get_json()["active"] is True
    scim.post("/Groups", {"schemas": [GROUP_URN], "displayName": "quiet-group"})
    body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": 'userName sw "qu"',
            "attributes": ["userName"]}
    found = scim.post("/Users/.search", body)
    assert found.status_code == 200, found.get_data(as_text=True)
    assert [r["userName"] for r in found.get_json()["Resources"]] == ["quiet"]
    assert "emails" not in found.get_json()["Resources"][0]
    everything = scim.post("/.search", {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"]})
    assert everything.get_json()["totalResults"] == 2
    # at the root an attribute one type lacks matches none of its resources
    by_name = scim.post("/.search", {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                                     "filter": 'displayName eq "quiet-group"'})
    assert [r["displayName"] for r in by_name.get_json()["Resources"]] == ["quiet-group"]


def test_a_password_set_over_scim_ends_the_users_sessions(scim: Scim) -> None:
    user = users_svc.add_user("dana", email="dana@example.com", password_hash=None)
    db.session.commit()
    start_session(user, "127.0.0.1")
    db.session.commit()
    uid = _filter(scim, "Users", 'userName eq "dana"').get_json()["Resources"][0]["id"]
    resp = scim.patch(f"/Users/{uid}", {"op": "replace", "path": "password", "value": "a brand new passphrase"})
    assert resp.status_code in (200, 204), resp.get_data(as_text=True)
    db.session.expire_all()
    live = db.session.scalars(select(IdpSession).where(IdpSession.user_id == user.id,
                                                       IdpSession.ended_at.is_(None))).all()
    assert live == []


@pytest.mark.parametrize("expression", [
    'meta.lastModified gt "0001-01-01T00:00:00+05:00"',
    'meta.lastModified lt "9999-12-31T23:59:59-05:00"',
    " or ".join(f'userName eq "u{i}"' for i in range(101)),
])
def test_filters_out_of_range_are_invalid_filters_not_500s(scim: Scim, expression: str) -> None:
    resp = _filter(scim, "Users", expression)
    assert resp.status_code == 400 and resp.get_json()["scimType"] == "invalidFilter", resp.get_data(as_text=True)
