"""HTTP-Redirect and HTTP-POST binding codecs (saml-bindings-2.0-os §3.4, §3.5)."""

from __future__ import annotations

import base64
import binascii
import zlib
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote_plus

from .constants import URL_ENCODING_DEFLATE, BindingName
from .signing import SigningKey, sign_redirect_query

MAX_RELAY_STATE_BYTES = 80  # saml-bindings-2.0-os §3.4.3 / §3.5.3


class BindingError(ValueError):
    """The message could not be decoded from its binding."""


@dataclass(frozen=True, slots=True)
class DecodedMessage:
    xml: bytes
    relay_state: str | None
    binding: BindingName
    signed_query: bool        # Redirect: SigAlg/Signature present


def _b64decode(value: str) -> bytes:
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise BindingError("message is not valid base64") from None


def inflate_capped(data: bytes, max_bytes: int) -> bytes:
    """Raw DEFLATE inflate that stops at max_bytes (defeats deflate bombs)."""
    d = zlib.decompressobj(-15)
    try:
        out = d.decompress(data, max_bytes + 1)
    except zlib.error:
        raise BindingError("message is not valid DEFLATE data") from None
    if len(out) > max_bytes or d.unconsumed_tail:
        raise BindingError(f"inflated message is larger than {max_bytes} bytes")
    return out


def check_relay_state(relay_state: str | None) -> str | None:
    if relay_state is None:
        return None
    if len(relay_state.encode("utf-8")) > MAX_RELAY_STATE_BYTES:
        raise BindingError(f"RelayState is longer than {MAX_RELAY_STATE_BYTES} bytes")
    if any(c in relay_state for c in "<>\"'\x00") or any(ord(c) < 32 for c in relay_state):
        raise BindingError("RelayState contains markup or control characters")
    return relay_state


def _single(pairs: list[tuple[str, str]], name: str) -> str | None:
    values = [v for k, v in pairs if k == name]
    if len(values) > 1:
        raise BindingError(f"parameter {name} appears more than once")
    return values[0] if values else None


def decode_redirect(raw_query: bytes, msg_param: str, max_inflated: int) -> DecodedMessage:
    try:
        pairs = parse_qsl(raw_query.decode("ascii"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise BindingError("query string is not ASCII") from None
    value = _single(pairs, msg_param)
    if not value:
        raise BindingError(f"no {msg_param} parameter")
    for name in ("RelayState", "SigAlg", "Signature"):
        _single(pairs, name)
    if _single(pairs, "SAMLEncoding") not in (None, URL_ENCODING_DEFLATE):
        raise BindingError("unsupported SAMLEncoding")
    xml = inflate_capped(_b64decode(value), max_inflated)
    return DecodedMessage(
        xml=xml,
        relay_state=check_relay_state(_single(pairs, "RelayState")),
        binding=BindingName.REDIRECT,
        signed_query=_single(pairs, "Signature") is not None,
    )


def decode_post(form_value: str | None, relay_state: str | None, max_bytes: int) -> DecodedMessage:
    if not form_value:
        raise BindingError("no SAML message in the form")
    if len(form_value) > max_bytes * 4 // 3 + 4:
        raise BindingError(f"message is larger than {max_bytes} bytes")
    return DecodedMessage(xml=_b64decode(form_value), relay_state=check_relay_state(relay_state),
                          binding=BindingName.POST, signed_query=False)


def encode_post(xml: bytes) -> str:
    return base64.b64encode(xml).decode("ascii")


def encode_redirect_url(location: str, msg_param: str, xml: bytes, relay_state: str | None,
                        private_key: SigningKey | None = None, algorithm: str | None = None) -> str:
    """Build the HTTP-Redirect URL, signed over the encoded query when a key is given."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated = comp.compress(xml) + comp.flush()
    query = f"{msg_param}={quote_plus(base64.b64encode(deflated).decode('ascii'))}"
    if relay_state is not None:
        query += f"&RelayState={quote_plus(relay_state)}"
    if private_key is not None and algorithm is not None:
        query += f"&SigAlg={quote_plus(algorithm)}"
        query += f"&Signature={quote_plus(sign_redirect_query(query, private_key, algorithm))}"
    sep = "&" if "?" in location else "?"
    return f"{location}{sep}{query}"
