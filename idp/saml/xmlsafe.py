"""Safe XML parsing for anything that arrives from outside: no DTD, no entities, no network, bounded size."""

from __future__ import annotations

import threading
from typing import NoReturn

from lxml import etree


class UnsafeXmlError(ValueError):
    """The document is not well-formed, too large, or carries a DTD; the message says which."""


# lxml ships no type stubs: without types-lxml, etree.Resolver is Any to mypy (with them this ignore is unused).
class _DenyAllResolver(etree.Resolver):  # type: ignore[misc, unused-ignore]
    """Refuse every external resource. `load_dtd=False` alone does not stop libxml2 from opening an
    external parameter entity named in an internal subset (seen with UTF-16 input that slips past
    the byte-level DOCTYPE check), so nothing may ever be resolved."""

    def resolve(self, system_url: str | None, public_id: str | None, context: object) -> NoReturn:
        raise ValueError("external resources are not allowed")


class _Parsers(threading.local):
    """The hardened parsers of one thread, by remove_comments."""

    def __init__(self) -> None:
        self.by_option: dict[bool, etree.XMLParser] = {}


_parsers = _Parsers()


def _parser(remove_comments: bool) -> etree.XMLParser:
    """The hardened parser, built once per thread (an lxml parser must not be shared between
    threads; building one costs more than parsing a typical AuthnRequest)."""
    parser = _parsers.by_option.get(remove_comments)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=False,
            remove_pis=True,
            collect_ids=False,
            remove_comments=remove_comments,
        )
        parser.resolvers.add(_DenyAllResolver())
        _parsers.by_option[remove_comments] = parser
    return parser


def parse_untrusted_xml(data: bytes, *, max_bytes: int, max_depth: int = 64,
                        remove_comments: bool = False) -> etree._Element:
    """Parse bytes from an untrusted party and return the root element.

    A DOCTYPE is refused outright (SAML protocol messages and metadata never need one), which
    also rules out internal-subset entity tricks (billion laughs, XXE) before anything expands.
    """
    if len(data) > max_bytes:
        raise UnsafeXmlError(f"document is larger than {max_bytes} bytes")
    if isinstance(data, str):
        raise TypeError("parse_untrusted_xml() takes bytes")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    data = data.lstrip(b" \t\r\n")  # whitespace before the root or the XML declaration is harmless
    if not data:
        raise UnsafeXmlError("document is empty")
    if b"<!DOCTYPE" in data:  # cheap early refusal; the docinfo check below is the authoritative one
        raise UnsafeXmlError("a DOCTYPE is not allowed")
    parser = _parser(remove_comments)
    try:
        root = etree.fromstring(data, parser=parser)  # noqa: S320 - parser hardened above
    except etree.XMLSyntaxError as exc:
        raise UnsafeXmlError(f"not well-formed XML: {str(exc)[:200]}") from None
    except ValueError as exc:  # e.g. unicode strings with an encoding declaration
        raise UnsafeXmlError(f"not well-formed XML: {str(exc)[:200]}") from None
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None or tree.docinfo.externalDTD is not None:
        raise UnsafeXmlError("a DOCTYPE is not allowed")
    if _depth_exceeds(root, max_depth):
        raise UnsafeXmlError(f"elements are nested deeper than {max_depth} levels")
    return root


def _depth_exceeds(root: etree._Element, limit: int) -> bool:
    stack = [(root, 1)]
    while stack:
        el, depth = stack.pop()
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in el)
    return False


def text_of(el: etree._Element | None) -> str:
    """The full text content with surrounding whitespace stripped.

    Never `.text`: a comment inside a value (`admin@x<!---->.evil`) splits the text nodes and
    `.text` would return only the first part (the classic comment-injection attack).
    """
    if el is None:
        return ""
    return "".join(t for t in el.itertext() if isinstance(t, str)).strip()
