"""Test service providers: pysaml2's Saml2Client and python3-saml (strict) behind one interface.

The IdP's functional tests drive real SAML 2.0 round trips against two independent SP implementations.
The harness knows nothing about the IdP except its metadata XML (SAML metadata 2.0, IDPSSODescriptor).

Both SPs are wrapped so that tests can be parametrised over them:

    sp = Pysaml2SP(tmp_path, idp_metadata_xml)            # or OneLoginSP(...)
    req = sp.authn_request("redirect", relay_state="/x")  # -> OutgoingRequest (url/form)
    ... drive the IdP with req.url / req.form, get SAMLResponse ...
    result = sp.process_response(saml_response_b64, req.request_id)   # -> SPResult, or SPValidationError

After the library has accepted a Response, the harness applies a few profile rules itself (SAML 2.0 profiles
4.1.4.2-4.1.4.3, bindings 3.5.5.2) that one or both libraries leave out: Destination present and equal to the
ACS URL, Recipient equal to the ACS URL, InResponseTo equal to the request ID, an AudienceRestriction naming
this SP, the Issuer equal to the IdP entityID, an encrypted assertion when one is wanted.
"""

from __future__ import annotations

import base64
import copy
import datetime
import gc
import logging
import os
import re
import shutil
import tempfile
import traceback
import warnings
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree

__all__ = [
    "BINDING_POST",
    "BINDING_REDIRECT",
    "DIGEST_SHA256",
    "RSA_SHA1",
    "RSA_SHA256",
    "RSA_SHA384",
    "RSA_SHA512",
    "SP_CLASSES",
    "STATUS_SUCCESS",
    "IdPInfo",
    "KeyPair",
    "OneLoginSP",
    "OutgoingRequest",
    "Pysaml2SP",
    "SPResult",
    "SPValidationError",
    "TestSP",
    "make_keypair",
    "parse_idp_metadata",
]

# --------------------------------------------------------------------------------------------- constants

RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
RSA_SHA384 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384"
RSA_SHA512 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512"
DIGEST_SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
DIGEST_SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
DIGEST_SHA384 = "http://www.w3.org/2001/04/xmldsig-more#sha384"
DIGEST_SHA512 = "http://www.w3.org/2001/04/xmlenc#sha512"
# XML signatures made by the SPs use the digest that matches the signature algorithm.
_DIGEST_FOR = {RSA_SHA1: DIGEST_SHA1, RSA_SHA256: DIGEST_SHA256, RSA_SHA384: DIGEST_SHA384, RSA_SHA512: DIGEST_SHA512}

BINDING_REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
BINDING_POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
BINDING_ARTIFACT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Artifact"
_BINDINGS = {"redirect": BINDING_REDIRECT, "post": BINDING_POST}

STATUS_SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
NAMEID_UNSPECIFIED = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
CM_BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"

NS = {
    "md": "urn:oasis:names:tc:SAML:2.0:metadata",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "xenc": "http://www.w3.org/2001/04/xmlenc#",
}
_MD = "{" + NS["md"] + "}"
_SAML = "{" + NS["saml"] + "}"
_SAMLP = "{" + NS["samlp"] + "}"
_DS = "{" + NS["ds"] + "}"

# Negative tests make pysaml2 log every rejection (with tracebacks) and xmlschema log parse details.
# Quiet those loggers only; warnings are left alone (pytest runs with filterwarnings = error).
for _name in ("saml2", "xmlschema"):
    logging.getLogger(_name).setLevel(logging.CRITICAL)


class SPValidationError(Exception):
    """The test SP refused a message (bad signature, wrong audience/destination/recipient, status, ...).

    `detail` holds the library's traceback as text when a library call failed. (The library exception is not
    chained as __cause__: see release_pysaml2_tempfiles.)
    """

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail


def release_pysaml2_tempfiles() -> None:
    """Collect the NamedTemporaryFiles pysaml2 leaves behind when a signature check raises.

    pysaml2 (sigver._check_signature) writes each metadata certificate to a NamedTemporaryFile and never closes
    it; on the error path those files end up in reference cycles with the exception's frames. When the cyclic
    GC later finalises them, the file object can go before its closer and Python emits a ResourceWarning, which
    pytest (filterwarnings = error) reports as PytestUnraisableExceptionWarning in whatever test runs next.
    Collecting right away, with ResourceWarning ignored for just this collection, closes them deterministically.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


_TOLERATED = object()


def _pysaml2_call(
    what: str,
    fn: Callable[..., Any],
    *args: Any,
    note: str = "",
    tolerate: tuple[type[BaseException], ...] = (),
    **kwargs: Any,
) -> Any:
    """Run a pysaml2 call; an exception becomes SPValidationError (after releasing pysaml2's temp files).

    Exceptions of a `tolerate` type make the call return _TOLERATED instead.
    """
    try:
        return fn(*args, **kwargs)
    except tolerate:
        failure = None
    except Exception as exc:
        failure = (f"pysaml2 rejected the {what}: {type(exc).__name__}: {exc}{note}", traceback.format_exc())
    # outside the except blocks: the exception and its frames are unreachable now
    release_pysaml2_tempfiles()
    if failure is None:
        return _TOLERATED
    raise SPValidationError(*failure)


# --------------------------------------------------------------------------------------------- keys


@dataclass(frozen=True)
class KeyPair:
    key_path: Path
    cert_path: Path
    key_pem: str
    cert_pem: str

    @property
    def cert_b64(self) -> str:
        """The certificate body (base64 DER, one line), as it appears in metadata."""
        return "".join(line for line in self.cert_pem.splitlines() if "-----" not in line)


def _unique_stem(workdir: Path, cn: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", cn).strip("._") or "key"
    candidate, n = stem, 1
    while (workdir / f"{candidate}.key").exists() or (workdir / f"{candidate}.crt").exists():
        n += 1
        candidate = f"{stem}-{n}"
    return candidate


def make_keypair(workdir: Path, cn: str, key_size: int = 2048) -> KeyPair:
    """Generate an RSA key and a self-signed SHA-256 certificate (CN=cn) into workdir.

    Files are `<cn>.key` (mode 0600, PKCS#8 PEM) and `<cn>.crt`; an existing pair is never overwritten
    (a `-2`, `-3`, ... suffix is added instead).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
    stem = _unique_stem(workdir, cn)
    key_path, cert_path = workdir / f"{stem}.key", workdir / f"{stem}.crt"
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key_pem)
    os.chmod(key_path, 0o600)  # in case the umask interfered
    cert_path.write_text(cert_pem)
    return KeyPair(key_path=key_path, cert_path=cert_path, key_pem=key_pem, cert_pem=cert_pem)


# --------------------------------------------------------------------------------------------- messages


@dataclass
class SPResult:
    name_id: str
    name_id_format: str | None
    attributes: dict[str, list[str]]  # keyed by Attribute/@Name exactly as sent
    session_index: str | None
    issuer: str
    authn_context: str | None  # AuthnContextClassRef
    in_response_to: str | None
    raw_xml: str  # the decoded Response as received (an encrypted assertion stays encrypted)


@dataclass
class OutgoingRequest:
    binding: str  # "redirect" | "post"
    url: str  # redirect: full URL with query string; post: the form action
    form: dict[str, str] = field(default_factory=dict)  # post: SAMLRequest/SAMLResponse (+RelayState)
    request_id: str = ""  # ID of the message (for a LogoutResponse: its own ID)

    def query(self) -> str:
        """The raw query string of a redirect URL (empty for POST)."""
        return urlsplit(self.url).query

    def params(self) -> dict[str, str]:
        """Decoded query parameters (redirect) or the form fields (post)."""
        if self.binding == "post":
            return dict(self.form)
        return {k: v[0] for k, v in parse_qs(self.query(), keep_blank_values=True).items()}


# --------------------------------------------------------------------------------------------- XML helpers

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=False, huge_tree=False)


def _xml(data: str | bytes) -> etree._Element:
    if isinstance(data, str):
        data = data.encode("utf-8")
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise SPValidationError("DTDs are not allowed in SAML messages")
    try:
        return etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise SPValidationError(f"message is not well-formed XML: {exc}") from exc


def _b64decode(value: str) -> bytes:
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (ValueError, TypeError) as exc:
        raise SPValidationError(f"message is not valid base64: {exc}") from exc


def _decode_message(value: str, binding: str) -> bytes:
    """Base64 (POST) or base64 + raw DEFLATE (Redirect) -> XML bytes."""
    raw = _b64decode(value)
    if binding == "redirect":
        try:
            return zlib.decompress(raw, -15)
        except zlib.error as exc:
            raise SPValidationError(f"redirect message is not DEFLATE-compressed: {exc}") from exc
    return raw


def _text(el: etree._Element | None) -> str | None:
    return None if el is None else (el.text or "").strip()


def _status(root: etree._Element) -> tuple[str | None, str | None, str | None]:
    """(top-level StatusCode, second-level StatusCode, StatusMessage) of a protocol response."""
    top = root.find("samlp:Status/samlp:StatusCode", NS)
    sub = top.find("samlp:StatusCode", NS) if top is not None else None
    msg = root.find("samlp:Status/samlp:StatusMessage", NS)
    return (
        top.get("Value") if top is not None else None,
        sub.get("Value") if sub is not None else None,
        _text(msg),
    )


def _status_note(root: etree._Element | None) -> str:
    if root is None:
        return ""
    top, sub, msg = _status(root)
    if top in (None, STATUS_SUCCESS):
        return ""
    return f" [status {top}" + (f" / {sub}" if sub else "") + (f": {msg}" if msg else "") + "]"


def _single_assertion(resp: etree._Element) -> etree._Element:
    """The one Assertion of a (decrypted) Response: Response/Assertion or Response/EncryptedAssertion/Assertion."""
    found = resp.findall("saml:Assertion", NS) + resp.findall("saml:EncryptedAssertion/saml:Assertion", NS)
    if len(found) != 1:
        raise SPValidationError(f"expected exactly one (decrypted) Assertion in the Response, found {len(found)}")
    return found[0]


def _attributes(assertion: etree._Element) -> dict[str, list[str]]:
    attrs: dict[str, list[str]] = {}
    for attr in assertion.iterfind("saml:AttributeStatement/saml:Attribute", NS):
        values = [v.text or "" for v in attr.iterfind("saml:AttributeValue", NS)]
        attrs.setdefault(attr.get("Name", ""), []).extend(values)
    return attrs


def _query_params(query: str) -> tuple[str, dict[str, str]]:
    """Accept a raw query string or a whole URL; return (raw query, decoded single-valued params)."""
    if "://" in query or query.startswith("/"):
        query = urlsplit(query).query
    query = query.lstrip("?")
    parsed = parse_qs(query, keep_blank_values=True)
    dupes = [k for k, v in parsed.items() if len(v) != 1]
    if dupes:
        raise SPValidationError(f"repeated query parameters: {dupes}")
    return query, {k: v[0] for k, v in parsed.items()}


# --------------------------------------------------------------------------------------------- IdP metadata


@dataclass
class IdPInfo:
    entity_id: str
    sso: dict[str, str]  # "redirect"/"post" -> Location
    slo: dict[str, str]  # "redirect"/"post" -> Location
    slo_response: dict[str, str]  # "redirect"/"post" -> ResponseLocation (or Location)
    signing_certs: list[str]  # base64 DER bodies, in metadata order
    want_authn_requests_signed: bool


def parse_idp_metadata(xml: str | bytes) -> IdPInfo:
    root = _xml(xml)
    eds = [root] if root.tag == f"{_MD}EntityDescriptor" else root.findall(".//md:EntityDescriptor", NS)
    for ed in eds:
        idp = ed.find("md:IDPSSODescriptor", NS)
        if idp is None:
            continue
        rev = {v: k for k, v in _BINDINGS.items()}
        sso: dict[str, str] = {}
        for el in idp.iterfind("md:SingleSignOnService", NS):
            if el.get("Binding") in rev:
                sso.setdefault(rev[el.get("Binding")], el.get("Location", ""))
        slo: dict[str, str] = {}
        slo_resp: dict[str, str] = {}
        for el in idp.iterfind("md:SingleLogoutService", NS):
            if el.get("Binding") in rev:
                b = rev[el.get("Binding")]
                slo.setdefault(b, el.get("Location", ""))
                slo_resp.setdefault(b, el.get("ResponseLocation") or el.get("Location", ""))
        certs = []
        for kd in idp.iterfind("md:KeyDescriptor", NS):
            if kd.get("use") in (None, "", "signing"):
                for c in kd.iterfind("ds:KeyInfo/ds:X509Data/ds:X509Certificate", NS):
                    certs.append("".join((c.text or "").split()))
        return IdPInfo(
            entity_id=ed.get("entityID", ""),
            sso=sso,
            slo=slo,
            slo_response=slo_resp,
            signing_certs=certs,
            want_authn_requests_signed=idp.get("WantAuthnRequestsSigned") in ("true", "1"),
        )
    raise ValueError("no IDPSSODescriptor in the IdP metadata")


# --------------------------------------------------------------------------------------------- SP metadata


def _normalise_sp_metadata(
    xml: str | bytes,
    *,
    acs_url: str,
    slo_url: str,
    sign_requests: bool,
    want_assertions_signed: bool,
    artifact_acs: bool = False,
) -> str:
    """Make the libraries' SP metadata say exactly what the harness promises.

    One HTTP-POST ACS at acs_url with index 0 (isDefault), SingleLogoutService for Redirect and POST at slo_url,
    AuthnRequestsSigned / WantAssertionsSigned from the flags. KeyDescriptors are left as the library wrote them.
    With artifact_acs, an HTTP-Artifact ACS at the same URL follows with index 1 (as crewjam/saml publishes).
    """
    root = etree.fromstring(xml.encode() if isinstance(xml, str) else xml, _PARSER)
    sp = root.find("md:SPSSODescriptor", NS)
    if sp is None:
        raise ValueError("no SPSSODescriptor in generated SP metadata")
    sp.set("AuthnRequestsSigned", "true" if sign_requests else "false")
    sp.set("WantAssertionsSigned", "true" if want_assertions_signed else "false")
    for el in sp.findall("md:SingleLogoutService", NS) + sp.findall("md:AssertionConsumerService", NS):
        sp.remove(el)
    children = list(sp)
    before_slo = {
        "Signature",
        "Extensions",
        "KeyDescriptor",
        "Organization",
        "ContactPerson",
        "ArtifactResolutionService",
    }
    pos = 0
    for i, child in enumerate(children):
        if isinstance(child.tag, str) and etree.QName(child).localname in before_slo:
            pos = i + 1
    for binding in (BINDING_REDIRECT, BINDING_POST):
        el = etree.Element(f"{_MD}SingleLogoutService", Binding=binding, Location=slo_url)
        sp.insert(pos, el)
        pos += 1
    children = list(sp)
    before_acs = before_slo | {"SingleLogoutService", "ManageNameIDService", "NameIDFormat"}
    pos = 0
    for i, child in enumerate(children):
        if isinstance(child.tag, str) and etree.QName(child).localname in before_acs:
            pos = i + 1
    acs = etree.Element(
        f"{_MD}AssertionConsumerService", Binding=BINDING_POST, Location=acs_url, index="0", isDefault="true"
    )
    sp.insert(pos, acs)
    if artifact_acs:
        art = etree.Element(f"{_MD}AssertionConsumerService", Binding=BINDING_ARTIFACT, Location=acs_url, index="1")
        sp.insert(pos + 1, art)
    return etree.tostring(root, encoding="unicode")


# --------------------------------------------------------------------------------------------- base class


class TestSP(ABC):
    """Common interface and the profile checks both SP wrappers share."""

    __test__ = False  # not a pytest test class
    kind = "base"

    def __init__(
        self,
        workdir: Path,
        idp_metadata_xml: str,
        *,
        base_url: str = "https://sp1.example.com",
        sign_requests: bool = False,
        want_assertions_signed: bool = True,
        want_response_signed: bool = True,
        want_assertions_encrypted: bool = False,
        allow_unsolicited: bool = True,
        artifact_acs: bool = False,
        keypair: KeyPair | None = None,
        sig_alg: str = RSA_SHA256,
    ) -> None:
        if sig_alg not in _DIGEST_FOR:
            raise ValueError(f"unsupported signature algorithm {sig_alg}")
        self.base_url = base_url.rstrip("/")
        self.entity_id = f"{self.base_url}/metadata"
        self.acs_url = f"{self.base_url}/acs"
        self.slo_url = f"{self.base_url}/slo"
        self.sign_requests = sign_requests
        self.want_assertions_signed = want_assertions_signed
        self.want_response_signed = want_response_signed
        self.want_assertions_encrypted = want_assertions_encrypted
        self.allow_unsolicited = allow_unsolicited
        self.artifact_acs = artifact_acs  # metadata lists an HTTP-Artifact ACS at acs_url too (pysaml2 only)
        self.sig_alg = sig_alg
        self.digest_alg = _DIGEST_FOR[sig_alg]
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        host = urlsplit(self.base_url).hostname or "sp"
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.kind}-{host}-", dir=workdir))
        self.keypair = keypair or make_keypair(self.workdir, host)
        self.idp_metadata_xml = idp_metadata_xml
        self.idp = parse_idp_metadata(idp_metadata_xml)
        self.last_logout_request_id: str | None = None  # set by process_logout_request
        self.last_logout_sub_status: str | None = None  # the second-level status of the last LogoutResponse
        self._setup()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.entity_id}>"

    # ------------------------------------------------------------------ abstract

    @abstractmethod
    def _setup(self) -> None: ...

    @abstractmethod
    def metadata_xml(self) -> str: ...

    @abstractmethod
    def authn_request(
        self,
        binding: str = "redirect",
        *,
        relay_state: str | None = None,
        force_authn: bool = False,
        is_passive: bool = False,
        name_id_format: str | None = None,
        requested_authn_context: tuple[str, list[str]] | None = None,
        acs_url: str | None = None,
        acs_index: int | None = None,
        sign: bool | None = None,
    ) -> OutgoingRequest: ...

    @abstractmethod
    def process_response(self, saml_response_b64: str, request_id: str | None) -> SPResult: ...

    @abstractmethod
    def logout_request(
        self,
        name_id: str,
        session_index: str | None,
        binding: str = "redirect",
        *,
        name_id_format: str | None = None,
        sign: bool = True,
        relay_state: str | None = None,
    ) -> OutgoingRequest: ...

    @abstractmethod
    def process_logout_response(
        self,
        binding: str,
        *,
        query: str | None = None,
        saml_response_b64: str | None = None,
        request_id: str | None = None,
    ) -> str: ...

    @abstractmethod
    def process_logout_request(
        self, binding: str, *, query: str | None = None, saml_request_b64: str | None = None
    ) -> tuple[str, list[str]]: ...

    @abstractmethod
    def logout_response(
        self,
        binding: str = "redirect",
        *,
        status: str = STATUS_SUCCESS,
        relay_state: str | None = None,
        sign: bool = True,
    ) -> OutgoingRequest:
        """Answer the last LogoutRequest accepted by process_logout_request (IdP-initiated/propagated SLO)."""

    # ------------------------------------------------------------------ shared helpers

    @staticmethod
    def _binding(binding: str) -> str:
        if binding not in _BINDINGS:
            raise ValueError(f"binding must be 'redirect' or 'post', not {binding!r}")
        return binding

    def _sso_url(self, binding: str) -> str:
        try:
            return self.idp.sso[binding]
        except KeyError:
            raise ValueError(f"IdP metadata has no SingleSignOnService for {binding}") from None

    def _slo_url(self, binding: str) -> str:
        try:
            return self.idp.slo[binding]
        except KeyError:
            raise ValueError(f"IdP metadata has no SingleLogoutService for {binding}") from None

    def _decode_response(self, saml_response_b64: str) -> tuple[str, etree._Element]:
        raw = _b64decode(saml_response_b64)
        root = _xml(raw)
        if root.tag != f"{_SAMLP}Response":
            raise SPValidationError(f"expected samlp:Response, got {root.tag}")
        return raw.decode("utf-8", "replace"), root

    def _check_response(
        self, raw_root: etree._Element, resp: etree._Element, assertion: etree._Element, request_id: str | None
    ) -> None:
        """Profile rules applied after the library accepted the Response (resp/assertion decrypted)."""
        note = _status_note(raw_root)
        top, _, _ = _status(raw_root)
        if top != STATUS_SUCCESS:
            raise SPValidationError(f"response status is not Success{note}")
        dest = resp.get("Destination")
        if dest != self.acs_url:
            raise SPValidationError(f"Response Destination {dest!r} is not the ACS URL {self.acs_url!r}")
        irt = resp.get("InResponseTo")
        if request_id is not None and irt != request_id:
            raise SPValidationError(f"Response InResponseTo {irt!r} does not match request ID {request_id!r}")
        if request_id is None and not self.allow_unsolicited:
            raise SPValidationError("unsolicited response refused (allow_unsolicited=False)")
        if self.want_assertions_encrypted and (
            raw_root.find("saml:EncryptedAssertion", NS) is None or raw_root.find("saml:Assertion", NS) is not None
        ):
            raise SPValidationError("the assertion is not encrypted and this SP wants encrypted assertions")
        # profiles 4.1.4.2: the Response's Issuer is required when it is signed or its assertion encrypted
        response_issuer_required = (
            raw_root.find("ds:Signature", NS) is not None or raw_root.find("saml:EncryptedAssertion", NS) is not None
        )
        for where, el in (("Response", resp), ("Assertion", assertion)):
            issuer = _text(el.find("saml:Issuer", NS))
            if issuer is None and where == "Response" and not response_issuer_required:
                continue
            if issuer != self.idp.entity_id:
                raise SPValidationError(f"{where} Issuer {issuer!r} is not the IdP {self.idp.entity_id!r}")
        audiences = [_text(a) for a in assertion.iterfind("saml:Conditions/saml:AudienceRestriction/saml:Audience", NS)]
        if self.entity_id not in audiences:
            raise SPValidationError(f"no AudienceRestriction naming {self.entity_id!r} (audiences: {audiences})")
        bearer = [
            sc.find("saml:SubjectConfirmationData", NS)
            for sc in assertion.iterfind("saml:Subject/saml:SubjectConfirmation", NS)
            if sc.get("Method") == CM_BEARER
        ]
        if not bearer:
            raise SPValidationError("no bearer SubjectConfirmation")
        for scd in bearer:
            if scd is None:
                raise SPValidationError("bearer SubjectConfirmation without SubjectConfirmationData")
            if scd.get("Recipient") != self.acs_url:
                raise SPValidationError(f"Recipient {scd.get('Recipient')!r} is not the ACS URL {self.acs_url!r}")
            if request_id is not None and scd.get("InResponseTo") != request_id:
                raise SPValidationError(
                    f"SubjectConfirmationData InResponseTo {scd.get('InResponseTo')!r} is not {request_id!r}"
                )
            if not scd.get("NotOnOrAfter"):
                raise SPValidationError("bearer SubjectConfirmationData without NotOnOrAfter")

    def _check_logout_message(self, root: etree._Element, tag: str, request_id: str | None = None) -> None:
        if root.tag != f"{_SAMLP}{tag}":
            raise SPValidationError(f"expected samlp:{tag}, got {root.tag}")
        issuer = _text(root.find("saml:Issuer", NS))
        if issuer != self.idp.entity_id:
            raise SPValidationError(f"{tag} Issuer {issuer!r} is not the IdP {self.idp.entity_id!r}")
        dest = root.get("Destination")
        if dest != self.slo_url:  # signed front-channel messages MUST carry Destination (bindings 3.4.5.2/3.5.5.2)
            raise SPValidationError(f"{tag} Destination {dest!r} is not the SLO URL {self.slo_url!r}")
        if request_id is not None and root.get("InResponseTo") != request_id:
            raise SPValidationError(f"{tag} InResponseTo {root.get('InResponseTo')!r} is not {request_id!r}")

    @staticmethod
    def _override_acs(xml: str | bytes, acs_url: str | None, acs_index: int | None) -> bytes:
        """Rewrite AssertionConsumerServiceURL/Index of an unsigned AuthnRequest (before signing/encoding)."""
        root = etree.fromstring(xml.encode() if isinstance(xml, str) else xml, _PARSER)
        if acs_url is not None:
            root.set("AssertionConsumerServiceURL", acs_url)
        if acs_index is not None:
            root.set("AssertionConsumerServiceIndex", str(acs_index))
            if acs_url is None:  # SAML core 3.4.1: Index is mutually exclusive with URL + ProtocolBinding
                root.attrib.pop("AssertionConsumerServiceURL", None)
                root.attrib.pop("ProtocolBinding", None)
        return etree.tostring(root)


# --------------------------------------------------------------------------------------------- pysaml2


class Pysaml2SP(TestSP):
    """pysaml2 `Saml2Client`. Crypto runs through the Debian xmlsec1 binary."""

    kind = "pysaml2"

    def _setup(self) -> None:
        from saml2.client import Saml2Client
        from saml2.config import SPConfig

        xmlsec = shutil.which("xmlsec1")
        if xmlsec is None:
            raise RuntimeError("pysaml2 needs the xmlsec1 binary (apt-get install xmlsec1)")
        acs = [(self.acs_url, BINDING_POST)]
        if self.artifact_acs:
            acs.append((self.acs_url, BINDING_ARTIFACT))
        sp: dict[str, Any] = {
            "endpoints": {
                "assertion_consumer_service": acs,
                # a subclass may add endpoints (tests/soap_sp.py: a SOAP SingleLogoutService)
                "single_logout_service": [(self.slo_url, BINDING_REDIRECT), (self.slo_url, BINDING_POST),
                                          *getattr(self, "extra_slo_endpoints", ())],
            },
            "authn_requests_signed": self.sign_requests,
            "logout_requests_signed": True,
            "want_response_signed": self.want_response_signed,
            "want_assertions_signed": self.want_assertions_signed,
            "want_assertions_or_response_signed": False,
            "allow_unsolicited": self.allow_unsolicited,
            # An SPConfig reads these under service.sp (config.getattr(..., "sp")); the top-level copies
            # are what SPConfig.signing_algorithm shows. Without them pysaml2 signs with rsa-sha1/sha1.
            "signing_algorithm": self.sig_alg,
            "digest_algorithm": self.digest_alg,
        }
        conf: dict[str, Any] = {
            "entityid": self.entity_id,
            "xmlsec_binary": xmlsec,
            "key_file": str(self.keypair.key_path),
            "cert_file": str(self.keypair.cert_path),
            "signing_algorithm": self.sig_alg,
            "digest_algorithm": self.digest_alg,
            "allow_unknown_attributes": True,
            "service": {"sp": sp},
            "metadata": {"inline": [self.idp_metadata_xml]},
        }
        if self.want_assertions_encrypted:
            conf["encryption_keypairs"] = [
                {"key_file": str(self.keypair.key_path), "cert_file": str(self.keypair.cert_path)}
            ]
        self.config = SPConfig().load(conf)
        self.client = Saml2Client(config=self.config)
        self._last_logout_request: Any = None

    def metadata_xml(self) -> str:
        from saml2.metadata import entity_descriptor

        return _normalise_sp_metadata(
            str(entity_descriptor(self.config)),
            acs_url=self.acs_url,
            slo_url=self.slo_url,
            sign_requests=self.sign_requests,
            want_assertions_signed=self.want_assertions_signed,
            artifact_acs=self.artifact_acs,
        )

    # ------------------------------------------------------------------ HTTP-Artifact

    def resolve_artifact(self, artifact: str, post: Callable[[str, str | bytes, dict[str, str]], str],
                         *, sign: bool = True) -> str:
        """Resolve a SAMLart the way pysaml2 does (artifact2message), with the SOAP POST done by `post`.

        pysaml2 finds the IdP's ArtifactResolutionService from the artifact's SourceID and EndpointIndex in the
        IdP metadata, builds the ArtifactResolve (signed with this SP's key) and wraps it in SOAP;
        `post(url, body, headers)` returns the SOAP answer. The ArtifactResponse must be signed (pysaml2 checks
        the signature against the IdP metadata) and carry a Response: returned base64-encoded, exactly as it
        sat inside, for process_response.
        """
        from saml2.s_utils import sid

        destination = self.client.artifact2destination(artifact, "idpsso")
        if not destination:
            raise SPValidationError("pysaml2 found no ArtifactResolutionService for the artifact's SourceID/index")
        _mid, req = self.client.create_artifact_resolve(
            artifact, destination, sid(), sign=sign, sign_alg=self.sig_alg, digest_alg=self.digest_alg
        )
        args = self.client.use_soap(req, destination)
        answer = post(args["url"], args["data"], dict(args["headers"]))
        root = _xml(answer)
        art_resp = root.find(".//samlp:ArtifactResponse", NS)
        if art_resp is None:
            raise SPValidationError("the SOAP answer holds no ArtifactResponse")
        if art_resp.find("ds:Signature", NS) is None:
            raise SPValidationError("the ArtifactResponse is not signed")
        top, _sub, _msg = _status(art_resp)
        if top != STATUS_SUCCESS:
            raise SPValidationError(f"ArtifactResponse status {top}{_status_note(art_resp)}")
        inner = art_resp.find("samlp:Response", NS)
        if inner is None:
            raise SPValidationError("the ArtifactResponse carries no Response")
        # pysaml2 takes the ArtifactResponse out of the SOAP envelope by re-serialising it with ElementTree, which
        # renames prefixes to ns0/ns1 unless registered; exclusive c14n is prefix-sensitive, so the signature can
        # only verify with the prefixes the sender used registered (ECOSYSTEM pitfall 7), for this call only.
        from xml.etree import ElementTree

        saved = dict(ElementTree._namespace_map)  # type: ignore[attr-defined]
        for prefix in ("samlp", "saml", "ds"):
            ElementTree.register_namespace(prefix, NS[prefix])
        try:
            _pysaml2_call("ArtifactResponse", self.client.parse_artifact_resolve_response, answer)
        finally:
            ElementTree._namespace_map.clear()  # type: ignore[attr-defined]
            ElementTree._namespace_map.update(saved)  # type: ignore[attr-defined]
        return base64.b64encode(etree.tostring(inner)).decode("ascii")

    # ------------------------------------------------------------------ SSO

    def authn_request(
        self,
        binding: str = "redirect",
        *,
        relay_state: str | None = None,
        force_authn: bool = False,
        is_passive: bool = False,
        name_id_format: str | None = None,
        requested_authn_context: tuple[str, list[str]] | None = None,
        acs_url: str | None = None,
        acs_index: int | None = None,
        sign: bool | None = None,
        protocol_binding: str | None = None,
    ) -> OutgoingRequest:
        from saml2.saml import AuthnContextClassRef
        from saml2.samlp import RequestedAuthnContext

        binding = self._binding(binding)
        dest = self._sso_url(binding)
        sign = self.sign_requests if sign is None else sign
        kwargs: dict[str, Any] = {}
        if requested_authn_context is not None:
            comparison, refs = requested_authn_context
            kwargs["requested_authn_context"] = RequestedAuthnContext(
                authn_context_class_ref=[AuthnContextClassRef(text=r) for r in refs], comparison=comparison
            )
        # binding= is the ProtocolBinding asked for the Response (HTTP-POST unless protocol_binding says
        # otherwise), not the request binding.
        req_id, req = self.client.create_authn_request(
            dest, binding=protocol_binding or BINDING_POST, nameid_format=name_id_format, sign=False, **kwargs
        )
        if force_authn:
            req.force_authn = "true"
        if is_passive:
            req.is_passive = "true"
        # pysaml2 treats acs_index=0 as "not given", so the overrides are set on the object directly.
        if acs_url is not None:
            req.assertion_consumer_service_url = acs_url
        if acs_index is not None:
            req.assertion_consumer_service_index = str(acs_index)
            if acs_url is None:
                req.assertion_consumer_service_url = None
                req.protocol_binding = None
        if binding == "post":
            xml = self.client.sign(req, sign_alg=self.sig_alg, digest_alg=self.digest_alg) if sign else str(req)
            form = {"SAMLRequest": base64.b64encode(xml.encode("utf-8")).decode("ascii")}
            if relay_state is not None:
                form["RelayState"] = relay_state
            return OutgoingRequest("post", dest, form, req_id)
        info = self.client.apply_binding(
            BINDING_REDIRECT, str(req), dest, relay_state or "", sign=sign, sigalg=self.sig_alg
        )
        return OutgoingRequest("redirect", dict(info["headers"])["Location"], {}, req_id)

    def process_response(self, saml_response_b64: str, request_id: str | None) -> SPResult:
        from saml2.response import AuthnResponse

        raw, raw_root = self._decode_response(saml_response_b64)
        note = _status_note(raw_root)
        outstanding = {request_id: "/"} if request_id else {}
        ar = _pysaml2_call(
            "response",
            self.client.parse_authn_request_response,
            saml_response_b64,
            BINDING_POST,
            outstanding=outstanding,
            note=note,
        )
        # pysaml2 does not raise for everything: a Destination outside the ACS list makes verify() return None
        # and the Response comes back without an assertion.
        if not isinstance(ar, AuthnResponse) or ar.assertion is None or ar.name_id is None:
            raise SPValidationError(f"pysaml2 did not accept the response (no validated assertion){note}")
        # ar.xmlstr is the decrypted document when the assertion was encrypted.
        resp = _xml(ar.xmlstr) if ar.xmlstr else raw_root
        assertion = _single_assertion(resp)
        if assertion.get("ID") != ar.assertion.id:
            raise SPValidationError("the assertion pysaml2 validated is not the one in the document")
        self._check_response(raw_root, resp, assertion, request_id)
        attributes: dict[str, list[str]] = {}
        for statement in ar.assertion.attribute_statement:
            for attr in statement.attribute:
                attributes.setdefault(attr.name, []).extend(v.text or "" for v in attr.attribute_value)
        authn = ar.assertion.authn_statement[0] if ar.assertion.authn_statement else None
        ctx = authn.authn_context if authn is not None else None
        class_ref = ctx.authn_context_class_ref.text if ctx is not None and ctx.authn_context_class_ref else None
        issuer = ar.issuer() or (ar.assertion.issuer.text.strip() if ar.assertion.issuer else "")
        return SPResult(
            name_id=(ar.name_id.text or "").strip(),
            name_id_format=ar.name_id.format,
            attributes=attributes,
            session_index=authn.session_index if authn is not None else None,
            issuer=issuer,
            authn_context=class_ref.strip() if class_ref else None,
            in_response_to=ar.in_response_to,
            raw_xml=raw,
        )

    # ------------------------------------------------------------------ SLO

    def logout_request(
        self,
        name_id: str,
        session_index: str | None,
        binding: str = "redirect",
        *,
        name_id_format: str | None = None,
        sign: bool = True,
        relay_state: str | None = None,
    ) -> OutgoingRequest:
        from saml2.saml import NameID

        binding = self._binding(binding)
        dest = self._slo_url(binding)
        req_id, req = self.client.create_logout_request(
            dest,
            self.idp.entity_id,
            name_id=NameID(text=name_id, format=name_id_format),
            session_indexes=[session_index] if session_index else None,
            sign=False,
        )
        if binding == "post":
            xml = self.client.sign(req, sign_alg=self.sig_alg, digest_alg=self.digest_alg) if sign else str(req)
            form = {"SAMLRequest": base64.b64encode(xml.encode("utf-8")).decode("ascii")}
            if relay_state is not None:
                form["RelayState"] = relay_state
            return OutgoingRequest("post", dest, form, req_id)
        info = self.client.apply_binding(
            BINDING_REDIRECT, str(req), dest, relay_state or "", sign=sign, sigalg=self.sig_alg
        )
        return OutgoingRequest("redirect", dict(info["headers"])["Location"], {}, req_id)

    def _verify_redirect(self, params: dict[str, str], typ: str) -> None:
        """Query signature check with pysaml2's own verifier (it re-encodes the decoded values, ECOSYSTEM P9)."""
        from saml2.sigver import verify_redirect_signature

        if "Signature" not in params or "SigAlg" not in params:
            raise SPValidationError(f"redirect {typ} is not signed")
        msg = {k: params[k] for k in (typ, "RelayState", "SigAlg", "Signature") if k in params}
        certs = self.client.metadata.certs(self.idp.entity_id, "idpsso", "signing")
        if not certs:
            raise SPValidationError("no IdP signing certificate in metadata")
        for _name, cert in certs:  # unsupported SigAlg, bad base64, ... raise
            if _pysaml2_call(f"{typ} signature", verify_redirect_signature, msg, self.client.sec.sec_backend, cert):
                return
        raise SPValidationError(f"redirect {typ} signature does not verify with the IdP's certificate(s)")

    def process_logout_response(
        self,
        binding: str,
        *,
        query: str | None = None,
        saml_response_b64: str | None = None,
        request_id: str | None = None,
    ) -> str:
        from saml2.response import StatusError

        binding = self._binding(binding)
        if binding == "redirect":
            if query is None:
                raise ValueError("redirect binding needs query=")
            _, params = _query_params(query)
            if "SAMLResponse" not in params:
                raise SPValidationError("no SAMLResponse in the query")
            self._verify_redirect(params, "SAMLResponse")
            value = params["SAMLResponse"]
        else:
            if saml_response_b64 is None:
                raise ValueError("post binding needs saml_response_b64=")
            value = saml_response_b64
        root = _xml(_decode_message(value, binding))
        if binding == "post" and root.find("ds:Signature", NS) is None:
            raise SPValidationError("POST LogoutResponse is not signed")
        # A non-success status raises StatusError, but only after pysaml2 has checked the signature and
        # Destination (StatusResponse._verify): the message is fine and the caller gets the status code.
        resp = _pysaml2_call(
            "LogoutResponse",
            self.client.parse_logout_request_response,
            value,
            _BINDINGS[binding],
            tolerate=(StatusError,),
        )
        if not resp:
            raise SPValidationError("pysaml2 did not accept the LogoutResponse")
        self._check_logout_message(root, "LogoutResponse", request_id)
        top, self.last_logout_sub_status, _ = _status(root)
        if top is None:
            raise SPValidationError("LogoutResponse without StatusCode")
        return top

    def process_logout_request(
        self, binding: str, *, query: str | None = None, saml_request_b64: str | None = None
    ) -> tuple[str, list[str]]:
        binding = self._binding(binding)
        if binding == "redirect":
            if query is None:
                raise ValueError("redirect binding needs query=")
            _, params = _query_params(query)
            if "SAMLRequest" not in params:
                raise SPValidationError("no SAMLRequest in the query")
            self._verify_redirect(params, "SAMLRequest")
            value = params["SAMLRequest"]
        else:
            if saml_request_b64 is None:
                raise ValueError("post binding needs saml_request_b64=")
            value = saml_request_b64
        root = _xml(_decode_message(value, binding))
        if binding == "post" and root.find("ds:Signature", NS) is None:
            raise SPValidationError("POST LogoutRequest is not signed")
        # An SP's pysaml2 only insists on signatures for IdP-side config (want_authn_requests_signed), so the
        # presence checks above are ours; a signature that is present is verified by pysaml2 here.
        req = _pysaml2_call("LogoutRequest", self.client.parse_logout_request, value, _BINDINGS[binding])
        if req is None or req.message is None:
            raise SPValidationError("pysaml2 did not accept the LogoutRequest")
        self._check_logout_message(root, "LogoutRequest")
        msg = req.message
        if msg.name_id is None:
            raise SPValidationError("LogoutRequest without a (plain) NameID")
        self._last_logout_request = msg
        self.last_logout_request_id = msg.id
        return (msg.name_id.text or "").strip(), [(s.text or "").strip() for s in msg.session_index]

    def logout_response(
        self,
        binding: str = "redirect",
        *,
        status: str = STATUS_SUCCESS,
        relay_state: str | None = None,
        sign: bool = True,
    ) -> OutgoingRequest:
        from saml2.samlp import Status, StatusCode

        binding = self._binding(binding)
        if self._last_logout_request is None:
            raise RuntimeError("no LogoutRequest has been processed")
        dest = self.idp.slo_response.get(binding) or self._slo_url(binding)
        resp = self.client.create_logout_response(
            self._last_logout_request,
            bindings=[_BINDINGS[binding]],
            status=Status(status_code=StatusCode(value=status)),
            sign=sign and binding == "post",
            sign_alg=self.sig_alg,
            digest_alg=self.digest_alg,
        )
        xml = resp if isinstance(resp, str) else str(resp)
        resp_id = _xml(xml).get("ID", "")
        if binding == "post":
            form = {"SAMLResponse": base64.b64encode(xml.encode("utf-8")).decode("ascii")}
            if relay_state is not None:
                form["RelayState"] = relay_state
            return OutgoingRequest("post", dest, form, resp_id)
        info = self.client.apply_binding(
            BINDING_REDIRECT, xml, dest, relay_state or "", response=True, sign=sign, sigalg=self.sig_alg
        )
        return OutgoingRequest("redirect", dict(info["headers"])["Location"], {}, resp_id)


# --------------------------------------------------------------------------------------------- python3-saml


class OneLoginSP(TestSP):
    """python3-saml (`OneLogin_Saml2_Auth`), strict mode. Crypto runs through python-xmlsec in-process."""

    kind = "onelogin"

    def _setup(self) -> None:
        from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser

        # The parser returns one SSO/SLO endpoint for the binding asked for; parse once per binding.
        # Only its "idp" part is used: it would also copy the IdP's WantAuthnRequestsSigned and first
        # NameIDFormat into our security/sp settings.
        self._idp_settings: dict[str, dict[str, Any]] = {}
        for name, uri in _BINDINGS.items():
            parsed = OneLogin_Saml2_IdPMetadataParser.parse(
                self.idp_metadata_xml, required_sso_binding=uri, required_slo_binding=uri
            )
            self._idp_settings[name] = parsed.get("idp", {})
        self._base_settings: dict[str, Any] = {
            "strict": True,
            "debug": False,
            "sp": {
                "entityId": self.entity_id,
                "assertionConsumerService": {"url": self.acs_url, "binding": BINDING_POST},
                "singleLogoutService": {"url": self.slo_url, "binding": BINDING_REDIRECT},
                "NameIDFormat": NAMEID_UNSPECIFIED,
                "x509cert": self.keypair.cert_pem,
                "privateKey": self.keypair.key_pem,
            },
            "security": {
                "authnRequestsSigned": self.sign_requests,
                "logoutRequestSigned": True,
                "logoutResponseSigned": True,
                "wantAssertionsSigned": self.want_assertions_signed,
                "wantMessagesSigned": self.want_response_signed,
                "wantAssertionsEncrypted": self.want_assertions_encrypted,
                "wantNameId": True,
                "wantAttributeStatement": False,  # an assertion without attributes is legitimate
                "rejectDeprecatedAlgorithm": True,
                "signatureAlgorithm": self.sig_alg,
                "digestAlgorithm": self.digest_alg,
                "requestedAuthnContext": False,
                "allowSingleLabelDomains": True,  # http://localhost/... in Flask test setups
            },
        }
        self._settings()  # validate once, early

    def _settings_dict(self, sso_binding: str = "redirect", slo_binding: str = "redirect") -> dict[str, Any]:
        # OneLogin_Saml2_Settings rewrites the dict it is given (x509cert -> full PEM): always a deep copy.
        d = copy.deepcopy(self._base_settings)
        idp = copy.deepcopy(self._idp_settings[sso_binding])
        other = "post" if sso_binding == "redirect" else "redirect"
        if "singleSignOnService" not in idp and "singleSignOnService" in self._idp_settings[other]:
            idp["singleSignOnService"] = copy.deepcopy(self._idp_settings[other]["singleSignOnService"])
        idp.pop("singleLogoutService", None)
        slo = self._idp_settings[slo_binding].get("singleLogoutService")
        if slo:
            slo = dict(slo)
            slo["responseUrl"] = self.idp.slo_response.get(slo_binding) or slo["url"]
            idp["singleLogoutService"] = slo
        d["idp"] = idp
        return d

    def _settings(self, sso_binding: str = "redirect", slo_binding: str = "redirect", **security: Any) -> Any:
        from onelogin.saml2.settings import OneLogin_Saml2_Settings

        d = self._settings_dict(sso_binding, slo_binding)
        d["security"].update(security)
        return OneLogin_Saml2_Settings(d)

    @staticmethod
    def _request_data(url: str, **extra: Any) -> dict[str, Any]:
        """python3-saml's view of the current HTTP request, matching url exactly.

        The port goes into http_host: python3-saml 1.16 deprecates `server_port` (DeprecationWarning).
        """
        parts = urlsplit(url)
        data: dict[str, Any] = {
            "https": "on" if parts.scheme == "https" else "off",
            "http_host": parts.netloc,
            "script_name": parts.path,
            "get_data": {},
            "post_data": {},
        }
        data.update(extra)
        return data

    def metadata_xml(self) -> str:
        from onelogin.saml2.settings import OneLogin_Saml2_Settings

        settings = OneLogin_Saml2_Settings(copy.deepcopy(self._base_settings), sp_validation_only=True)
        md = settings.get_sp_metadata()
        return _normalise_sp_metadata(
            md,
            acs_url=self.acs_url,
            slo_url=self.slo_url,
            sign_requests=self.sign_requests,
            want_assertions_signed=self.want_assertions_signed,
        )

    # ------------------------------------------------------------------ SSO

    def authn_request(
        self,
        binding: str = "redirect",
        *,
        relay_state: str | None = None,
        force_authn: bool = False,
        is_passive: bool = False,
        name_id_format: str | None = None,
        requested_authn_context: tuple[str, list[str]] | None = None,
        acs_url: str | None = None,
        acs_index: int | None = None,
        sign: bool | None = None,
    ) -> OutgoingRequest:
        from onelogin.saml2.authn_request import OneLogin_Saml2_Authn_Request
        from onelogin.saml2.settings import OneLogin_Saml2_Settings

        binding = self._binding(binding)
        dest = self._sso_url(binding)
        sign = self.sign_requests if sign is None else sign
        d = self._settings_dict(sso_binding=binding)
        d["idp"]["singleSignOnService"] = {"url": dest, "binding": _BINDINGS[binding]}
        if name_id_format is not None:
            d["sp"]["NameIDFormat"] = name_id_format
        if requested_authn_context is not None:
            comparison, refs = requested_authn_context
            d["security"]["requestedAuthnContext"] = list(refs)
            d["security"]["requestedAuthnContextComparison"] = comparison
        settings = OneLogin_Saml2_Settings(d)
        req = OneLogin_Saml2_Authn_Request(
            settings, force_authn=force_authn, is_passive=is_passive, set_nameid_policy=name_id_format is not None
        )
        xml: str | bytes = req.get_xml()
        if acs_url is not None or acs_index is not None:
            xml = self._override_acs(xml, acs_url, acs_index)
        return self._send(settings, "SAMLRequest", xml, binding, dest, relay_state, sign, req.get_id())

    def _send(
        self,
        settings: Any,
        typ: str,
        xml: str | bytes,
        binding: str,
        dest: str,
        relay_state: str | None,
        sign: bool,
        msg_id: str,
    ) -> OutgoingRequest:
        from onelogin.saml2.auth import OneLogin_Saml2_Auth
        from onelogin.saml2.utils import OneLogin_Saml2_Utils

        if binding == "post":
            if sign:
                xml = OneLogin_Saml2_Utils.add_sign(
                    xml,
                    self.keypair.key_pem,
                    self.keypair.cert_pem,
                    sign_algorithm=self.sig_alg,
                    digest_algorithm=self.digest_alg,
                )
            data = xml.encode("utf-8") if isinstance(xml, str) else xml
            form = {typ: base64.b64encode(data).decode("ascii")}
            if relay_state is not None:
                form["RelayState"] = relay_state
            return OutgoingRequest("post", dest, form, msg_id)
        params = {typ: OneLogin_Saml2_Utils.deflate_and_base64_encode(xml)}
        if relay_state is not None:
            params["RelayState"] = relay_state
        if sign:
            auth = OneLogin_Saml2_Auth(self._request_data(self.base_url + "/"), old_settings=settings)
            if typ == "SAMLRequest":
                auth.add_request_signature(params, self.sig_alg)
            else:
                auth.add_response_signature(params, self.sig_alg)
        return OutgoingRequest("redirect", OneLogin_Saml2_Utils.redirect(dest, params, request_data={}), {}, msg_id)

    def process_response(self, saml_response_b64: str, request_id: str | None) -> SPResult:
        from onelogin.saml2.auth import OneLogin_Saml2_Auth

        raw, raw_root = self._decode_response(saml_response_b64)
        note = _status_note(raw_root)
        settings = self._settings()
        request_data = self._request_data(self.acs_url, post_data={"SAMLResponse": saml_response_b64})
        auth = OneLogin_Saml2_Auth(request_data, old_settings=settings)
        try:
            auth.process_response(request_id=request_id)
        except Exception as exc:  # e.g. duplicated attribute names raise out of store_valid_response
            raise SPValidationError(f"python3-saml rejected the response: {type(exc).__name__}: {exc}{note}") from exc
        if auth.get_errors() or not auth.is_authenticated():
            raise SPValidationError(
                f"python3-saml rejected the response: {auth.get_errors()}: {auth.get_last_error_reason()}{note}"
            )
        resp = _xml(auth.get_last_response_xml())  # decrypted document when the assertion was encrypted
        assertion = _single_assertion(resp)
        self._check_response(raw_root, resp, assertion, request_id)
        issuer = _text(resp.find("saml:Issuer", NS)) or _text(assertion.find("saml:Issuer", NS)) or ""
        contexts = auth.get_last_authn_contexts()
        return SPResult(
            name_id=auth.get_nameid(),
            name_id_format=auth.get_nameid_format(),
            attributes=_attributes(assertion),
            session_index=auth.get_session_index(),
            issuer=issuer,
            authn_context=contexts[0] if contexts else None,
            in_response_to=auth.get_last_response_in_response_to(),
            raw_xml=raw,
        )

    # ------------------------------------------------------------------ SLO

    def logout_request(
        self,
        name_id: str,
        session_index: str | None,
        binding: str = "redirect",
        *,
        name_id_format: str | None = None,
        sign: bool = True,
        relay_state: str | None = None,
    ) -> OutgoingRequest:
        from onelogin.saml2.logout_request import OneLogin_Saml2_Logout_Request

        binding = self._binding(binding)
        dest = self._slo_url(binding)
        settings = self._settings(slo_binding=binding)
        req = OneLogin_Saml2_Logout_Request(
            settings, name_id=name_id, session_index=session_index, name_id_format=name_id_format
        )
        return self._send(settings, "SAMLRequest", req.get_xml(), binding, dest, relay_state, sign, req.id)

    def _verify_xml_signature(self, settings: Any, xml: bytes, root: etree._Element, tag: str) -> None:
        """Enveloped signature on the root of a POST logout message, checked with python3-saml's verifier."""
        from onelogin.saml2.constants import OneLogin_Saml2_Constants
        from onelogin.saml2.utils import OneLogin_Saml2_Utils

        sigs = root.findall("ds:Signature", NS)
        if len(sigs) != 1:
            raise SPValidationError(f"POST {tag} must carry exactly one enveloped signature, found {len(sigs)}")
        refs = sigs[0].findall("ds:SignedInfo/ds:Reference", NS)
        if len(refs) != 1 or refs[0].get("URI") != "#" + (root.get("ID") or "\x00"):
            raise SPValidationError(f"the {tag} signature does not reference the message's ID")
        algs = [el.get("Algorithm") for el in sigs[0].iter(f"{_DS}SignatureMethod", f"{_DS}DigestMethod")]
        deprecated = [a for a in algs if a in OneLogin_Saml2_Constants.DEPRECATED_ALGORITHMS]
        if deprecated:
            raise SPValidationError(f"deprecated algorithm in the {tag} signature: {deprecated}")
        idp = settings.get_idp_data()
        multicerts = (idp.get("x509certMulti") or {}).get("signing") or None
        try:
            OneLogin_Saml2_Utils.validate_sign(
                xml,
                settings.get_idp_cert(),
                xpath=f"/samlp:{tag}/ds:Signature",
                multicerts=multicerts,
                raise_exceptions=True,
            )
        except Exception as exc:
            raise SPValidationError(f"{tag} signature invalid: {exc}") from exc

    def _logout_inputs(
        self, binding: str, typ: str, query: str | None, b64: str | None
    ) -> tuple[Any, dict[str, Any], str, etree._Element]:
        """Signature check (both bindings) -> (settings for is_valid, request_data, SAML value, decoded root)."""
        from onelogin.saml2.auth import OneLogin_Saml2_Auth

        tag = "LogoutResponse" if typ == "SAMLResponse" else "LogoutRequest"
        if binding == "redirect":
            if query is None:
                raise ValueError("redirect binding needs query=")
            raw_query, params = _query_params(query)
            if typ not in params:
                raise SPValidationError(f"no {typ} in the query")
            if "Signature" not in params:
                raise SPValidationError(f"redirect {tag} is not signed")
            # validate_signature_from_qs: verify over the raw query bytes, not a re-encoding of the values
            request_data = self._request_data(
                self.slo_url, get_data=params, query_string=raw_query, validate_signature_from_qs=True
            )
            settings = self._settings(slo_binding=binding, wantMessagesSigned=True)
            auth = OneLogin_Saml2_Auth(request_data, old_settings=settings)
            if typ == "SAMLResponse":
                ok = auth.validate_response_signature(params)
            else:
                ok = auth.validate_request_signature(params)
            if not ok:
                raise SPValidationError(f"redirect {tag} signature invalid: {auth.get_last_error_reason()}")
            value = params[typ]
            root = _xml(_decode_message(value, "redirect"))
            return settings, request_data, value, root
        if b64 is None:
            arg = "saml_response_b64" if typ == "SAMLResponse" else "saml_request_b64"
            raise ValueError(f"post binding needs {arg}=")
        xml = _decode_message(b64, "post")
        root = _xml(xml)
        settings = self._settings(slo_binding=binding, wantMessagesSigned=True)
        self._verify_xml_signature(settings, xml, root, tag)
        # is_valid() only knows query signatures (it looks for get_data["Signature"]); the XML signature was
        # verified above, so is_valid runs with wantMessagesSigned off for the POST binding.
        settings = self._settings(slo_binding=binding, wantMessagesSigned=False)
        request_data = self._request_data(self.slo_url, post_data={typ: b64})
        return settings, request_data, b64, root

    def process_logout_response(
        self,
        binding: str,
        *,
        query: str | None = None,
        saml_response_b64: str | None = None,
        request_id: str | None = None,
    ) -> str:
        from onelogin.saml2.logout_response import OneLogin_Saml2_Logout_Response

        binding = self._binding(binding)
        settings, request_data, value, root = self._logout_inputs(binding, "SAMLResponse", query, saml_response_b64)
        lr = OneLogin_Saml2_Logout_Response(settings, value)
        if not lr.is_valid(request_data, request_id):
            raise SPValidationError(f"python3-saml rejected the LogoutResponse: {lr.get_error()}")
        self._check_logout_message(root, "LogoutResponse", request_id)
        status = lr.get_status()
        if status is None:
            raise SPValidationError("LogoutResponse without StatusCode")
        _, self.last_logout_sub_status, _ = _status(root)
        return status

    def process_logout_request(
        self, binding: str, *, query: str | None = None, saml_request_b64: str | None = None
    ) -> tuple[str, list[str]]:
        from onelogin.saml2.logout_request import OneLogin_Saml2_Logout_Request

        binding = self._binding(binding)
        settings, request_data, value, root = self._logout_inputs(binding, "SAMLRequest", query, saml_request_b64)
        lr = OneLogin_Saml2_Logout_Request(settings, value)
        if not lr.is_valid(request_data):
            raise SPValidationError(f"python3-saml rejected the LogoutRequest: {lr.get_error()}")
        self._check_logout_message(root, "LogoutRequest")
        xml = lr.get_xml()
        try:
            name_id = OneLogin_Saml2_Logout_Request.get_nameid(xml, key=self.keypair.key_pem)
        except Exception as exc:
            raise SPValidationError(f"LogoutRequest NameID: {exc}") from exc
        self.last_logout_request_id = lr.id
        return name_id, list(OneLogin_Saml2_Logout_Request.get_session_indexes(xml))

    def logout_response(
        self,
        binding: str = "redirect",
        *,
        status: str = STATUS_SUCCESS,
        relay_state: str | None = None,
        sign: bool = True,
    ) -> OutgoingRequest:
        from onelogin.saml2.logout_response import OneLogin_Saml2_Logout_Response

        binding = self._binding(binding)
        if self.last_logout_request_id is None:
            raise RuntimeError("no LogoutRequest has been processed")
        settings = self._settings(slo_binding=binding)
        dest = settings.get_idp_slo_response_url()
        builder = OneLogin_Saml2_Logout_Response(settings)
        builder.build(self.last_logout_request_id, status)
        xml = builder.get_xml()
        return self._send(settings, "SAMLResponse", xml, binding, dest, relay_state, sign, builder.id)


SP_CLASSES: dict[str, type[TestSP]] = {"pysaml2": Pysaml2SP, "onelogin": OneLoginSP}
