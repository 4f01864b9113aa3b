"""Unit tests for idp.saml.xmlsafe: hostile XML is refused before anything is expanded or fetched."""

from __future__ import annotations

import pytest

from idp.saml.xmlsafe import UnsafeXmlError, parse_untrusted_xml, text_of

MAX = 10_000


def parse(data: bytes, **kw: int) -> object:
    return parse_untrusted_xml(data, max_bytes=kw.pop("max_bytes", MAX), **kw)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<lolz>&lol4;</lolz>"""


@pytest.mark.parametrize(
    "data",
    [
        BILLION_LAUGHS,
        b'<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><foo>&xxe;</foo>',
        b'<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><foo a="&xxe;"/>',
        b'<!DOCTYPE foo [<!ENTITY % pe SYSTEM "file:///etc/passwd"> %pe;]><foo/>',
        b'<!DOCTYPE foo [<!ENTITY % pe SYSTEM "http://evil.example/x.dtd"> %pe;]><foo/>',
        b'<!DOCTYPE foo SYSTEM "http://evil.example/x.dtd"><foo/>',
        b'<!DOCTYPE foo SYSTEM "file:///etc/passwd"><foo/>',
        b"<!DOCTYPE foo><foo/>",
        b'<?xml version="1.0"?>\n<!DOCTYPE samlp:AuthnRequest>\n<samlp:AuthnRequest '
        b'xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"/>',
    ],
    ids=["billion-laughs", "xxe-file", "xxe-in-attribute", "external-parameter-entity-file",
         "external-parameter-entity-http", "external-subset-http", "external-subset-file", "plain-doctype",
         "doctype-before-saml"],
)
def test_doctype_refused(data: bytes) -> None:
    with pytest.raises(UnsafeXmlError):
        parse(data)


def test_doctype_refusal_names_the_doctype() -> None:
    with pytest.raises(UnsafeXmlError, match="DOCTYPE is not allowed"):
        parse(b"<!DOCTYPE foo><foo/>")


@pytest.mark.parametrize(
    "encoding",
    [
        "utf-8",
        # UTF-16/32 slip past the byte-level "<!DOCTYPE" scan; the deny-all resolver must stop the fetch
        "utf-16",
        "utf-16-le",
        "utf-16-be",
        "utf-32",
        "utf-32-le",
        "utf-32-be",
    ],
)
def test_external_parameter_entity_is_never_fetched(fifo_probe, encoding: str) -> None:
    fifo, was_opened = fifo_probe
    doc = f'<!DOCTYPE foo [<!ENTITY % pe SYSTEM "file://{fifo}"> %pe;]><foo/>'.encode(encoding)
    # the wording depends on where libxml2 stops ("a DOCTYPE is not allowed", or "not well-formed XML: ..."
    # about the refused resolver or the DTD); what matters is the refusal and that nothing was read
    with pytest.raises(UnsafeXmlError):
        parse(doc)
    assert not was_opened(), "the parser opened a file named by an untrusted document"


def test_fifo_probe_notices_a_reader(fifo_probe) -> None:
    """Control for the test above: the probe does report an open, so "not opened" means something."""
    fifo, was_opened = fifo_probe
    with open(fifo, "rb") as fh:
        assert fh.read() == b'<!ENTITY leak "x">'
    assert was_opened()


@pytest.mark.parametrize(
    ("size", "max_bytes", "ok"),
    [
        (100, 100, True),
        (101, 100, False),
        (MAX * 10, MAX, False),
    ],
)
def test_size_limit(size: int, max_bytes: int, ok: bool) -> None:
    data = b"<a>" + b"x" * (size - 7) + b"</a>"
    assert len(data) == size
    if ok:
        assert parse(data, max_bytes=max_bytes).tag == "a"
    else:
        with pytest.raises(UnsafeXmlError, match=f"larger than {max_bytes} bytes"):
            parse(data, max_bytes=max_bytes)


def nested(depth: int) -> bytes:
    return b"<a>" * depth + b"</a>" * depth


@pytest.mark.parametrize(
    ("depth", "limit", "ok"),
    [
        (64, 64, True),
        (65, 64, False),
        (5, 5, True),
        (6, 5, False),
        (300, 64, False),  # beyond libxml2's own limit too
    ],
)
def test_depth_limit(depth: int, limit: int, ok: bool) -> None:
    data = nested(depth)
    if ok:
        assert parse(data, max_depth=limit, max_bytes=len(data)).tag == "a"
    else:
        with pytest.raises(UnsafeXmlError):
            parse(data, max_depth=limit, max_bytes=len(data))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"   \n\t ", "empty"),
        (b"\xef\xbb\xbf", "empty"),
        (b"hello", "not well-formed"),
        (b'{"SAMLRequest": 1}', "not well-formed"),
        (b"<a><b></a>", "not well-formed"),
        (b"<a>", "not well-formed"),
        (b"<a/><b/>", "not well-formed"),
        (b"<a>&undefined;</a>", "not well-formed"),
        (b"<a>\x00</a>", "not well-formed"),
    ],
    ids=["empty", "whitespace", "bom-only", "text", "json", "mismatched", "unclosed", "two-roots",
         "undefined-entity", "nul"],
)
def test_not_xml_refused(data: bytes, message: str) -> None:
    with pytest.raises(UnsafeXmlError, match=message):
        parse(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\xef\xbb\xbf<a>v</a>",
        b"\xef\xbb\xbf  \r\n\t<a>v</a>",
        b'\xef\xbb\xbf<?xml version="1.0" encoding="UTF-8"?><a>v</a>',
        b'  \n<?xml version="1.0" encoding="UTF-8"?>\n<a>v</a>',
        b"\n\n<a>v</a>\n",
        "<a>v</a>".encode("utf-16"),
    ],
    ids=["bom", "bom-whitespace", "bom-declaration", "whitespace-declaration", "newlines", "utf-16"],
)
def test_bom_and_leading_whitespace_accepted(data: bytes) -> None:
    root = parse(data)
    assert root.tag == "a"
    assert text_of(root) == "v"


@pytest.mark.parametrize(
    ("xml", "expected"),
    [
        (b"<a>admin@example.com</a>", "admin@example.com"),
        (b"<a>  padded \n</a>", "padded"),
        (b"<a>admin@x<!---->.evil.example</a>", "admin@x.evil.example"),
        (b"<a>adm<!-- c -->in@<!-- d -->example.com</a>", "admin@example.com"),
        (b"<a><!-- leading -->admin</a>", "admin"),
        (b"<a>admin<?pi data?>@example.com</a>", "admin@example.com"),
        (b"<a>x<![CDATA[<y>&amp;]]>z</a>", "x<y>&amp;z"),
        (b"<a>&lt;b&gt;&amp;</a>", "<b>&"),
        (b"<a/>", ""),
        (b"<a>one<b>two</b>three</a>", "onetwothree"),
    ],
    ids=["plain", "stripped", "comment-injection", "two-comments", "leading-comment", "pi", "cdata", "escaped",
         "empty", "nested"],
)
def test_text_of(xml: bytes, expected: str) -> None:
    root = parse(xml)
    assert text_of(root) == expected


def test_comment_injection_defeats_dot_text_but_not_text_of() -> None:
    root = parse(b"<a>admin@x<!---->.evil.example</a>")
    assert root.text == "admin@x"  # what a naive implementation would use
    assert text_of(root) == "admin@x.evil.example"


def test_text_of_none() -> None:
    assert text_of(None) == ""


def test_processing_instructions_removed() -> None:
    root = parse(b'<a><?xml-stylesheet href="x"?><b/></a>')
    assert [child.tag for child in root] == ["b"]
