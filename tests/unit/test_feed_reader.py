"""services.feeds.iter_entities: every EntityDescriptor of an aggregate in document order (nested aggregates
included), SP or not, entity attributes read, and each handled entity dropped from the tree (bounded memory)."""

from __future__ import annotations

from lxml import etree

from idp.services import feeds

MD = "urn:oasis:names:tc:SAML:2.0:metadata"
ATTRS = ('<md:Extensions><mdattr:EntityAttributes xmlns:mdattr="urn:oasis:names:tc:SAML:metadata:attribute">'
         '<saml:Attribute xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" Name="http://macedir.org/entity-category">'
         "<saml:AttributeValue>http://refeds.org/category/research-and-scholarship</saml:AttributeValue>"
         "<saml:AttributeValue> https://refeds.org/sirtfi </saml:AttributeValue></saml:Attribute>"
         "</mdattr:EntityAttributes></md:Extensions>")
SP = '<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"/>'
SAML1_SP = '<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:1.1:protocol"/>'
IDP = '<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"/>'


def doc(n: int = 3) -> bytes:
    plain = "".join(f'<md:EntityDescriptor entityID="https://sp{i}.example.org">{SP}</md:EntityDescriptor>'
                    for i in range(n))
    return (f'<md:EntitiesDescriptor xmlns:md="{MD}"><md:EntityDescriptor entityID="https://rs.example.org">'
            f'{ATTRS}{SP}</md:EntityDescriptor><md:EntitiesDescriptor Name="nested">{plain}</md:EntitiesDescriptor>'
            f'<md:EntityDescriptor entityID="https://idp.example.org">{IDP}</md:EntityDescriptor>'
            f'<md:EntityDescriptor entityID="https://old.example.org">{SAML1_SP}</md:EntityDescriptor>'
            "</md:EntitiesDescriptor>").encode()


def test_entities_in_order_with_roles_and_attributes() -> None:
    got = list(feeds.iter_entities(doc()))
    assert [e.entity_id for e in got] == ["https://rs.example.org", "https://sp0.example.org",
                                          "https://sp1.example.org", "https://sp2.example.org",
                                          "https://idp.example.org", "https://old.example.org"]
    assert [e.is_sp for e in got] == [True, True, True, True, False, False]
    assert got[0].attributes == [("http://macedir.org/entity-category",
                                  "http://refeds.org/category/research-and-scholarship"),
                                 ("http://macedir.org/entity-category", "https://refeds.org/sirtfi")]
    one = etree.fromstring(got[1].xml)   # a standalone document, its namespace declared
    assert one.tag == f"{{{MD}}}EntityDescriptor" and one.get("entityID") == "https://sp0.example.org"
    assert got[4].xml == b""             # not an SP: not serialised


def test_selection() -> None:
    rs = {("http://macedir.org/entity-category", "http://refeds.org/category/research-and-scholarship")}
    got = list(feeds.iter_entities(doc()))
    assert [e.entity_id for e in got if feeds.selected(rs, set(), e)] == ["https://rs.example.org"]
    assert [e.entity_id for e in got if feeds.selected(rs, {"https://sp2.example.org", "https://idp.example.org"},
                                                       e)] == ["https://rs.example.org", "https://sp2.example.org"]
    assert len([e for e in got if feeds.selected(set(), set(), e)]) == 4    # no selection: every SAML 2.0 SP


def test_handled_entities_are_dropped() -> None:
    """When an entity is handed out, the entities handled before it are gone from the tree: left of it are at most
    the one just before (emptied) and a nested aggregate just finished (holding its last, emptied, entity), so
    memory does not grow with the number of entities."""
    gen = feeds.iter_entities(doc(500))
    preceding: list[int] = []
    for _ in gen:
        frame = gen.gi_frame
        assert frame is not None
        el = frame.f_locals["el"]
        before = list(el.itersiblings(preceding=True))
        preceding.append(sum(1 for b in before for _ in b.iter()))
    assert len(preceding) == 503 and max(preceding) <= 3, max(preceding)
