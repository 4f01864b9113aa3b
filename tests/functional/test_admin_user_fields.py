"""Console: the User fields page (list, add, remove with the "used by apps" refusal) and the user page's field
values (typed inputs, errors next to the field, nothing written on a refusal), with CSRF and the admin gate."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from idp.extensions import db
from idp.models import AdminAudit, User, UserFieldUnique
from idp.services import apps as apps_svc
from idp.services import user_fields as fields_svc
from idp.services import users as users_svc

from ..conftest import SP_METADATA_DIR
from .conftest import PASSWORD
from .test_admin_console import ADMIN_PASSWORD, admin, login, post  # noqa: F401 - admin is a fixture


@pytest.fixture
def console(client: FlaskClient, admin: User, alice: User, bob: User) -> FlaskClient:  # noqa: F811
    fields_svc.add_field("employee_number", "string", unique=True, label="Employee number")
    fields_svc.add_field("projects", "list")
    fields_svc.add_field("contractor", "bool")
    fields_svc.add_field("start_date", "date")
    login(client, "admin", ADMIN_PASSWORD)
    return client


SHOWN = ["employee_number", "projects", "contractor", "start_date"]   # the fields the user page shows


def values(username: str) -> dict[str, Any]:
    db.session.expire_all()
    return dict(users_svc.get_user(username).custom_fields)


def test_fields_page_lists_and_is_in_the_nav(console: FlaskClient) -> None:
    page = console.get("/admin/fields").get_data(as_text=True)
    assert ">User fields</a>" in console.get("/admin/users").get_data(as_text=True)
    assert 'data-field="employee_number"' in page and "unique</span>" in page
    assert 'id="remove-field-projects"' in page


def test_add_field(console: FlaskClient) -> None:
    resp = post(console, "/admin/fields/new", {"name": "cost_center", "type": "string", "unique": "1",
                                                "label": "Cost centre"}, "/admin/fields")
    assert resp.status_code == 303 and resp.headers["Location"] == "/admin/fields"
    row = fields_svc.get_field("cost_center")
    assert (row.type, row.unique, row.label) == ("string", True, "Cost centre")
    audit = db.session.scalars(select(AdminAudit).where(AdminAudit.action == "field.add",
                                                        AdminAudit.target == "cost_center")).one()
    assert audit.actor == "web:admin"
    assert 'data-field="cost_center"' in console.get("/admin/fields").get_data(as_text=True)


@pytest.mark.parametrize(("data", "field", "fragment"), [
    ({"name": "Bad Name"}, "name", "is not valid"),
    ({"name": "email"}, "name", "reserved"),
    ({"name": "projects"}, "name", "already exists"),
    ({"type": "int"}, "type", "not one of"),
    ({"type": "bool", "unique": "1"}, "unique", "cannot be unique"),
    ({"label": "bad\x01label"}, "label", "control characters"),
])
def test_add_field_errors_are_next_to_the_field(console: FlaskClient, data: dict[str, str], field: str,
                                                fragment: str) -> None:
    before = [f.name for f in fields_svc.list_fields()]
    resp = post(console, "/admin/fields/new", {"name": "cost_center", "type": "string", **data}, "/admin/fields")
    body = resp.get_data(as_text=True)
    assert resp.status_code == 422
    m = re.search(f'<p class="field-error" id="{field}-error" role="alert">([^<]*)</p>', body)
    assert m and fragment in m.group(1), body[:2000]
    assert re.search(f'aria-describedby="[^"]*{field}-error"', body)
    db.session.expire_all()
    assert [f.name for f in fields_svc.list_fields()] == before


def test_remove_field_confirms_then_deletes_values(console: FlaskClient) -> None:
    fields_svc.set_user_fields(users_svc.get_user("alice"), {"projects": "a;b"})
    page = console.get("/admin/fields/projects/remove").get_data(as_text=True)
    assert 'id="confirm-remove"' in page
    resp = post(console, "/admin/fields/projects/remove", {}, "/admin/fields/projects/remove")
    assert resp.status_code == 303
    assert fields_svc.find_field("projects") is None and values("alice") == {}
    assert "Field projects removed (1 user value deleted)." in console.get("/admin/fields").get_data(as_text=True)
    assert console.get("/admin/fields/projects/remove").status_code == 404


def test_remove_field_used_by_an_app_is_refused(console: FlaskClient) -> None:
    xml = (SP_METADATA_DIR / "python3-saml-no-keydescriptor.xml").read_bytes()
    row = apps_svc.register_app(xml, slug="wiki")
    row.settings = {**row.settings, "nameid_value": "formula:lower(user.employee_number)"}
    fields_svc.set_user_fields(users_svc.get_user("alice"), {"employee_number": "E-1"})
    page = console.get("/admin/fields/employee_number/remove").get_data(as_text=True)
    assert 'id="field-in-use"' in page and "wiki</a> (NameID value)" in page and 'id="confirm-remove"' not in page
    assert "(NameID value)" in console.get("/admin/fields").get_data(as_text=True)
    # a POST sent anyway is refused too, with the reason, and nothing changes
    resp = post(console, "/admin/fields/employee_number/remove", {}, "/admin/fields")
    body = resp.get_data(as_text=True)
    assert resp.status_code == 409
    assert "Not removed: user field &#39;employee_number&#39; is used by app wiki (NameID value)" in body
    assert fields_svc.find_field("employee_number") is not None and values("alice") == {"employee_number": "E-1"}


def test_user_page_edits_typed_values(console: FlaskClient) -> None:
    page = console.get("/admin/users/alice").get_data(as_text=True)
    assert 'type="date" id="field_start_date"' in page and 'type="checkbox" name="field_contractor"' in page
    resp = post(console, "/admin/users/alice/fields", {"shown": SHOWN, "field_employee_number": "E-1",
                                                       "field_projects": "x; y",
                                                       "field_contractor": "1", "field_start_date": "2024-03-01"},
                "/admin/users/alice")
    assert resp.status_code == 303 and resp.headers["Location"] == "/admin/users/alice"
    assert values("alice") == {"employee_number": "E-1", "projects": ["x", "y"], "contractor": True,
                               "start_date": "2024-03-01"}
    page = console.get("/admin/users/alice").get_data(as_text=True)
    assert 'value="x;y"' in page and re.search(r'name="field_contractor" value="1" id="field_contractor"\s*checked',
                                               page)
    # unchecking a set bool stores false; clearing a text clears it
    post(console, "/admin/users/alice/fields", {"shown": SHOWN, "field_employee_number": "E-1", "field_projects": "",
                                               "field_start_date": "2024-03-01"}, "/admin/users/alice")
    assert values("alice") == {"employee_number": "E-1", "contractor": False, "start_date": "2024-03-01"}
    # an unchecked box on a user with no value leaves the bool unset
    post(console, "/admin/users/bob/fields", {"shown": SHOWN, "field_projects": "p"}, "/admin/users/bob")
    assert values("bob") == {"projects": ["p"]}
    row = db.session.scalars(select(AdminAudit).where(AdminAudit.action == "user.fields",
                                                      AdminAudit.target == "bob")).one()
    assert row.actor == "web:admin" and row.after == {"projects": ["p"]}


def test_a_field_the_page_did_not_show_is_left_alone(console: FlaskClient) -> None:
    """A field added (and set by another admin) after the page was loaded: the page's save does not clear it."""
    page = console.get("/admin/users/bob").get_data(as_text=True)
    assert page.count('name="shown"') == 4
    fields_svc.add_field("department", "string")
    fields_svc.add_field("remote", "bool")
    fields_svc.set_user_fields(users_svc.get_user("bob"), {"department": "Ops", "remote": "yes"})
    post(console, "/admin/users/bob/fields", {"shown": SHOWN, "field_projects": "p"}, "/admin/users/bob")
    assert values("bob") == {"department": "Ops", "remote": True, "projects": ["p"]}


def test_user_field_errors_are_shown_and_nothing_is_written(console: FlaskClient) -> None:
    fields_svc.set_user_fields(users_svc.get_user("alice"), {"employee_number": "E-1"})
    resp = post(console, "/admin/users/bob/fields", {"shown": SHOWN, "field_employee_number": "e-1",
                                                     "field_projects": "kept",
                                                     "field_start_date": "2023-02-30"}, "/admin/users/bob")
    body = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert 'id="field_employee_number-error" role="alert">this value is already held by alice<' in body
    assert 'id="field_start_date-error" role="alert">&#39;2023-02-30&#39; is not a real date<' in body
    assert 'value="kept"' in body and 'value="2023-02-30"' in body     # what was typed is shown again
    assert values("bob") == {}
    assert [c.user_id for c in db.session.scalars(select(UserFieldUnique))] == [users_svc.get_user("alice").id]


def test_field_pages_are_admin_only_and_need_csrf(client: FlaskClient, app: Flask, admin: User,  # noqa: F811
                                                  alice: User) -> None:
    fields_svc.add_field("department", "string")
    posts = [("/admin/fields/new", {"name": "x1", "type": "string"}), ("/admin/fields/department/remove", {}),
             ("/admin/users/alice/fields", {"shown": "department", "field_department": "Sales"})]
    assert client.get("/admin/fields").status_code == 302
    login(client, "alice", PASSWORD)
    assert client.get("/admin/fields").status_code == 403
    for path, data in posts:
        assert post(client, path, data).status_code == 403
    admin_client = app.test_client()
    login(admin_client, "admin", ADMIN_PASSWORD)
    for path, data in posts:
        assert admin_client.post(path, data=data).status_code == 400
        assert admin_client.post(path, data={**data, "csrf_token": "forged"}).status_code == 400
    assert [f.name for f in fields_svc.list_fields()] == ["department"] and values("alice") == {}
