"""Write XML elements directly in exclusive-canonical form (xml-exc-c14n, xml-c14n §2.3).

The SSO Response is written as text that is already its own canonical form: the digest of an
element is then the hash of its substring, with no tree to build, canonicalise and serialise
again (`make bench`: about a quarter of a Response's non-RSA cost). What keeps it safe and exact:

- every value goes through `text()` or `attr()`: markup characters are escaped as c14n escapes
  them, and characters XML 1.0 cannot carry are refused (ValueError), as lxml refuses them;
- tag and attribute names are the caller's constants, never data;
- `element()` sorts attributes as c14n does and writes empty elements as start/end pairs; the
  caller declares each namespace on the element that first uses it (as exclusive c14n renders it).

Tests parse every kind of output and check that lxml's exclusive c14n of each signed element
reproduces the written text byte for byte, for arbitrary (hypothesis-generated) values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# XML 1.0 Char production, inverted: anything matching cannot appear in a document.
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _check(value: str) -> None:
    if _NOT_XML_CHAR.search(value):
        raise ValueError("All strings must be XML compatible: Unicode or ASCII, no NULL bytes or control characters")


def text(value: str) -> str:
    """Character data as c14n writes it: &, <, > and CR escaped."""
    _check(value)
    if "&" in value or "<" in value or ">" in value or "\r" in value:
        value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#xD;")
    return value


_ATTR_SPECIAL = re.compile('[&<"\t\n\r]')
_ATTR_ESCAPES = {"&": "&amp;", "<": "&lt;", '"': "&quot;", "\t": "&#x9;", "\n": "&#xA;", "\r": "&#xD;"}


def attr(value: str) -> str:
    """An attribute value as c14n writes it: &, <, ", TAB, LF and CR escaped (> is not)."""
    _check(value)
    return _ATTR_SPECIAL.sub(lambda m: _ATTR_ESCAPES[m.group(0)], value)


def ns_decl(prefix: str, uri: str) -> tuple[str, str]:
    return (f"xmlns:{prefix}", uri)


def start_tag(qname: str, attrs: Iterable[tuple[str, str | None]], ns: tuple[str, str] | None = None) -> str:
    """`<qname xmlns:p="..." a="..." b="...">` with unqualified attributes in c14n order (by name);
    attributes whose value is None are left out."""
    parts = [f"<{qname}"]
    if ns is not None:
        parts.append(f' {ns[0]}="{attr(ns[1])}"')
    for name, value in sorted((n, v) for n, v in attrs if v is not None):  # names are unique: sorts by name
        parts.append(f' {name}="{attr(value)}"')
    parts.append(">")
    return "".join(parts)


def element(qname: str, attrs: Iterable[tuple[str, str | None]] = (), content: str = "",
            ns: tuple[str, str] | None = None) -> str:
    """A whole element; `content` is already canonical (child elements, or `text()` of a value)."""
    return f"{start_tag(qname, attrs, ns)}{content}</{qname}>"
