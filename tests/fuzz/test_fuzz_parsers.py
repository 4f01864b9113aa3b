"""Fuzz targets for the request parser, the binding decoders and the metadata parser (hypothesis).

A short run is part of `make test`; `make fuzz` runs many more examples (HYPOTHESIS_PROFILE=fuzz).
Property: whatever the bytes, the parsers either return a value or raise their own documented
error — never anything else (which would surface as a 500).
"""

from __future__ import annotations

import base64
import os
import zlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from idp.saml.bindings import BindingError, decode_post, decode_redirect
from idp.saml.requests import RequestParseError, parse_authn_request, parse_logout_request
from idp.saml.sp_metadata import MetadataError, parse_sp_metadata

settings.register_profile("ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=20_000, deadline=None, suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
MAX = 128 * 1024

# Structured pieces that reach deep into the parsers, mixed with junk.
attr_values = st.one_of(st.text(max_size=40), st.sampled_from(
    ["_abc", "2.0", "2026-11-28T10:00:00Z", "true", "false", "1", "0", "65535", "65536", "-1", "\u00b2",
     "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST", "https://sp.example.com/acs", "9999-12-31T23:59:59-01:00"]))
attr_names = st.sampled_from(["ID", "Version", "IssueInstant", "Destination", "AssertionConsumerServiceURL",
                              "AssertionConsumerServiceIndex", "ProtocolBinding", "ForceAuthn", "IsPassive",
                              "NotOnOrAfter", "Format", "Comparison", "AllowCreate"])


@st.composite
def authn_request_xml(draw: st.DrawFn) -> bytes:
    attrs = draw(st.dictionaries(attr_names, attr_values, max_size=8))
    attr_text = " ".join(f'{k}="{_esc(v)}"' for k, v in attrs.items())
    issuer = draw(st.one_of(st.text(max_size=30), st.just("https://sp.example.com/metadata")))
    children = draw(st.lists(st.sampled_from([
        f"<saml:Issuer>{_esc(issuer)}</saml:Issuer>",
        "<saml:Issuer>a<!-- c -->b</saml:Issuer>",
        '<samlp:NameIDPolicy Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress" AllowCreate="x"/>',
        '<samlp:RequestedAuthnContext Comparison="minimum"><saml:AuthnContextClassRef>x'
        "</saml:AuthnContextClassRef></samlp:RequestedAuthnContext>",
        "<samlp:RequestedAuthnContext Comparison='bogus'/>",
        "<saml:NameID>user</saml:NameID>", "<samlp:SessionIndex>s</samlp:SessionIndex>",
        "<ds:Signature xmlns:ds='http://www.w3.org/2000/09/xmldsig#'/>", "<?pi x?>", "&amp;", "<x>" * 5,
    ]), max_size=6))
    root = draw(st.sampled_from(["AuthnRequest", "LogoutRequest", "Response", "Other"]))
    doc = (f'<samlp:{root} xmlns:samlp="{SAMLP}" xmlns:saml="{SAML}" {attr_text}>'
           + "".join(children) + f"</samlp:{root}>")
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(doc)))
        doc = doc[:cut]
    return doc.encode("utf-8", "surrogatepass") if draw(st.booleans()) else doc.encode("utf-16")


def _esc(v: str) -> str:
    return v.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")


@given(authn_request_xml())
def test_authn_request_parser(xml: bytes) -> None:
    for parse in (parse_authn_request, parse_logout_request):
        try:
            parse(xml, MAX)
        except RequestParseError:
            pass


@given(st.binary(max_size=2048))
def test_authn_request_parser_raw_bytes(data: bytes) -> None:
    try:
        parse_authn_request(data, MAX)
    except RequestParseError:
        pass


@given(st.one_of(st.binary(max_size=512), authn_request_xml()), st.booleans(), st.text(max_size=100))
def test_redirect_and_post_decoders(payload: bytes, deflate: bool, relay: str) -> None:
    if deflate:
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        payload = c.compress(payload) + c.flush()
    b64 = base64.b64encode(payload).decode()
    query = f"SAMLRequest={b64.replace('+', '%2B').replace('/', '%2F').replace('=', '%3D')}"
    try:
        decode_redirect((query + "&RelayState=" + relay.encode("utf-8", "replace").hex()).encode(), "SAMLRequest", MAX)
    except BindingError:
        pass
    try:
        decode_post(b64, relay, MAX)
    except BindingError:
        pass


@given(st.binary(max_size=400))
def test_redirect_decoder_raw_query(raw: bytes) -> None:
    try:
        decode_redirect(raw, "SAMLRequest", MAX)
    except BindingError:
        pass


md_pieces = st.sampled_from([
    '<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">',
    "</md:SPSSODescriptor>",
    '<md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" '
    'Location="https://sp.example.com/acs" index="0"/>',
    '<md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" '
    'Location="javascript:alert(1)" index="x"/>',
    '<md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="data:x"/>',
    '<md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data>'
    "<ds:X509Certificate>AAAA</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>",
    "<md:NameIDFormat>urn:x<!-- -->y</md:NameIDFormat>", "<md:Extensions/>", "junk", "&lt;",
])


@given(st.lists(md_pieces, max_size=8), st.one_of(st.none(), st.text(max_size=20)),
       st.sampled_from(["EntityDescriptor", "EntitiesDescriptor", "Other"]))
def test_metadata_parser(pieces: list[str], entity_id: str | None, root: str) -> None:
    doc = (f'<md:{root} xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://sp.example.com/m">'
           + "".join(pieces) + f"</md:{root}>")
    try:
        parse_sp_metadata(doc.encode(), entity_id)
    except MetadataError:
        pass


@given(st.binary(max_size=2048))
def test_metadata_parser_raw_bytes(data: bytes) -> None:
    try:
        parse_sp_metadata(data)
    except MetadataError:
        pass
