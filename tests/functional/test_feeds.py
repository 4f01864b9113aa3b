"""Federation feeds: a signed aggregate served by a real loopback HTTP server, selection by entity attribute and
by entityID, a tampered aggregate refused with nothing changed, an entity gone from the feed disabled, a re-sync
answered 304, held changes, removal keeping or removing the apps, the worker's schedule, and an SSO round trip
with an independent SP registered through the feed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from flask import Flask
from lxml import etree

from idp.config import Settings
from idp.extensions import db
from idp.models import ConnectedApp, Feed, FeedMember
from idp.saml.constants import SignatureAlgorithm
from idp.saml.signing import sign_element

from ..conftest import make_settings
from ..sp_harness import KeyPair
from ..webclient import saml_form
from .conftest import PASSWORD
from .test_admin_apps import admin, root  # noqa: F401 - fixtures
from .test_metadata_refresh import MetadataServer, anchor_file, audits, cli, ok

MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
MDATTR = "urn:oasis:names:tc:SAML:metadata:attribute"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
CATEGORY = "http://macedir.org/entity-category"
RS = "http://refeds.org/category/research-and-scholarship"
COCO = "https://refeds.org/category/code-of-conduct/v2"


@pytest.fixture
def server() -> Iterator[MetadataServer]:
    srv = MetadataServer()
    yield srv
    srv.close()


@pytest.fixture
def settings(tmp_path: Path, key_template: Path) -> Settings:
    return make_settings(tmp_path, key_template, metadata_fetch_allow_private=True)


def entity(entity_id: str, *, categories: tuple[str, ...] = (), acs: str | None = None, idp: bool = False,
           cert: str | None = None) -> str:
    ext = ""
    if categories:
        values = "".join(f"<saml:AttributeValue>{c}</saml:AttributeValue>" for c in categories)
        ext = (f'<md:Extensions><mdattr:EntityAttributes xmlns:mdattr="{MDATTR}"><saml:Attribute xmlns:saml="{SAML}"'
               f' Name="{CATEGORY}" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:uri">{values}'
               f"</saml:Attribute></mdattr:EntityAttributes></md:Extensions>")
    if idp:
        role = ('<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
                '<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" '
                f'Location="{entity_id}/sso"/></md:IDPSSODescriptor>')
    else:
        key = (f'<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}'
               "</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>") if cert else ""
        role = ('<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
                f'{key}<md:AssertionConsumerService Binding="{POST}" Location="{acs or entity_id + "/acs"}" '
                'index="0"/></md:SPSSODescriptor>')
    return f'<md:EntityDescriptor entityID="{entity_id}">{ext}{role}</md:EntityDescriptor>'


def aggregate(entities: list[str], kp: KeyPair | None, *, valid_days: int = 7) -> bytes:
    until = (datetime.now(UTC) + timedelta(days=valid_days)).strftime("%Y-%m-%dT%H:%M:%SZ")
    doc = etree.fromstring(f'<md:EntitiesDescriptor xmlns:md="{MD}" xmlns:ds="{DS}" ID="_feed" '
                            f'validUntil="{until}" Name="urn:example:federation">{"".join(entities)}'
                            "</md:EntitiesDescriptor>")
    if kp is not None:
        key = serialization.load_pem_private_key(kp.key_pem.encode(), None)
        sign_element(doc, key, SignatureAlgorithm.RSA_SHA256, kp.cert_b64)  # type: ignore[arg-type]
    return etree.tostring(doc, xml_declaration=True, encoding="UTF-8")


def wrapped(signed_doc: bytes) -> bytes:
    """Signature wrapping: the signed aggregate nested, untouched, in an unsigned one that adds an entity."""
    inner = re.sub(rb"<\?xml[^>]*\?>", b"", signed_doc)
    evil = entity("https://evil.example.net/sp").replace("<md:EntityDescriptor ",
                                                         f'<md:EntityDescriptor xmlns:md="{MD}" ')
    return (f'<md:EntitiesDescriptor xmlns:md="{MD}" validUntil="2099-01-01T00:00:00Z">'.encode() + inner
            + evil.encode() + b"</md:EntitiesDescriptor>")


def base_entities() -> list[str]:
    return [entity("https://rs1.example.edu/sp", categories=(RS,)),
            entity("https://rs2.example.edu/sp", categories=(RS, COCO)),
            entity("https://coco.example.edu/sp", categories=(COCO,)),
            entity("https://plain.example.com/sp"),
            entity("https://idp.example.edu/idp", categories=(RS,), idp=True)]


def apps() -> dict[str, ConnectedApp]:
    db.session.expire_all()
    return {a.entity_id: a for a in db.session.query(ConnectedApp).all() if a.entity_id}


def add_rs_feed(app: Flask, tmp_path: Path, server: MetadataServer, kp: KeyPair, *extra: str) -> str:
    return ok(app, "feeds", "add", server.url("/feed.xml"), "--trust-anchor", anchor_file(tmp_path, kp),
              "--select", f"{CATEGORY}={RS}", "--name", "fed", *extra).stdout


def test_select_by_entity_attribute_then_304_then_removed_entity_disabled(app: Flask, tmp_path: Path,
                                                                         server: MetadataServer,
                                                                         sp_keys: Any) -> None:
    kp = sp_keys["other"]
    server.docs["/feed.xml"] = aggregate(base_entities(), kp)
    out = add_rs_feed(app, tmp_path, server, kp, "--entity", "https://plain.example.com/sp")
    assert "synced" in out and "3 of 4 SPs selected" in out and "3 added" in out
    got = apps()
    assert set(got) == {"https://rs1.example.edu/sp", "https://rs2.example.edu/sp", "https://plain.example.com/sp"}
    rs1 = got["https://rs1.example.edu/sp"]
    assert rs1.source == "feed" and rs1.slug == "rs1-example-edu-sp" and rs1.enabled
    assert "feed: fed" in ok(app, "apps", "show", "rs1-example-edu-sp").stdout
    assert audits("feed.sync")[-1].after["counts"]["added"] == 3
    assert len(audits("app.add")) == 3

    # the same document again: a conditional GET answered 304, nothing changes
    before = len(server.requests)
    assert "unchanged: not modified (HTTP 304)" in ok(app, "feeds", "sync", "fed").stdout
    assert "If-None-Match" in server.requests[before][1]

    # rs2 leaves the feed, rs1's ACS changes (one kept: applied), the plain one stays
    ents = base_entities()
    ents[0] = entity("https://rs1.example.edu/sp", categories=(RS,)).replace(
        "</md:SPSSODescriptor>", f'<md:AssertionConsumerService Binding="{POST}" '
        'Location="https://rs1.example.edu/acs2" index="1"/></md:SPSSODescriptor>')
    del ents[1]
    server.docs["/feed.xml"] = aggregate(ents, kp)
    out = ok(app, "feeds", "sync", "fed").stdout
    assert "1 updated" in out and "1 disabled" in out and "1 unchanged" in out
    got = apps()
    assert not got["https://rs2.example.edu/sp"].enabled       # disabled, not deleted
    assert [a["location"] for a in got["https://rs1.example.edu/sp"].sp["acs"]][-1] == "https://rs1.example.edu/acs2"
    assert audits("app.feed_disabled")[-1].target == "rs2-example-edu-sp"
    diff = audits("feed.sync")[-1].after["diff"]
    assert diff["disabled"] == ["https://rs2.example.edu/sp"] and diff["updated"] == ["https://rs1.example.edu/sp"]

    # it comes back: enabled again
    server.docs["/feed.xml"] = aggregate(base_entities(), kp)
    assert "1 enabled" in ok(app, "feeds", "sync", "fed").stdout
    assert apps()["https://rs2.example.edu/sp"].enabled

    # an app an admin disabled is not enabled by the feed when its entity leaves and comes back
    ok(app, "apps", "set", "rs2-example-edu-sp", "--disabled")
    ents = base_entities()
    del ents[1]
    server.docs["/feed.xml"] = aggregate(ents, kp)
    assert "1 disabled" in ok(app, "feeds", "sync", "fed").stdout
    server.docs["/feed.xml"] = aggregate(base_entities(), kp)
    assert "1 returned" in ok(app, "feeds", "sync", "fed").stdout
    assert not apps()["https://rs2.example.edu/sp"].enabled
    assert "0 added" not in ok(app, "feeds", "sync", "fed", "--force").stdout

    r = cli(app, "apps", "set", "rs1-example-edu-sp", "--metadata-url", "https://elsewhere.example.org/md.xml")
    assert r.exit_code == 1 and "follows a federation feed (feed:fed)" in r.output

    listing = ok(app, "feeds", "list").stdout
    assert "fed" in listing and f"{CATEGORY}={RS}" in listing and "apps: 3" in listing


def test_tampered_unsigned_or_foreign_aggregate_is_refused_and_nothing_changes(
        app: Flask, tmp_path: Path, server: MetadataServer, sp_keys: Any) -> None:
    kp = sp_keys["other"]
    good = aggregate(base_entities(), kp)
    server.docs["/feed.xml"] = good
    add_rs_feed(app, tmp_path, server, kp)
    before = {e: (a.enabled, a.version) for e, a in apps().items()}
    assert len(before) == 2
    tampered = good.replace(b"https://rs1.example.edu/sp/acs", b"https://evil.example.net/acs")
    for doc, words in ((tampered, "does not verify"), (aggregate(base_entities(), None), "not signed"),
                       (aggregate(base_entities(), sp_keys["sp1"]), "does not verify"),
                       (aggregate(base_entities(), kp, valid_days=400), "days ahead"),
                       (wrapped(good), "not signed")):
        server.docs["/feed.xml"] = doc
        result = cli(app, "feeds", "sync", "fed", "--force")
        assert result.exit_code == 1 and "refused" in result.output and words in result.output, result.output
        assert {e: (a.enabled, a.version) for e, a in apps().items()} == before
    feed = db.session.query(Feed).one()
    assert feed.last_outcome == "refused" and "not signed" in (feed.last_error or "")
    assert [a.after["reason"] for a in audits("feed.sync_failed")] == \
        ["signature_invalid", "signature_missing", "signature_invalid", "valid_until_too_far", "signature_missing"]


def test_dry_run_writes_nothing_and_conflicts_are_left_alone(app: Flask, tmp_path: Path, server: MetadataServer,
                                                             sp_keys: Any) -> None:
    kp = sp_keys["other"]
    server.docs["/feed.xml"] = aggregate(base_entities(), kp)
    ok(app, "feeds", "add", server.url("/feed.xml"), "--trust-anchor", anchor_file(tmp_path, kp), "--name", "fed",
       "--no-sync")
    out = ok(app, "feeds", "sync", "fed", "--dry-run").stdout
    assert "dry run" in out and "would be added: https://plain.example.com/sp" in out
    assert apps() == {} and db.session.query(Feed).one().fetched_sha256 is None
    # an app registered by hand with a feed entity's entityID is not taken over
    md = tmp_path / "manual.xml"
    md.write_text(f'<md:EntityDescriptor xmlns:md="{MD}" entityID="https://coco.example.edu/sp">'
                  '<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
                  f'<md:AssertionConsumerService Binding="{POST}" Location="https://coco.example.edu/mine" '
                  'index="0"/></md:SPSSODescriptor></md:EntityDescriptor>')
    ok(app, "apps", "add", "--metadata", str(md), "--slug", "mine")
    out = ok(app, "feeds", "sync", "fed").stdout
    assert "3 added" in out and "1 conflicts" in out
    mine = apps()["https://coco.example.edu/sp"]
    assert mine.source != "feed" and mine.sp["acs"][0]["location"] == "https://coco.example.edu/mine"


def test_a_change_removing_every_acs_is_held_until_yes(app: Flask, tmp_path: Path, server: MetadataServer,
                                                        sp_keys: Any) -> None:
    kp = sp_keys["other"]
    server.docs["/feed.xml"] = aggregate(base_entities(), kp)
    add_rs_feed(app, tmp_path, server, kp)
    ents = base_entities()
    ents[0] = entity("https://rs1.example.edu/sp", categories=(RS,), acs="https://evil.example.net/acs")
    server.docs["/feed.xml"] = aggregate(ents, kp)
    result = ok(app, "feeds", "sync", "fed")
    assert "1 held" in result.stdout and "idp feeds sync fed --yes" in result.stderr
    assert apps()["https://rs1.example.edu/sp"].sp["acs"][0]["location"] == "https://rs1.example.edu/sp/acs"
    assert audits("app.metadata_held")[-1].target == "rs1-example-edu-sp"
    assert "1 held" in ok(app, "feeds", "sync", "fed", "--force").stdout    # still held, not held twice
    assert len(audits("app.metadata_held")) == 1
    assert "1 updated" in ok(app, "feeds", "sync", "fed", "--yes").stdout
    assert apps()["https://rs1.example.edu/sp"].sp["acs"][0]["location"] == "https://evil.example.net/acs"


@pytest.mark.parametrize("remove_apps", [False, True])
def test_remove_keeps_or_removes_the_apps(app: Flask, tmp_path: Path, server: MetadataServer, sp_keys: Any,
                                          remove_apps: bool) -> None:
    kp = sp_keys["other"]
    server.docs["/feed.xml"] = aggregate(base_entities(), kp)
    add_rs_feed(app, tmp_path, server, kp)
    out = ok(app, "feeds", "remove", "fed", *(["--remove-apps"] if remove_apps else [])).stdout
    assert ("2 app(s) removed" if remove_apps else "2 app(s) kept as manual apps") in out
    got = apps()
    assert db.session.query(Feed).count() == 0 and db.session.query(FeedMember).count() == 0
    if remove_apps:
        assert got == {}
    else:
        assert len(got) == 2 and all(a.source == "cli" and a.enabled for a in got.values())


def test_bad_input_is_refused_clearly(app: Flask, tmp_path: Path, sp_keys: Any) -> None:
    anchor = anchor_file(tmp_path, sp_keys["other"])
    r = cli(app, "feeds", "add", "https://fed.example.org/md.xml", "--trust-anchor", anchor, "--select", "nonsense")
    assert r.exit_code == 1 and "ENTITY-ATTRIBUTE=VALUE" in r.output
    r = cli(app, "feeds", "add", "ftp://fed.example.org/md.xml", "--trust-anchor", anchor)
    assert r.exit_code == 1 and "http" in r.output
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    r = cli(app, "feeds", "add", "https://fed.example.org/md.xml", "--trust-anchor", str(bad))
    assert r.exit_code == 1 and "PEM" in r.output
    assert db.session.query(Feed).count() == 0
    assert cli(app, "feeds", "sync", "nope").exit_code == 1


def test_worker_syncs_due_feeds(app: Flask, tmp_path: Path, server: MetadataServer, sp_keys: Any) -> None:
    kp = sp_keys["other"]
    server.docs["/feed.xml"] = aggregate(base_entities(), kp)
    add_rs_feed(app, tmp_path, server, kp, "--no-sync")
    out = ok(app, "worker", "--once").stdout
    assert "ran 1 job(s)" in out
    assert len(apps()) == 2
    feed = db.session.query(Feed).one()
    assert feed.last_outcome == "synced" and feed.next_due_at is not None
    assert feed.next_due_at > datetime.now(UTC) + timedelta(minutes=4)
    assert audits("feed.sync")[-1].actor == "worker"
    assert "ran 0 job(s)" in ok(app, "worker", "--once").stdout     # not due again yet


def test_sso_round_trip_with_an_sp_registered_through_the_feed(app: Flask, server: MetadataServer, make_sp: Any,
                                                                browser: Any, alice: Any, tmp_path: Path,
                                                                sp_keys: Any) -> None:
    sp = make_sp("pysaml2", register=False)
    sp_md = sp.metadata_xml().encode()
    one = etree.fromstring(sp_md)
    if one.tag != f"{{{MD}}}EntityDescriptor":
        one = one.find(f".//{{{MD}}}EntityDescriptor")
    wrapped = f'<md:EntitiesDescriptor xmlns:md="{MD}">{entity("https://x.example/sp", categories=(RS,))}'
    ext = etree.fromstring(wrapped + "</md:EntitiesDescriptor>").find(f".//{{{MD}}}Extensions")
    one.insert(0, ext)
    mine = re.sub(r"<\?xml[^>]*\?>", "", etree.tostring(one).decode())
    kp = sp_keys["other"]
    server.docs["/feed.xml"] = aggregate([mine, *base_entities()], kp)
    add_rs_feed(app, tmp_path, server, kp)
    row = apps()[sp.entity_id]
    assert row.source == "feed"
    sp.slug = row.slug
    req = sp.authn_request("redirect")
    form = saml_form(browser.sso(req, "alice", PASSWORD))
    assert form is not None and form.action == sp.acs_url
    assert sp.process_response(form.saml_response, req.request_id).name_id == "alice"


def test_console_lists_feeds_syncs_now_and_marks_feed_apps(app: Flask, client: Any, admin: str,  # noqa: F811
                                                           tmp_path: Path, server: MetadataServer,
                                                           sp_keys: Any) -> None:
    kp = sp_keys["other"]
    empty = client.get("/admin/apps/feeds").get_data(as_text=True)
    assert 'id="feeds-empty"' in empty
    server.docs["/feed.xml"] = aggregate(base_entities(), kp)
    add_rs_feed(app, tmp_path, server, kp, "--no-sync")
    page = client.get("/admin/apps/feeds").get_data(as_text=True)
    assert server.url("/feed.xml") in page and "never synced" in page and RS in page
    feed = db.session.query(Feed).one()
    from idp.certs.x509 import cert_info
    assert cert_info(kp.cert_pem).fingerprint in page
    assert client.post(f"/admin/apps/feeds/{feed.id}/sync", data={}).status_code == 400     # no CSRF token
    resp = client.post(f"/admin/apps/feeds/{feed.id}/sync", data={"csrf_token": admin})
    assert resp.status_code == 303
    page = client.get("/admin/apps/feeds").get_data(as_text=True)
    assert "2 added" in page and 'class="badge ok">synced' in page
    assert len(apps()) == 2
    listing = client.get("/admin/apps").get_data(as_text=True)
    assert listing.count('class="badge info from-feed"') == 2 and "feed:fed" in listing and 'id="feeds-link"' in listing
    server.docs["/feed.xml"] = aggregate(base_entities(), None)          # unsigned now: refused, shown
    client.post(f"/admin/apps/feeds/{feed.id}/sync", data={"csrf_token": admin})
    page = client.get("/admin/apps/feeds").get_data(as_text=True)
    assert "not signed" in page and 'class="badge bad">refused' in page


def test_a_feed_that_suddenly_lists_far_fewer_sps_disables_nothing_until_yes(app: Flask, tmp_path: Path,
                                                                           server: MetadataServer,
                                                                           sp_keys: Any) -> None:
    """A publishing accident (or a changed selection) must not disable half the federation's apps unattended."""
    kp = sp_keys["other"]
    many = [entity(f"https://sp{i}.example.edu/sp", categories=(RS,)) for i in range(6)]
    server.docs["/feed.xml"] = aggregate(many, kp)
    assert "6 added" in add_rs_feed(app, tmp_path, server, kp)
    server.docs["/feed.xml"] = aggregate(many[:2], kp)          # 4 of 6 gone at once
    out = ok(app, "feeds", "sync", "fed").stdout
    assert "4 disable_held" in out and "disabled" not in out.replace("disable_held", "")
    assert all(a.enabled for a in apps().values())
    held = audits("feed.disable_held")[-1]
    assert held.after["would_disable"] == 4 and held.after["of"] == 6
    out = ok(app, "feeds", "sync", "fed", "--yes").stdout       # the admin confirms
    assert "4 disabled" in out
    assert sum(1 for a in apps().values() if not a.enabled) == 4
    # one leaving at a time is the normal case: applied at once
    server.docs["/feed.xml"] = aggregate(many[:1], kp)
    assert "1 disabled" in ok(app, "feeds", "sync", "fed").stdout
