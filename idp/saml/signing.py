"""XML-DSig signing and verification with python-xmlsec in-process, keys loaded once.

Profile (saml-core-2.0-os §5.4): enveloped signature, exclusive c14n, exactly one Reference
whose URI is "#" + the signed element's ID. Inbound signatures are checked against that
profile *before* the cryptography runs, and only against certificates from the SP's metadata.
"""

from __future__ import annotations

import base64
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import unquote_plus

import xmlsec
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from lxml import etree

from .constants import (
    NS_DS,
    NS_SAML,
    SIG_ECDSA_SHA256,
    SIG_ECDSA_SHA384,
    SIG_ECDSA_SHA512,
    SIG_RSA_SHA1,
    SIG_RSA_SHA256,
    SIG_RSA_SHA384,
    SIG_RSA_SHA512,
    TRANSFORM_ENVELOPED,
    TRANSFORM_EXC_C14N,
)


class SignatureError(ValueError):
    """A signature is missing, malformed, off-profile or does not verify."""


# algorithm URI -> (key family, hash, xmlsec transform)
SIGNATURE_ALGORITHMS: dict[str, tuple[str, type[hashes.HashAlgorithm], Any]] = {
    SIG_RSA_SHA256: ("rsa", hashes.SHA256, xmlsec.Transform.RSA_SHA256),
    SIG_RSA_SHA384: ("rsa", hashes.SHA384, xmlsec.Transform.RSA_SHA384),
    SIG_RSA_SHA512: ("rsa", hashes.SHA512, xmlsec.Transform.RSA_SHA512),
    SIG_ECDSA_SHA256: ("ec", hashes.SHA256, xmlsec.Transform.ECDSA_SHA256),
    SIG_ECDSA_SHA384: ("ec", hashes.SHA384, xmlsec.Transform.ECDSA_SHA384),
    SIG_ECDSA_SHA512: ("ec", hashes.SHA512, xmlsec.Transform.ECDSA_SHA512),
    SIG_RSA_SHA1: ("rsa", hashes.SHA1, xmlsec.Transform.RSA_SHA1),
}
DIGEST_FOR_SIGNATURE = {
    SIG_RSA_SHA256: xmlsec.Transform.SHA256, SIG_ECDSA_SHA256: xmlsec.Transform.SHA256,
    SIG_RSA_SHA384: xmlsec.Transform.SHA384, SIG_ECDSA_SHA384: xmlsec.Transform.SHA384,
    SIG_RSA_SHA512: xmlsec.Transform.SHA512, SIG_ECDSA_SHA512: xmlsec.Transform.SHA512,
    SIG_RSA_SHA1: xmlsec.Transform.SHA1,
}
DIGEST_URIS = {
    "http://www.w3.org/2001/04/xmlenc#sha256", "http://www.w3.org/2001/04/xmldsig-more#sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512", "http://www.w3.org/2000/09/xmldsig#sha1",
}
ALLOWED_TRANSFORMS = frozenset({TRANSFORM_ENVELOPED, TRANSFORM_EXC_C14N})


def allowed_algorithms(allow_sha1: bool) -> frozenset[str]:
    algs = set(SIGNATURE_ALGORITHMS)
    if not allow_sha1:
        algs.discard(SIG_RSA_SHA1)
    return frozenset(algs)


# ---------------------------------------------------------------- verification keys (cached)

_cert_cache: OrderedDict[str, tuple[xmlsec.Key, object]] = OrderedDict()
_cert_lock = threading.Lock()
_CERT_CACHE_SIZE = 4096


def verification_key(cert_pem: str) -> tuple[xmlsec.Key, object]:
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

def sign_element(element: etree._Element, key: xmlsec.Key, algorithm: str = SIG_RSA_SHA256,
                 cert_b64: str | None = None) -> None:
    """Insert an enveloped signature right after the element's saml:Issuer and sign it.

    The element must carry an ID attribute; the signature has exactly one Reference to it.
    With `cert_b64` the X509Certificate is written from that text and `key` should carry no
    certificate: xmlsec then does not re-encode the certificate on every signature (~20 % of it).
    """
    if algorithm not in SIGNATURE_ALGORITHMS:
        raise SignatureError(f"unsupported signature algorithm {algorithm}")
    transform = SIGNATURE_ALGORITHMS[algorithm][2]
    sig = xmlsec.template.create(element, xmlsec.Transform.EXCL_C14N, transform, ns="ds")
    issuer = element.find(f"{{{NS_SAML}}}Issuer")
    if issuer is not None:
        issuer.addnext(sig)
    else:
        element.insert(0, sig)
    ref = xmlsec.template.add_reference(sig, DIGEST_FOR_SIGNATURE[algorithm], uri="#" + element.get("ID"))
    xmlsec.template.add_transform(ref, xmlsec.Transform.ENVELOPED)
    xmlsec.template.add_transform(ref, xmlsec.Transform.EXCL_C14N)
    x509_data = xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(sig))
    if cert_b64 is not None:
        etree.SubElement(x509_data, f"{{{NS_DS}}}X509Certificate").text = cert_b64
    xmlsec.tree.add_ids(element, ["ID"])
    ctx = xmlsec.SignatureContext()
    ctx.key = key
    ctx.sign(sig)


def sign_redirect_query(query_without_sig: str, private_key: object, algorithm: str) -> str:
    """Signature value for HTTP-Redirect (saml-bindings-2.0-os §3.4.4.1) over the encoded query."""
    family, hash_cls, _ = SIGNATURE_ALGORITHMS[algorithm]
    data = query_without_sig.encode("ascii")
    if family == "rsa" and isinstance(private_key, rsa.RSAPrivateKey):
        sig = private_key.sign(data, padding.PKCS1v15(), hash_cls())
    elif family == "ec" and isinstance(private_key, ec.EllipticCurvePrivateKey):
        sig = private_key.sign(data, ec.ECDSA(hash_cls()))
    else:
        raise SignatureError("signature algorithm does not match the key type")
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
    if digest_alg not in DIGEST_URIS or (digest_alg.endswith("#sha1") and SIG_RSA_SHA1 not in set(allowed)):
        raise SignatureError(f"digest algorithm {digest_alg!r} is not allowed")
    if sig.find(f".//{{{NS_DS}}}RetrievalMethod") is not None:
        raise SignatureError("KeyInfo RetrievalMethod is not allowed")
    if sig.find(f"{{{NS_DS}}}Object") is not None:
        raise SignatureError("ds:Object inside the signature is not allowed")
    xmlsec.tree.add_ids(root, ["ID"])
    for pem in cert_pems:
        xkey, _ = verification_key(pem)
        ctx = xmlsec.SignatureContext()
        ctx.key = xkey
        # only the configured algorithm family may be used by xmlsec for this verification
        try:
            ctx.verify(sig)
        except xmlsec.Error:
            continue
        return str(algorithm)
    raise SignatureError("the signature does not verify with the app's certificates")


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
    family, hash_cls, _ = SIGNATURE_ALGORITHMS[algorithm]
    for pem in cert_pems:
        _, pub = verification_key(pem)
        try:
            if family == "rsa" and isinstance(pub, rsa.RSAPublicKey):
                pub.verify(signature, signed, padding.PKCS1v15(), hash_cls())
                return algorithm
            if family == "ec" and isinstance(pub, ec.EllipticCurvePublicKey):
                pub.verify(signature, signed, ec.ECDSA(hash_cls()))
                return algorithm
        except InvalidSignature:
            continue
    raise SignatureError("the signature does not verify with the app's certificates")
