"""HTTP-Artifact responses resolved over SOAP by pysaml2's SP (saml-bindings-2.0-os §3.6, §3.2).

The pysaml2 SP's metadata lists an HTTP-Artifact ACS; the IdP redirects the browser there with SAMLart, and the SP
resolves the artifact exactly as pysaml2 does (artifact2destination from the IdP metadata's
ArtifactResolutionService, a signed ArtifactResolve in a SOAP envelope), the SOAP POST going through the Flask
test client. Refusals: unsigned, another app, replayed, expired, unknown; each is an `artifact` event.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from lxml import etree

from idp.services import apps as apps_svc

from ..sp_harness import BINDING_ARTIFACT, BINDING_POST, SPValidationError
from ..webclient import local_path, saml_form
from .conftest import PASSWORD, events, last_event

NS = {"samlp": "urn:oasis:names:tc:SAML:2.0:protocol", "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
      "ds": "http://www.w3.org/2000/09/xmldsig#", "md": "urn:oasis:names:tc:SAML:2.0:metadata",
      "soap": "http://schemas.xmlsoap.org/soap/envelope/"}
IDP_ENTITY = "http://localhost/saml/metadata"
STATUS_SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
CORPUS = Path(__file__).resolve().parent.parent / "data" / "sp-metadata"


def soap_post(client: Any) -> Any:
    def post(url: str, body: str | bytes, headers: dict[str, str]) -> str:
        data = body if isinstance(body, bytes) else body.encode("utf-8")
        resp = client.post(local_path(url), data=data, headers={"Content-Type": "text/xml"})
        assert resp.status_code == 200, resp.get_data(as_text=True)[:500]
        assert resp.mimetype == "text/xml"
        return resp.get_data(as_text=True)
    return post


def artifact_sp(make_sp: Any, **kw: Any) -> Any:
    return make_sp("pysaml2", artifact_acs=True, **kw)


def sign_in_for_artifact(browser: Any, sp: Any, **kw: Any) -> tuple[Any, str, dict[str, list[str]]]:
    req = sp.authn_request("redirect", relay_state="rs-art", protocol_binding=BINDING_ARTIFACT, **kw)
    resp = browser.sso(req, "alice", PASSWORD)
    assert resp.status_code == 302, resp.get_data(as_text=True)[:500]
    location = resp.headers["Location"]
    assert location.startswith(sp.acs_url + "?")
    params = parse_qs(urlsplit(location).query)
    return req, params["SAMLart"][0], params


def raw_resolve(client: Any, sp: Any, artifact: str, *, sign: bool = True) -> etree._Element:
    """A pysaml2-built ArtifactResolve, POSTed as it is; the ArtifactResponse element of the answer."""
    from saml2.s_utils import sid

    _mid, req = sp.client.create_artifact_resolve(artifact, "http://localhost/saml/artifact", sid(), sign=sign,
                                                  sign_alg=sp.sig_alg, digest_alg=sp.digest_alg)
    body = sp.client.use_soap(req, "http://localhost/saml/artifact")["data"]
    data = body if isinstance(body, bytes) else body.encode("utf-8")
    resp = client.post("/saml/artifact", data=data, headers={"Content-Type": "text/xml"})
    assert resp.status_code == 200, resp.get_data(as_text=True)[:500]
    root = etree.fromstring(resp.get_data())
    art_resp = root.find("soap:Body/samlp:ArtifactResponse", NS)
    assert art_resp is not None
    assert art_resp.find("ds:Signature", NS) is not None, "every ArtifactResponse is signed"
    return art_resp


def status_of(art_resp: etree._Element) -> tuple[str | None, str | None]:
    top = art_resp.find("samlp:Status/samlp:StatusCode", NS)
    sub = top.find("samlp:StatusCode", NS) if top is not None else None
    return (top.get("Value") if top is not None else None, sub.get("Value") if sub is not None else None)


# ---------------------------------------------------------------- metadata

def test_idp_metadata_publishes_the_artifact_resolution_service(client):
    root = etree.fromstring(client.get("/saml/metadata").get_data())
    ars = root.findall("md:IDPSSODescriptor/md:ArtifactResolutionService", NS)
    assert [(e.get("Binding"), e.get("Location"), e.get("index")) for e in ars] == [
        ("urn:oasis:names:tc:SAML:2.0:bindings:SOAP", "http://localhost/saml/artifact", "0")]
    # schema order: KeyDescriptor*, ArtifactResolutionService*, SingleLogoutService*, ...
    names = [etree.QName(e).localname for e in root.find("md:IDPSSODescriptor", NS)]
    assert names.index("ArtifactResolutionService") < names.index("SingleLogoutService")
    assert names.index("KeyDescriptor") < names.index("ArtifactResolutionService")


# ---------------------------------------------------------------- the round trip

def test_artifact_round_trip_with_pysaml2(make_sp, browser, client, alice):
    sp = artifact_sp(make_sp, settings={"attributes": {"email": "email"}})
    req, artifact, params = sign_in_for_artifact(browser, sp)
    assert params["RelayState"] == ["rs-art"]
    raw = base64.b64decode(artifact)
    assert len(raw) == 44 and raw[:2] == b"\x00\x04" and raw[2:4] == b"\x00\x00"
    assert raw[4:24] == hashlib.sha1(IDP_ENTITY.encode()).digest()   # noqa: S324 - the spec's SourceID
    issued = last_event()
    assert (issued.event_type, issued.reason, issued.app_slug) == ("sso", "ok", sp.slug)
    assert issued.detail["response_binding"] == "artifact"

    saml_response = sp.resolve_artifact(artifact, soap_post(client))
    result = sp.process_response(saml_response, req.request_id)   # signature, audience, destination, subject
    assert result.name_id == "alice"
    assert result.attributes["email"] == ["alice@example.com"]
    assert result.in_response_to == req.request_id
    assert result.issuer == IDP_ENTITY
    ev = last_event()
    assert (ev.event_type, ev.outcome, ev.reason, ev.app_slug, ev.binding) == (
        "artifact", "success", "ok", sp.slug, "soap")
    assert ev.response_id == issued.response_id
    # independent verifier of the Response inside
    from signxml import XMLVerifier
    cert = client.application.extensions["idp.keystore"].current().active.cert_pem
    XMLVerifier().verify(base64.b64decode(saml_response), x509_cert=cert, expect_references=1)


def test_acs_index_and_default_choose_the_binding(make_sp, browser, alice):
    sp = artifact_sp(make_sp)
    # index 1 is the HTTP-Artifact ACS: an artifact
    req = sp.authn_request("redirect", acs_index=1)
    resp = browser.sso(req, "alice", PASSWORD)
    assert resp.status_code == 302 and "SAMLart=" in resp.headers["Location"]
    # index 0 is the HTTP-POST ACS: a form
    req = sp.authn_request("redirect", acs_index=0)
    assert saml_form(browser.sso(req, "alice", PASSWORD)) is not None
    # the URL both share, ProtocolBinding HTTP-POST: a form
    req = sp.authn_request("redirect", protocol_binding=BINDING_POST)
    assert saml_form(browser.sso(req, "alice", PASSWORD)) is not None


def test_idp_initiated_follows_a_default_artifact_acs(make_sp, browser, client, alice):
    sp = artifact_sp(make_sp, register=False)
    xml = sp.metadata_xml().replace('index="0" isDefault="true"', 'index="0"').replace(
        'Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Artifact" Location="https://sp1.example.com/acs" '
        'index="1"', 'Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Artifact" '
        'Location="https://sp1.example.com/acs" index="1" isDefault="true"')
    assert 'isDefault="true"' in xml and "HTTP-Artifact" in xml
    row = apps_svc.register_app(xml.encode(), slug="art-default")
    from idp.extensions import db
    db.session.commit()
    resp = browser.sso_path(f"/apps/{row.slug}/sso", "alice", PASSWORD)
    assert resp.status_code == 302, resp.get_data(as_text=True)[:300]
    artifact = parse_qs(urlsplit(resp.headers["Location"]).query)["SAMLart"][0]
    result = sp.process_response(sp.resolve_artifact(artifact, soap_post(client)), None)
    assert result.name_id == "alice"


def test_error_response_for_an_artifact_acs_travels_by_artifact(make_sp, browser, client, alice):
    sp = artifact_sp(make_sp)
    req = sp.authn_request("redirect", protocol_binding=BINDING_ARTIFACT, is_passive=True)
    resp = browser.send(req)   # no session, IsPassive: NoPassive back to the SP
    assert resp.status_code == 302
    artifact = parse_qs(urlsplit(resp.headers["Location"]).query)["SAMLart"][0]
    saml_response = sp.resolve_artifact(artifact, soap_post(client))
    inner = etree.fromstring(base64.b64decode(saml_response))
    codes = [c.get("Value") for c in inner.iter("{urn:oasis:names:tc:SAML:2.0:protocol}StatusCode")]
    assert codes[-1] == "urn:oasis:names:tc:SAML:2.0:status:NoPassive"
    with pytest.raises(SPValidationError):
        sp.process_response(saml_response, req.request_id)


# ---------------------------------------------------------------- refusals

def test_unsigned_artifact_resolve_is_refused(make_sp, browser, client, alice):
    sp = artifact_sp(make_sp)
    _req, artifact, _ = sign_in_for_artifact(browser, sp)
    art_resp = raw_resolve(client, sp, artifact, sign=False)
    assert status_of(art_resp) == ("urn:oasis:names:tc:SAML:2.0:status:Requester",
                                   "urn:oasis:names:tc:SAML:2.0:status:RequestDenied")
    assert art_resp.find("samlp:Response", NS) is None
    ev = last_event()
    assert (ev.event_type, ev.reason, ev.app_slug, ev.binding) == ("artifact", "bad_signature", sp.slug, "soap")
    # the artifact was not consumed: the app can still resolve it, signed
    assert raw_resolve(client, sp, artifact).find("samlp:Response", NS) is not None


def test_resolve_by_another_app_is_refused(make_sp, browser, client, alice):
    sp = artifact_sp(make_sp)
    other = artifact_sp(make_sp)
    _req, artifact, _ = sign_in_for_artifact(browser, sp)
    art_resp = raw_resolve(client, other, artifact)
    assert status_of(art_resp) == (STATUS_SUCCESS, None)    # core §3.5.3: Success, no message
    assert art_resp.find("samlp:Response", NS) is None
    ev = last_event()
    assert (ev.event_type, ev.outcome, ev.reason, ev.app_slug) == (
        "artifact", "denied", "artifact_wrong_app", other.slug)
    assert raw_resolve(client, sp, artifact).find("samlp:Response", NS) is not None


def test_replayed_artifact_is_refused(make_sp, browser, client, alice):
    sp = artifact_sp(make_sp)
    _req, artifact, _ = sign_in_for_artifact(browser, sp)
    assert raw_resolve(client, sp, artifact).find("samlp:Response", NS) is not None
    again = raw_resolve(client, sp, artifact)
    assert status_of(again) == (STATUS_SUCCESS, None) and again.find("samlp:Response", NS) is None
    assert last_event().reason == "artifact_replayed"
    with pytest.raises(SPValidationError, match="carries no Response"):
        sp.resolve_artifact(artifact, soap_post(client))


def test_expired_artifact_is_refused(make_sp, browser, client, alice):
    sp = artifact_sp(make_sp)
    _req, artifact, _ = sign_in_for_artifact(browser, sp)
    # age the stored artifact past its lifetime (IDP_ARTIFACT_TTL), as time passing would
    from idp.extensions import db
    from idp.models import PendingRequest
    handle = base64.b64decode(artifact)[24:].hex()
    row = db.session.get(PendingRequest, f"art_{handle}")
    row.data = {**row.data, "expires_at": "2000-01-01T00:00:00+00:00"}
    db.session.commit()
    art_resp = raw_resolve(client, sp, artifact)
    assert status_of(art_resp) == (STATUS_SUCCESS, None) and art_resp.find("samlp:Response", NS) is None
    assert last_event().reason == "artifact_expired"
    db.session.expire_all()
    assert db.session.get(PendingRequest, f"art_{handle}") is None, "an expired artifact is discarded"


def test_unknown_and_malformed_artifacts_are_refused(make_sp, client):
    sp = artifact_sp(make_sp)
    fake = base64.b64encode(b"\x00\x04\x00\x00" + hashlib.sha1(IDP_ENTITY.encode()).digest()  # noqa: S324
                            + b"\x01" * 20).decode()
    art_resp = raw_resolve(client, sp, fake)
    assert status_of(art_resp) == (STATUS_SUCCESS, None) and art_resp.find("samlp:Response", NS) is None
    assert (last_event().reason, last_event().app_slug) == ("unknown_artifact", sp.slug)
    raw_resolve(client, sp, "bm90IGFuIGFydGlmYWN0")
    assert last_event().reason == "unknown_artifact"


def test_not_a_soap_request_gets_a_fault_and_an_event(client):
    resp = client.post("/saml/artifact", data=b"<hello/>", headers={"Content-Type": "text/xml"})
    assert resp.status_code == 500 and b"Fault" in resp.get_data()
    ev = last_event()
    assert (ev.event_type, ev.reason, ev.binding) == ("artifact", "malformed_request", "soap")
    resp = client.post("/saml/artifact", data=b"<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>")
    assert resp.status_code == 500
    assert len(events(event_type="artifact")) == 2


def test_unknown_sp_is_refused(make_sp, browser, client, alice):
    sp = artifact_sp(make_sp)
    stranger = artifact_sp(make_sp, register=False, base_url="https://stranger.example.com")
    _req, artifact, _ = sign_in_for_artifact(browser, sp)
    art_resp = raw_resolve(client, stranger, artifact)
    assert status_of(art_resp)[1] == "urn:oasis:names:tc:SAML:2.0:status:RequestDenied"
    assert (last_event().reason, last_event().sp_entity_id) == ("unknown_sp", stranger.entity_id)


# ---------------------------------------------------------------- real SP metadata from the corpus

@pytest.mark.parametrize(("name", "index", "binding"), [
    ("crewjam-go-saml-sp-post-and-artifact.xml", 2, BINDING_ARTIFACT),
    ("crewjam-go-saml-sp-post-and-artifact.xml", 1, BINDING_POST),
    ("pysaml2-sp-post-redirect-artifact-paos.xml", 3, BINDING_ARTIFACT),
])
def test_corpus_metadata_with_an_artifact_acs(app, name, index, binding):
    from idp.flows.sso import resolve_acs
    from idp.saml.requests import parse_authn_request
    from idp.services.apps import app_config_by_entity_id

    row = apps_svc.register_app((CORPUS / name).read_bytes(), slug="corpus")
    config = app_config_by_entity_id(row.entity_id)
    assert config is not None
    xml = (f'<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
           f'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_r1" Version="2.0" '
           f'IssueInstant="2026-01-01T00:00:00Z" AssertionConsumerServiceIndex="{index}">'
           f'<saml:Issuer>{row.entity_id}</saml:Issuer></samlp:AuthnRequest>').encode()
    acs = resolve_acs(config, parse_authn_request(xml, 65536))
    assert acs.binding == binding
    # by URL with ProtocolBinding HTTP-Artifact
    url = next(e.location for e in config.saml.acs if e.binding == BINDING_ARTIFACT)
    xml = (f'<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
           f'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_r2" Version="2.0" '
           f'IssueInstant="2026-01-01T00:00:00Z" AssertionConsumerServiceURL="{url}" '
           f'ProtocolBinding="{BINDING_ARTIFACT}"><saml:Issuer>{row.entity_id}</saml:Issuer>'
           f'</samlp:AuthnRequest>').encode()
    assert resolve_acs(config, parse_authn_request(xml, 65536)).binding == BINDING_ARTIFACT


# ---------------------------------------------------------------- per-app issuer

def test_per_app_issuer_artifact(app, make_sp, browser, client, alice, tmp_path):
    from ..sp_harness import Pysaml2SP
    issuer = "https://idp.example.com/tenants/acme"
    registered = artifact_sp(make_sp)
    result = app.test_cli_runner().invoke(args=["apps", "set", registered.slug, "--issuer", issuer])
    assert result.exit_code == 0, result.output
    md = client.get(f"/saml/metadata/{registered.slug}").get_data(as_text=True)
    assert "ArtifactResolutionService" in md
    sp = Pysaml2SP(tmp_path / "per-app", md, base_url=registered.base_url, keypair=registered.keypair,
                   artifact_acs=True)
    req, artifact, _ = sign_in_for_artifact(browser, sp)
    assert base64.b64decode(artifact)[4:24] == hashlib.sha1(issuer.encode()).digest()  # noqa: S324
    result = sp.process_response(sp.resolve_artifact(artifact, soap_post(client)), req.request_id)
    assert (result.name_id, result.issuer) == ("alice", issuer)


# ---------------------------------------------------------------- tampering

def _signed_resolve_body(sp: Any, artifact: str, destination: str = "http://localhost/saml/artifact") -> str:
    from saml2.s_utils import sid

    _mid, req = sp.client.create_artifact_resolve(artifact, destination, sid(), sign=True,
                                                  sign_alg=sp.sig_alg, digest_alg=sp.digest_alg)
    data = sp.client.use_soap(req, destination)["data"]
    return data.decode() if isinstance(data, bytes) else data


def _post_raw(client: Any, body: str) -> Any:
    return client.post("/saml/artifact", data=body.encode(), headers={"Content-Type": "text/xml"})


def test_tampered_artifact_in_a_signed_resolve_is_refused(make_sp, browser, client, alice):
    sp = artifact_sp(make_sp)
    _req, artifact, _ = sign_in_for_artifact(browser, sp)
    other_fake = base64.b64encode(base64.b64decode(artifact)[:24] + b"\x02" * 20).decode()
    body = _signed_resolve_body(sp, other_fake).replace(other_fake, artifact)
    resp = _post_raw(client, body)
    assert resp.status_code == 200 and b"RequestDenied" in resp.get_data()
    assert last_event().reason == "bad_signature"


def test_wrong_destination_and_two_messages_are_refused(make_sp, browser, client, alice):
    sp = artifact_sp(make_sp)
    _req, artifact, _ = sign_in_for_artifact(browser, sp)
    resp = _post_raw(client, _signed_resolve_body(sp, artifact, "https://elsewhere.example/ars"))
    assert b"RequestDenied" in resp.get_data() and b"<samlp:Response" not in resp.get_data()
    assert last_event().reason == "wrong_destination"
    # a second message in the Body (a wrapping attempt): not a SAML request this endpoint reads
    body = _signed_resolve_body(sp, artifact)
    start = body.index("<", body.index("Body") + 4)
    end = body.rindex("</", 0, body.rindex("Body"))
    inner = body[start:end]
    resp = _post_raw(client, body[:start] + inner + inner + body[end:])
    assert resp.status_code == 500 and b"Fault" in resp.get_data()
    assert last_event().reason == "malformed_request"
    # the artifact itself is untouched by all this
    assert raw_resolve(client, sp, artifact).find("samlp:Response", NS) is not None


def test_replayed_artifact_resolve_message_is_refused(make_sp, browser, client, alice):
    sp = artifact_sp(make_sp)
    _req, artifact, _ = sign_in_for_artifact(browser, sp)
    body = _signed_resolve_body(sp, artifact)
    assert b"<samlp:Response" in _post_raw(client, body).get_data()
    again = _post_raw(client, body)
    assert b"RequestDenied" in again.get_data()
    assert last_event().reason == "replayed_request"


def test_signed_resolve_without_destination_is_accepted(make_sp, browser, client, alice):
    """SOAP messages need no Destination (saml-bindings §3.2), unlike signed Redirect/POST messages."""
    from saml2.s_utils import sid

    sp = artifact_sp(make_sp)
    _req, artifact, _ = sign_in_for_artifact(browser, sp)
    _mid, req = sp.client.create_artifact_resolve(artifact, None, sid(), sign=True, sign_alg=sp.sig_alg,
                                                  digest_alg=sp.digest_alg)
    body = sp.client.use_soap(req, "http://localhost/saml/artifact")["data"]
    body = body.decode() if isinstance(body, bytes) else body
    assert "Destination=" not in body
    assert b"<samlp:Response" in _post_raw(client, body).get_data()
    assert last_event().reason == "ok"


def test_refused_resolutions_are_sso_notices() -> None:
    from idp.notifications import catalog
    assert catalog.for_event("artifact", "artifact_wrong_app", "denied") == "sso.denied"
    assert catalog.for_event("artifact", "bad_signature", "error") == "sso.error"
    assert catalog.for_event("artifact", "ok", "success") is None   # the sign-in's sso.success was published


def test_post_delivery_of_the_artifact(app, settings, make_sp, browser, client, alice, monkeypatch):
    import dataclasses
    monkeypatch.setitem(app.extensions, "idp.settings", dataclasses.replace(settings, artifact_delivery="post"))
    sp = artifact_sp(make_sp)
    req = sp.authn_request("redirect", relay_state="rs-post", protocol_binding=BINDING_ARTIFACT)
    resp = browser.sso(req, "alice", PASSWORD)
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    import re
    assert f'action="{sp.acs_url}"' in html and 'name="SAMLResponse"' not in html
    artifact = re.search(r'name="SAMLart" value="([^"]+)"', html).group(1)
    assert 'name="RelayState" value="rs-post"' in html
    assert sp.process_response(sp.resolve_artifact(artifact, soap_post(client)), req.request_id).name_id == "alice"


def test_artifact_delivery_setting_is_checked() -> None:
    from idp.config import ConfigError, load_settings
    with pytest.raises(ConfigError, match="IDP_ARTIFACT_DELIVERY"):
        load_settings({"IDP_ARTIFACT_DELIVERY": "carrier-pigeon", "IDP_SECRET_KEY": "x"})
