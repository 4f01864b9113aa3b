"""Hand-built AuthnRequests for negative tests (fields the SP libraries will not let us get wrong)."""

from __future__ import annotations

import base64
import secrets
import zlib
from datetime import UTC, datetime, timedelta
from urllib.parse import quote_plus

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"


def authn_request_xml(issuer: str, *, req_id: str | None = None, issue_instant: datetime | None = None,
                      destination: str | None = "http://localhost/saml/sso", acs_url: str | None = None,
                      acs_index: int | None = None, protocol_binding: str | None = None,
                      extra_attrs: str = "", body: str = "", issuer_xml: str | None = None) -> bytes:
    req_id = req_id or "_" + secrets.token_hex(12)
    instant = (issue_instant or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    attrs = f'ID="{req_id}" Version="2.0" IssueInstant="{instant}"'
    if destination:
        attrs += f' Destination="{destination}"'
    if acs_url:
        attrs += f' AssertionConsumerServiceURL="{acs_url}"'
    if acs_index is not None:
        attrs += f' AssertionConsumerServiceIndex="{acs_index}"'
    if protocol_binding:
        attrs += f' ProtocolBinding="{protocol_binding}"'
    issuer_el = issuer_xml if issuer_xml is not None else f"<saml:Issuer>{issuer}</saml:Issuer>"
    return (f'<samlp:AuthnRequest xmlns:samlp="{SAMLP}" xmlns:saml="{SAML}" {attrs} {extra_attrs}>'
            f"{issuer_el}{body}</samlp:AuthnRequest>").encode()


def deflate_b64(xml: bytes) -> str:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return base64.b64encode(c.compress(xml) + c.flush()).decode()


def redirect_query(xml: bytes, relay_state: str | None = None, key_pem: str | None = None,
                   sig_alg: str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256", param: str = "SAMLRequest"
                   ) -> str:
    q = f"{param}={quote_plus(deflate_b64(xml))}"
    if relay_state is not None:
        q += f"&RelayState={quote_plus(relay_state)}"
    if key_pem:
        q += f"&SigAlg={quote_plus(sig_alg)}"
        key = serialization.load_pem_private_key(key_pem.encode(), None)
        h = hashes.SHA1() if sig_alg.endswith("sha1") else hashes.SHA256()
        sig = key.sign(q.encode(), padding.PKCS1v15(), h)  # type: ignore[union-attr,call-arg]
        q += f"&Signature={quote_plus(base64.b64encode(sig).decode())}"
    return q


def old_instant(seconds: int) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)
