"""Single-core micro benchmarks: raw RSA, the IdP's response builder, pysaml2's default path, password hashing."""

from __future__ import annotations

import os
import shutil
import subprocess  # noqa: S404 - the fixed xmlsec1 binary, as an independent signature check
import tempfile
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree

from idp.auth.passwords import Passwords
from idp.certs.keystore import KeyStore
from idp.saml.responses import AssertionSpec, SigningChoice, build_response, map_attributes

from .fixtures import ATTRIBUTE_MAP, GROUPS, PASSWORD, SP_ACS, SP_ENTITY, Workspace, sp_metadata_xml
from .timing import Measurement, measure

NS_SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
NS_SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
AC_PPT = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
NAMEID_EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
IDP_ENTITY = "http://localhost/saml/metadata"
USER_FIELDS: dict[str, object] = {
    "id": "1", "username": "jane.doe", "email": "jane.doe@example.org", "first_name": "Jane", "last_name": "Doe",
    "groups": sorted(GROUPS), "display_name": "Jane Doe",
}
XMLSEC1 = shutil.which("xmlsec1")


# ---------------------------------------------------------------- independent check of produced signatures

def xmlsec1_verify(xml: bytes, cert_path: Path) -> list[str]:
    """Verify the Response and the Assertion signature with the xmlsec1 binary; returns what verified.

    Raises RuntimeError when a signature present in the document does not verify. Without xmlsec1
    installed the check is skipped (returns []).
    """
    if XMLSEC1 is None:
        return []
    root = etree.fromstring(xml)
    targets = [(f"{NS_SAMLP}:Response", root)]
    assertion = root.find(f"{{{NS_SAML}}}Assertion")
    if assertion is not None:
        targets.append((f"{NS_SAML}:Assertion", assertion))
    ok = []
    with tempfile.NamedTemporaryFile(suffix=".xml") as f:
        f.write(xml)
        f.flush()
        for node, el in targets:
            if el.find("{http://www.w3.org/2000/09/xmldsig#}Signature") is None:
                continue
            p = subprocess.run([XMLSEC1, "--verify", "--pubkey-cert-pem", str(cert_path), "--id-attr:ID", node,  # noqa: S603
                                "--node-id", el.get("ID"), f.name], capture_output=True, text=True, check=False)
            if p.returncode != 0 or "OK" not in p.stderr:
                raise RuntimeError(f"xmlsec1 could not verify the {node.rsplit(':', 1)[1]} signature: "
                                   f"{p.stderr.strip()[-300:]}")
            ok.append(node.rsplit(":", 1)[1])
    return ok


def count_attributes(xml: bytes) -> tuple[int, int]:
    """(Attribute elements, AttributeValue elements) in a Response: proof the payload is the realistic one."""
    root = etree.fromstring(xml)
    return (len(root.findall(f".//{{{NS_SAML}}}Attribute")), len(root.findall(f".//{{{NS_SAML}}}AttributeValue")))


# ---------------------------------------------------------------- 1. raw RSA-2048 signatures

def rsa_signer(ws: Workspace) -> Callable[[], bytes]:
    """One raw RSA-2048 PKCS#1 v1.5 SHA-256 signature with the IdP's active key, through `cryptography`."""
    key = KeyStore(ws.cert_dir).current().active.private_key
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size != 2048:
        raise RuntimeError(f"the bench key store holds a {key.key_size}-bit {type(key).__name__}, not RSA-2048")
    data = os.urandom(64)
    pad, alg = padding.PKCS1v15(), hashes.SHA256()
    return lambda: key.sign(data, pad, alg)


# ---------------------------------------------------------------- 2. the IdP's own builder

def response_builder(ws: Workspace) -> Callable[[], bytes]:
    """A zero-argument callable building one complete Response (both signed) through idp.saml.responses."""
    active = KeyStore(ws.cert_dir).current().active
    # exactly what idp.flows.saml_keys.signing_for hands build_response: the private key plus the certificate text
    signing = SigningChoice(key=active.private_key, cert_b64=active.cert_b64, sign_response=True,
                            sign_assertion=True)
    attributes = map_attributes(ATTRIBUTE_MAP, USER_FIELDS)

    def build() -> bytes:
        now = datetime.now(UTC)
        spec = AssertionSpec(
            issuer=IDP_ENTITY, audience=SP_ENTITY, destination=SP_ACS, in_response_to="_" + os.urandom(16).hex(),
            name_id="jane.doe@example.org", name_id_format=NAMEID_EMAIL, session_index="_" + os.urandom(16).hex(),
            authn_instant=now - timedelta(minutes=5), authn_context=AC_PPT, now=now, lifetime=timedelta(minutes=5),
            clock_skew=timedelta(seconds=60), session_not_on_or_after=now + timedelta(hours=8),
            attributes=attributes,
        )
        return build_response(spec, signing)

    return build


def check_response(ws: Workspace) -> dict[str, object]:
    """One Response from the builder: size, attributes and both signatures checked by xmlsec1."""
    sample = response_builder(ws)()
    _, cert = ws.idp_key_files()
    return {"bytes": len(sample), "attributes": count_attributes(sample),
            "xmlsec1_verified": xmlsec1_verify(sample, cert)}


# ---------------------------------------------------------------- 3. pysaml2, default configuration

def pysaml2_server(ws: Workspace) -> object:
    """saml2.server.Server with the default xmlsec1 subprocess backend, SHA-256 (under service.idp, or SHA-1)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
        from saml2.config import IdPConfig
        from saml2.saml import NAME_FORMAT_BASIC, NAMEID_FORMAT_EMAILADDRESS
        from saml2.server import Server
        from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256
    if XMLSEC1 is None:
        raise RuntimeError("pysaml2's default backend needs the xmlsec1 binary (apt-get install xmlsec1)")
    key_file, cert_file = ws.idp_key_files()
    md = ws.root / "pysaml2-sp-metadata.xml"
    md.write_bytes(sp_metadata_xml(SP_ENTITY, SP_ACS, ws.sp.cert_b64))
    sso = "http://localhost/saml/sso"
    cfg = IdPConfig()
    cfg.load({
        "entityid": IDP_ENTITY,
        "service": {"idp": {
            "name": "bench IdP (pysaml2)",
            "endpoints": {"single_sign_on_service": [(sso, BINDING_HTTP_REDIRECT), (sso, BINDING_HTTP_POST)]},
            "policy": {"default": {"lifetime": {"minutes": 5}, "attribute_restrictions": None,
                                   "name_form": NAME_FORMAT_BASIC}},
            "name_id_format": [NAMEID_FORMAT_EMAILADDRESS],
            # Under service.idp: at the top level pysaml2 silently ignores them and signs with rsa-sha1/sha1.
            "signing_algorithm": SIG_RSA_SHA256,
            "digest_algorithm": DIGEST_SHA256,
        }},
        "key_file": str(key_file),
        "cert_file": str(cert_file),
        "metadata": {"local": [str(md)]},
        "xmlsec_binary": XMLSEC1,
        "crypto_backend": "xmlsec1",
        "accepted_time_diff": 60,
    })
    server = Server(config=cfg)
    if server.signing_algorithm != SIG_RSA_SHA256 or server.digest_algorithm != DIGEST_SHA256:
        raise RuntimeError(f"pysaml2 would sign with {server.signing_algorithm}/{server.digest_algorithm}")
    return server


def pysaml2_builder(server: object) -> Callable[[], bytes]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from saml2.saml import NAMEID_FORMAT_EMAILADDRESS, NameID
    identity = {
        "email": ["jane.doe@example.org"], "firstName": ["Jane"], "lastName": ["Doe"], "username": ["jane.doe"],
        "displayName": ["Jane Doe"], "groups": sorted(GROUPS),
    }
    authn = {"class_ref": AC_PPT, "authn_auth": IDP_ENTITY}

    def build() -> bytes:
        out = server.create_authn_response(  # type: ignore[attr-defined]
            identity, in_response_to="_" + os.urandom(16).hex(), destination=SP_ACS, sp_entity_id=SP_ENTITY,
            name_id=NameID(format=NAMEID_FORMAT_EMAILADDRESS, text="jane.doe@example.org"), authn=authn,
            sign_response=True, sign_assertion=True,
        )
        return str(out).encode()

    return build


def pysaml2_op(ws: Workspace) -> tuple[Callable[[], bytes], dict[str, object]]:
    """(build one Response through pysaml2, check of one sample: size, attributes, xmlsec1 verification)."""
    build = pysaml2_builder(pysaml2_server(ws))
    sample = build()
    _, cert = ws.idp_key_files()
    return build, {"bytes": len(sample), "attributes": count_attributes(sample),
                   "xmlsec1_verified": xmlsec1_verify(sample, cert)}


# ---------------------------------------------------------------- 4. password verification

def password_verifier(time_cost: int, memory_kib: int, parallelism: int) -> Callable[[], None]:
    """One argon2id verification of a stored hash, as a password login does it."""
    pw = Passwords(time_cost, memory_kib, parallelism)
    stored = pw.hash(PASSWORD)

    def verify() -> None:
        if not pw.verify(stored, PASSWORD):
            raise RuntimeError("password verification failed")

    return verify


def bench_password(label: str, time_cost: int, memory_kib: int, parallelism: int, seconds: float,
                   runs: int) -> Measurement:
    verify = password_verifier(time_cost, memory_kib, parallelism)
    return measure(f"argon2id verify {label} (t={time_cost}, m={memory_kib // 1024} MiB, p={parallelism})", verify,
                   seconds=seconds, runs=runs, warmup_ops=2,
                   note="CPU counts every argon2 lane thread; per-core rate = ops / CPU-s")
