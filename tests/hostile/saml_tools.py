"""Hand-built SPs, messages and signatures for hostile tests, and the checks every refusal must pass.

The SPs here are registered straight from a few lines of metadata (no SP library), so every field can be wrong on
purpose; messages are signed with the SP's real key by python-xmlsec and then mutated with lxml, so that only the
attack itself can make them fail.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import xmlsec
from flask.testing import FlaskClient
from lxml import etree
from werkzeug.test import TestResponse

from idp.extensions import db
from idp.models import IdpSession
from idp.services import apps as apps_svc

from ..functional.conftest import PASSWORD, last_event
from ..raw_requests import authn_request_xml, redirect_query
from ..sp_harness import KeyPair
from ..webclient import Browser, saml_form

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
NS = {"samlp": SAMLP, "saml": SAML, "md": MD, "ds": DS}
POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
RSA_SHA512 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512"
HMAC_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256"

IDP = "http://localhost"
SSO_URL = f"{IDP}/saml/sso"
SLO_URL = f"{IDP}/saml/slo"


# ---------------------------------------------------------------- service providers


@dataclass(frozen=True)
class RawSP:
    entity_id: str
    acs_url: str
    slo_url: str
    slug: str
    keypair: KeyPair | None
    signs: bool


def sp_metadata(entity_id: str, acs_url: str, *, slo_url: str | None = None, cert_b64: str | None = None,
                authn_requests_signed: bool = False, extra_acs: str = "") -> bytes:
    key = (f'<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert_b64}'
           "</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>") if cert_b64 else ""
    slo = "".join(f'<md:SingleLogoutService Binding="{b}" Location="{slo_url}"/>' for b in (REDIRECT, POST)) \
        if slo_url else ""
    return (f'<md:EntityDescriptor xmlns:md="{MD}" xmlns:ds="{DS}" entityID="{entity_id}">'
            f'<md:SPSSODescriptor protocolSupportEnumeration="{SAMLP}" '
            f'AuthnRequestsSigned="{"true" if authn_requests_signed else "false"}">'
            f"{key}{slo}<md:NameIDFormat>{EMAIL}</md:NameIDFormat>"
            f'<md:AssertionConsumerService Binding="{POST}" Location="{acs_url}" index="0" isDefault="true"/>'
            f"{extra_acs}</md:SPSSODescriptor></md:EntityDescriptor>").encode()


def register_sp(base: str = "https://sp1.example.com", *, keypair: KeyPair | None = None, signs: bool = False,
                slug: str | None = None, **settings: Any) -> RawSP:
    """Register an SP from hand-written metadata: its certificate (if any), an ACS and SLO endpoints.

    `signs=True` sets AuthnRequestsSigned="true", so unsigned or badly signed requests must be refused.
    NameIDs are email addresses, so one user has the same NameID at every app (the hard case for logout).
    """
    entity_id, acs, slo = f"{base}/metadata", f"{base}/acs", f"{base}/slo"
    xml = sp_metadata(entity_id, acs, slo_url=slo, cert_b64=keypair.cert_b64 if keypair else None,
                      authn_requests_signed=signs)
    row = apps_svc.register_app(xml, slug=slug)
    apps_svc.change_settings(row, nameid_format="email", **settings)
    return RawSP(entity_id=entity_id, acs_url=acs, slo_url=slo, slug=row.slug, keypair=keypair, signs=signs)


# ---------------------------------------------------------------- messages


def new_id() -> str:
    return "_" + secrets.token_hex(12)


def instant(dt: datetime | None = None) -> str:
    return (dt or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def authn_request(sp: RawSP, **kw: Any) -> bytes:
    return authn_request_xml(sp.entity_id, **kw)


def logout_request(issuer: str, name_id: str, session_indexes: Sequence[str] = (), *, req_id: str | None = None,
                   issue_instant: datetime | None = None, destination: str | None = SLO_URL,
                   not_on_or_after: datetime | None = None, name_id_xml: str | None = None,
                   extra_attrs: str = "") -> bytes:
    attrs = f'ID="{req_id or new_id()}" Version="2.0" IssueInstant="{instant(issue_instant)}"'
    if destination:
        attrs += f' Destination="{destination}"'
    if not_on_or_after:
        attrs += f' NotOnOrAfter="{instant(not_on_or_after)}"'
    nid = name_id_xml if name_id_xml is not None else f'<saml:NameID Format="{EMAIL}">{name_id}</saml:NameID>'
    idx = "".join(f"<samlp:SessionIndex>{i}</samlp:SessionIndex>" for i in session_indexes)
    return (f'<samlp:LogoutRequest xmlns:samlp="{SAMLP}" xmlns:saml="{SAML}" {attrs} {extra_attrs}>'
            f"<saml:Issuer>{issuer}</saml:Issuer>{nid}{idx}</samlp:LogoutRequest>").encode()


def b64(xml: bytes) -> str:
    return base64.b64encode(xml).decode("ascii")


# ---------------------------------------------------------------- XML signatures


def xmlsec_key(keypair: KeyPair, *, with_cert: bool = True) -> xmlsec.Key:
    key = xmlsec.Key.from_memory(keypair.key_pem.encode(), xmlsec.KeyFormat.PEM, None)
    if with_cert:
        key.load_cert_from_memory(keypair.cert_pem.encode(), xmlsec.KeyFormat.CERT_PEM)
    return key


def sign_root(root: etree._Element, key: xmlsec.Key, *, method: Any = xmlsec.Transform.RSA_SHA256,
              digest: Any = xmlsec.Transform.SHA256, c14n: Any = xmlsec.Transform.EXCL_C14N,
              transforms: Sequence[Any] = (xmlsec.Transform.ENVELOPED, xmlsec.Transform.EXCL_C14N),
              uri: str | None = None, key_info: bool = True, xpath: str | None = None) -> etree._Element:
    """Insert an enveloped signature after the root's Issuer and sign (in place); returns the ds:Signature."""
    sig = xmlsec.template.create(root, c14n, method, ns="ds")
    issuer = root.find("saml:Issuer", NS)
    if issuer is not None:
        issuer.addnext(sig)
    else:
        root.insert(0, sig)
    ref = xmlsec.template.add_reference(sig, digest, uri=("#" + root.get("ID")) if uri is None else uri)
    for t in transforms:
        node = xmlsec.template.add_transform(ref, t)
        if t == xmlsec.Transform.XPATH:
            etree.SubElement(node, f"{{{DS}}}XPath").text = xpath or "not(ancestor-or-self::ds:Signature)"
    if key_info:
        xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(sig))
    xmlsec.tree.add_ids(root, ["ID"])
    ctx = xmlsec.SignatureContext()
    ctx.key = key
    ctx.sign(sig)
    return sig


def signed(xml: bytes, keypair: KeyPair, **kw: Any) -> bytes:
    root = etree.fromstring(xml)
    sign_root(root, xmlsec_key(keypair), **kw)
    return etree.tostring(root)


def verifies_with(xml: bytes, cert_pem: str) -> bool:
    """Plain xmlsec, no profile checks: does the first signature verify with this certificate?

    Used to prove an attack document carries a cryptographically valid signature, so that its refusal is the
    IdP's profile enforcement and not an accident of the mutation.
    """
    root = etree.fromstring(xml)
    xmlsec.tree.add_ids(root, ["ID"])
    ctx = xmlsec.SignatureContext()
    ctx.key = xmlsec.Key.from_memory(cert_pem.encode(), xmlsec.KeyFormat.CERT_PEM, None)
    try:
        ctx.verify(root.find(".//ds:Signature", NS))
    except xmlsec.Error:
        return False
    return True


# ---------------------------------------------------------------- HTTP


def send(client: FlaskClient, binding: str, endpoint: str, xml: bytes, *, relay_state: str | None = None,
         key_pem: str | None = None, param: str = "SAMLRequest") -> TestResponse:
    """Deliver a message by Redirect (GET, signed over the query when key_pem is given) or POST (XML as is)."""
    if binding == "redirect":
        return client.get(f"{endpoint}?" + redirect_query(xml, relay_state=relay_state, key_pem=key_pem,
                                                          param=param))
    data = {param: b64(xml)}
    if relay_state is not None:
        data["RelayState"] = relay_state
    return client.post(endpoint, data=data)


def assertion_count(resp: TestResponse) -> int:
    """How many (encrypted) assertions a response hands to the browser in a SAML POST form."""
    form = saml_form(resp)
    if form is None or "SAMLResponse" not in form.fields:
        return 0
    root = etree.fromstring(base64.b64decode(form.fields["SAMLResponse"]))
    return len(root.findall(".//saml:Assertion", NS)) + len(root.findall(".//saml:EncryptedAssertion", NS))


def assert_no_assertion(resp: TestResponse) -> None:
    body = resp.get_data(as_text=True)
    assert assertion_count(resp) == 0, "an assertion was issued"
    assert "Traceback" not in body
    assert resp.status_code < 500, body[:400]


def assert_refused(resp: TestResponse, status: int, reason: str, *, event_type: str = "sso",
                   outcome: str = "error") -> Any:
    """The request was refused: this HTTP status, no assertion, and an event row with this reason."""
    body = resp.get_data(as_text=True)
    assert resp.status_code == status, f"{resp.status_code}: {body[:400]}"
    assert_no_assertion(resp)
    assert 'name="SAMLResponse"' not in body
    ev = last_event()
    assert (ev.event_type, ev.reason, ev.outcome) == (event_type, reason, outcome), ev.detail
    assert f'<code id="event-id">{ev.id}</code>' in body
    return ev


def response_xml(resp: TestResponse) -> etree._Element:
    form = saml_form(resp)
    assert form is not None, f"no SAML form ({resp.status_code}): {resp.get_data(as_text=True)[:300]}"
    return etree.fromstring(base64.b64decode(form.saml_response))


def sign_in(client: FlaskClient, sp: RawSP, username: str = "alice") -> tuple[str, str]:
    """SSO into `sp` as `username` (logging in on the way); returns the (NameID, SessionIndex) the app got."""
    xml = authn_request(sp)
    key = sp.keypair.key_pem if sp.signs and sp.keypair else None
    resp = Browser(client).sso_path("/saml/sso?" + redirect_query(xml, key_pem=key), username, PASSWORD)
    root = response_xml(resp)
    name_id = root.find(".//saml:Assertion/saml:Subject/saml:NameID", NS)
    stmt = root.find(".//saml:Assertion/saml:AuthnStatement", NS)
    assert name_id is not None and stmt is not None
    return name_id.text or "", stmt.get("SessionIndex") or ""


def live_sessions() -> int:
    db.session.expire_all()
    return db.session.query(IdpSession).filter(IdpSession.ended_at.is_(None)).count()


@contextmanager
def case(label: str) -> Iterator[None]:
    """Name the table row an assertion failed in, for tests that loop over several cheap cases."""
    try:
        yield
    except AssertionError as exc:
        raise AssertionError(f"[{label}] {exc}") from exc
