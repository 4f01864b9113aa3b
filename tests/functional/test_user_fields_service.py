"""The user fields service: definitions, typed values, unique claims, removal refused while an app uses a field,
audit rows and the schema cache."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from idp.extensions import db
from idp.models import AdminAudit, User, UserField, UserFieldUnique
from idp.saml.sp_metadata_builder import HandEnteredSp, build_sp_metadata_xml
from idp.services import ServiceError
from idp.services import apps as apps_svc
from idp.services import user_fields as svc
from idp.services.accounts import FormErrors
from idp.services.field_schema import current_schema


def _refused(call: Any) -> ServiceError:
    with pytest.raises(ServiceError) as info:
        call()
    db.session.rollback()
    return info.value


def _claims() -> set[tuple[str, str, int]]:
    return {(c.field_name, c.value, c.user_id) for c in db.session.scalars(select(UserFieldUnique))}


def test_add_list_and_schema(app: Flask) -> None:
    assert [f.name for f in current_schema().custom] == []
    svc.add_field("employee_number", "string", unique=True, label="Employee number")
    svc.add_field("cost_centers", "list")
    db.session.commit()
    assert [(f.name, f.type, f.unique) for f in svc.list_fields()] == [("cost_centers", "list", False),
                                                                       ("employee_number", "string", True)]
    schema = current_schema()   # the add dropped the cache: seen at once, not after the TTL
    assert schema.field("employee_number") is not None and schema.field("employee_number").unique  # type: ignore[union-attr]
    row = db.session.scalars(select(AdminAudit).where(AdminAudit.action == "field.add",
                                                      AdminAudit.target == "employee_number")).one()
    assert row.after == {"type": "string", "unique": True, "label": "Employee number"}


@pytest.mark.parametrize(("kwargs", "field", "fragment"), [
    ({"name": "Department"}, "name", "not valid"),
    ({"name": "9lives"}, "name", "not valid"),
    ({"name": "a-b"}, "name", "not valid"),
    ({"name": "email"}, "name", "reserved"),
    ({"name": "groups"}, "name", "reserved"),
    ({"name": "formula"}, "name", "reserved"),
    ({"name": "amr"}, "name", "reserved"),
    ({"type": "int"}, "type", "not one of"),
    ({"type": "timestamp"}, "type", "not one of"),
    ({"type": "bool", "unique": True}, "unique", "cannot be unique"),
    ({"label": "x" * 151}, "label", "at most 150"),
    ({"name": "dept"}, "name", "already exists"),
])
def test_add_refusals(app: Flask, kwargs: dict[str, Any], field: str, fragment: str) -> None:
    svc.add_field("dept", "string")
    db.session.commit()
    args = {"name": "other", "type": "string", **kwargs}
    exc = _refused(lambda: svc.add_field(args.pop("name"), args.pop("type"), **args))
    assert exc.field == field and fragment in str(exc)
    assert [f.name for f in svc.list_fields()] == ["dept"]


def test_values_typed_audited_and_cleared(app: Flask, alice: User) -> None:
    for name, type_ in (("department", "string"), ("projects", "list"), ("contractor", "bool"),
                        ("start_date", "date")):
        svc.add_field(name, type_)
    changed = svc.set_user_fields(alice, {"department": "Sales", "projects": "apollo;gemini", "contractor": "yes",
                                          "start_date": "2024-03-01"})
    db.session.commit()
    assert set(changed) == {"department", "projects", "contractor", "start_date"}
    db.session.expire_all()
    assert alice.custom_fields == {"department": "Sales", "projects": ["apollo", "gemini"], "contractor": True,
                                   "start_date": "2024-03-01"}
    # the same values again change nothing and write no audit row
    audits = db.session.query(AdminAudit).filter_by(action="user.fields").count()
    assert svc.set_user_fields(alice, {"department": "Sales", "contractor": "true"}) == {}
    assert db.session.query(AdminAudit).filter_by(action="user.fields").count() == audits
    svc.set_user_fields(alice, {"department": None, "projects": ""})
    db.session.commit()
    db.session.expire_all()
    assert alice.custom_fields == {"contractor": True, "start_date": "2024-03-01"}   # the JSON change was stored
    last = db.session.query(AdminAudit).filter_by(action="user.fields").order_by(AdminAudit.id.desc()).first()
    assert last is not None and last.before == {"department": "Sales", "projects": ["apollo", "gemini"]}
    assert last.after == {"department": None, "projects": None}


def test_bad_values_change_nothing(app: Flask, alice: User) -> None:
    svc.add_field("department", "string")
    svc.add_field("start_date", "date")
    db.session.commit()
    with pytest.raises(FormErrors) as info:
        svc.set_user_fields(alice, {"department": "Sales", "start_date": "2023-02-30", "nope": "x"})
    db.session.rollback()
    assert set(info.value.errors) == {"start_date", "nope"}
    db.session.expire_all()
    assert alice.custom_fields == {}


def test_unique_values_are_claimed_case_insensitively(app: Flask, alice: User, bob: User) -> None:
    svc.add_field("federation_id", "string", unique=True)
    svc.set_user_fields(alice, {"federation_id": "Alice.L@corp"})
    db.session.commit()
    exc = _refused(lambda: svc.set_user_fields(bob, {"federation_id": "alice.l@CORP"}))
    assert isinstance(exc, FormErrors) and exc.errors == {"federation_id": "this value is already held by alice"}
    # alice may change the case of her own value; the claim follows
    svc.set_user_fields(alice, {"federation_id": "ALICE.L@corp"})
    db.session.commit()
    assert _claims() == {("federation_id", "alice.l@corp", alice.id)}
    # a changed value releases the old claim, so bob may take it
    svc.set_user_fields(alice, {"federation_id": "al@corp"})
    svc.set_user_fields(bob, {"federation_id": "alice.l@corp"})
    db.session.commit()
    assert _claims() == {("federation_id", "al@corp", alice.id), ("federation_id", "alice.l@corp", bob.id)}
    svc.set_user_fields(bob, {"federation_id": None})
    db.session.commit()
    assert _claims() == {("federation_id", "al@corp", alice.id)}


def test_unique_list_items_are_claimed_each(app: Flask, alice: User, bob: User) -> None:
    svc.add_field("aliases", "list", unique=True)
    svc.set_user_fields(alice, {"aliases": "al;ally"})
    db.session.commit()
    exc = _refused(lambda: svc.set_user_fields(bob, {"aliases": "bobby;ALLY"}))
    assert "held by alice" in str(exc)
    svc.set_user_fields(bob, {"aliases": "bobby"})
    db.session.commit()
    assert len(_claims()) == 3


def test_claim_lost_to_a_concurrent_writer_is_a_clear_refusal(app: Flask, alice: User, bob: User) -> None:
    """The check saw no holder, but the claim row exists by the time of the insert (another transaction won):
    the primary key refuses it and the caller gets a FormErrors, with the transaction still usable."""
    svc.add_field("employee_number", "string", unique=True)
    db.session.commit()
    original = svc._holder
    svc._holder = lambda field_name, claim: None  # type: ignore[assignment]  # the check runs before the winner
    try:
        db.session.add(UserFieldUnique(field_name="employee_number", value="e-1", user_id=alice.id))
        db.session.flush()
        with pytest.raises(FormErrors):
            svc.set_user_fields(bob, {"employee_number": "E-1"})
    finally:
        svc._holder = original  # type: ignore[method-assign]
    assert db.session.scalar(select(User.username).where(User.id == bob.id)) == "bob"   # still usable
    db.session.rollback()


def _app_with(settings: dict[str, Any], slug: str) -> None:
    xml = build_sp_metadata_xml(HandEnteredSp(f"https://{slug}.example.com/saml", f"https://{slug}.example.com/acs",
                                              "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"))
    row = apps_svc.register_app(xml, slug=slug)
    row.settings = {**(row.settings or {}), **settings}


@pytest.mark.parametrize(("app_settings", "where"), [
    ({"attributes": {"dept": "department"}}, "attribute dept"),
    ({"attributes": {"dept": "field:department"}}, "attribute dept"),
    ({"attributes": {"dept": 'formula:upper(user.department)'}}, "attribute dept"),
    ({"attributes": {"dept": 'formula:has(user . department) ? "x" : "y"'}}, "attribute dept"),
    ({"attributes": {"dept": "formula:user['department']"}}, "attribute dept"),
    ({"nameid_value": "field:department"}, "NameID value"),
    ({"nameid_value": "formula:user.department + '@corp'"}, "NameID value"),
])
def test_remove_refused_while_an_app_uses_the_field(app: Flask, alice: User, app_settings: dict[str, Any],
                                                    where: str) -> None:
    svc.add_field("department", "string")
    svc.set_user_fields(alice, {"department": "Sales"})
    _app_with(app_settings, "wiki")
    _app_with(app_settings, "crm")
    db.session.commit()
    exc = _refused(lambda: svc.remove_field("department"))
    assert str(exc) == (f"user field 'department' is used by apps crm ({where}), wiki ({where}); "
                        "change those apps first")
    db.session.expire_all()
    assert alice.custom_fields == {"department": "Sales"} and svc.find_field("department") is not None


@pytest.mark.parametrize("source", [
    "department_code", "field:department_code", "formula:user.department_code", "formula:'user.departments'",
    "formula:app.department", "formula:myuser.department",
])
def test_a_similar_name_is_not_a_use(app: Flask, source: str) -> None:
    svc.add_field("department", "string")
    _app_with({"attributes": {"x": source}}, "wiki")
    db.session.commit()
    svc.remove_field("department")
    db.session.commit()
    assert svc.find_field("department") is None


def test_remove_deletes_values_and_claims(app: Flask, alice: User, bob: User) -> None:
    svc.add_field("employee_number", "string", unique=True)
    svc.add_field("department", "string")
    svc.set_user_fields(alice, {"employee_number": "7", "department": "Sales"})
    svc.set_user_fields(bob, {"employee_number": "8"})
    db.session.commit()
    assert [f.name for f in current_schema().custom] == ["department", "employee_number"]
    assert svc.remove_field("employee_number") == 2
    db.session.commit()
    db.session.expire_all()
    assert alice.custom_fields == {"department": "Sales"} and bob.custom_fields == {}
    assert _claims() == set() and db.session.scalar(select(UserField.name)) == "department"
    assert [f.name for f in current_schema().custom] == ["department"]
    row = db.session.query(AdminAudit).filter_by(action="field.remove").one()
    assert row.before["users_with_value"] == 2
    # the same name can be defined again, with no values left over
    svc.add_field("employee_number", "string", unique=True)
    svc.set_user_fields(bob, {"employee_number": "7"})
    db.session.commit()
