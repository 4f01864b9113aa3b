"""Attacks on inbound request signatures, end to end through /saml/sso.

The app's metadata says AuthnRequestsSigned="true" and carries the SP's certificate; alice is already signed in, so
any request the IdP accepted would come straight back as an assertion. Every attack document is built from a
request signed with the SP's real key (python-xmlsec) and then mutated with lxml; where the mutation keeps the
signature cryptographically valid, `verifies_with` proves it, so the refusal comes from the IdP's profile checks
(exactly one enveloped signature on the root, Reference = root ID, enveloped + exc-c14n only, no RetrievalMethod,
the key from metadata only, no HMAC, no SHA-1) and not from a broken signature.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote_plus

import pytest
import xmlsec
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from flask.testing import FlaskClient
from lxml import etree

from ..raw_requests import deflate_b64
from ..sp_harness import KeyPair
from ..webclient import Browser
from .conftest import login
from .saml_tools import (
    DS,
    HMAC_SHA256,
    NS,
    RSA_SHA1,
    RSA_SHA256,
    RSA_SHA512,
    SAMLP,
    RawSP,
    assert_no_assertion,
    assert_refused,
    assertion_count,
    authn_request,
    b64,
    case,
    register_sp,
    sign_root,
    verifies_with,
    xmlsec_key,
)


@dataclass
class Env:
    client: FlaskClient
    sp: RawSP
    key: KeyPair        # the SP's real key (its certificate is in the app's metadata)
    other: KeyPair      # an attacker's key
    probe_url: str

    def post(self, xml: bytes, relay_state: str | None = None) -> Any:
        data = {"SAMLRequest": b64(xml)}
        if relay_state is not None:
            data["RelayState"] = relay_state
        return Browser(self.client).follow(self.client.post("/saml/sso", data=data))

    def get(self, query: str) -> Any:
        return Browser(self.client).follow(self.client.get("/saml/sso?" + query))


@pytest.fixture
def env(client, alice, sp_keys, conn_probe) -> Env:  # type: ignore[no-untyped-def]
    sp = register_sp(keypair=sp_keys["sp1"], signs=True)
    assert login(client).status_code == 303
    return Env(client, sp, sp_keys["sp1"], sp_keys["other"], conn_probe.url)


def el(tag: str, ns: str = SAMLP) -> etree._Element:
    return etree.Element(f"{{{ns}}}{tag}", nsmap={"samlp": SAMLP} if ns == SAMLP else {"ds": DS})


def request_root(env: Env, req_id: str, **kw: Any) -> etree._Element:
    return etree.fromstring(authn_request(env.sp, req_id=req_id, **kw))


def signed_root(env: Env, req_id: str = "_orig", key: KeyPair | None = None, **kw: Any) -> etree._Element:
    root = request_root(env, req_id)
    sign_root(root, xmlsec_key(key or env.key), **kw)
    # re-parsed: lxml's find() does not see the names of nodes python-xmlsec created in place
    return etree.fromstring(etree.tostring(root))


def sig_of(root: etree._Element) -> etree._Element:
    sig = root.find("ds:Signature", NS)
    assert sig is not None
    return sig


def after_issuer(root: etree._Element, *nodes: etree._Element) -> None:
    anchor = root.find("saml:Issuer", NS)
    assert anchor is not None
    for node in nodes:
        anchor.addnext(node)
        anchor = node


# ---------------------------------------------------------------- HTTP-POST: the attack documents


def xsw_extensions(env: Env) -> bytes:
    """The signed original hidden in samlp:Extensions of an unsigned forged root (with its signature)."""
    orig = signed_root(env)
    forged = request_root(env, "_evil")
    ext = el("Extensions")
    ext.append(orig)
    after_issuer(forged, ext)
    return etree.tostring(forged)


def _moved_signature(env: Env, place: str, forged_id: str = "_evil") -> bytes:
    orig = signed_root(env)
    sig = sig_of(orig)
    orig.remove(sig)
    forged = request_root(env, forged_id)
    if place == "extensions":
        ext = el("Extensions")
        ext.append(orig)
        after_issuer(forged, sig, ext)
    elif place == "object":
        obj = etree.SubElement(sig, f"{{{DS}}}Object")
        obj.append(orig)
        after_issuer(forged, sig)
    else:  # beside the forged root's own children
        after_issuer(forged, sig)
        forged.append(orig)
    return etree.tostring(forged)


def two_signatures(env: Env) -> bytes:
    root = signed_root(env)
    sign_root(root, xmlsec_key(env.key))
    return etree.tostring(root)


def signature_copy_in_extensions(env: Env) -> bytes:
    root = signed_root(env)
    ext = el("Extensions")
    ext.append(copy.deepcopy(sig_of(root)))
    sig_of(root).addnext(ext)
    return etree.tostring(root)


def reference_to_part(env: Env) -> bytes:
    """An enveloped signature on the root whose Reference covers only an element inside Extensions."""
    root = request_root(env, "_orig")
    ext = el("Extensions")
    part = etree.SubElement(ext, "{urn:example:ext}Part", nsmap={"x": "urn:example:ext"})
    part.set("ID", "_part")
    after_issuer(root, ext)
    sign_root(root, xmlsec_key(env.key), uri="#_part")
    return etree.tostring(root)


def xslt_transform(env: Env) -> bytes:
    """An XSLT transform whose stylesheet would fetch from a listening socket if it ever ran."""
    root = signed_root(env)
    transforms = root.find("ds:Signature/ds:SignedInfo/ds:Reference/ds:Transforms", NS)
    t = etree.SubElement(transforms, f"{{{DS}}}Transform", Algorithm="http://www.w3.org/TR/1999/REC-xslt-19991116")
    xsl = "http://www.w3.org/1999/XSL/Transform"
    sheet = etree.SubElement(t, f"{{{xsl}}}stylesheet", nsmap={"xsl": xsl}, version="1.0")
    tpl = etree.SubElement(sheet, f"{{{xsl}}}template", match="/")
    etree.SubElement(tpl, f"{{{xsl}}}value-of", select=f"document('{env.probe_url}')")
    return etree.tostring(root)


def retrieval_method(env: Env) -> bytes:
    """KeyInfo is not signed: a RetrievalMethod pointing at a listening socket keeps the signature valid."""
    root = signed_root(env)
    key_info = root.find("ds:Signature/ds:KeyInfo", NS)
    etree.SubElement(key_info, f"{{{DS}}}RetrievalMethod", URI=env.probe_url,
                     Type="http://www.w3.org/2000/09/xmldsig#X509Data")
    return etree.tostring(root)


def attacker_key_value(env: Env) -> bytes:
    root = request_root(env, "_orig")
    sig = xmlsec.template.create(root, xmlsec.Transform.EXCL_C14N, xmlsec.Transform.RSA_SHA256, ns="ds")
    after_issuer(root, sig)
    ref = xmlsec.template.add_reference(sig, xmlsec.Transform.SHA256, uri="#_orig")
    xmlsec.template.add_transform(ref, xmlsec.Transform.ENVELOPED)
    xmlsec.template.add_transform(ref, xmlsec.Transform.EXCL_C14N)
    xmlsec.template.add_key_value(xmlsec.template.ensure_key_info(sig))
    xmlsec.tree.add_ids(root, ["ID"])
    ctx = xmlsec.SignatureContext()
    ctx.key = xmlsec_key(env.other)
    ctx.sign(sig)
    return etree.tostring(root)


def _hmac_with(env: Env, secret: bytes) -> bytes:
    root = request_root(env, "_orig")
    sign_root(root, xmlsec.Key.from_binary_data(xmlsec.constants.KeyDataHmac, secret),
              method=xmlsec.Transform.HMAC_SHA256, key_info=False)
    return etree.tostring(root)


def _cert_der(env: Env) -> bytes:
    return base64.b64decode(env.key.cert_b64)


def altered_after_signing(env: Env) -> bytes:
    root = signed_root(env)
    root.set("ForceAuthn", "false")
    return etree.tostring(root)


def garbled_signature_value(env: Env) -> bytes:
    root = signed_root(env)
    value = root.find("ds:Signature/ds:SignatureValue", NS)
    value.text = base64.b64encode(b"\x00" * 256).decode()
    return etree.tostring(root)


@dataclass(frozen=True)
class Attack:
    build: Callable[[Env], bytes]
    crypto_valid: bool = False   # the signature still verifies with the SP's certificate (plain xmlsec)


# category -> attack name -> attack
POST_ATTACKS: dict[str, dict[str, Attack]] = {
    "wrapping": {
        "unsigned": Attack(lambda e: authn_request(e.sp)),
        "wrapped-in-extensions": Attack(xsw_extensions),
        "signature-on-root-original-in-extensions": Attack(lambda e: _moved_signature(e, "extensions"), True),
        "original-inside-signature-object": Attack(lambda e: _moved_signature(e, "object")),
        "original-beside-forged-children": Attack(lambda e: _moved_signature(e, "beside"), True),
        "forged-root-with-the-same-id": Attack(lambda e: _moved_signature(e, "extensions", "_orig")),
    },
    "signature-count-and-reference": {
        "two-enveloped-signatures": Attack(two_signatures),
        "signature-copy-in-extensions": Attack(signature_copy_in_extensions),
        "reference-to-whole-document": Attack(lambda e: etree.tostring(signed_root(e, uri="")), True),
        "reference-to-a-part": Attack(reference_to_part, True),
    },
    "transforms-and-canonicalization": {
        "inclusive-c14n-transform": Attack(lambda e: etree.tostring(signed_root(
            e, transforms=(xmlsec.Transform.ENVELOPED, xmlsec.Transform.C14N))), True),
        "c14n-with-comments-transform": Attack(lambda e: etree.tostring(signed_root(
            e, transforms=(xmlsec.Transform.ENVELOPED, xmlsec.Transform.EXCL_C14N_COMMENTS))), True),
        "xpath-transform": Attack(lambda e: etree.tostring(signed_root(
            e, transforms=(xmlsec.Transform.ENVELOPED, xmlsec.Transform.XPATH, xmlsec.Transform.EXCL_C14N))), True),
        "xslt-transform": Attack(xslt_transform),
        "inclusive-canonicalization": Attack(lambda e: etree.tostring(signed_root(e, c14n=xmlsec.Transform.C14N)),
                                             True),
    },
    "keys-and-algorithms": {
        "keyinfo-retrieval-method": Attack(retrieval_method, True),
        "attacker-cert-in-keyinfo": Attack(lambda e: etree.tostring(signed_root(e, key=e.other))),
        "attacker-key-value-in-keyinfo": Attack(attacker_key_value),
        "hmac-keyed-with-cert-pem": Attack(lambda e: _hmac_with(e, e.key.cert_pem.encode())),
        "hmac-keyed-with-cert-der": Attack(lambda e: _hmac_with(e, _cert_der(e))),
        "rsa-sha1": Attack(lambda e: etree.tostring(signed_root(
            e, method=xmlsec.Transform.RSA_SHA1, digest=xmlsec.Transform.SHA1)), True),
        "sha1-digest": Attack(lambda e: etree.tostring(signed_root(e, digest=xmlsec.Transform.SHA1)), True),
    },
    "tampering": {
        "altered-after-signing": Attack(altered_after_signing),
        "garbled-signature-value": Attack(garbled_signature_value),
    },
}


def test_control_a_correctly_signed_post_request_is_accepted(env: Env) -> None:
    resp = env.post(etree.tostring(signed_root(env)))
    assert assertion_count(resp) == 1


@pytest.mark.parametrize("category", list(POST_ATTACKS))
def test_post_signature_attacks_are_refused(env: Env, conn_probe, category: str) -> None:  # type: ignore[no-untyped-def]
    for name, attack in POST_ATTACKS[category].items():
        with case(name):
            xml = attack.build(env)
            if attack.crypto_valid:
                assert verifies_with(xml, env.key.cert_pem), "the attack document should carry a valid signature"
            ev = assert_refused(env.post(xml), 403, "bad_signature")
            assert ev.app_slug == env.sp.slug and ev.binding == "post"
            assert not conn_probe.connected(0.01), "the IdP fetched something named by the signature"


@pytest.mark.parametrize("setting", ["metadata", "app-setting", "idp-setting"])
def test_every_way_of_requiring_signatures_refuses_unsigned_requests(client, alice, sp_keys, app, monkeypatch,  # type: ignore[no-untyped-def]
                                                                      setting):
    """AuthnRequestsSigned in metadata, `--require-signed-requests`, IDP_WANT_AUTHN_REQUESTS_SIGNED: all three bind."""
    if setting == "idp-setting":
        monkeypatch.setitem(app.extensions, "idp.settings",
                            replace(app.extensions["idp.settings"], want_authn_requests_signed=True))
    sp = register_sp(keypair=sp_keys["sp1"], signs=setting == "metadata",
                     **({"require_signed_requests": True} if setting == "app-setting" else {}))
    assert login(client).status_code == 303
    for binding in ("redirect", "post"):
        if binding == "redirect":
            resp = Browser(client).get("/saml/sso?SAMLRequest=" + quote_plus(deflate_b64(authn_request(sp))))
        else:
            resp = Browser(client).follow(client.post("/saml/sso", data={"SAMLRequest": b64(authn_request(sp))}))
        assert_refused(resp, 403, "bad_signature")


def test_a_signature_is_checked_even_when_not_required(client, alice, sp_keys):  # type: ignore[no-untyped-def]
    """An app that does not require signatures but has a certificate: a bad signature is still a refusal."""
    sp = register_sp(keypair=sp_keys["sp1"], signs=False)
    assert login(client).status_code == 303
    env = Env(client, sp, sp_keys["sp1"], sp_keys["other"], "")
    assert_refused(env.post(etree.tostring(signed_root(env, key=env.other))), 403, "bad_signature")
    assert_refused(env.get(signed_query(authn_request(sp), env.other)), 403, "bad_signature")
    assert assertion_count(env.post(authn_request(sp))) == 1  # unsigned is fine for this app


# ---------------------------------------------------------------- HTTP-Redirect


_HASHES = {RSA_SHA256: hashes.SHA256, RSA_SHA512: hashes.SHA512, RSA_SHA1: hashes.SHA1}


def _sign_octets(octets: str, key: KeyPair, sig_alg: str) -> str:
    if sig_alg == HMAC_SHA256:
        mac = hmac.new(key.cert_pem.encode(), octets.encode(), hashlib.sha256).digest()
        return quote_plus(base64.b64encode(mac).decode())
    private = serialization.load_pem_private_key(key.key_pem.encode(), None)
    sig = private.sign(octets.encode(), padding.PKCS1v15(), _HASHES[sig_alg]())  # type: ignore[union-attr,call-arg]
    return quote_plus(base64.b64encode(sig).decode())


def signed_query(xml: bytes, key: KeyPair, *, relay_state: str | None = None, sig_alg: str = RSA_SHA256) -> str:
    """saml-bindings §3.4.4.1: sign "SAMLRequest=…[&RelayState=…]&SigAlg=…" as encoded, append Signature."""
    q = f"SAMLRequest={quote_plus(deflate_b64(xml))}"
    if relay_state is not None:
        q += f"&RelayState={quote_plus(relay_state)}"
    q += f"&SigAlg={quote_plus(sig_alg)}"
    return q + "&Signature=" + _sign_octets(q, key, sig_alg)


def _param(query: str, name: str) -> str:
    return next(p for p in query.split("&") if p.startswith(name + "="))


def _swap(query: str, name: str, value: str) -> str:
    return query.replace(_param(query, name), f"{name}={quote_plus(value)}")


def _other_message(env: Env) -> str:
    """The signature of one request attached to another request."""
    a, b = signed_query(authn_request(env.sp), env.key), signed_query(authn_request(env.sp), env.key)
    return a.replace(_param(a, "Signature"), _param(b, "Signature"))


REDIRECT_ATTACKS: dict[str, tuple[Callable[[Env], str], int, str]] = {
    "unsigned": (lambda e: "SAMLRequest=" + quote_plus(deflate_b64(authn_request(e.sp))), 403, "bad_signature"),
    "signed-by-another-key": (lambda e: signed_query(authn_request(e.sp), e.other), 403, "bad_signature"),
    "sigalg-swapped-to-sha512": (lambda e: _swap(signed_query(authn_request(e.sp), e.key), "SigAlg", RSA_SHA512),
                                 403, "bad_signature"),
    "sigalg-swapped-to-sha1": (lambda e: _swap(signed_query(authn_request(e.sp), e.key), "SigAlg", RSA_SHA1),
                               403, "bad_signature"),
    "sigalg-swapped-to-hmac": (lambda e: _swap(signed_query(authn_request(e.sp), e.key), "SigAlg", HMAC_SHA256),
                               403, "bad_signature"),
    "hmac-keyed-with-cert": (lambda e: signed_query(authn_request(e.sp), e.key, sig_alg=HMAC_SHA256),
                             403, "bad_signature"),
    "rsa-sha1": (lambda e: signed_query(authn_request(e.sp), e.key, sig_alg=RSA_SHA1), 403, "bad_signature"),
    "relay-state-altered": (lambda e: _swap(signed_query(authn_request(e.sp), e.key, relay_state="good"),
                                            "RelayState", "evil"), 403, "bad_signature"),
    "relay-state-added": (lambda e: signed_query(authn_request(e.sp), e.key) + "&RelayState=evil",
                          403, "bad_signature"),
    "relay-state-removed": (lambda e: signed_query(authn_request(e.sp), e.key, relay_state="good")
                            .replace("&RelayState=good", ""), 403, "bad_signature"),
    "signature-from-another-request": (_other_message, 403, "bad_signature"),
    "signature-dropped-sigalg-kept": (lambda e: signed_query(authn_request(e.sp), e.key).rsplit("&Signature=", 1)[0],
                                      403, "bad_signature"),
    "lower-case-signature-name": (lambda e: signed_query(authn_request(e.sp), e.key).replace("&Signature=",
                                                                                            "&signature="),
                                  403, "bad_signature"),
    "samlrequest-duplicated": (lambda e: signed_query(authn_request(e.sp), e.key) + "&SAMLRequest="
                               + quote_plus(deflate_b64(authn_request(e.sp))), 400, "malformed_request"),
    "sigalg-duplicated": (lambda e: signed_query(authn_request(e.sp), e.key) + "&SigAlg=" + quote_plus(RSA_SHA1),
                          400, "malformed_request"),
    "signature-duplicated": (lambda e: signed_query(authn_request(e.sp), e.key) + "&Signature=AAAA",
                             400, "malformed_request"),
    "relay-state-duplicated": (lambda e: signed_query(authn_request(e.sp), e.key, relay_state="good")
                               + "&RelayState=evil", 400, "malformed_request"),
    "encoded-duplicate-name": (lambda e: signed_query(authn_request(e.sp), e.key, relay_state="good")
                               + "&Relay%53tate=evil", 400, "malformed_request"),
}


def test_control_a_correctly_signed_redirect_request_is_accepted(env: Env) -> None:
    assert assertion_count(env.get(signed_query(authn_request(env.sp), env.key, relay_state="good"))) == 1


@pytest.mark.parametrize("expected", [403, 400], ids=["altered-403", "duplicated-400"])
def test_redirect_signature_attacks_are_refused(env: Env, expected: int) -> None:
    for name, (build, status, reason) in REDIRECT_ATTACKS.items():
        if status != expected:
            continue
        with case(name):
            resp = env.get(build(env))
            ev = assert_refused(resp, status, reason)
            assert ev.binding == "redirect"
            assert_no_assertion(resp)
