"""Trust checks of fetched SAML metadata: the enveloped signature over the document's root, verified with a trust
anchor's key only (Shibboleth's SignatureValidation filter), and validUntil (its RequiredValidUntil filter).

Profile (saml-metadata-2.0-os §3, xmldsig-core): exactly one ds:Signature that is a direct child of the root
(EntityDescriptor or EntitiesDescriptor), one Reference whose URI is "" (the whole document) or "#" + the
root's ID (unique in the document, xml:id included), transforms enveloped + exclusive c14n, SHA-256 or stronger
(RSA or ECDSA); SHA-1, KeyInfo indirection and ds:Object are refused. The signature is checked *on the root that
is then read*: a signature over another element (signature wrapping) verifies nothing here. Signatures deeper in
the document (an SP signing its own EntityDescriptor inside a signed aggregate) are covered by the root's digest
and otherwise ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .constants import NS_DS, NS_MD, TRANSFORM_ENVELOPED, TRANSFORM_EXC_C14N, DigestAlgorithm, SignatureAlgorithm
from .signing import verification_key
from .sp_metadata import MAX_METADATA_BYTES, MetadataError, safe_parse_xml
from .xstypes import XsValueError, parse_xs_datetime

# SHA-256 or stronger only (no SHA-1, whatever an app's allow_sha1 says: that is about its protocol messages)
METADATA_SIGNATURE_ALGORITHMS = frozenset({
    SignatureAlgorithm.RSA_SHA256, SignatureAlgorithm.RSA_SHA384, SignatureAlgorithm.RSA_SHA512,
    SignatureAlgorithm.ECDSA_SHA256, SignatureAlgorithm.ECDSA_SHA384, SignatureAlgorithm.ECDSA_SHA512})
METADATA_DIGESTS = frozenset({DigestAlgorithm.SHA256, DigestAlgorithm.SHA384, DigestAlgorithm.SHA512})
_TRANSFORMS = frozenset({TRANSFORM_ENVELOPED, TRANSFORM_EXC_C14N})
_ROOTS = (f"{{{NS_MD}}}EntityDescriptor", f"{{{NS_MD}}}EntitiesDescriptor")
MIN_RSA_BITS = 2048
_XML_ID = "{http://www.w3.org/XML/1998/namespace}id"


class TrustError(ValueError):
    """Fetched metadata is refused: unsigned, badly signed, off-profile, expired or valid for too long. `code` is
    the machine reason (signature_missing, signature_invalid, signature_algorithm, valid_until_past,
    valid_until_missing, valid_until_too_far)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class RootTimes:
    """validUntil and cacheDuration of the document's root (saml-metadata-2.0-os §2.2.1, §2.3.1)."""

    valid_until: datetime | None
    cache_duration: timedelta | None


def load_trust_anchor(pem: str) -> x509.Certificate:
    """A trust anchor: one PEM X.509 certificate with an RSA (2048 bits or more) or EC key; ValueError says why
    not."""
    text = pem.strip()
    if text.count("-----BEGIN CERTIFICATE-----") != 1:
        raise ValueError("a trust anchor is one PEM certificate (-----BEGIN CERTIFICATE----- … -----END "
                         "CERTIFICATE-----)")
    try:
        cert = x509.load_pem_x509_certificate(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise ValueError("the trust anchor is not a readable PEM certificate") from None
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"the trust anchor's RSA key has {key.key_size} bits; at least {MIN_RSA_BITS} are "
                             "needed")
    elif not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("the trust anchor's key must be RSA or EC")
    return cert


def verify_metadata_signature(xml: bytes, anchor_pem: str, *, max_bytes: int = MAX_METADATA_BYTES) -> str:
    """Verify the enveloped signature over the root of `xml` with the anchor's key; return the algorithm used.
    TrustError (code signature_*) on anything else. The document is parsed with the same hardened parser that
    then reads it (safe_parse_xml), so the element verified is the element used."""
    return verify_root_signature(_parse(xml, max_bytes), anchor_pem)


def verify_aggregate(xml: bytes, anchor_pem: str, *, max_bytes: int) -> RootTimes:
    """A federation feed's document: the root's signature verified with the anchor (as verify_metadata_signature)
    and the root's validUntil / cacheDuration, from one parse of at most `max_bytes`; the tree is freed when this
    returns, so the caller then reads the same bytes entity by entity (iterparse) without holding it."""
    root = _parse(xml, max_bytes)
    if root.tag != f"{{{NS_MD}}}EntitiesDescriptor":
        raise TrustError("metadata_invalid", "a feed's document must be an EntitiesDescriptor aggregate")
    verify_root_signature(root, anchor_pem)
    return _root_times(root)


def _parse(xml: bytes, max_bytes: int) -> Any:
    try:
        return safe_parse_xml(xml, max_bytes=max_bytes)
    except MetadataError as exc:
        raise TrustError("metadata_invalid", str(exc)) from None


def verify_root_signature(root: Any, anchor_pem: str) -> str:
    """verify_metadata_signature on an already parsed root element."""
    if root.tag not in _ROOTS:
        raise TrustError("metadata_invalid", "the document's root is not an EntityDescriptor or "
                                             "EntitiesDescriptor")
    sigs = [el for el in root if el.tag == f"{{{NS_DS}}}Signature"]
    if not sigs:
        raise TrustError("signature_missing", "the metadata is not signed (no ds:Signature on its root element), "
                                              "and this app has a trust anchor")
    if len(sigs) != 1:
        raise TrustError("signature_invalid", f"the root element carries {len(sigs)} signatures; exactly one is "
                                              "allowed")
    sig = sigs[0]
    signed_info = sig.find(f"{{{NS_DS}}}SignedInfo")
    if signed_info is None:
        raise TrustError("signature_invalid", "the signature has no SignedInfo")
    c14n = signed_info.find(f"{{{NS_DS}}}CanonicalizationMethod")
    if c14n is None or c14n.get("Algorithm") != TRANSFORM_EXC_C14N:
        raise TrustError("signature_invalid", "the signature's canonicalization must be exclusive c14n")
    method = signed_info.find(f"{{{NS_DS}}}SignatureMethod")
    algorithm = method.get("Algorithm") if method is not None else None
    if algorithm not in METADATA_SIGNATURE_ALGORITHMS:
        raise TrustError("signature_algorithm", f"signature algorithm {algorithm!r} is refused: metadata must be "
                                                "signed with SHA-256 or stronger (RSA or ECDSA)")
    refs = signed_info.findall(f"{{{NS_DS}}}Reference")
    if len(refs) != 1:
        raise TrustError("signature_invalid", f"the signature has {len(refs)} References; exactly one is allowed")
    ref = refs[0]
    uri = ref.get("URI")
    root_id = root.get("ID")
    if uri != "":
        if not root_id or uri != "#" + root_id:
            raise TrustError("signature_invalid", "the signature's Reference does not point at the root element "
                                                  "(signature wrapping?)")
        # xml:id counts too: libxml2 registers it as an ID, so "#" + root_id could resolve to that element
        same = [el for el in root.iter() if isinstance(el.tag, str)
                and root_id in (el.get("ID"), el.get(_XML_ID))]
        if len(same) != 1:
            raise TrustError("signature_invalid", "the root element's ID is not unique in the document")
    transforms = ref.findall(f"{{{NS_DS}}}Transforms/{{{NS_DS}}}Transform")
    if TRANSFORM_ENVELOPED not in {t.get("Algorithm") for t in transforms}:
        raise TrustError("signature_invalid", "the signature is not an enveloped signature")
    for t in transforms:
        if t.get("Algorithm") not in _TRANSFORMS:
            raise TrustError("signature_invalid", f"transform {t.get('Algorithm')!r} is not allowed")
        params = list(t)
        if params and not (t.get("Algorithm") == TRANSFORM_EXC_C14N and len(params) == 1
                           and params[0].tag == f"{{{TRANSFORM_EXC_C14N}}}InclusiveNamespaces"):
            raise TrustError("signature_invalid", "transforms with parameters are not allowed")
    digest = ref.find(f"{{{NS_DS}}}DigestMethod")
    digest_alg = digest.get("Algorithm") if digest is not None else None
    if digest_alg not in METADATA_DIGESTS:
        raise TrustError("signature_algorithm", f"digest algorithm {digest_alg!r} is refused: SHA-256 or stronger")
    if sig.find(f".//{{{NS_DS}}}RetrievalMethod") is not None:
        raise TrustError("signature_invalid", "KeyInfo RetrievalMethod is not allowed")
    if sig.find(f"{{{NS_DS}}}Object") is not None:
        raise TrustError("signature_invalid", "ds:Object inside the signature is not allowed")
    try:
        load_trust_anchor(anchor_pem)
        key, _ = verification_key(anchor_pem.strip() + "\n")
    except (ValueError, xmlsec.Error):
        raise TrustError("signature_invalid", "the app's trust anchor cannot be used") from None
    ctx = xmlsec.SignatureContext()
    ctx.key = key   # the anchor's key only: any KeyInfo in the document is never used
    try:
        if uri != "":   # "#ID": xmlsec resolves it through the ID attributes (checked unique above)
            xmlsec.tree.add_ids(root, ["ID"])
        ctx.verify(sig)
    except xmlsec.Error:
        raise TrustError("signature_invalid", "the metadata's signature does not verify with the app's trust "
                                              "anchor") from None
    return str(algorithm)


def root_times(xml: bytes) -> RootTimes:
    """validUntil and cacheDuration of the root element (MetadataError when unreadable)."""
    return _root_times(safe_parse_xml(xml))


def _root_times(root: Any) -> RootTimes:
    valid_until = None
    raw = root.get("validUntil")
    if raw is not None:
        try:
            valid_until = parse_xs_datetime(raw)
        except XsValueError:
            raise MetadataError(f"validUntil={raw[:60]!r} is not an xs:dateTime") from None
    cache = root.get("cacheDuration")
    return RootTimes(valid_until, parse_xs_duration(cache) if cache is not None else None)


def check_valid_until(valid_until: datetime | None, now: datetime, *, max_validity: timedelta | None) -> None:
    """RequiredValidUntil: refuse metadata whose validUntil has passed; with `max_validity` (apps with a trust
    anchor) validUntil must be present and at most that far ahead (old signed metadata cannot be replayed
    forever)."""
    if valid_until is not None and valid_until <= now:
        raise TrustError("valid_until_past", f"the metadata's validUntil ({valid_until:%Y-%m-%d %H:%M} UTC) has "
                                             "passed")
    if max_validity is None:
        return
    if valid_until is None:
        raise TrustError("valid_until_missing", "signed metadata must carry validUntil on its root element")
    if valid_until - now > max_validity:
        raise TrustError("valid_until_too_far", f"the metadata's validUntil ({valid_until:%Y-%m-%d %H:%M} UTC) is "
                                                f"more than {max_validity.days} days ahead")


def parse_xs_duration(text: str) -> timedelta | None:
    """An xs:duration such as PT6H or P1DT12H (years and months count as 365 and 30 days); None when it cannot
    be read (cacheDuration is a hint: an unreadable one is ignored, the app's maximum interval applies)."""
    import re

    m = re.fullmatch(r"\s*P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?\s*",
                     text)
    if not m or not any(m.groups()) or text.strip().endswith("T"):
        return None
    y, mo, d, h, mi, s = m.groups()
    days = int(y or 0) * 365 + int(mo or 0) * 30 + int(d or 0)
    try:
        return timedelta(days=days, hours=int(h or 0), minutes=int(mi or 0), seconds=float(s or 0))
    except OverflowError:
        return None


__all__ = ["METADATA_SIGNATURE_ALGORITHMS", "RootTimes", "TrustError", "check_valid_until", "load_trust_anchor",
           "parse_xs_duration", "root_times", "verify_aggregate", "verify_metadata_signature",
           "verify_root_signature"]
