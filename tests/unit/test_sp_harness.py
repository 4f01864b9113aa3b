"""Self-test of tests/sp_harness.py against a small reference IdP built on pysaml2's `Server` (no project code)."""

from __future__ import annotations

import base64
import shutil
import stat
import zlib
from pathlib import Path
from urllib.parse import urlsplit
from xml.etree import ElementTree

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from lxml import etree

if shutil.which("xmlsec1") is None:
    pytest.skip("pysaml2 needs the Debian xmlsec1 binary (apt-get install xmlsec1)", allow_module_level=True)

import saml2
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.attribute_converter import AttributeConverter
from saml2.config import IdPConfig
from saml2.metadata import entity_descriptor
from saml2.s_utils import do_ava, factory
from saml2.saml import (
    NAME_FORMAT_BASIC,
    NAME_FORMAT_UNSPECIFIED,
    NAME_FORMAT_URI,
    NAMEID_FORMAT_EMAILADDRESS,
    Attribute,
    NameID,
)
from saml2.samlp import STATUS_AUTHN_FAILED
from saml2.server import Server
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

from tests.sp_harness import (
    NS,
    RSA_SHA1,
    RSA_SHA256,
    SP_CLASSES,
    STATUS_SUCCESS,
    OneLoginSP,
    OutgoingRequest,
    SPValidationError,
    TestSP,
    make_keypair,
    parse_idp_metadata,
    release_pysaml2_tempfiles,
)

IDP = "https://idp.example.org"
IDP_ENTITY = f"{IDP}/saml/metadata"
PPT = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
MFA = "https://refeds.org/profile/mfa"
OID_MAIL = "urn:oid:0.9.2342.19200300.100.1.3"
IDENTITY = {
    "email": ["alice@example.org"],
    OID_MAIL: ["alice@example.org"],
    "givenName": ["Alice"],
    "groups": ["staff", "admins"],
}
KINDS = list(SP_CLASSES)


# ----------------------------------------------------------------------------------- reference IdP helpers
# Copied from the shared eco/ scripts (saml_smoke.py AesServer, pysaml2_prefix_fix.py): the test must not import
# from the shared folder at run time.

AES256_CBC = "http://www.w3.org/2001/04/xmlenc#aes256-cbc"


class AesServer(Server):
    """pysaml2 hard-codes 3DES for assertion encryption; use AES-256-CBC (xmlsec1 --session-key aes-256)."""

    msg_enc = AES256_CBC

    def _encrypt_assertion(self, encrypt_cert, sp_entity_id, response, node_xpath=None):
        from saml2.sigver import get_pem_wrapped_unwrapped, make_temp, pre_encryption_part

        wrapped, unwrapped = get_pem_wrapped_unwrapped(encrypt_cert)
        tmp = make_temp(wrapped.encode("ascii"), decode=False, delete_tmpfiles=True)
        return self.sec.encrypt_assertion(
            response,
            tmp.name,
            pre_encryption_part(msg_enc=self.msg_enc, encrypt_cert=unwrapped),
            key_type="aes-256",
            node_xpath=node_xpath,
        )


# Pitfall 7: give the Response and the self-contained encrypted Assertion identical prefixes, so python3-saml's
# in-place decryption keeps the exclusive-c14n digest of the signed assertion intact.
PREFIXES = {
    "urn:oasis:names:tc:SAML:2.0:protocol": "samlp",
    "urn:oasis:names:tc:SAML:2.0:assertion": "saml",
    "http://www.w3.org/2000/09/xmldsig#": "ds",
    "http://www.w3.org/2001/04/xmlenc#": "xenc",
    "http://www.w3.org/2001/XMLSchema-instance": "xsi",
    "http://www.w3.org/2001/XMLSchema": "xs",
    "urn:oasis:names:tc:SAML:2.0:metadata": "md",
    "urn:oasis:names:tc:SAML:metadata:algsupport": "alg",
}


def _get_prefix_map(self, elements):
    uris = self.get_ns_map(elements, set())
    prefix_map = {}
    for uri in sorted(uris):
        prefix_map[PREFIXES.get(uri) or f"encas{len(prefix_map)}"] = uri
    return prefix_map


def prefix_fix_apply() -> dict:
    saved = {"map": dict(ElementTree._namespace_map), "fn": saml2.SamlBase.get_prefix_map}
    for uri, prefix in PREFIXES.items():
        ElementTree.register_namespace(prefix, uri)
    saml2.SamlBase.get_prefix_map = _get_prefix_map
    return saved


def prefix_fix_revert(saved: dict) -> None:
    ElementTree._namespace_map.clear()
    ElementTree._namespace_map.update(saved["map"])
    saml2.SamlBase.get_prefix_map = saved["fn"]


class ExactNames(AttributeConverter):
    """Send attribute names exactly as given (pysaml2 would map 'email' to an OID, ECOSYSTEM pitfall 4)."""

    def __init__(self) -> None:
        super().__init__(NAME_FORMAT_UNSPECIFIED)

    def to_(self, attrvals):
        return [
            factory(
                Attribute,
                name=name,
                name_format=NAME_FORMAT_URI if name.startswith("urn:") else NAME_FORMAT_BASIC,
                attribute_value=do_ava(values),
            )
            for name, values in attrvals.items()
        ]


def idp_conf(kp, sp_metadata: list[str] | None) -> dict:
    return {
        "entityid": IDP_ENTITY,
        "xmlsec_binary": shutil.which("xmlsec1"),
        "key_file": str(kp.key_path),
        "cert_file": str(kp.cert_path),
        "service": {
            "idp": {
                "endpoints": {
                    "single_sign_on_service": [
                        (f"{IDP}/saml/sso", BINDING_HTTP_REDIRECT),
                        (f"{IDP}/saml/sso/post", BINDING_HTTP_POST),
                    ],
                    "single_logout_service": [
                        (f"{IDP}/saml/slo", BINDING_HTTP_REDIRECT),
                        (f"{IDP}/saml/slo/post", BINDING_HTTP_POST),
                    ],
                },
                "want_authn_requests_signed": True,
                "sign_response": True,
                "sign_assertion": True,
                # under service.idp: at the top level an IdPConfig ignores them (PERFORMANCE.md finding 4)
                "signing_algorithm": SIG_RSA_SHA256,
                "digest_algorithm": DIGEST_SHA256,
                "policy": {
                    "default": {
                        "lifetime": {"minutes": 5},
                        "attribute_restrictions": None,
                        "name_form": NAME_FORMAT_UNSPECIFIED,
                    }
                },
            }
        },
        "metadata": {"inline": sp_metadata} if sp_metadata else {},
    }


def make_idp(cls, kp, sp_metadata: list[str]) -> Server:
    idp = cls(config=IdPConfig().load(idp_conf(kp, sp_metadata)))
    idp.config.attribute_converters = [ExactNames()]
    return idp


class World:
    """Reference IdP + one plain and one encryption-wanting SP of each kind, built once for the module."""

    def __init__(self, wd: Path) -> None:
        self.wd = wd
        self.idp_kp = make_keypair(wd, "idp.example.org")
        conf = IdPConfig()
        conf.load(idp_conf(self.idp_kp, None))
        self.idp_md = str(entity_descriptor(conf))
        self.sp: dict[str, TestSP] = {}
        self.enc: dict[str, TestSP] = {}
        for kind, cls in SP_CLASSES.items():
            self.sp[kind] = cls(wd, self.idp_md, base_url=f"https://{kind}.sp.example.com", sign_requests=True)
            self.enc[kind] = cls(
                wd,
                self.idp_md,
                base_url=f"https://{kind}-enc.sp.example.com",
                sign_requests=True,
                want_assertions_encrypted=True,
            )
        mds = [sp.metadata_xml() for sp in [*self.sp.values(), *self.enc.values()]]
        self.idp = make_idp(Server, self.idp_kp, mds)
        self.aes_idp = make_idp(AesServer, self.idp_kp, mds)

    def variant(self, kind: str, **kwargs) -> TestSP:
        """Another SP object with the same entity/keys as self.sp[kind] (so the IdP knows it), other flags."""
        base = self.sp[kind]
        kwargs.setdefault("sign_requests", True)
        return SP_CLASSES[kind](
            self.wd, kwargs.pop("idp_md", self.idp_md), base_url=base.base_url, keypair=base.keypair, **kwargs
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    saved = prefix_fix_apply()
    try:
        yield World(tmp_path_factory.mktemp("sp-harness"))
    finally:
        prefix_fix_revert(saved)


def parse_authn_at_idp(idp: Server, out: OutgoingRequest):
    if out.binding == "redirect":
        q = out.params()
        return idp.parse_authn_request(
            q["SAMLRequest"],
            BINDING_HTTP_REDIRECT,
            relay_state=q.get("RelayState"),
            sigalg=q.get("SigAlg"),
            signature=q.get("Signature"),
        )
    return idp.parse_authn_request(out.form["SAMLRequest"], BINDING_HTTP_POST)


def respond(idp: Server, sp: TestSP, msg=None, *, encrypt: bool = False, identity=None) -> str:
    """Signed Response + signed Assertion (RSA-SHA256) as the base64 a browser would POST."""
    if msg is not None:
        args = idp.response_args(msg)
    else:  # IdP-initiated
        args = {"in_response_to": None, "destination": sp.acs_url, "sp_entity_id": sp.entity_id}
    resp = idp.create_authn_response(
        IDENTITY if identity is None else identity,
        userid="alice",
        name_id=NameID(format=NAMEID_FORMAT_EMAILADDRESS, text="alice@example.org"),
        authn={"class_ref": PPT, "authn_auth": IDP_ENTITY},
        sign_response=True,
        sign_assertion=True,
        sign_alg=SIG_RSA_SHA256,
        digest_alg=DIGEST_SHA256,
        encrypt_assertion=encrypt,
        encrypt_cert_assertion=sp.keypair.cert_pem if encrypt else None,
        **args,
    )
    return base64.b64encode(str(resp).encode()).decode()


def login(world: World, sp: TestSP, *, idp: Server | None = None, encrypt: bool = False):
    out = sp.authn_request("redirect", relay_state="/after")
    req = parse_authn_at_idp(world.idp, out)
    return out, respond(idp or world.idp, sp, req.message, encrypt=encrypt)


def idp_refuses(fn, *args, **kwargs) -> str:
    """The reference IdP must raise; return the error text.

    Like the harness, release pysaml2's leaked temp files outside the except block (see
    release_pysaml2_tempfiles), or a ResourceWarning surfaces later as an unraisable-exception error.
    """
    try:
        fn(*args, **kwargs)
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}"
    else:
        text = None
    release_pysaml2_tempfiles()
    if text is None:
        pytest.fail("the reference IdP accepted the message")
    return text


def session_index_of(b64: str) -> str:
    root = etree.fromstring(base64.b64decode(b64))
    return root.find(".//saml:AuthnStatement", NS).get("SessionIndex")


def tamper(b64: str, old: str, new: str) -> str:
    xml = base64.b64decode(b64).decode()
    assert old in xml
    return base64.b64encode(xml.replace(old, new, 1).encode()).decode()


# ----------------------------------------------------------------------------------- keys and metadata


def test_make_keypair(tmp_path):
    kp = make_keypair(tmp_path, "sp.example.com")
    assert stat.S_IMODE(kp.key_path.stat().st_mode) == 0o600
    assert kp.key_path.read_text() == kp.key_pem and kp.cert_path.read_text() == kp.cert_pem
    cert = x509.load_pem_x509_certificate(kp.cert_pem.encode())
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    assert cert.subject == cert.issuer
    assert cert.subject.rfc4514_string() == "CN=sp.example.com"
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(kp.key_pem.encode(), None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    assert key.key_size == 2048
    again = make_keypair(tmp_path, "sp.example.com")  # never overwrites
    assert again.key_path != kp.key_path and kp.key_path.read_text() == kp.key_pem


@pytest.mark.parametrize("kind", KINDS)
def test_sp_metadata(world, kind):
    for sp, encrypted in ((world.sp[kind], False), (world.enc[kind], True)):
        root = etree.fromstring(sp.metadata_xml().encode())
        assert root.get("entityID") == sp.entity_id == f"{sp.base_url}/metadata"
        spsso = root.find("md:SPSSODescriptor", NS)
        assert spsso.get("AuthnRequestsSigned") == "true" and spsso.get("WantAssertionsSigned") == "true"
        acs = spsso.findall("md:AssertionConsumerService", NS)
        assert [(a.get("Binding"), a.get("Location"), a.get("index"), a.get("isDefault")) for a in acs] == [
            (saml2.BINDING_HTTP_POST, sp.acs_url, "0", "true")
        ]
        slo = {(s.get("Binding"), s.get("Location")) for s in spsso.findall("md:SingleLogoutService", NS)}
        assert slo == {(BINDING_HTTP_REDIRECT, sp.slo_url), (BINDING_HTTP_POST, sp.slo_url)}
        uses = sorted(kd.get("use") for kd in spsso.findall("md:KeyDescriptor", NS))
        assert uses == (["encryption", "signing"] if encrypted else ["signing"])
        certs = {c.text.strip() for c in spsso.iterfind(".//ds:X509Certificate", NS)}
        assert certs == {sp.keypair.cert_b64}
    unsigned = world.variant(kind, sign_requests=False, want_assertions_signed=False)
    spsso = etree.fromstring(unsigned.metadata_xml().encode()).find("md:SPSSODescriptor", NS)
    assert spsso.get("AuthnRequestsSigned") == "false" and spsso.get("WantAssertionsSigned") == "false"


def test_parse_idp_metadata(world):
    info = parse_idp_metadata(world.idp_md)
    assert info.entity_id == IDP_ENTITY
    assert info.sso == {"redirect": f"{IDP}/saml/sso", "post": f"{IDP}/saml/sso/post"}
    assert info.slo == {"redirect": f"{IDP}/saml/slo", "post": f"{IDP}/saml/slo/post"}
    assert info.signing_certs == [world.idp_kp.cert_b64]


# ----------------------------------------------------------------------------------- AuthnRequests


@pytest.mark.parametrize("kind", KINDS)
def test_redirect_authn_request_parses_at_idp(world, kind):
    sp = world.sp[kind]
    out = sp.authn_request(
        "redirect",
        relay_state="/after?x=1",
        force_authn=True,
        is_passive=True,
        name_id_format=NAMEID_FORMAT_EMAILADDRESS,
        requested_authn_context=("minimum", [PPT, MFA]),
    )
    assert out.binding == "redirect" and out.form == {}
    assert out.url.startswith(f"{IDP}/saml/sso?") and out.query() == urlsplit(out.url).query
    q = out.params()
    assert q["SigAlg"] == RSA_SHA256 and q["Signature"] and q["RelayState"] == "/after?x=1"
    xml = zlib.decompress(base64.b64decode(q["SAMLRequest"]), -15)
    assert b"Signature" not in xml  # redirect binding: the signature lives in the query
    msg = parse_authn_at_idp(world.idp, out).message  # the IdP wants signed requests: this verifies it
    assert msg.id == out.request_id
    assert msg.issuer.text == sp.entity_id
    assert msg.destination == f"{IDP}/saml/sso"
    assert msg.force_authn == "true" and msg.is_passive == "true"
    assert msg.name_id_policy.format == NAMEID_FORMAT_EMAILADDRESS
    rac = msg.requested_authn_context
    assert rac.comparison == "minimum"
    assert [c.text for c in rac.authn_context_class_ref] == [PPT, MFA]
    assert msg.assertion_consumer_service_url == sp.acs_url
    assert world.idp.response_args(msg)["destination"] == sp.acs_url


@pytest.mark.parametrize("kind", KINDS)
def test_post_authn_request_parses_at_idp(world, kind):
    sp = world.sp[kind]
    out = sp.authn_request("post", relay_state="rs-1", acs_url="https://evil.example/acs")
    assert out.binding == "post" and out.url == f"{IDP}/saml/sso/post"
    assert set(out.form) == {"SAMLRequest", "RelayState"} and out.form["RelayState"] == "rs-1"
    xml = base64.b64decode(out.form["SAMLRequest"])
    assert etree.fromstring(xml).find("ds:Signature", NS) is not None
    msg = parse_authn_at_idp(world.idp, out).message  # XML signature verified by xmlsec1
    assert msg.id == out.request_id
    assert msg.assertion_consumer_service_url == "https://evil.example/acs"
    assert msg.force_authn in (None, "false") and msg.is_passive in (None, "false")
    assert msg.name_id_policy is None and msg.requested_authn_context is None
    # the override really is in the signed XML: tampering with it breaks the signature
    evil = base64.b64encode(xml.replace(b"https://evil.example/acs", b"https://evil.example/acz")).decode()
    assert "sign" in idp_refuses(world.idp.parse_authn_request, evil, BINDING_HTTP_POST).lower()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("binding", ["redirect", "post"])
def test_acs_index_override(world, kind, binding):
    sp = world.sp[kind]
    msg = parse_authn_at_idp(world.idp, sp.authn_request(binding, acs_index=0)).message
    assert msg.assertion_consumer_service_index == "0"
    assert msg.assertion_consumer_service_url is None and msg.protocol_binding is None
    assert world.idp.response_args(msg)["destination"] == sp.acs_url  # index 0 of our metadata


@pytest.mark.parametrize("kind", KINDS)
def test_sha1_signed_requests(world, kind):
    """sig_alg=RSA_SHA1 (for IdP tests that must refuse SHA-1) switches both the query and the XML signature."""
    sp = world.variant(kind, sig_alg=RSA_SHA1)
    out = sp.authn_request("redirect")
    assert out.params()["SigAlg"] == RSA_SHA1
    assert parse_authn_at_idp(world.idp, out).message.id == out.request_id  # pysaml2 still accepts SHA-1
    post = sp.authn_request("post")
    sig = etree.fromstring(base64.b64decode(post.form["SAMLRequest"])).find("ds:Signature", NS)
    assert sig.find(".//ds:SignatureMethod", NS).get("Algorithm") == RSA_SHA1
    assert sig.find(".//ds:DigestMethod", NS).get("Algorithm") == "http://www.w3.org/2000/09/xmldsig#sha1"
    assert parse_authn_at_idp(world.idp, post).message.id == post.request_id


@pytest.mark.parametrize("kind", KINDS)
def test_unsigned_request(world, kind):
    sp = world.sp[kind]
    out = sp.authn_request("redirect", sign=False)
    assert "Signature" not in out.params() and "SigAlg" not in out.params()
    assert "IncorrectlySigned" in idp_refuses(parse_authn_at_idp, world.idp, out)
    post = sp.authn_request("post", sign=False)
    assert etree.fromstring(base64.b64decode(post.form["SAMLRequest"])).find("ds:Signature", NS) is None
    assert "RelayState" not in post.form


# ----------------------------------------------------------------------------------- Responses


@pytest.mark.parametrize("kind", KINDS)
def test_signed_response_round_trip(world, kind):
    sp = world.sp[kind]
    out, b64 = login(world, sp)
    result = sp.process_response(b64, out.request_id)
    assert result.name_id == "alice@example.org"
    assert result.name_id_format == NAMEID_FORMAT_EMAILADDRESS
    assert result.attributes == IDENTITY  # names exactly as sent: no OID <-> friendly-name mapping
    assert result.session_index == session_index_of(b64)
    assert result.issuer == IDP_ENTITY
    assert result.authn_context == PPT
    assert result.in_response_to == out.request_id
    assert result.raw_xml == base64.b64decode(b64).decode()


@pytest.mark.parametrize("kind", KINDS)
def test_tampered_response_rejected(world, kind):
    sp = world.sp[kind]
    out, b64 = login(world, sp)
    with pytest.raises(SPValidationError):
        sp.process_response(tamper(b64, ">staff<", ">root<"), out.request_id)
    with pytest.raises(SPValidationError):  # another request's ID
        sp.process_response(b64, "_not-the-request-id")
    with pytest.raises(SPValidationError):
        sp.process_response("not base64 !", out.request_id)
    other = world.sp["onelogin" if kind == "pysaml2" else "pysaml2"]
    with pytest.raises(SPValidationError, match="(?i)destination|audience|recipient|received at|not accept"):
        sp.process_response(respond(world.idp, other), None)  # addressed to another SP
    assert sp.process_response(b64, out.request_id).name_id == "alice@example.org"  # the original is fine


@pytest.mark.parametrize("kind", KINDS)
def test_error_status_rejected_with_code(world, kind):
    sp = world.sp[kind]
    out = sp.authn_request("redirect")
    msg = parse_authn_at_idp(world.idp, out).message
    args = world.idp.response_args(msg)
    resp = world.idp.create_error_response(
        msg.id,
        args["destination"],
        (STATUS_AUTHN_FAILED, "no way"),
        sign=True,
        sign_alg=SIG_RSA_SHA256,
        digest_alg=DIGEST_SHA256,
    )
    b64 = base64.b64encode(str(resp).encode()).decode()
    with pytest.raises(SPValidationError, match="status:AuthnFailed") as exc:
        sp.process_response(b64, out.request_id)
    assert "status:Responder" in str(exc.value)


@pytest.mark.parametrize("kind", KINDS)
def test_unsolicited_response(world, kind):
    sp = world.sp[kind]
    b64 = respond(world.idp, sp)
    result = sp.process_response(b64, None)
    assert result.in_response_to is None and result.name_id == "alice@example.org"
    assert result.attributes["groups"] == ["staff", "admins"]
    strict = world.variant(kind, allow_unsolicited=False)
    with pytest.raises(SPValidationError, match="(?i)unsolicited|came from"):
        strict.process_response(b64, None)


@pytest.mark.parametrize("kind", KINDS)
def test_encrypted_assertion_round_trip(world, kind):
    sp = world.enc[kind]
    out, b64 = login(world, sp, idp=world.aes_idp, encrypt=True)
    raw = base64.b64decode(b64).decode()
    assert "EncryptedAssertion" in raw and "aes256-cbc" in raw and "alice@example.org" not in raw
    result = sp.process_response(b64, out.request_id)
    assert result.name_id == "alice@example.org"
    assert result.attributes == IDENTITY
    assert result.in_response_to == out.request_id and result.session_index
    # an SP that wants encryption refuses a plain assertion
    out, plain = login(world, sp)
    with pytest.raises(SPValidationError, match="(?i)encrypt"):
        sp.process_response(plain, out.request_id)


@pytest.mark.parametrize("kind", KINDS)
def test_key_rollover_several_signing_certs(world, kind):
    """IdP metadata listing two signing certificates; the response is signed with the second one."""
    spare = make_keypair(world.wd, "idp-next.example.org")
    root = etree.fromstring(world.idp_md.encode())
    idpsso = root.find("md:IDPSSODescriptor", NS)
    kd = idpsso.find("md:KeyDescriptor", NS)
    extra = etree.fromstring(etree.tostring(kd))
    extra.find(".//ds:X509Certificate", NS).text = spare.cert_b64
    kd.addprevious(extra)
    md = etree.tostring(root, encoding="unicode")
    assert parse_idp_metadata(md).signing_certs == [spare.cert_b64, world.idp_kp.cert_b64]
    sp = world.variant(kind, idp_md=md)
    if isinstance(sp, OneLoginSP):
        multi = sp._settings().get_idp_data()["x509certMulti"]["signing"]  # python3-saml rewrites them to PEM
        bodies = ["".join(line for line in c.splitlines() if "-----" not in line) for c in multi]
        assert bodies == [spare.cert_b64, world.idp_kp.cert_b64]
    out, b64 = login(world, sp)
    assert sp.process_response(b64, out.request_id).name_id == "alice@example.org"


# ----------------------------------------------------------------------------------- single logout


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("binding", ["redirect", "post"])
def test_sp_initiated_slo_round_trip(world, kind, binding):
    sp = world.sp[kind]
    out = sp.logout_request(
        "alice@example.org", "sess-1", binding, name_id_format=NAMEID_FORMAT_EMAILADDRESS, relay_state="/bye"
    )
    assert out.url.startswith(f"{IDP}/saml/slo/post" if binding == "post" else f"{IDP}/saml/slo?")
    b = BINDING_HTTP_POST if binding == "post" else BINDING_HTTP_REDIRECT
    if binding == "redirect":
        q = out.params()
        assert q["SigAlg"] == RSA_SHA256 and q["RelayState"] == "/bye"
        req = world.idp.parse_logout_request(
            q["SAMLRequest"], b, relay_state=q["RelayState"], sigalg=q["SigAlg"], signature=q["Signature"]
        )
    else:
        req = world.idp.parse_logout_request(out.form["SAMLRequest"], b)  # enveloped signature required
    msg = req.message
    assert msg.id == out.request_id and msg.issuer.text == sp.entity_id
    assert msg.name_id.text == "alice@example.org" and msg.name_id.format == NAMEID_FORMAT_EMAILADDRESS
    assert [s.text for s in msg.session_index] == ["sess-1"]
    assert msg.destination == out.url.split("?")[0]
    resp = world.idp.create_logout_response(
        msg, [b], sign=binding == "post", sign_alg=SIG_RSA_SHA256, digest_alg=DIGEST_SHA256
    )
    if binding == "redirect":
        http = world.idp.apply_binding(
            b, str(resp), sp.slo_url, "/bye", response=True, sign=True, sigalg=SIG_RSA_SHA256
        )
        location = dict(http["headers"])["Location"]
        assert sp.process_logout_response("redirect", query=urlsplit(location).query, request_id=out.request_id) == (
            STATUS_SUCCESS
        )
        assert sp.process_logout_response("redirect", query=location) == STATUS_SUCCESS  # a whole URL works too
        with pytest.raises(SPValidationError):  # RelayState changed after signing
            sp.process_logout_response("redirect", query=location.replace("RelayState=%2Fbye", "RelayState=%2Fx"))
        with pytest.raises(SPValidationError):
            sp.process_logout_response("redirect", query=location, request_id="_other")
    else:
        b64 = base64.b64encode(str(resp).encode()).decode()
        assert sp.process_logout_response("post", saml_response_b64=b64, request_id=out.request_id) == STATUS_SUCCESS
        with pytest.raises(SPValidationError):
            sp.process_logout_response("post", saml_response_b64=tamper(b64, "status:Success", "status:Requester"))
        unsigned = world.idp.create_logout_response(msg, [b], sign=False)
        with pytest.raises(SPValidationError, match="(?i)not signed|signature"):
            sp.process_logout_response("post", saml_response_b64=base64.b64encode(str(unsigned).encode()).decode())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("binding", ["redirect", "post"])
def test_idp_initiated_logout_request(world, kind, binding):
    sp = world.sp[kind]
    b = BINDING_HTTP_POST if binding == "post" else BINDING_HTTP_REDIRECT
    nid = NameID(format=NAMEID_FORMAT_EMAILADDRESS, text="alice@example.org")
    post = binding == "post"
    rid, req = world.idp.create_logout_request(
        sp.slo_url,
        sp.entity_id,
        name_id=nid,
        session_indexes=["s1", "s2"],
        sign=post,
        sign_alg=SIG_RSA_SHA256,
        digest_alg=DIGEST_SHA256,
    )
    if post:
        b64 = base64.b64encode(str(req).encode()).decode()
        assert sp.process_logout_request("post", saml_request_b64=b64) == ("alice@example.org", ["s1", "s2"])
        with pytest.raises(SPValidationError):
            sp.process_logout_request("post", saml_request_b64=tamper(b64, ">s2<", ">s3<"))
    else:
        http = world.idp.apply_binding(b, str(req), sp.slo_url, "rs", sign=True, sigalg=SIG_RSA_SHA256)
        location = dict(http["headers"])["Location"]
        assert sp.process_logout_request("redirect", query=location) == ("alice@example.org", ["s1", "s2"])
        unsigned = world.idp.apply_binding(b, str(req), sp.slo_url, "rs", sign=False)
        with pytest.raises(SPValidationError, match="(?i)not signed"):
            sp.process_logout_request("redirect", query=dict(unsigned["headers"])["Location"])
    assert sp.last_logout_request_id == rid
    # the SP answers; the reference IdP reads the answer
    answer = sp.logout_response(binding, relay_state="rs")
    value = answer.params()["SAMLResponse"]
    parsed = world.idp.parse_logout_request_response(value, b)
    assert parsed.response.in_response_to == rid
    assert parsed.response.status.status_code.value == STATUS_SUCCESS
    assert parsed.response.issuer.text == sp.entity_id
    if post:
        assert parsed.response.signature is not None  # and verified by pysaml2/xmlsec1
    else:
        assert answer.params()["SigAlg"] == RSA_SHA256
