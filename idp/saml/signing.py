"""XML-DSig signing (lxml c14n + `cryptography`) and verification (python-xmlsec), keys loaded once.

Profile (saml-core-2.0-os §5.4): enveloped signature, exclusive c14n, exactly one Reference
whose URI is "#" + the signed element's ID. Inbound signatures are checked against that
profile *before* the cryptography runs, and only against certificates from the SP's metadata.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote_plus

import xmlsec
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from lxml import etree

from . import c14n_writer
from .constants import (
    NS_DS,
    NS_SAML,
    TRANSFORM_ENVELOPED,
    TRANSFORM_EXC_C14N,
    BindingName,
    DigestAlgorithm,
    SignatureAlgorithm,
)

# A `cryptography` private key this IdP signs with (the key store loads only these two kinds).
SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class SignatureError(ValueError):
    """A signature is missing, malformed, off-profile or does not verify."""


class _Digest(Protocol):
    def digest(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class SignatureMethod:
    """How one SignatureMethod is computed: ECDSA (EC keys) or RSA PKCS#1 v1.5, over which hash, and the
    DigestMethod this IdP writes into the Reference when it signs with it."""

    ecdsa: bool
    hash: type[hashes.HashAlgorithm]
    digest: DigestAlgorithm
    hasher: Callable[[bytes], _Digest]


# keyed by the members, which are the URI strings: a URI read from a message or a setting looks one up as it is
SIGNATURE_ALGORITHMS: dict[str, SignatureMethod] = {
    SignatureAlgorithm.RSA_SHA256: SignatureMethod(False, hashes.SHA256, DigestAlgorithm.SHA256, hashlib.sha256),
    SignatureAlgorithm.RSA_SHA384: SignatureMethod(False, hashes.SHA384, DigestAlgorithm.SHA384, hashlib.sha384),
    SignatureAlgorithm.RSA_SHA512: SignatureMethod(False, hashes.SHA512, DigestAlgorithm.SHA512, hashlib.sha512),
    SignatureAlgorithm.ECDSA_SHA256: SignatureMethod(True, hashes.SHA256, DigestAlgorithm.SHA256, hashlib.sha256),
    SignatureAlgorithm.ECDSA_SHA384: SignatureMethod(True, hashes.SHA384, DigestAlgorithm.SHA384, hashlib.sha384),
    SignatureAlgorithm.ECDSA_SHA512: SignatureMethod(True, hashes.SHA512, DigestAlgorithm.SHA512, hashlib.sha512),
    SignatureAlgorithm.RSA_SHA1: SignatureMethod(False, hashes.SHA1, DigestAlgorithm.SHA1, hashlib.sha1),
}
ALLOWED_DIGESTS = frozenset(DigestAlgorithm)
ALLOWED_TRANSFORMS = frozenset({TRANSFORM_ENVELOPED, TRANSFORM_EXC_C14N})


def allowed_algorithms(allow_sha1: bool) -> frozenset[str]:
    algs = set(SIGNATURE_ALGORITHMS)
    if not allow_sha1:
        algs.discard(SignatureAlgorithm.RSA_SHA1)
    return frozenset(algs)


def _method(algorithm: str) -> SignatureMethod:
    method = SIGNATURE_ALGORITHMS.get(algorithm)
    if method is None:
        raise SignatureError(f"unsupported signature algorithm {algorithm}")
    return method


# ---------------------------------------------------------------- verification keys (cached)

_cert_cache: OrderedDict[str, tuple[xmlsec.Key, CertificatePublicKeyTypes]] = OrderedDict()
_cert_lock = threading.Lock()
_CERT_CACHE_SIZE = 4096


def verification_key(cert_pem: str) -> tuple[xmlsec.Key, CertificatePublicKeyTypes]:
    """(xmlsec key, cryptography public key) for an SP certificate, parsed once per process."""
    with _cert_lock:
        hit = _cert_cache.get(cert_pem)
        if hit is not None:
            _cert_cache.move_to_end(cert_pem)
            return hit
    xkey = xmlsec.Key.from_memory(cert_pem.encode("ascii"), xmlsec.KeyFormat.CERT_PEM, None)
    pub = x509.load_pem_x509_certificate(cert_pem.encode("ascii")).public_key()
    with _cert_lock:
        _cert_cache[cert_pem] = (xkey, pub)
        if len(_cert_cache) > _CERT_CACHE_SIZE:
            _cert_cache.popitem(last=False)
    return xkey, pub


# ---------------------------------------------------------------- signing

_PKCS1V15 = padding.PKCS1v15()


def signed_info_c14n(element_id: str, algorithm: str, digest_b64: str) -> str:
    """The ds:SignedInfo of an enveloped, exc-c14n signature with one Reference, in its canonical form.

    Written directly in exclusive-c14n form (xmlns:ds on the apex, attributes in order, empty
    elements as start/end pairs, no whitespace), so the octets signed here are exactly what a
    verifier gets when it canonicalises the SignedInfo it finds in the document.
    """
    digest_uri = _method(algorithm).digest
    return (f'<ds:SignedInfo xmlns:ds="{NS_DS}">'
            f'<ds:CanonicalizationMethod Algorithm="{TRANSFORM_EXC_C14N}"></ds:CanonicalizationMethod>'
            f'<ds:SignatureMethod Algorithm="{algorithm}"></ds:SignatureMethod>'
            f'<ds:Reference URI="#{c14n_writer.attr(element_id)}"><ds:Transforms>'
            f'<ds:Transform Algorithm="{TRANSFORM_ENVELOPED}"></ds:Transform>'
            f'<ds:Transform Algorithm="{TRANSFORM_EXC_C14N}"></ds:Transform></ds:Transforms>'
            f'<ds:DigestMethod Algorithm="{digest_uri}"></ds:DigestMethod>'
            f'<ds:DigestValue>{digest_b64}</ds:DigestValue></ds:Reference></ds:SignedInfo>')


def signature_value(private_key: SigningKey, algorithm: str, data: bytes, *, ecdsa_der: bool = False) -> bytes:
    """RSA PKCS#1 v1.5, or ECDSA: r || s at the curve's size as XML-DSig wants it (RFC 4051 §3.3), or
    the DER SEQUENCE (`ecdsa_der`, as the HTTP-Redirect query signature carries it)."""
    method = _method(algorithm)
    if not method.ecdsa and isinstance(private_key, rsa.RSAPrivateKey):
        return private_key.sign(data, _PKCS1V15, method.hash())
    if method.ecdsa and isinstance(private_key, ec.EllipticCurvePrivateKey):
        der = private_key.sign(data, ec.ECDSA(method.hash()))
        if ecdsa_der:
            return der
        r, s = decode_dss_signature(der)
        size = (private_key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    raise SignatureError("signature algorithm does not match the key type")


def enveloped_signature(element_id: str, c14n_octets: bytes, private_key: SigningKey, algorithm: str,
                        cert_b64: str | None) -> str:
    """The ds:Signature element, in exclusive-c14n form, over an element whose canonical form (without
    this signature: the enveloped transform) is `c14n_octets`.

    Profile (saml-core §5.4): exclusive c14n, exactly one Reference to "#" + the element's ID,
    transforms enveloped + exc-c14n, the certificate (`cert_b64`, DER base64) in KeyInfo.
    """
    digest = base64.b64encode(_method(algorithm).hasher(c14n_octets).digest()).decode("ascii")
    signed_info = signed_info_c14n(element_id, algorithm, digest)
    value = base64.b64encode(signature_value(private_key, algorithm, signed_info.encode("utf-8"))).decode("ascii")
    key_info = (f"<ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert_b64}</ds:X509Certificate>"
                f"</ds:X509Data></ds:KeyInfo>" if cert_b64 else "")
    return (f'<ds:Signature xmlns:ds="{NS_DS}">{signed_info.replace(_DS_DECL, "", 1)}'
            f"<ds:SignatureValue>{value}</ds:SignatureValue>{key_info}</ds:Signature>")


def sign_element(element: etree._Element, private_key: SigningKey, algorithm: str = SignatureAlgorithm.RSA_SHA256,
                 cert_b64: str | None = None) -> None:
    """Insert an enveloped signature right after the element's saml:Issuer (else first) and sign it.

    Done with lxml's exclusive c14n (libxml2, as xmlsec uses), hashlib and `cryptography`: the
    digest is taken before the Signature exists, which is what the enveloped transform yields,
    and SignedInfo is written in canonical form. Cheaper per signature than python-xmlsec's
    template machinery; every signature is checked by xmlsec, xmlsec1 and signxml in the tests.
    """
    element_id = element.get("ID")
    if not element_id:
        raise SignatureError("the element to sign has no ID")
    octets = etree.tostring(element, method="c14n", exclusive=True, with_comments=False)
    sig = etree.fromstring(enveloped_signature(element_id, octets, private_key, algorithm, cert_b64))
    issuer = element.find(f"{{{NS_SAML}}}Issuer")
    if issuer is not None:
        issuer.addnext(sig)
    else:
        element.insert(0, sig)


_DS_DECL = f' xmlns:ds="{NS_DS}"'


def sign_redirect_query(query_without_sig: str, private_key: SigningKey, algorithm: str) -> str:
    """Signature value for HTTP-Redirect (saml-bindings-2.0-os §3.4.4.1) over the encoded query."""
    sig = signature_value(private_key, algorithm, query_without_sig.encode("ascii"), ecdsa_der=True)
    return base64.b64encode(sig).decode("ascii")


# ---------------------------------------------------------------- verification

def has_signature(root: etree._Element) -> bool:
    return root.find(f"{{{NS_DS}}}Signature") is not None


def verify_enveloped(root: etree._Element, cert_pems: Sequence[str], allowed: Iterable[str]) -> str:
    """Verify the enveloped signature of a protocol message's root; return the algorithm used.

    Refuses (SignatureError): any number of ds:Signature in the document other than exactly one,
    a signature that is not a direct child of the root, a Reference other than "#"+root ID,
    duplicate IDs, transforms other than enveloped + exc-c14n, KeyInfo indirection
    (RetrievalMethod), algorithms not in `allowed`. The key always comes from `cert_pems`
    (the SP's metadata), never from the message.
    """
    if not cert_pems:
        raise SignatureError("the app's metadata has no signing certificate to verify with")
    sigs = root.findall(f".//{{{NS_DS}}}Signature")
    if len(sigs) != 1:
        raise SignatureError(f"expected exactly one signature, found {len(sigs)}")
    sig = sigs[0]
    if sig.getparent() is not root:
        raise SignatureError("the signature is not an enveloped signature of the message")
    root_id = root.get("ID")
    if not root_id:
        raise SignatureError("the signed message has no ID")
    ids = [el for el in root.iter() if isinstance(el.tag, str) and el.get("ID") == root_id]
    if len(ids) != 1:
        raise SignatureError("the message ID is not unique")
    signed_info = sig.find(f"{{{NS_DS}}}SignedInfo")
    if signed_info is None:
        raise SignatureError("signature without SignedInfo")
    c14n = signed_info.find(f"{{{NS_DS}}}CanonicalizationMethod")
    if c14n is None or c14n.get("Algorithm") != TRANSFORM_EXC_C14N:
        raise SignatureError("canonicalization must be exclusive c14n")
    method = signed_info.find(f"{{{NS_DS}}}SignatureMethod")
    algorithm = method.get("Algorithm") if method is not None else None
    if algorithm not in set(allowed):
        raise SignatureError(f"signature algorithm {algorithm!r} is not allowed")
    refs = signed_info.findall(f"{{{NS_DS}}}Reference")
    if len(refs) != 1 or refs[0].get("URI") != "#" + root_id:
        raise SignatureError("the signature's Reference does not point at the message")
    for t in refs[0].findall(f"{{{NS_DS}}}Transforms/{{{NS_DS}}}Transform"):
        if t.get("Algorithm") not in ALLOWED_TRANSFORMS:
            raise SignatureError(f"transform {t.get('Algorithm')!r} is not allowed")
        params = list(t)
        if params and not (t.get("Algorithm") == TRANSFORM_EXC_C14N and len(params) == 1
                           and params[0].tag == f"{{{TRANSFORM_EXC_C14N}}}InclusiveNamespaces"):
            raise SignatureError("transforms with parameters are not allowed")
    digest = refs[0].find(f"{{{NS_DS}}}DigestMethod")
    digest_alg = digest.get("Algorithm") if digest is not None else None
    if digest_alg not in ALLOWED_DIGESTS or (
            digest_alg == DigestAlgorithm.SHA1 and SignatureAlgorithm.RSA_SHA1 not in set(allowed)):
        raise SignatureError(f"digest algorithm {digest_alg!r} is not allowed")
    if sig.find(f".//{{{NS_DS}}}RetrievalMethod") is not None:
        raise SignatureError("KeyInfo RetrievalMethod is not allowed")
    if sig.find(f"{{{NS_DS}}}Object") is not None:
        raise SignatureError("ds:Object inside the signature is not allowed")
    xmlsec.tree.add_ids(root, ["ID"])
    for pem in cert_pems:
        try:
            xkey, _ = verification_key(pem)
        except (xmlsec.Error, ValueError):  # a key xmlsec cannot use verifies nothing
            continue
        ctx = xmlsec.SignatureContext()
        ctx.key = xkey
        # only the configured algorithm family may be used by xmlsec for this verification
        try:
            ctx.verify(sig)
        except xmlsec.Error:
            continue
        return str(algorithm)
    raise SignatureError("the signature does not verify with the app's certificates")


def is_signed(binding: BindingName, signed_query: bool, root: etree._Element) -> bool:
    """Whether a decoded message carries a signature in its binding (query or enveloped)."""
    return signed_query if binding == BindingName.REDIRECT else has_signature(root)


def verify_message(binding: BindingName, raw_query: bytes | None, root: etree._Element, param: str,
                   cert_pems: Sequence[str], allowed: Iterable[str]) -> str:
    """Verify a protocol message as its binding signs it: the query octets (HTTP-Redirect) or the
    enveloped signature (HTTP-POST). Returns the algorithm; SignatureError otherwise."""
    if binding == BindingName.REDIRECT:
        if raw_query is None:
            raise SignatureError("the query string of a Redirect-binding message is missing")
        return verify_redirect_signature(raw_query, param, cert_pems, allowed)
    return verify_enveloped(root, cert_pems, allowed)


def verify_redirect_signature(raw_query: bytes, msg_param: str, cert_pems: Sequence[str],
                              allowed: Iterable[str]) -> str:
    """Verify an HTTP-Redirect signature over the query octets as received (bindings §3.4.4.1).

    Re-encoding decoded values (as pysaml2 does) breaks SPs that percent-encode in lower case;
    duplicated parameters are refused so nothing signed can be shadowed. Returns the algorithm.
    """
    if not cert_pems:
        raise SignatureError("the app's metadata has no signing certificate to verify with")
    try:
        text = raw_query.decode("ascii")
    except UnicodeDecodeError:
        raise SignatureError("query string is not ASCII") from None
    parts: dict[str, tuple[str, str]] = {}
    for seg in text.split("&"):
        if not seg:
            continue
        name, _, value = seg.partition("=")
        name = unquote_plus(name)
        if name in parts:
            raise SignatureError(f"parameter {name} appears more than once")
        parts[name] = (seg, value)
    if "Signature" not in parts or "SigAlg" not in parts:
        raise SignatureError("the request is not signed")
    algorithm = unquote_plus(parts["SigAlg"][1])
    if algorithm not in set(allowed) or algorithm not in SIGNATURE_ALGORITHMS:
        raise SignatureError(f"signature algorithm {algorithm!r} is not allowed")
    signed = "&".join(parts[k][0] for k in (msg_param, "RelayState", "SigAlg") if k in parts).encode("ascii")
    try:
        signature = base64.b64decode(unquote_plus(parts["Signature"][1]), validate=True)
    except ValueError:
        raise SignatureError("signature is not valid base64") from None
    method = _method(algorithm)
    for pem in cert_pems:
        try:
            _, pub = verification_key(pem)
        except (xmlsec.Error, ValueError):
            continue
        try:
            if not method.ecdsa and isinstance(pub, rsa.RSAPublicKey):
                pub.verify(signature, signed, _PKCS1V15, method.hash())
                return algorithm
            if method.ecdsa and isinstance(pub, ec.EllipticCurvePublicKey):
                pub.verify(signature, signed, ec.ECDSA(method.hash()))
                return algorithm
        except InvalidSignature:
            continue
    raise SignatureError("the signature does not verify with the app's certificates")
