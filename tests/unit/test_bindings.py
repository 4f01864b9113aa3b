"""Unit tests for idp.saml.bindings: HTTP-Redirect / HTTP-POST codecs and their limits."""

from __future__ import annotations

import base64
import zlib
from urllib.parse import quote, quote_plus, urlsplit

import pytest
from cryptography.hazmat.primitives import serialization

from idp.certs.generate import generate_key_pair
from idp.saml.bindings import (
    MAX_RELAY_STATE_BYTES,
    BindingError,
    check_relay_state,
    decode_post,
    decode_redirect,
    encode_post,
    encode_redirect_url,
    inflate_capped,
)
from idp.saml.constants import SIG_ECDSA_SHA256, SIG_RSA_SHA256, SIG_RSA_SHA512
from idp.saml.signing import SignatureError, allowed_algorithms, verify_redirect_signature

XML = (b'<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_abc" Version="2.0"/>')
MAX = 100_000


def deflate(data: bytes) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    return comp.compress(data) + comp.flush()


def redirect_value(xml: bytes = XML) -> str:
    return quote_plus(base64.b64encode(deflate(xml)).decode("ascii"))


# ---------------------------------------------------------------- inflate


@pytest.mark.parametrize(
    ("size", "cap", "ok"),
    [
        (1000, 1000, True),
        (1001, 1000, False),
        (10_000_000, 100_000, False),  # deflate bomb: ~10 kB compressed, 10 MB inflated
    ],
)
def test_inflate_cap(size: int, cap: int, ok: bool) -> None:
    data = deflate(b"A" * size)
    if ok:
        assert inflate_capped(data, cap) == b"A" * size
    else:
        with pytest.raises(BindingError, match=f"larger than {cap} bytes"):
            inflate_capped(data, cap)


def test_deflate_bomb_through_decode_redirect() -> None:
    bomb = base64.b64encode(deflate(b"<a>" + b" " * 5_000_000 + b"</a>")).decode("ascii")
    assert len(bomb) < 20_000
    with pytest.raises(BindingError, match="larger than"):
        decode_redirect(f"SAMLRequest={quote_plus(bomb)}".encode(), "SAMLRequest", MAX)


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xff\xff\xff",
        zlib.compress(XML),  # zlib header, not raw DEFLATE
        b"\x07" + b"\x00" * 10,  # reserved block type
    ],
    ids=["garbage", "zlib-wrapper", "reserved-block"],
)
def test_invalid_deflate(data: bytes) -> None:
    with pytest.raises(BindingError, match="not valid DEFLATE"):
        inflate_capped(data, MAX)


# ---------------------------------------------------------------- decode_redirect


def test_decode_redirect_plain() -> None:
    msg = decode_redirect(f"SAMLRequest={redirect_value()}&RelayState=abc".encode(), "SAMLRequest", MAX)
    assert msg.xml == XML
    assert msg.relay_state == "abc"
    assert msg.binding == "redirect"
    assert msg.signed_query is False


def test_decode_redirect_signed_flag() -> None:
    query = f"SAMLRequest={redirect_value()}&SigAlg={quote_plus(SIG_RSA_SHA256)}&Signature=AAAA"
    assert decode_redirect(query.encode(), "SAMLRequest", MAX).signed_query is True


def test_decode_redirect_whitespace_inside_base64_is_ok() -> None:
    b64 = base64.b64encode(deflate(XML)).decode("ascii")
    spaced = "\r\n".join(b64[i:i + 16] for i in range(0, len(b64), 16))
    msg = decode_redirect(f"SAMLRequest={quote(spaced, safe='')}".encode(), "SAMLRequest", MAX)
    assert msg.xml == XML


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "no SAMLRequest"),
        ("SAMLRequest=", "no SAMLRequest"),
        ("SAMLResponse=" + redirect_value(), "no SAMLRequest"),
        ("SAMLRequest=%%%%", "not valid base64"),
        ("SAMLRequest=abc", "not valid base64"),
        ("SAMLRequest=" + quote_plus("ab$d"), "not valid base64"),
        ("SAMLRequest=" + quote_plus(base64.b64encode(b"not deflate \xff\xff").decode()), "DEFLATE"),
        (f"SAMLRequest={redirect_value()}&SAMLRequest={redirect_value()}", "more than once"),
        (f"SAMLRequest={redirect_value()}&SAML%52equest={redirect_value()}", "more than once"),
        (f"SAMLRequest={redirect_value()}&RelayState=a&RelayState=b", "RelayState appears more than once"),
        (f"SAMLRequest={redirect_value()}&SigAlg=a&SigAlg=b", "SigAlg appears more than once"),
        (f"SAMLRequest={redirect_value()}&Signature=a&Signature=b", "Signature appears more than once"),
        (f"SAMLRequest={redirect_value()}&SAMLEncoding=urn:x", "SAMLEncoding"),
        (f"SAMLRequest={redirect_value()}&RelayState={'a' * 81}", "longer than 80"),
        (f"SAMLRequest={redirect_value()}&RelayState=%3Cscript%3E", "markup"),
        (f"SAMLRequest={redirect_value()}&RelayState=a%0Ab", "control"),
    ],
    ids=["empty", "blank", "wrong-param", "percent-garbage", "short-base64", "bad-alphabet", "not-deflate",
         "dup-message", "dup-message-encoded-name", "dup-relaystate", "dup-sigalg", "dup-signature",
         "unknown-encoding", "relaystate-long", "relaystate-markup", "relaystate-control"],
)
def test_decode_redirect_refused(query: str, message: str) -> None:
    with pytest.raises(BindingError, match=message):
        decode_redirect(query.encode("ascii"), "SAMLRequest", MAX)


def test_decode_redirect_non_ascii_query() -> None:
    with pytest.raises(BindingError, match="not ASCII"):
        decode_redirect(f"SAMLRequest={redirect_value()}&RelayState=\u00e9".encode(), "SAMLRequest", MAX)


def test_decode_redirect_explicit_deflate_encoding() -> None:
    enc = quote_plus("urn:oasis:names:tc:SAML:2.0:bindings:URL-Encoding:DEFLATE")
    msg = decode_redirect(f"SAMLRequest={redirect_value()}&SAMLEncoding={enc}".encode(), "SAMLRequest", MAX)
    assert msg.xml == XML


# ---------------------------------------------------------------- RelayState


@pytest.mark.parametrize(
    ("relay_state", "ok"),
    [
        (None, True),
        ("", True),
        ("https://sp.example/after?x=1&y=2", True),
        ("a" * MAX_RELAY_STATE_BYTES, True),
        ("a" * (MAX_RELAY_STATE_BYTES + 1), False),
        ("\u00e9" * 40, True),   # 80 bytes in UTF-8
        ("\u00e9" * 41, False),  # 82 bytes in UTF-8, though only 41 characters
        ("<script>", False),
        ("a>b", False),
        ('"quoted"', False),
        ("it's", False),
        ("nul\x00", False),
        ("tab\t", False),
        ("new\nline", False),
        ("cr\r", False),
        ("\x1f", False),
    ],
)
def test_check_relay_state(relay_state: str | None, ok: bool) -> None:
    if ok:
        assert check_relay_state(relay_state) == relay_state
    else:
        with pytest.raises(BindingError):
            check_relay_state(relay_state)


# ---------------------------------------------------------------- HTTP-POST


def test_post_round_trip() -> None:
    msg = decode_post(encode_post(XML), "state", MAX)
    assert (msg.xml, msg.relay_state, msg.binding, msg.signed_query) == (XML, "state", "post", False)


def test_post_whitespace_inside_base64_is_ok() -> None:
    b64 = encode_post(XML)
    wrapped = "\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
    assert decode_post(wrapped, None, MAX).xml == XML


@pytest.mark.parametrize(
    ("form_value", "relay_state", "message"),
    [
        (None, None, "no SAML message"),
        ("", None, "no SAML message"),
        ("abc", None, "not valid base64"),
        ("ab$=", None, "not valid base64"),
        (encode_post(b"x" * 2000), None, "larger than 1000 bytes"),
        (encode_post(XML), "<b>", "markup"),
        (encode_post(XML), "x" * 81, "longer than"),
    ],
)
def test_post_refused(form_value: str | None, relay_state: str | None, message: str) -> None:
    with pytest.raises(BindingError, match=message):
        decode_post(form_value, relay_state, 1000)


# ---------------------------------------------------------------- encode_redirect_url


@pytest.mark.parametrize(
    ("location", "relay_state"),
    [
        ("https://sp.example/slo", None),
        ("https://sp.example/slo", "state-123"),
        ("https://sp.example/slo?existing=1", "a b+c/d=e&f"),
    ],
)
def test_encode_redirect_round_trip(location: str, relay_state: str | None) -> None:
    url = encode_redirect_url(location, "SAMLResponse", XML, relay_state)
    parts = urlsplit(url)
    assert url.startswith(location + ("&" if "?" in location else "?"))
    msg = decode_redirect(parts.query.encode("ascii"), "SAMLResponse", MAX)
    assert msg.xml == XML
    assert msg.relay_state == relay_state
    assert msg.signed_query is False


@pytest.fixture(scope="module")
def rsa_pair():
    gen = generate_key_pair("idp.example", "rsa2048", 30)
    return serialization.load_pem_private_key(gen.key_pem, None), gen.cert_pem.decode("ascii")


@pytest.fixture(scope="module")
def ec_pair():
    gen = generate_key_pair("idp.example", "ec-p256", 30)
    return serialization.load_pem_private_key(gen.key_pem, None), gen.cert_pem.decode("ascii")


@pytest.mark.parametrize(
    ("pair", "algorithm"),
    [("rsa_pair", SIG_RSA_SHA256), ("rsa_pair", SIG_RSA_SHA512), ("ec_pair", SIG_ECDSA_SHA256)],
)
@pytest.mark.parametrize("relay_state", [None, "rs-1"])
def test_signed_redirect_url_verifies(request: pytest.FixtureRequest, pair: str, algorithm: str,
                                      relay_state: str | None) -> None:
    key, cert_pem = request.getfixturevalue(pair)
    url = encode_redirect_url("https://sp.example/slo", "SAMLRequest", XML, relay_state, key, algorithm)
    query = urlsplit(url).query.encode("ascii")
    msg = decode_redirect(query, "SAMLRequest", MAX)
    assert msg.signed_query is True
    assert msg.xml == XML
    assert verify_redirect_signature(query, "SAMLRequest", [cert_pem], allowed_algorithms(False)) == algorithm


def test_signed_redirect_url_fails_with_another_cert(rsa_pair, ec_pair) -> None:
    key, _ = rsa_pair
    other = generate_key_pair("other", "ec-p256", 30).cert_pem.decode("ascii")
    url = encode_redirect_url("https://sp.example/slo", "SAMLRequest", XML, "rs", key, SIG_RSA_SHA256)
    with pytest.raises(SignatureError, match="does not verify"):
        verify_redirect_signature(urlsplit(url).query.encode(), "SAMLRequest", [ec_pair[1], other],
                                  allowed_algorithms(False))
