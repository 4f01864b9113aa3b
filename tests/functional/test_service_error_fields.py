"""Service refusals name the input they are about (ServiceError.field), and the console's one helper puts them
next to that field after rolling the unit of work back: no form maps a message to a field by its text."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from idp.extensions import db
from idp.models import ConnectedApp
from idp.saml.sp_metadata_builder import HandEnteredSp, build_sp_metadata_xml
from idp.services import ServiceError
from idp.services import apps as apps_svc
from idp.services import org as org_svc
from idp.web.admin.forms.app_settings import PolicyForm
from idp.web.admin.forms.base import FORM, refuse


def _xml(entity_id: str = "https://sp.example.com/saml") -> bytes:
    return build_sp_metadata_xml(HandEnteredSp(entity_id, "https://sp.example.com/acs",
                                               "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"))


def _refusal(call: Any) -> ServiceError:
    with pytest.raises(ServiceError) as info:
        call()
    db.session.rollback()
    return info.value


def test_registration_refusals_name_their_input(app: Flask) -> None:
    apps_svc.register_app(_xml(), slug="taken")
    db.session.commit()  # the test is the outer layer: services leave the commit to it
    cases = [
        (lambda: apps_svc.register_app(_xml()), "entity_id"),                                # already registered
        (lambda: apps_svc.register_app(_xml("urn:other"), slug="taken"), "slug"),
        (lambda: apps_svc.register_app(_xml("urn:other"), slug="Bad Slug"), "slug"),
        (lambda: apps_svc.register_app(_xml("urn:other"), name="a\x01b"), "name"),
        (lambda: apps_svc.register_app(b"<broken"), "metadata"),
        (lambda: apps_svc.register_app(_xml("urn:other"), entity_id="urn:not-there"), "entity_id"),
        (lambda: apps_svc.get_app("nope"), "slug"),
    ]
    for call, field in cases:
        assert _refusal(call).field == field


@pytest.mark.parametrize(("changes", "field"), [
    ({"nameid_format": "x509"}, "nameid_format"),
    ({"sign": "never"}, "sign"),
    ({"permitted": "everyone"}, "permitted"),
    ({"ip_ranges": ("10.0.0.1/8",)}, "ip_ranges"),
    ({"session_timeout": 99999}, "session_timeout"),
    ({"attributes": {"mail": "password_hash"}}, "attributes"),
    ({"encrypt_assertion": True}, "encrypt_assertion"),      # the metadata has no encryption certificate
])
def test_settings_refusals_name_their_input(app: Flask, changes: dict[str, Any], field: str) -> None:
    row = apps_svc.register_app(_xml(), slug="sp")
    db.session.commit()
    assert _refusal(lambda: apps_svc.change_settings(row, **changes)).field == field


def test_policy_references_and_org_ranges(app: Flask, alice: Any) -> None:
    db.session.commit()
    assert _refusal(lambda: apps_svc.validate_policy_references(deny_groups=["ghosts"])).field == "deny_groups"
    assert _refusal(lambda: apps_svc.validate_policy_references(allow_groups=["ghosts"])).field == "allow_groups"
    assert _refusal(lambda: apps_svc.validate_policy_references(assigned_users=["nobody"])).field == "assigned_users"
    apps_svc.validate_policy_references(allow_groups=["engineering"], assigned_users=["alice"])
    assert _refusal(lambda: org_svc.add_trusted_range("not-a-range")).field == "cidr"


def test_refuse_rolls_back_and_places_the_message(app: Flask) -> None:
    row = apps_svc.register_app(_xml(), slug="sp")
    db.session.commit()
    with app.test_request_context("/admin/apps/sp/policy", method="POST"):
        form = PolicyForm(formdata=None)
        row.name = "changed, not committed"
        refuse(form, ServiceError("no such thing", field="assigned_users"))
        refuse(form, ServiceError("mapped", field="cidr"), {"cidr": "ip_ranges"})
        refuse(form, ServiceError("about the whole request"))
        refuse(form, ServiceError("a field this form does not have", field="slug"))
        assert form.messages == {"assigned_users": "no such thing", "ip_ranges": "mapped",
                                 FORM: "about the whole request"}
        assert form.form_errors == ["about the whole request", "a field this form does not have"]
    db.session.expire_all()
    assert db.session.get(ConnectedApp, row.id).name != "changed, not committed"  # type: ignore[union-attr]
