"""Admin App Manager over the test client: guards (anonymous, non-admin, CSRF), refusals with nothing stored,
escaping of metadata and names, the metadata refresh preview/apply protocol and the audit trail."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event

from idp import audit
from idp.extensions import db
from idp.models import AdminAudit, ConnectedApp, SsoEvent, utcnow
from idp.services import ServiceError
from idp.services import apps as apps_svc
from idp.services import fetch as fetch_svc
from idp.services import users as users_svc

from ..conftest import SP_METADATA_DIR
from ..webclient import AUTHENTICATORS, enrol_totp, pass_second_factor
from .conftest import PASSWORD

NEXTCLOUD = SP_METADATA_DIR / "nextcloud-user-saml-signed-sha256.xml"
NO_KEYS = SP_METADATA_DIR / "python3-saml-no-keydescriptor.xml"
AGGREGATE = SP_METADATA_DIR / "simplesamlphp-two-sps-entitiesdescriptor.xml"
TWO_ENC = SP_METADATA_DIR / "pysaml2-sp-two-encryption-keys.xml"
SP1 = "https://sp1.example.com/simplesaml/module.php/saml/sp/metadata.php/default-sp"


def csrf_of(resp: Any) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', resp.get_data(as_text=True))
    assert m, "no CSRF token on the page"
    return m.group(1)


def sign_in(client: FlaskClient, username: str) -> str:
    """Log in (an admin with the second factor, as the console requires) and return a CSRF token of the new
    session."""
    token = csrf_of(client.get("/login"))
    resp = client.post("/login", data={"csrf_token": token, "username": username, "password": PASSWORD})
    assert resp.status_code == 303, resp.get_data(as_text=True)[:500]
    if username in AUTHENTICATORS:
        pass_second_factor(client, username)
    return csrf_of(client.get("/login?force=1"))


def text(resp: Any) -> str:
    return str(resp.get_data(as_text=True))


def field_error(resp: Any, name: str) -> str:
    m = re.search(rf'<p class="field-error" id="{re.escape(name)}-error"[^>]*>(.*?)</p>', text(resp), re.S)
    assert m, f"no error next to {name}: " + " | ".join(re.findall(r'id="([a-z_]+-error)"', text(resp)))
    return m.group(1)


def snapshot() -> dict[str, Any]:
    db.session.expire_all()
    return {a.slug: (a.name, a.enabled, dict(a.settings), a.metadata_xml, a.source_ref, a.version)
            for a in db.session.query(ConnectedApp)}


def fresh(slug: str) -> ConnectedApp:
    """The row as the last request left it (requests run in their own app context and session)."""
    db.session.expire_all()
    return apps_svc.get_app(slug)


def audit_count() -> int:
    return db.session.query(AdminAudit).count()


@pytest.fixture
def root(app: Flask) -> Any:
    pw = app.extensions["idp.passwords"]
    user = users_svc.add_user("root", email="root@example.com", password_hash=pw.hash(PASSWORD), is_admin=True)
    enrol_totp(user)  # the console needs a session that passed the second factor
    return user


@pytest.fixture
def admin(client: FlaskClient, root: Any) -> str:
    """The client signed in as the admin `root`; returns a CSRF token."""
    return sign_in(client, "root")


@pytest.fixture
def nc(app: Flask, alice: Any) -> ConnectedApp:
    """Nextcloud registered; groups engineering (alice's) and contractors exist."""
    users_svc.add_group("contractors")
    return apps_svc.register_app(NEXTCLOUD.read_bytes(), name="Nextcloud", slug="nextcloud")


def saml_form(**over: Any) -> dict[str, Any]:
    """The SAML settings form as the page posts it; the attribute columns not given are blank for every row
    (pass None to leave a column out, as an older form did)."""
    data: dict[str, Any] = {"name": "Nextcloud", "nameid_format": "email", "nameid_field": "email", "sign": "both",
                            "signature_algorithm": "rsa-sha256", "encryption_algorithm": "aes256-gcm",
                            "signing_key": "active", "attr_name": ["mail", ""], "attr_field": ["email", ""],
                            "idp_initiated": "on", "on_missing": "omit", "nameid_value": "default"}
    data.update(over)
    for column in ("attr_formula", "attr_format", "attr_friendly"):
        data.setdefault(column, [""] * len(data.get("attr_name") or []))
    return {k: v for k, v in data.items() if v is not None}


def policy_form(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"permitted": "admin-approved", "allow_groups": ["engineering"], "assigned_users": "",
                            "ip_policy": "enforce", "ip_ranges": "10.0.0.0/8\n2001:db8::/32", "require_mfa": "1",
                            "mfa_action": "step-up", "session_timeout": "60"}
    data.update(over)
    return {k: v for k, v in data.items() if v is not None}


ROUTES = [("GET", "/admin/apps"), ("GET", "/admin/apps/new"), ("POST", "/admin/apps/new"),
          ("GET", "/admin/apps/nextcloud"), ("POST", "/admin/apps/nextcloud/saml"),
          ("POST", "/admin/apps/nextcloud/policy"), ("POST", "/admin/apps/nextcloud/status"),
          ("GET", "/admin/apps/nextcloud/refresh"), ("POST", "/admin/apps/nextcloud/refresh"),
          ("POST", "/admin/apps/nextcloud/refresh/apply"), ("GET", "/admin/apps/nextcloud/delete"),
          ("POST", "/admin/apps/nextcloud/delete"), ("GET", "/admin/apps/nextcloud/preview?user=alice"),
          ("POST", "/admin/apps/nextcloud/attributes")]
POST_BODIES = {"/admin/apps/new": {"metadata_xml": NO_KEYS.read_text()},
               "/admin/apps/nextcloud/saml": saml_form(name="Changed"),
               "/admin/apps/nextcloud/policy": policy_form(),
               "/admin/apps/nextcloud/status": {"enabled": "0"},
               "/admin/apps/nextcloud/refresh": {"metadata_xml": NEXTCLOUD.read_text().replace("/acs", "/acs2")},
               "/admin/apps/nextcloud/refresh/apply": {"token": "x"},
               "/admin/apps/nextcloud/delete": {},
               "/admin/apps/nextcloud/attributes": {"attr_name": ["x"], "attr_field": ["email"], "attr_formula": [""],
                                                    "attr_format": [""], "attr_friendly": [""], "on_missing": "deny"}}


# ---------------------------------------------------------------- guards


def test_anonymous_is_sent_to_login(client: FlaskClient, nc: ConnectedApp) -> None:
    token = csrf_of(client.get("/login"))  # a valid token of the anonymous session: the guard, not CSRF, refuses
    before, audits = snapshot(), audit_count()
    for method, path in ROUTES:
        if method == "GET":
            resp = client.get(path)
        else:
            resp = client.post(path, data={"csrf_token": token, **POST_BODIES[path]})
        assert resp.status_code == 302, (method, path)
        assert resp.headers["Location"].startswith("/login?next=")
    assert snapshot() == before and audit_count() == audits


def test_non_admin_gets_403_everywhere_and_nothing_changes(client: FlaskClient, nc: ConnectedApp,
                                                           alice: Any) -> None:
    token = sign_in(client, "alice")
    before, audits = snapshot(), audit_count()
    for method, path in ROUTES:
        if method == "GET":
            resp = client.get(path)
        else:
            resp = client.post(path, data={"csrf_token": token, **POST_BODIES[path]})
        assert resp.status_code == 403, (method, path, resp.status_code)
        assert "<script" not in text(resp)
    assert snapshot() == before and audit_count() == audits


def test_post_without_csrf_is_refused_and_nothing_changes(client: FlaskClient, nc: ConnectedApp, admin: str) -> None:
    before, audits = snapshot(), audit_count()
    for method, path in ROUTES:
        if method == "POST":
            resp = client.post(path, data=POST_BODIES[path])
            assert resp.status_code == 400, path
            assert "Form expired" in text(resp)
            resp = client.post(path, data={"csrf_token": "forged", **POST_BODIES[path]})
            assert resp.status_code == 400, path
    assert snapshot() == before and audit_count() == audits


def test_unknown_slug_is_404(client: FlaskClient, admin: str) -> None:
    for method, path in ROUTES:
        path = path.replace("nextcloud", "no-such-app")
        if path == "/admin/apps" or path.startswith("/admin/apps/new"):
            continue
        resp = client.get(path) if method == "GET" else client.post(path, data={"csrf_token": admin,
                                                                                   **POST_BODIES.get(path, {})})
        assert resp.status_code == 404, path


# ---------------------------------------------------------------- list


def test_list_shows_status_policy_pin_and_last_sso_with_one_grouped_query(client: FlaskClient, admin: str,
                                                                          app: Flask) -> None:
    for n in range(5):
        xml = NO_KEYS.read_bytes().replace(b"http://stuff.com/endpoints/metadata.php", f"urn:test:sp{n}".encode())
        row = apps_svc.register_app(xml, slug=f"sp{n}", name=f"Service {n}")
        db.session.add(SsoEvent(at=utcnow(), event_type="sso", app_slug=row.slug, outcome="success", reason="ok"))
    db.session.commit()
    apps_svc.change_settings(apps_svc.get_app("sp1"), enabled=False, require_mfa=True, signing_key="kid-x")
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    engine = db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        resp = client.get("/admin/apps")
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert resp.status_code == 200
    assert len([s for s in statements if "sso_events" in s]) == 1
    body = text(resp)
    row1 = re.search(r'<tr id="app-row-sp1".*?</tr>', body, re.S)
    assert row1 is not None
    assert "disabled" in row1.group(0) and "required (step-up)" in row1.group(0) and "kid-x" in row1.group(0)
    assert body.count("UTC</time>") == 5
    assert "never" not in re.search(r'<tr id="app-row-sp0".*?</tr>', body, re.S).group(0)  # type: ignore[union-attr]

    only = text(client.get("/admin/apps?q=urn:test:sp3"))
    assert 'id="app-row-sp3"' in only and 'id="app-row-sp2"' not in only
    assert "No app matches" in text(client.get("/admin/apps?q=%25"))


def test_empty_list(client: FlaskClient, admin: str) -> None:
    body = text(client.get("/admin/apps"))
    assert 'id="apps-empty"' in body and "No apps connected yet" in body


def test_markup_from_names_and_metadata_is_escaped(client: FlaskClient, admin: str) -> None:
    xml = b"""<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata"
        xmlns:mdui="urn:oasis:names:tc:SAML:metadata:ui" entityID="urn:x:&lt;b&gt;bold&lt;/b&gt;">
      <md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
        <md:Extensions><mdui:UIInfo>
          <mdui:DisplayName xml:lang="en">&lt;script&gt;alert(2)&lt;/script&gt;</mdui:DisplayName>
        </mdui:UIInfo></md:Extensions>
        <md:NameIDFormat>urn:x:&lt;img src=x onerror=alert(3)&gt;</md:NameIDFormat>
        <md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
            Location="https://sp.example.com/acs?a=1&amp;b=&quot;&gt;&lt;script&gt;" index="0"/>
        <md:AttributeConsumingService index="0"><md:ServiceName xml:lang="en">s</md:ServiceName>
          <md:RequestedAttribute Name="&lt;script&gt;alert(4)&lt;/script&gt;"/></md:AttributeConsumingService>
      </md:SPSSODescriptor>
    </md:EntityDescriptor>"""
    apps_svc.register_app(xml, slug="meta")
    apps_svc.register_app(NO_KEYS.read_bytes(), slug="named", name="<script>alert(1)</script>")
    for path in ("/admin/apps", "/admin/apps/meta", "/admin/apps/named", "/admin/apps/meta/delete",
                 "/admin/apps/named/refresh"):
        body = text(client.get(path))
        assert "<script>" not in body and "<img" not in body and "<b>" not in body, path
    detail = text(client.get("/admin/apps/meta"))
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in detail
    assert "&lt;script&gt;alert(4)&lt;/script&gt;" in detail
    assert "urn:x:&lt;b&gt;bold&lt;/b&gt;" in detail
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text(client.get("/admin/apps"))


# ---------------------------------------------------------------- new app


def test_register_from_file_paste_and_by_hand(client: FlaskClient, admin: str) -> None:
    import io
    resp = client.post("/admin/apps/new", data={"csrf_token": admin, "name": "", "slug": "cloud",
                                                "metadata_file": (io.BytesIO(NEXTCLOUD.read_bytes()), "nc.xml")},
                       content_type="multipart/form-data")
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/admin/apps/cloud")
    assert "registered" in text(client.get(resp.headers["Location"]))

    resp = client.post("/admin/apps/new", data={"csrf_token": admin, "metadata_xml": NO_KEYS.read_text(),
                                                "name": "Stuff"})
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/admin/apps/stuff")

    resp = client.post("/admin/apps/new", data={
        "csrf_token": admin, "entity_id": "https://hand.example.com/sp", "acs_url": "https://hand.example.com/acs",
        "acs_binding": "HTTP-POST", "slo_url": "https://hand.example.com/slo",
        "sp_certificate": _cert_pem(), "slug": "hand"})
    assert resp.status_code == 303
    row = fresh("hand")
    assert row.source == "admin" and row.sp["acs"][0]["location"] == "https://hand.example.com/acs"
    assert row.sp["acs"][0]["is_default"] is True and row.sp["slo"][0]["location"] == "https://hand.example.com/slo"
    assert len(row.sp["signing_certs"]) == 1 and len(row.sp["encryption_certs"]) == 1
    assert {r.actor for r in audit.recent() if r.action == "app.add"} == {"web:root"}


def _cert_pem() -> str:
    return (SP_METADATA_DIR / "nextcloud-user-saml-signed-sha256.xml").read_text().split(
        "<ds:X509Certificate>")[1].split("</ds:X509Certificate>")[0].strip()


def test_register_from_url_uses_the_configured_fetch(client: FlaskClient, admin: str, app: Flask,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    def fake_fetch(url: str, **kw: Any) -> bytes:
        calls.append((url, kw))
        return NO_KEYS.read_bytes()

    monkeypatch.setattr(fetch_svc, "fetch_metadata", fake_fetch)
    resp = client.post("/admin/apps/new", data={"csrf_token": admin, "metadata_url": "https://sp.example.com/md"})
    assert resp.status_code == 303
    s = app.extensions["idp.settings"]
    assert calls == [("https://sp.example.com/md", {"allow_private": s.metadata_fetch_allow_private,
                                                    "timeout": s.metadata_fetch_timeout_s})]
    assert apps_svc.list_apps()[0].source_ref == "https://sp.example.com/md"


HAND = {"entity_id": "https://hand.example.com/sp", "acs_url": "https://hand.example.com/acs",
        "acs_binding": "HTTP-POST"}


@pytest.mark.parametrize(("data", "field", "message"), [
    ({}, "_form", "Give one source"),
    ({"metadata_xml": "<x/>", "metadata_url": "https://sp.example.com/md"}, "_form", "only one source"),
    ({"metadata_xml": "<md:EntityDescriptor"}, "metadata_xml", "well-formed"),
    ({"metadata_xml": '<!DOCTYPE x [<!ENTITY a "b">]><x/>'}, "metadata_xml", "DOCTYPE"),
    ({"metadata_xml": '<x xmlns="urn:nothing"/>'}, "metadata_xml", "not SAML 2.0 metadata"),
    ({"metadata_xml": NO_KEYS.read_text().replace("HTTP-POST", "HTTP-Artifact")}, "metadata_xml",
     "no usable HTTP-POST"),
    ({"metadata_url": "http://127.0.0.1:9/x"}, "metadata_url", "non-public address"),
    ({"metadata_url": "http://[::1]:9/x"}, "metadata_url", "non-public address"),
    ({"metadata_url": "http://169.254.169.254/latest/meta-data"}, "metadata_url", "non-public address"),
    ({"metadata_url": "file:///etc/passwd"}, "metadata_url", "http:// or https://"),
    ({"metadata_xml": NO_KEYS.read_text(), "slug": "Bad Slug"}, "slug", "lower-case"),
    ({"metadata_xml": NO_KEYS.read_text(), "slug": "new"}, "slug", "New app page"),
    ({"metadata_xml": NO_KEYS.read_text(), "name": "a\x01b"}, "name", "control characters"),
    ({**HAND, "acs_url": ""}, "acs_url", "required"),
    ({**HAND, "entity_id": ""}, "entity_id", "required"),
    ({**HAND, "acs_url": "javascript:alert(1)"}, "acs_url", "not an absolute http(s) URL"),
    ({**HAND, "slo_url": "ftp://x.example.com/slo"}, "slo_url", "not an absolute http(s) URL"),
    ({**HAND, "acs_binding": "HTTP-Artifact"}, "acs_binding", "only HTTP-POST"),
    ({**HAND, "sp_certificate": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"}, "sp_certificate",
     "certificate"),
    ({**HAND, "sp_certificate": "not base64 !!"}, "sp_certificate", "certificate"),
    ({**HAND, "entity_id": "urn:has space"}, "entity_id", "spaces"),
])
def test_new_app_refusals_store_nothing(client: FlaskClient, admin: str, data: dict[str, str], field: str,
                                        message: str) -> None:
    before, audits = snapshot(), audit_count()
    resp = client.post("/admin/apps/new", data={"csrf_token": admin, **data})
    assert resp.status_code == 422
    if field == "_form":
        assert message in text(resp) and 'id="form-error"' in text(resp)
    else:
        assert message in field_error(resp, field)
        assert f'aria-describedby="{field}-error"' in text(resp) or f'{field}-error"' in text(resp)
    assert "Traceback" not in text(resp)
    assert snapshot() == before and audit_count() == audits


def test_duplicate_entity_id_and_slug_are_refused(client: FlaskClient, admin: str, nc: ConnectedApp) -> None:
    before = snapshot()
    resp = client.post("/admin/apps/new", data={"csrf_token": admin, "metadata_xml": NEXTCLOUD.read_text()})
    assert resp.status_code == 422 and "already registered" in field_error(resp, "metadata_xml")
    resp = client.post("/admin/apps/new", data={"csrf_token": admin, "metadata_xml": NO_KEYS.read_text(),
                                                "slug": "nextcloud"})
    assert resp.status_code == 422 and "already taken" in field_error(resp, "slug")
    assert snapshot() == before


def test_aggregate_asks_which_sp_and_keeps_the_document_server_side(client: FlaskClient, admin: str) -> None:
    import io
    resp = client.post("/admin/apps/new", data={"csrf_token": admin,
                                                "metadata_file": (io.BytesIO(AGGREGATE.read_bytes()), "fed.xml")},
                       content_type="multipart/form-data")
    assert resp.status_code == 200 and 'id="pick-form"' in text(resp)
    assert SP1 in text(resp) and snapshot() == {}
    token = re.search(r'name="pick_token" value="([^"]+)"', text(resp)).group(1)  # type: ignore[union-attr]
    resp = client.post("/admin/apps/new", data={"csrf_token": admin, "pick_token": token})
    assert resp.status_code == 422 and "choose" in field_error(resp, "entity_id_pick")
    resp = client.post("/admin/apps/new", data={"csrf_token": admin, "pick_token": token,
                                                "entity_id_pick": "urn:not:there"})
    assert resp.status_code == 422 and "not in this metadata" in field_error(resp, "entity_id_pick")
    assert snapshot() == {}
    resp = client.post("/admin/apps/new", data={"csrf_token": admin, "pick_token": token, "entity_id_pick": SP1,
                                                "slug": "sp-one"})
    assert resp.status_code == 303 and fresh("sp-one").entity_id == SP1
    # the parked document is single-use
    resp = client.post("/admin/apps/new", data={"csrf_token": admin, "pick_token": token, "entity_id_pick": SP1})
    assert resp.status_code == 400
    # a typed pick on the first form goes straight through
    resp = client.post("/admin/apps/new", data={"csrf_token": admin, "metadata_xml": AGGREGATE.read_text(),
                                                "entity_id_pick": SP1.replace("sp1", "sp2")})
    assert resp.status_code == 303


# ---------------------------------------------------------------- SAML settings and policy


def test_saml_settings_saved_like_the_cli(client: FlaskClient, admin: str, nc: ConnectedApp) -> None:
    resp = client.post("/admin/apps/nextcloud/saml", data={"csrf_token": admin, **saml_form(
        attr_name=["mail", "urn:oid:2.5.4.42", "gone", ""], attr_field=["email", "first_name", "username", ""],
        attr_remove=["2"], sign="assertion", require_signed_requests="1", signature_algorithm="rsa-sha512")})
    assert resp.status_code == 303
    s = apps_svc.AppSettings.from_dict(fresh("nextcloud").settings)
    assert s.attributes == {"mail": "email", "urn:oid:2.5.4.42": "first_name"}
    assert s.sign == "assertion" and s.require_signed_requests is True and s.nameid_format == "email"
    assert s.signature_algorithm == apps_svc.SIGNATURE_ALGORITHM_NAMES["rsa-sha512"]
    rows = [r for r in audit.recent() if r.action == "app.settings"]
    assert rows and rows[0].actor == "web:root" and rows[0].after["sign"] == "assertion"

    # pin to the published key, then back to active
    kid = next(k for k in app_keys(client)).strip()
    assert client.post("/admin/apps/nextcloud/saml", data={"csrf_token": admin,
                                                           **saml_form(signing_key=kid)}).status_code == 303
    assert fresh("nextcloud").settings["signing_key"] == kid
    assert client.post("/admin/apps/nextcloud/saml", data={"csrf_token": admin, **saml_form()}).status_code == 303
    assert fresh("nextcloud").settings["signing_key"] is None


def app_keys(client: FlaskClient) -> list[str]:
    body = text(client.get("/admin/apps/nextcloud"))
    select = re.search(r'<select id="signing_key".*?</select>', body, re.S).group(0)  # type: ignore[union-attr]
    return [v for v in re.findall(r'<option value="([^"]+)"', select) if v != "active"]


def test_add_row_saves_nothing(client: FlaskClient, admin: str, nc: ConnectedApp) -> None:
    before = snapshot()
    resp = client.post("/admin/apps/nextcloud/saml", data={"csrf_token": admin, "add_row": "1",
                                                           "extra_rows": "1", **saml_form(name="Other")})
    assert resp.status_code == 200 and "Nothing is saved" in text(resp)
    assert text(resp).count('class="attr-row new"') == 2 and 'value="Other"' in text(resp)
    assert snapshot() == before


@pytest.mark.parametrize(("over", "field", "message"), [
    ({"name": ""}, "name", "required"),
    ({"nameid_format": "x509"}, "nameid_format", "must be one of"),
    ({"nameid_field": "password_hash"}, "nameid_field", "must be one of"),
    ({"sign": "none"}, "sign", "must be one of"),
    ({"signature_algorithm": "hmac-sha1"}, "signature_algorithm", "must be one of"),
    ({"signature_algorithm": "rsa-sha1"}, "signature_algorithm", "Allow SHA-1"),
    ({"encryption_algorithm": "des"}, "encryption_algorithm", "must be one of"),
    ({"encrypt_assertion": "1"}, "encrypt_assertion", "no encryption certificate"),
    ({"signing_key": "no-such-kid"}, "signing_key", "no published signing key"),
    ({"attr_name": ["mail"], "attr_field": ["password_hash"]}, "attributes", "choose a user field"),
    ({"attr_name": ["mail", "mail"], "attr_field": ["email", "username"]}, "attributes", "listed twice"),
    ({"attr_name": ["", "x"], "attr_field": ["email"]}, "attributes", "incomplete"),
])
def test_saml_settings_refusals_store_nothing(client: FlaskClient, admin: str, nc: ConnectedApp,
                                              over: dict[str, Any], field: str, message: str) -> None:
    before, audits = snapshot(), audit_count()
    resp = client.post("/admin/apps/nextcloud/saml", data={"csrf_token": admin, **saml_form(**over)})
    assert resp.status_code == 422
    assert message in field_error(resp, field)
    assert snapshot() == before and audit_count() == audits


def test_policy_saved_like_the_cli(client: FlaskClient, admin: str, nc: ConnectedApp, alice: Any) -> None:
    resp = client.post("/admin/apps/nextcloud/policy", data={"csrf_token": admin, **policy_form(
        deny_groups=["contractors"], assigned_users="alice")})
    assert resp.status_code == 303
    s = apps_svc.AppSettings.from_dict(fresh("nextcloud").settings)
    assert s.permitted == "admin-approved" and s.allow_groups == ("engineering",) and s.deny_groups == ("contractors",)
    assert s.assigned_users == ("alice",) and s.ip_ranges == ("10.0.0.0/8", "2001:db8::/32")
    assert s.ip_policy == "enforce" and s.require_mfa is True and s.session_timeout == 60
    row = next(r for r in audit.recent() if r.action == "app.settings")
    assert row.actor == "web:root" and row.after["allow_groups"] == ["engineering"]

    # unticking and clearing: every posted value is the new state
    resp = client.post("/admin/apps/nextcloud/policy", data={"csrf_token": admin, **policy_form(
        permitted="all", allow_groups=None, ip_ranges="", ip_policy="relax", require_mfa=None, session_timeout="")})
    assert resp.status_code == 303
    s = apps_svc.AppSettings.from_dict(fresh("nextcloud").settings)
    assert s.permitted == "all" and s.allow_groups == () and s.deny_groups == () and s.assigned_users == ()
    assert s.ip_ranges == () and s.require_mfa is False and s.session_timeout is None
    body = text(client.get("/admin/apps"))
    assert "All users" in body


@pytest.mark.parametrize(("over", "field", "message"), [
    ({"allow_groups": ["engineering", "ghosts"]}, "allow_groups", "no such group: 'ghosts'"),
    ({"deny_groups": ["nobody-here"]}, "deny_groups", "no such group"),
    ({"assigned_users": "alice, mallory"}, "assigned_users", "no such user: 'mallory'"),
    ({"ip_ranges": "10.0.0.0/8\n10.0.0.300/8"}, "ip_ranges", "line 2"),
    ({"ip_ranges": "not-a-cidr"}, "ip_ranges", "line 1"),
    ({"ip_policy": "sometimes"}, "ip_policy", "must be one of"),
    ({"permitted": "everyone"}, "permitted", "must be one of"),
    ({"mfa_action": "shrug"}, "mfa_action", "must be one of"),
    ({"session_timeout": "abc"}, "session_timeout", "whole number"),
    ({"session_timeout": "99999"}, "session_timeout", "whole number"),
    ({"session_timeout": "\u00b2"}, "session_timeout", "whole number"),  # a digit to str.isdigit, not to int()
    ({"session_timeout": "9" * 5000}, "session_timeout", "whole number"),
])
def test_policy_refusals_store_nothing(client: FlaskClient, admin: str, nc: ConnectedApp, alice: Any,
                                       over: dict[str, Any], field: str, message: str) -> None:
    before, audits = snapshot(), audit_count()
    resp = client.post("/admin/apps/nextcloud/policy", data={"csrf_token": admin, **policy_form(**over)})
    assert resp.status_code == 422
    assert message in field_error(resp, field).replace("&#39;", "'")
    assert snapshot() == before and audit_count() == audits


def test_enable_disable(client: FlaskClient, admin: str, nc: ConnectedApp) -> None:
    assert client.post("/admin/apps/nextcloud/status", data={"csrf_token": admin, "enabled": "0"}).status_code == 303
    assert fresh("nextcloud").enabled is False
    before = snapshot()
    assert client.post("/admin/apps/nextcloud/status", data={"csrf_token": admin, "enabled": "x"}).status_code == 400
    assert snapshot() == before
    assert client.post("/admin/apps/nextcloud/status", data={"csrf_token": admin, "enabled": "1"}).status_code == 303
    assert fresh("nextcloud").enabled is True
    assert [r.after for r in audit.recent() if r.action == "app.settings"][:2] == [{"enabled": True},
                                                                                   {"enabled": False}]


@pytest.mark.parametrize("rows", ["\u00b2", "9" * 5000, "-1", ""])
def test_add_row_with_a_strange_row_count_is_not_an_error(client: FlaskClient, admin: str, nc: ConnectedApp,
                                                          rows: str) -> None:
    resp = client.post("/admin/apps/nextcloud/saml",
                       data={"csrf_token": admin, **saml_form(add_row="1", extra_rows=rows)})
    assert resp.status_code == 200 and "Row added" in text(resp)


def test_app_whose_metadata_lost_its_encryption_certificate_can_still_be_disabled(
        client: FlaskClient, admin: str, nc: ConnectedApp) -> None:
    """Encryption was on, then a metadata refresh removed the certificate: the app must stay manageable
    (its SSO fails with app_misconfigured), while turning encryption on is still refused."""
    row = fresh("nextcloud")
    row.settings = {**row.settings, "encrypt_assertion": True}
    row.sp = {**row.sp, "encryption_certs": []}
    db.session.commit()
    assert client.post("/admin/apps/nextcloud/status", data={"csrf_token": admin, "enabled": "0"}).status_code == 303
    assert fresh("nextcloud").enabled is False
    with pytest.raises(ServiceError, match="no encryption certificate"):
        apps_svc.change_settings(fresh("nextcloud"), encrypt_assertion=True, encryption_algorithm="aes128-gcm")


def test_detail_shows_idp_values_from_the_base_url(client: FlaskClient, admin: str, nc: ConnectedApp) -> None:
    cookie = client.get_cookie("idp_session")
    assert cookie is not None
    client.set_cookie("idp_session", cookie.value, domain="evil.example.com")
    resp = client.get("/admin/apps/nextcloud", base_url="http://evil.example.com")
    assert resp.status_code == 200
    body = text(resp)
    assert "evil.example.com" not in body
    assert "http://localhost/apps/nextcloud/sso" in body
    assert "http://localhost/saml/metadata?app=nextcloud&amp;download=1" in body
    assert "http://localhost/saml/certificate?app=nextcloud" in body
    assert "http://localhost/saml/sso" in body and "http://localhost/saml/slo" in body
    assert "http://localhost:8080/apps/user_saml/saml/acs" in body  # ACS from metadata
    assert "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress" in body


# ---------------------------------------------------------------- refresh and delete


def _preview(client: FlaskClient, admin: str, xml: str) -> Any:
    return client.post("/admin/apps/nextcloud/refresh", data={"csrf_token": admin, "metadata_xml": xml})


def _token(resp: Any) -> str:
    m = re.search(r'name="token" value="([^"]+)"', text(resp))
    assert m, "no apply form"
    return m.group(1)


def test_refresh_previews_then_applies_once(client: FlaskClient, admin: str, nc: ConnectedApp) -> None:
    new = NEXTCLOUD.read_text().replace("/apps/user_saml/saml/acs", "/acs-new")
    before = snapshot()
    resp = _preview(client, admin, new)
    assert resp.status_code == 200 and 'id="refresh-diff"' in text(resp)
    assert "http://localhost:8080/acs-new" in text(resp)
    assert snapshot() == before  # a preview changes nothing
    token = _token(resp)
    resp = client.post("/admin/apps/nextcloud/refresh/apply", data={"csrf_token": admin, "token": token})
    assert resp.status_code == 303
    assert fresh("nextcloud").sp["acs"][0]["location"] == "http://localhost:8080/acs-new"
    assert next(r for r in audit.recent() if r.action == "app.metadata").actor == "web:root"
    # single use
    resp = client.post("/admin/apps/nextcloud/refresh/apply", data={"csrf_token": admin, "token": token})
    assert resp.status_code == 400
    # the same document again: no changes, nothing to apply
    resp = _preview(client, admin, new)
    assert 'id="no-changes"' in text(resp) and 'name="token"' not in text(resp)


def test_refresh_refusals(client: FlaskClient, admin: str, nc: ConnectedApp) -> None:
    before = snapshot()
    resp = _preview(client, admin, NO_KEYS.read_text())
    assert resp.status_code == 422 and "must describe this app's entityID" in field_error(resp, "metadata_xml").replace(
        "&#39;", "'")
    resp = _preview(client, admin, "<broken")
    assert resp.status_code == 422 and "well-formed" in field_error(resp, "metadata_xml")
    resp = client.post("/admin/apps/nextcloud/refresh", data={"csrf_token": admin})
    assert resp.status_code == 422 and 'id="form-error"' in text(resp)
    resp = client.post("/admin/apps/nextcloud/refresh", data={"csrf_token": admin,
                                                              "metadata_url": "http://10.0.0.1/md"})
    assert resp.status_code == 422 and "non-public" in field_error(resp, "metadata_url")
    resp = client.post("/admin/apps/nextcloud/refresh/apply", data={"csrf_token": admin, "token": "made-up"})
    assert resp.status_code == 400
    assert snapshot() == before


def test_refresh_apply_refused_when_metadata_changed_meanwhile(client: FlaskClient, admin: str,
                                                               nc: ConnectedApp) -> None:
    token = _token(_preview(client, admin, NEXTCLOUD.read_text().replace("/saml/acs", "/acs-a")))
    apps_svc.update_metadata(fresh("nextcloud"), NEXTCLOUD.read_bytes().replace(b"/saml/acs", b"/acs-b"))
    db.session.commit()  # the test is the outer layer here (another admin's change, committed)
    before = snapshot()
    resp = client.post("/admin/apps/nextcloud/refresh/apply", data={"csrf_token": admin, "token": token})
    assert resp.status_code == 409
    assert snapshot() == before


def test_refresh_token_is_bound_to_its_app(client: FlaskClient, admin: str, nc: ConnectedApp) -> None:
    apps_svc.register_app(NO_KEYS.read_bytes(), slug="other")
    token = _token(_preview(client, admin, NEXTCLOUD.read_text().replace("/saml/acs", "/acs-a")))
    before = snapshot()
    resp = client.post("/admin/apps/other/refresh/apply", data={"csrf_token": admin, "token": token})
    assert resp.status_code == 400
    assert snapshot() == before


def test_refresh_from_stored_url(client: FlaskClient, admin: str, monkeypatch: pytest.MonkeyPatch) -> None:
    apps_svc.register_app(TWO_ENC.read_bytes(), slug="remote", source="admin", source_ref="https://sp.example/md")
    page = text(client.get("/admin/apps/remote/refresh"))
    assert 'value="https://sp.example/md"' in page
    served = TWO_ENC.read_bytes().replace(b"http://lingon.catalogix.se:8087/", b"https://new.example/acs")
    monkeypatch.setattr(fetch_svc, "fetch_metadata", lambda url, **kw: served)
    resp = client.post("/admin/apps/remote/refresh", data={"csrf_token": admin, "metadata_url": "https://sp.example/md"})
    assert resp.status_code == 200 and "https://new.example/acs" in text(resp)
    resp = client.post("/admin/apps/remote/refresh/apply", data={"csrf_token": admin, "token": _token(resp)})
    assert resp.status_code == 303
    row = fresh("remote")
    assert "https://new.example/acs" in [a["location"] for a in row.sp["acs"]]
    assert row.source_ref == "https://sp.example/md"


def test_delete_needs_confirmation(client: FlaskClient, admin: str, nc: ConnectedApp) -> None:
    page = client.get("/admin/apps/nextcloud/delete")
    assert page.status_code == 200 and 'id="confirm-delete"' in text(page)
    assert apps_svc.list_apps()  # GET deleted nothing
    resp = client.post("/admin/apps/nextcloud/delete", data={"csrf_token": admin})
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/admin/apps")
    assert apps_svc.list_apps() == []
    row = next(r for r in audit.recent() if r.action == "app.remove")
    assert row.actor == "web:root" and row.target == "nextcloud"


def test_detail_shows_the_nameid_allow_list(client: FlaskClient, admin: str, nc: ConnectedApp) -> None:
    apps_svc.change_settings(nc, allowed_nameid_formats=("urn:oasis:names:tc:SAML:2.0:nameid-format:transient",))
    db.session.commit()
    body = client.get("/admin/apps/nextcloud").get_data(as_text=True)
    section = body.split('id="allowed-nameid-formats"', 1)[1].split("</dd>", 1)[0]
    assert "urn:oasis:names:tc:SAML:2.0:nameid-format:transient" in section and "unspecified" in section


def test_detail_shows_the_idp_initiated_settings(client: FlaskClient, admin: str, nc: ConnectedApp) -> None:
    apps_svc.change_settings(nc, start_url="https://nc.example.com/apps/files/", relay_state_allow=("files",))
    db.session.commit()
    body = client.get("/admin/apps/nextcloud").get_data(as_text=True)
    section = body.split('id="idp-initiated"', 1)[1].split("</dd>", 1)[0]
    assert "https://nc.example.com/apps/files/" in section and "<code>files</code>" in section
    apps_svc.change_settings(nc, idp_initiated=False)
    db.session.commit()
    body = client.get("/admin/apps/nextcloud").get_data(as_text=True)
    assert body.split('id="idp-initiated"', 1)[1].split("</dd>", 1)[0].startswith(">off")


def test_console_refuses_sign_response_when_metadata_wants_signed_assertions(client: FlaskClient, admin: str,
                                                                               nc: ConnectedApp) -> None:
    assert nc.sp["want_assertions_signed"]
    resp = client.post("/admin/apps/nextcloud/saml", data={**saml_form(sign="response"), "csrf_token": admin})
    assert resp.status_code == 422, resp.status_code
    assert "WantAssertionsSigned" in field_error(resp, "sign")
    db.session.expire_all()
    assert apps_svc.AppSettings.from_dict(apps_svc.get_app("nextcloud").settings).sign == "both"
