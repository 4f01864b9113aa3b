"""Issue 15, per-app IdP entity ID (issuer): `idp apps set --issuer / --clear-issuer`, the app's own IdP metadata at
/saml/metadata/<slug>, and everything SAML the app is sent (Responses, Assertions, error Responses, LogoutRequests,
LogoutResponses) naming it, checked with the independent SPs: one configured from the per-app metadata completes the
round trip, one configured with the IdP's global entity ID refuses the same kind of response."""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from lxml import etree

from idp.extensions import db
from idp.models import AdminAudit
from idp.saml.constants import NAMEID_EMAIL
from idp.services import apps as apps_svc

from ..sp_harness import NS, SPValidationError, TestSP
from ..webclient import saml_form
from .conftest import PASSWORD, SP_KINDS

KINDS = ["pysaml2", "onelogin"]
GLOBAL = "http://localhost/saml/metadata"
ISSUER = "https://idp.example.com/tenants/acme"
LIBRARY_REFUSAL = re.compile(r"pysaml2 rejected|pysaml2 did not accept|python3-saml rejected")


def cli(app: Flask, *args: str) -> Any:
    result = app.test_cli_runner().invoke(args=list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result


def show(app: Flask, slug: str) -> dict[str, Any]:
    r = cli(app, "apps", "show", slug, "--format", "json")
    assert r.exit_code == 0, r.output
    return dict(json.loads(r.stdout))


def entity_id_of(metadata_xml: str | bytes) -> str:
    data = metadata_xml.encode() if isinstance(metadata_xml, str) else metadata_xml
    return str(etree.fromstring(data).get("entityID"))


def issuers(saml_response_b64: str) -> list[str]:
    """The Issuer of the Response and of each (plain) Assertion, in document order."""
    root = etree.fromstring(base64.b64decode(saml_response_b64))
    return [(el.text or "").strip() for el in root.iterfind(".//saml:Issuer", NS)]


def per_app_sp(client: Any, registered: TestSP, tmp_path: Any, kind: str, name: str = "per-app") -> TestSP:
    """The same SP (entityID, keys, ACS, SLO) configured from the app's own IdP metadata."""
    md = client.get(f"/saml/metadata/{registered.slug}").get_data(as_text=True)  # type: ignore[attr-defined]
    return SP_KINDS[kind](tmp_path / name, md, base_url=registered.base_url, keypair=registered.keypair)


def launch(browser: Any, slug: str) -> Any:
    resp = browser.get(f"/apps/{slug}/sso")
    if resp.status_code == 200 and 'name="password"' in resp.get_data(as_text=True):
        resp = browser.login(resp, "alice", PASSWORD)
    return saml_form(resp)


# ---------------------------------------------------------------- the CLI


def test_issuer_set_shown_audited_and_cleared(app: Flask, make_sp: Any) -> None:
    sp = make_sp("onelogin")
    before = show(app, sp.slug)
    assert before["idp_entity_id"] == GLOBAL and before["settings"]["issuer"] is None
    assert before["idp_metadata_url"] == f"http://localhost/saml/metadata/{sp.slug}"
    r = cli(app, "apps", "set", sp.slug, "--issuer", ISSUER)
    assert r.exit_code == 0, r.output
    shown = show(app, sp.slug)
    assert shown["idp_entity_id"] == ISSUER and shown["settings"]["issuer"] == ISSUER
    text = cli(app, "apps", "show", sp.slug).stdout
    assert f"idp_entity_id: {ISSUER}" in text and f"issuer: {ISSUER}" in text
    row = db.session.query(AdminAudit).filter_by(action="app.settings").order_by(AdminAudit.id.desc()).first()
    assert row is not None and row.after == {"issuer": ISSUER} and row.before == {"issuer": None}
    assert row.actor.startswith("cli")
    # a URN is an absolute URI too
    assert cli(app, "apps", "set", sp.slug, "--issuer", "urn:example:idp:acme").exit_code == 0
    assert show(app, sp.slug)["idp_entity_id"] == "urn:example:idp:acme"
    assert cli(app, "apps", "set", sp.slug, "--clear-issuer").exit_code == 0
    shown = show(app, sp.slug)
    assert shown["idp_entity_id"] == GLOBAL and shown["settings"]["issuer"] is None


@pytest.mark.parametrize(("value", "fragment"), [
    ("ftp://idp.example.com/x", "absolute URI"),
    ("idp.example.com/tenant", "absolute URI"),
    ("https://", "absolute URI"),
    ("https:/idp.example.com", "absolute URI"),
    ("https://[broken/x", "absolute URI"),
    ("urn:acme", "absolute URI"),
    ("javascript:alert(1)", "absolute URI"),
    ("https://idp.example.com/a b", "spaces or control characters"),
    ("https://idp.example.com/\x07", "spaces or control characters"),
    ("https://idp.example.com/" + "x" * 1002, "1-1024 characters"),
    ("", "1-1024 characters"),
])
def test_issuer_refusals_write_nothing(app: Flask, make_sp: Any, value: str, fragment: str) -> None:
    sp = make_sp("onelogin")
    audits = db.session.query(AdminAudit).count()
    r = cli(app, "apps", "set", sp.slug, "--issuer", value)
    assert r.exit_code == 1 and fragment in r.stderr, r.output
    assert show(app, sp.slug)["settings"]["issuer"] is None
    assert db.session.query(AdminAudit).count() == audits


def test_issuer_may_not_be_an_sp_entity_id(app: Flask, make_sp: Any) -> None:
    sp1, sp2 = make_sp("onelogin"), make_sp("pysaml2")
    audits = db.session.query(AdminAudit).count()
    for target in (sp2.entity_id, sp1.entity_id):   # another app's SP, and the app's own
        r = cli(app, "apps", "set", sp1.slug, "--issuer", target)
        assert r.exit_code == 1 and "is the SP entityID of app" in r.stderr, r.output
    assert show(app, sp1.slug)["settings"]["issuer"] is None
    assert db.session.query(AdminAudit).count() == audits
    r = cli(app, "apps", "set", sp1.slug, "--issuer", ISSUER, "--clear-issuer")
    assert r.exit_code == 1 and "not both" in r.stderr


def test_two_apps_may_share_an_issuer(app: Flask, make_sp: Any) -> None:
    sp1, sp2 = make_sp("onelogin"), make_sp("pysaml2")
    for sp in (sp1, sp2):
        assert cli(app, "apps", "set", sp.slug, "--issuer", ISSUER).exit_code == 0
    assert show(app, sp2.slug)["idp_entity_id"] == ISSUER


# ---------------------------------------------------------------- metadata


def test_per_app_metadata_route(app: Flask, client: Any, make_sp: Any) -> None:
    sp = make_sp("onelogin")
    for path in (f"/saml/metadata/{sp.slug}", f"/saml/metadata?app={sp.slug}", "/saml/metadata"):
        resp = client.get(path)
        assert resp.status_code == 200 and entity_id_of(resp.get_data()) == GLOBAL, path
    assert cli(app, "apps", "set", sp.slug, "--issuer", ISSUER).exit_code == 0
    per_app = client.get(f"/saml/metadata/{sp.slug}")
    assert entity_id_of(per_app.get_data()) == ISSUER
    assert entity_id_of(client.get(f"/saml/metadata?app={sp.slug}").get_data()) == ISSUER
    assert entity_id_of(client.get("/saml/metadata").get_data()) == GLOBAL   # the IdP's own is unchanged
    # the same endpoints and keys as the IdP's metadata
    ours, theirs = etree.fromstring(per_app.get_data()), etree.fromstring(client.get("/saml/metadata").get_data())

    def endpoints(root: Any) -> list[tuple[str, str, str]]:
        return [(el.tag, el.get("Binding"), el.get("Location")) for el in root.iter()
                if el.get("Location") is not None]

    def certs(root: Any) -> list[str]:
        return [el.text for el in root.iterfind(".//ds:X509Certificate", NS)]

    assert endpoints(ours) == endpoints(theirs) and certs(ours) == certs(theirs) and certs(ours)
    download = client.get(f"/saml/metadata/{sp.slug}?download=1")
    assert f"idp-metadata-{sp.slug}.xml" in download.headers["Content-Disposition"]
    assert client.get("/saml/metadata/no-such-app").status_code == 404


# ---------------------------------------------------------------- SSO round trips


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_with_per_app_issuer(app: Flask, client: Any, make_sp: Any, browser: Any, alice: Any,
                                        tmp_path: Any, kind: str) -> None:
    global_sp = make_sp(kind)   # configured with the IdP's global metadata
    # control: before the change the globally configured SP accepts an IdP-initiated response
    form = launch(browser, global_sp.slug)
    assert global_sp.process_response(form.saml_response, None).issuer == GLOBAL

    assert cli(app, "apps", "set", global_sp.slug, "--issuer", ISSUER).exit_code == 0
    sp = per_app_sp(client, global_sp, tmp_path, kind)
    assert sp.idp.entity_id == ISSUER
    req = sp.authn_request("redirect")
    form = saml_form(browser.sso(req))
    assert form is not None and form.action == sp.acs_url
    res = sp.process_response(form.saml_response, req.request_id)
    assert res.issuer == ISSUER and res.name_id == "alice"
    assert issuers(form.saml_response) == [ISSUER, ISSUER]   # Response and Assertion
    assert GLOBAL not in base64.b64decode(form.saml_response).decode()
    # IdP-initiated too; the SP still configured with the global entity ID refuses it (its library does)
    form = launch(browser, global_sp.slug)
    assert sp.process_response(form.saml_response, None).issuer == ISSUER
    with pytest.raises(SPValidationError) as refused:
        global_sp.process_response(form.saml_response, None)
    assert LIBRARY_REFUSAL.search(str(refused.value)), str(refused.value)
    # cleared: the global entity ID again
    assert cli(app, "apps", "set", global_sp.slug, "--clear-issuer").exit_code == 0
    form = launch(browser, global_sp.slug)
    assert global_sp.process_response(form.saml_response, None).issuer == GLOBAL


def test_other_apps_keep_the_global_issuer(app: Flask, make_sp: Any, browser: Any, alice: Any) -> None:
    tenant, other = make_sp("onelogin"), make_sp("pysaml2")
    assert cli(app, "apps", "set", tenant.slug, "--issuer", ISSUER).exit_code == 0
    req = other.authn_request("redirect")
    form = saml_form(browser.sso(req, "alice", PASSWORD))
    assert other.process_response(form.saml_response, req.request_id).issuer == GLOBAL


def test_error_response_names_the_per_app_issuer(app: Flask, client: Any, make_sp: Any, browser: Any,
                                                 alice: Any, tmp_path: Any) -> None:
    registered = make_sp("onelogin", settings={"nameid_format": "persistent"})
    assert cli(app, "apps", "set", registered.slug, "--issuer", ISSUER).exit_code == 0
    sp = per_app_sp(client, registered, tmp_path, "onelogin")
    req = sp.authn_request("redirect", name_id_format=NAMEID_EMAIL)
    form = saml_form(browser.sso(req, "alice", PASSWORD))
    assert form is not None and form.action == sp.acs_url
    xml = base64.b64decode(form.saml_response).decode()
    assert "InvalidNameIDPolicy" in xml and "Assertion" not in xml
    assert issuers(form.saml_response) == [ISSUER]


# ---------------------------------------------------------------- single logout


def _deliver(resp: Any) -> tuple[str, Any]:
    if resp.status_code in (302, 303):
        return "redirect", resp.headers["Location"]
    form = saml_form(resp)
    assert form is not None, resp.get_data(as_text=True)[:300]
    return "post", form


@pytest.mark.parametrize("kind", KINDS)
def test_logout_messages_name_the_per_app_issuer(app: Flask, client: Any, make_sp: Any, browser: Any, alice: Any,
                                                 tmp_path: Any, kind: str) -> None:
    registered, other = make_sp(kind), make_sp(kind)
    assert cli(app, "apps", "set", registered.slug, "--issuer", ISSUER).exit_code == 0
    tenant = per_app_sp(client, registered, tmp_path, kind)

    def sign_in(sp: TestSP) -> Any:
        req = sp.authn_request("redirect")
        form = saml_form(browser.sso(req, "alice", PASSWORD))
        return sp.process_response(form.saml_response, req.request_id)

    # the other app logs out: the tenant is sent a LogoutRequest issued by the per-app entity ID
    r_tenant, r_other = sign_in(tenant), sign_in(other)
    logout = other.logout_request(r_other.name_id, r_other.session_index, "redirect")
    how, where = _deliver(browser.send(logout))
    assert how == "redirect" and where.startswith(tenant.slo_url)
    query = urlsplit(where).query
    request_xml = _inflate(parse_qs(query)["SAMLRequest"][0])
    assert issuers_of(request_xml) == [ISSUER]
    name_id, _ = tenant.process_logout_request("redirect", query=query)   # checks the Issuer and signature
    assert name_id == r_tenant.name_id
    answer = tenant.logout_response("redirect", relay_state=parse_qs(query)["RelayState"][0])
    how, where = _deliver(browser.send(answer))
    # the other app's LogoutResponse keeps the IdP's global entity ID
    assert how == "redirect"
    assert other.process_logout_response("redirect", query=urlsplit(where).query,
                                         request_id=logout.request_id).endswith(":Success")

    # the tenant logs out itself: its LogoutResponse names the per-app entity ID
    r_tenant = sign_in(tenant)
    logout = tenant.logout_request(r_tenant.name_id, r_tenant.session_index, "post", relay_state="bye")
    how, where = _deliver(browser.send(logout))
    if how == "redirect":
        query = urlsplit(where).query
        assert issuers_of(_inflate(parse_qs(query)["SAMLResponse"][0])) == [ISSUER]
        status = tenant.process_logout_response("redirect", query=query, request_id=logout.request_id)
    else:
        assert issuers_of(base64.b64decode(where.fields["SAMLResponse"])) == [ISSUER]
        status = tenant.process_logout_response("post", saml_response_b64=where.fields["SAMLResponse"],
                                                request_id=logout.request_id)
    assert status.endswith(":Success")


def _inflate(value: str) -> bytes:
    import zlib
    return zlib.decompress(base64.b64decode(value), -15)


def issuers_of(xml: bytes) -> list[str]:
    return [(el.text or "").strip() for el in etree.fromstring(xml).iterfind(".//saml:Issuer", NS)]


# ---------------------------------------------------------------- SP metadata naming a per-app issuer


def test_sp_metadata_with_a_per_app_issuer_as_entity_id_is_refused(app: Flask, make_sp: Any, tmp_path: Any) -> None:
    sp = make_sp("onelogin")
    assert cli(app, "apps", "set", sp.slug, "--issuer", ISSUER).exit_code == 0
    impostor = make_sp("onelogin", register=False, base_url="https://impostor.example.com")
    path = tmp_path / "impostor.xml"
    path.write_text(impostor.metadata_xml().replace(impostor.entity_id, ISSUER))
    apps_before = [a.slug for a in apps_svc.list_apps()]
    audits = db.session.query(AdminAudit).count()
    r = cli(app, "apps", "add", "--metadata", str(path))
    assert r.exit_code == 1 and f"IdP entity ID app '{sp.slug}' uses" in r.stderr, r.output
    assert [a.slug for a in apps_svc.list_apps()] == apps_before
    assert db.session.query(AdminAudit).count() == audits
