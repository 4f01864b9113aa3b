"""`idp apps add --metadata` and `idp apps sync` against the real-world SP metadata corpus and hostile inputs.

Every corpus file either registers (exit 0, the slug on stdout, the right entityID and an HTTP-POST ACS) or is
refused with a specific message and nothing stored. The expected entityIDs and HTTP-POST ACS locations below were
read from the files with a plain XPath, independently of the parser under test (see SOURCES.md in the corpus).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import re
import shutil
import threading
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from flask import Flask

from ..conftest import SP_METADATA_DIR

POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")

# file -> (entityID, one HTTP-POST ACS Location it must have) for single-SP documents.
ACCEPTED: dict[str, tuple[str, str]] = {
    "crewjam-go-saml-sp-post-and-artifact.xml": (
        "https://example.com/saml2/metadata", "https://example.com/saml2/acs"),
    "dropbox-gluu-docs.xml": ("Dropbox", "https://www.dropbox.com/saml_login"),
    "eshipglobal-shibboleth-sp-duplicate-keys.xml": (
        "https://miamioh.eshipglobal.com/shibboleth", "https://miamioh.eshipglobal.com/Shibboleth.sso/SAML2/POST"),
    "firstmarblehead-openam-sp.xml": (
        "sso.firstmarblehead.com/miamioh_sso",
        "https://sso.firstmarblehead.com/openam/Consumer/metaAlias/fmdrealm001/miamioh_sso_sp"),
    "gartner-pingfederate-signed.xml": ("http://www.gartner.com", "https://ssofed.gartner.com/sp/ACS.saml2"),
    "gitlab-omniauth-saml-ruby-saml.xml": (
        "https://dev.aa.kndr.org/users/auth/saml/metadata", "https://dev.aa.kndr.org/users/auth/saml/callback"),
    "google-workspace-gluu-docs.xml": ("google.com/a/domain.com", "https://www.google.com/a/domain.com/acs"),
    "microsoft-online-office365-signed.xml": (
        "urn:federation:MicrosoftOnline", "https://login.microsoftonline.com/login.srf"),
    "nextcloud-user-saml-signed-sha256.xml": (
        "http://localhost:8080/apps/user_saml/saml/metadata", "http://localhost:8080/apps/user_saml/saml/acs"),
    "pac4j-sp-jenkins-saml-plugin-style.xml": (
        "urn:mace:saml:pac4j.org", "http://localhost:8080/callback?client_name=SAML2Client"),
    "pysaml2-sp-entity-categories.xml": (
        "https://esi-coco.example.edu/saml2/metadata/", "https://esi-coco.example.edu/saml2/acs/"),
    "pysaml2-sp-post-redirect-artifact-paos.xml": (
        "https://lingon.ladok.umu.se:8087/sp.xml", "https://lingon.ladok.umu.se:8087/acs/post"),
    "pysaml2-sp-two-encryption-keys.xml": ("urn:mace:example.com:saml:roland:sp", "http://lingon.catalogix.se:8087/"),
    "python3-saml-no-keydescriptor.xml": (
        "http://stuff.com/endpoints/metadata.php", "http://stuff.com/endpoints/endpoints/acs.php"),
    "python3-saml-signature-inside-spssodescriptor.xml": (
        "http://pytoolkit.com:8000/metadata/", "http://pytoolkit.com:8000/?acs"),
    "python3-saml-signed-sha1-expired.xml": (
        "https://example.com//demo1/metadata.php", "https://example.com//demo1/index.php?acs"),
    "sans-simplesamlphp-sp.xml": (
        "https://access.sans.org/bridge/module.php/saml/sp/metadata.php/bridge",
        "https://access.sans.org/bridge/module.php/saml/sp/saml2-acs.php/bridge"),
    "shibboleth-sp-style-simplesign-first-no-keys.xml": (
        "https://sp-b.example.org/shibboleth", "https://sp-b.example.org/Shibboleth.sso/SAML2/POST"),
    "spid-django-signed-sha256.xml": ("https://localhost:8000/spid/metadata/", "https://localhost:8000/spid/acs/"),
    "swamid-shibboleth-sp-uu-se.xml": (
        "https://akka-anv.uu.se/shibboleth", "https://akka-anv.uu.se/Shibboleth.sso/SAML2/POST"),
    # IdP + SP aggregate: the one SP is picked without --entity-id.
    "testshib-shibboleth-sp-and-idp.xml": (
        "https://sp.testshib.org/shibboleth-sp", "https://sp.testshib.org/Shibboleth.sso/SAML2/POST"),
    "wecomply-nonconformant.xml": (
        "https://training.wecomply.com/wc2",
        "https://training.wecomply.com/wc2/ServiceProviderSAMLRequestHandler.ashx?accesscode=miami"),
}

# file -> message fragment for documents no entity of which can be used.
REFUSED: dict[str, str] = {
    "oracle-crmondemand-saml1-artifact.xml": "no usable HTTP-POST AssertionConsumerService",
}

# aggregates with several SPs: file -> {entityID: HTTP-POST ACS Location}
AGGREGATES: dict[str, dict[str, str]] = {
    "simplesamlphp-two-sps-entitiesdescriptor.xml": {
        "https://sp1.example.com/simplesaml/module.php/saml/sp/metadata.php/default-sp":
            "https://sp1.example.com/simplesaml/module.php/saml/sp/saml2-acs.php/default-sp",
        "https://sp2.example.com/simplesaml/module.php/saml/sp/metadata.php/default-sp":
            "https://sp2.example.com/simplesaml/module.php/saml/sp/saml2-acs.php/default-sp",
    },
    "switch-aaitest-aggregate-excerpt.xml": {
        "https://dev.renku.ch/auth/realms/Renku": "https://dev.renku.ch/auth/realms/Renku/broker/eduID-test/endpoint",
        "urn:auth0:fmi-test": "https://fmi-test.auth0.com/login/callback",
        "https://moodle-test.unifr.ch/shibboleth": "https://moodle-test.unifr.ch/Shibboleth.sso/SAML2/POST",
    },
}

CORPUS = sorted(p.name for p in SP_METADATA_DIR.glob("*.xml"))
SAML1_ONLY = "oracle-crmondemand-saml1-artifact.xml"


# ---------------------------------------------------------------- helpers

def cli(app: Flask, *args: str, input: str | None = None) -> Result:  # noqa: A002 - mirrors CliRunner.invoke
    result = app.test_cli_runner().invoke(args=list(args), input=input)
    # An unexpected exception is caught by CliRunner (no traceback printed), so check the exception type too.
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result


def ok(app: Flask, *args: str) -> Result:
    result = cli(app, *args)
    assert result.exit_code == 0, result.output
    return result


def refused(app: Flask, *args: str, fragment: str) -> Result:
    result = cli(app, *args)
    assert result.exit_code != 0, result.output
    assert result.stdout == "", result.stdout  # the message goes to stderr, nothing that looks like a slug
    assert fragment in result.stderr, result.stderr
    return result


def apps_json(app: Flask) -> list[dict[str, Any]]:
    return json.loads(ok(app, "apps", "list", "--format", "json").stdout)


def show(app: Flask, slug: str) -> dict[str, Any]:
    return json.loads(ok(app, "apps", "show", slug, "--format", "json").stdout)


def add(app: Flask, path: Path | str, *extra: str) -> str:
    result = ok(app, "apps", "add", "--metadata", str(path), *extra)
    slug = result.stdout.strip()
    assert result.stdout == slug + "\n"
    assert SLUG_RE.match(slug), slug
    return slug


def post_locations(d: dict[str, Any]) -> list[str]:
    return [e["location"] for e in d["acs"] if e["binding"] == POST]


def sp_xml(acs: str = "https://sp.example.org/acs", *, entity_id: str = "https://sp.example.org/sp",
           extra: str = "") -> str:
    return f"""<?xml version="1.0"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="{entity_id}">
  <md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    {extra}
    <md:AssertionConsumerService Binding="{POST}" Location="{acs}" index="0"/>
  </md:SPSSODescriptor>
</md:EntityDescriptor>
"""


# ---------------------------------------------------------------- the corpus

def test_corpus_is_fully_classified() -> None:
    assert len(CORPUS) == 25, CORPUS
    assert set(CORPUS) == set(ACCEPTED) | set(REFUSED) | set(AGGREGATES)


@pytest.mark.parametrize("name", CORPUS)
def test_corpus_file(app: Flask, name: str) -> None:
    path = SP_METADATA_DIR / name
    if name in ACCEPTED:
        entity_id, acs = ACCEPTED[name]
        slug = add(app, path)
        d = show(app, slug)
        assert d["slug"] == slug
        assert d["entity_id"] == entity_id
        assert d["enabled"] is True and d["source"] == "cli"
        assert post_locations(d), d["acs"]
        assert acs in post_locations(d)
        assert d["launch_url"].endswith(f"/apps/{slug}/sso")
        assert [a["slug"] for a in apps_json(app)] == [slug]
    elif name in REFUSED:
        refused(app, "apps", "add", "--metadata", str(path), fragment=REFUSED[name])
        assert apps_json(app) == []
    else:
        result = refused(app, "apps", "add", "--metadata", str(path), fragment="--entity-id")
        for entity_id in AGGREGATES[name]:
            assert repr(entity_id) in result.stderr
        assert f"describes {len(AGGREGATES[name])} service providers" in result.stderr
        assert apps_json(app) == []


@pytest.mark.parametrize("name", sorted(AGGREGATES))
def test_aggregate_with_entity_id(app: Flask, name: str) -> None:
    path = SP_METADATA_DIR / name
    slugs = []
    for entity_id, acs in AGGREGATES[name].items():
        slug = add(app, path, "--entity-id", entity_id)
        d = show(app, slug)
        assert d["entity_id"] == entity_id
        assert acs in post_locations(d)
        # only the chosen SP's endpoints, not its neighbours'
        assert all(e["location"] != other for e in d["acs"] for eid, other in AGGREGATES[name].items()
                   if eid != entity_id)
        slugs.append(slug)
    assert len(set(slugs)) == len(slugs)
    assert sorted(a["entity_id"] for a in apps_json(app)) == sorted(AGGREGATES[name])


def test_aggregate_entity_id_not_present(app: Flask) -> None:
    path = SP_METADATA_DIR / "switch-aaitest-aggregate-excerpt.xml"
    r = refused(app, "apps", "add", "--metadata", str(path), "--entity-id", "https://nope.example.org/sp",
                fragment="is not in this metadata")
    assert "urn:auth0:fmi-test" in r.stderr
    assert apps_json(app) == []


def test_aggregate_entity_id_of_an_idp(app: Flask) -> None:
    path = SP_METADATA_DIR / "testshib-shibboleth-sp-and-idp.xml"
    refused(app, "apps", "add", "--metadata", str(path), "--entity-id", "https://idp.testshib.org/idp/shibboleth",
            fragment="identity provider metadata")
    assert apps_json(app) == []


def test_saml1_only_file_with_its_entity_id_is_still_refused(app: Flask) -> None:
    path = SP_METADATA_DIR / SAML1_ONLY
    refused(app, "apps", "add", "--metadata", str(path), "--entity-id", "168d407fc35649049f433155c96801e17ab76a27",
            fragment="HTTP-POST")
    assert apps_json(app) == []


# ---------------------------------------------------------------- duplicates, slugs, names

def test_same_file_twice_is_refused_and_changes_nothing(app: Flask) -> None:
    path = SP_METADATA_DIR / "dropbox-gluu-docs.xml"
    add(app, path)
    before = apps_json(app)
    refused(app, "apps", "add", "--metadata", str(path), fragment="already registered")
    # also with a fresh slug and name: the entityID is what makes it a duplicate
    refused(app, "apps", "add", "--metadata", str(path), "--slug", "dropbox-two", "--name", "Other",
            fragment="already registered")
    assert apps_json(app) == before


def test_bad_slug_refused(app: Flask) -> None:
    for slug in ["Upper", "-lead", "trail-", "under_score", "sp ace", "a" * 65, "", "d.ot", "ünï", "../x"]:
        refused(app, "apps", "add", "--metadata", str(SP_METADATA_DIR / "dropbox-gluu-docs.xml"), "--slug", slug,
                fragment="slug")
    assert apps_json(app) == []


def test_slug_with_trailing_newline_refused(app: Flask) -> None:
    refused(app, "apps", "add", "--metadata", str(SP_METADATA_DIR / "dropbox-gluu-docs.xml"), "--slug", "dropbox\n",
            fragment="slug")
    assert apps_json(app) == []


def test_good_slug_used(app: Flask) -> None:
    slug = add(app, SP_METADATA_DIR / "dropbox-gluu-docs.xml", "--slug", "a" * 64)
    assert slug == "a" * 64
    assert show(app, slug)["entity_id"] == "Dropbox"


def test_taken_slug_refused(app: Flask) -> None:
    add(app, SP_METADATA_DIR / "dropbox-gluu-docs.xml", "--slug", "files")
    before = apps_json(app)
    refused(app, "apps", "add", "--metadata", str(SP_METADATA_DIR / "gitlab-omniauth-saml-ruby-saml.xml"),
            "--slug", "files", fragment="already taken")
    assert apps_json(app) == before


def test_generated_slugs_do_not_collide(app: Flask, tmp_path: Path) -> None:
    (tmp_path / "one.xml").write_text(sp_xml(entity_id="https://one.example.org/sp"))
    (tmp_path / "two.xml").write_text(sp_xml(entity_id="https://two.example.org/sp"))
    s1 = add(app, tmp_path / "one.xml", "--name", "Same Name")
    s2 = add(app, tmp_path / "two.xml", "--name", "Same Name")
    assert s1 == "same-name" and s2 != s1 and s2.startswith("same-name")


def test_name_with_markup_is_stored_verbatim(app: Flask) -> None:
    name = """<script>alert("x")</script> & <b>Bold</b> 'quoted'"""
    slug = add(app, SP_METADATA_DIR / "dropbox-gluu-docs.xml", "--name", name)
    assert show(app, slug)["name"] == name
    assert [a["name"] for a in apps_json(app)] == [name]


def test_blank_name_refused(app: Flask) -> None:
    refused(app, "apps", "add", "--metadata", str(SP_METADATA_DIR / "dropbox-gluu-docs.xml"), "--name", "   ",
            fragment="name")
    assert apps_json(app) == []


# ---------------------------------------------------------------- where the metadata comes from

def test_file_url_refused(app: Flask) -> None:
    r = refused(app, "apps", "add", "--metadata", "file:///etc/passwd", fragment="file path or an http(s) URL")
    assert "root:" not in r.output
    refused(app, "apps", "add", "--metadata", "ftp://sp.example.org/md.xml", fragment="file path or an http(s) URL")
    assert apps_json(app) == []


def test_non_xml_files_refused_without_echoing_them(app: Flask, tmp_path: Path) -> None:
    first_line = Path("/etc/passwd").read_text().splitlines()[0]
    r = refused(app, "apps", "add", "--metadata", "/etc/passwd", fragment="not well-formed XML")
    assert first_line not in r.output and "root:" not in r.output
    secret = tmp_path / "secret.txt"
    secret.write_text("DB_PASSWORD=hunter2-very-secret\n")
    r = refused(app, "apps", "add", "--metadata", str(secret), fragment="not well-formed XML")
    assert "hunter2" not in r.output
    assert apps_json(app) == []


def test_nonexistent_path_refused(app: Flask, tmp_path: Path) -> None:
    refused(app, "apps", "add", "--metadata", str(tmp_path / "nope.xml"), fragment="no metadata file")
    refused(app, "apps", "add", "--metadata", str(tmp_path), fragment="no metadata file")  # a directory
    (tmp_path / "empty.xml").write_bytes(b"")
    refused(app, "apps", "add", "--metadata", str(tmp_path / "empty.xml"), fragment="empty")
    assert apps_json(app) == []


@pytest.mark.skipif(not Path("/proc/self/mem").is_file(), reason="needs Linux /proc")
def test_unreadable_file_refused_cleanly(app: Flask) -> None:
    refused(app, "apps", "add", "--metadata", "/proc/self/mem", fragment="/proc/self/mem")
    assert apps_json(app) == []


def test_private_address_url_refused(app: Flask) -> None:
    for url in [
        "http://127.0.0.1:1/x", "https://127.0.0.1:1/x", "http://localhost:1/x", "http://[::1]:1/x",
        "http://[::ffff:127.0.0.1]:1/x", "http://127.1:1/x", "http://2130706433:1/x", "http://0.0.0.0:1/x",
        "http://10.0.0.1:1/x", "http://192.168.1.1:1/x", "http://169.254.169.254/latest/meta-data/",
    ]:
        refused(app, "apps", "add", "--metadata", url, fragment="non-public address")
    assert apps_json(app) == []


def test_url_with_credentials_refused(app: Flask) -> None:
    refused(app, "apps", "add", "--metadata", "https://user:pw@sp.example.org/md",
            fragment="must not contain credentials")


def test_doctype_refused(app: Flask, tmp_path: Path) -> None:
    xxe = tmp_path / "xxe.xml"
    xxe.write_text('<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n'
                   + sp_xml(acs="https://sp.example.org/&e;").split("\n", 1)[1])
    r = refused(app, "apps", "add", "--metadata", str(xxe), fragment="DOCTYPE")
    assert "root:" not in r.output
    assert apps_json(app) == []


# ---------------------------------------------------------------- hostile endpoints

def test_hostile_post_acs_refused(app: Flask, tmp_path: Path) -> None:
    f = tmp_path / "md.xml"
    for location in [
        "javascript:alert(document.domain)",
        "JavaScript:alert(1)",
        "  javascript:alert(1)",
        "java&#9;script:alert(1)",
        "javascript://https://sp.example.org/%0aalert(1)",
        "data:text/html,&lt;script&gt;alert(1)&lt;/script&gt;",
        "/relative/acs",
        "https:///no-host",
    ]:
        f.write_text(sp_xml(acs=location))
        refused(app, "apps", "add", "--metadata", str(f), fragment="AssertionConsumerService Location")
    assert apps_json(app) == []


def test_javascript_in_secondary_endpoints_refused(app: Flask, tmp_path: Path) -> None:
    """A bad non-POST ACS or SLO still refuses the whole document: it is never stored for later use."""
    f = tmp_path / "md.xml"
    redirect = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
    f.write_text(sp_xml(extra=f'<md:SingleLogoutService Binding="{redirect}" Location="javascript:alert(1)"/>'))
    refused(app, "apps", "add", "--metadata", str(f), fragment="SingleLogoutService Location")
    f.write_text(sp_xml(extra=f'<md:AssertionConsumerService Binding="{redirect}" Location="javascript:x()" '
                              'index="1"/>'))
    refused(app, "apps", "add", "--metadata", str(f), fragment="javascript:")
    assert apps_json(app) == []


# ---------------------------------------------------------------- apps sync

def sync(app: Flask, folder: Path) -> Result:
    return cli(app, "apps", "sync", str(folder))


def lines(result: Result) -> list[str]:
    return [re.sub(r"\s+", " ", line.strip()) for line in result.stdout.splitlines()]


@pytest.fixture
def sync_dir(tmp_path: Path) -> Path:
    d = tmp_path / "sync"
    d.mkdir()
    shutil.copy(SP_METADATA_DIR / "dropbox-gluu-docs.xml", d / "a.xml")
    shutil.copy(SP_METADATA_DIR / "gitlab-omniauth-saml-ruby-saml.xml", d / "b.xml")
    shutil.copy(SP_METADATA_DIR / SAML1_ONLY, d / "c.xml")
    return d


def test_sync_adds_and_refuses(app: Flask, sync_dir: Path) -> None:
    r = sync(app, sync_dir)
    assert r.exit_code != 0
    out = lines(r)
    assert "added a" in out and "added b" in out
    refusals = [line for line in out if line.startswith("refused c.xml: ")]
    assert len(refusals) == 1 and "HTTP-POST" in refusals[0]
    assert out[-1] == "2 added, 0 updated, 0 unchanged, 1 refused"
    apps = {a["slug"]: a for a in apps_json(app)}
    assert set(apps) == {"a", "b"}
    assert apps["a"]["entity_id"] == "Dropbox" and apps["a"]["source"] == "sync"
    assert apps["b"]["entity_id"] == "https://dev.aa.kndr.org/users/auth/saml/metadata"


def test_sync_all_good_exits_zero(app: Flask, sync_dir: Path) -> None:
    (sync_dir / "c.xml").unlink()
    r = sync(app, sync_dir)
    assert r.exit_code == 0, r.output
    assert lines(r)[-1] == "2 added, 0 updated, 0 unchanged, 0 refused"


def test_sync_second_run_unchanged(app: Flask, sync_dir: Path) -> None:
    sync(app, sync_dir)
    before = apps_json(app)
    r = sync(app, sync_dir)
    assert r.exit_code != 0  # c.xml is still refused
    out = lines(r)
    assert "unchanged a" in out and "unchanged b" in out
    assert not any(line.startswith(("added", "updated")) for line in out)
    assert out[-1] == "0 added, 0 updated, 2 unchanged, 1 refused"
    assert apps_json(app) == before


def test_sync_modified_file_updated(app: Flask, sync_dir: Path) -> None:
    sync(app, sync_dir)
    a = sync_dir / "a.xml"
    a.write_text(a.read_text().replace("https://www.dropbox.com/saml_login", "https://www.dropbox.com/saml_login2"))
    r = sync(app, sync_dir)
    out = lines(r)
    assert "updated a" in out and "unchanged b" in out
    assert out[-1] == "0 added, 1 updated, 1 unchanged, 1 refused"
    assert post_locations(show(app, "a")) == ["https://www.dropbox.com/saml_login2"]


def test_sync_modified_file_that_breaks_is_refused_and_keeps_old(app: Flask, sync_dir: Path) -> None:
    sync(app, sync_dir)
    a = sync_dir / "a.xml"
    a.write_text(a.read_text().replace("https://www.dropbox.com/saml_login", "javascript:alert(1)"))
    r = sync(app, sync_dir)
    refusals = [line for line in lines(r) if line.startswith("refused a.xml: ")]
    assert len(refusals) == 1
    assert post_locations(show(app, "a")) == ["https://www.dropbox.com/saml_login"]


def test_sync_modified_file_with_other_entity_id_refused(app: Flask, sync_dir: Path) -> None:
    sync(app, sync_dir)
    a = sync_dir / "a.xml"
    a.write_text(a.read_text().replace('entityID="Dropbox"', 'entityID="https://evil.example.org/sp"'))
    r = sync(app, sync_dir)
    refusals = [line for line in lines(r) if line.startswith("refused a.xml: ")]
    assert len(refusals) == 1 and "'Dropbox'" in refusals[0]
    assert show(app, "a")["entity_id"] == "Dropbox"
    assert post_locations(show(app, "a")) == ["https://www.dropbox.com/saml_login"]


def test_sync_leaves_cli_app_with_same_slug_alone(app: Flask, sync_dir: Path) -> None:
    add(app, SP_METADATA_DIR / "python3-saml-no-keydescriptor.xml", "--slug", "a")
    before = show(app, "a")
    r = sync(app, sync_dir)
    assert r.exit_code != 0
    out = lines(r)
    assert "added a" not in out and "updated a" not in out
    refusals = [line for line in out if line.startswith("refused a.xml: ")]
    assert len(refusals) == 1 and "not created by sync" in refusals[0]
    assert show(app, "a") == before
    assert show(app, "a")["entity_id"] == "http://stuff.com/endpoints/metadata.php"
    assert "added b" in out


def test_sync_never_deletes(app: Flask, sync_dir: Path) -> None:
    sync(app, sync_dir)
    (sync_dir / "b.xml").unlink()
    r = sync(app, sync_dir)
    assert not any(" b" in line and not line.startswith("refused") for line in lines(r)[:-1])
    assert {a["slug"] for a in apps_json(app)} == {"a", "b"}
    assert show(app, "b")["entity_id"] == "https://dev.aa.kndr.org/users/auth/saml/metadata"


def test_sync_bad_file_name_refused(app: Flask, tmp_path: Path) -> None:
    d = tmp_path / "s"
    d.mkdir()
    shutil.copy(SP_METADATA_DIR / "dropbox-gluu-docs.xml", d / "bad_name.xml")
    r = sync(app, d)
    assert r.exit_code != 0
    assert any(line.startswith("refused bad_name.xml: ") and "slug" in line for line in lines(r))
    assert apps_json(app) == []


def test_sync_missing_folder(app: Flask, tmp_path: Path) -> None:
    r = cli(app, "apps", "sync", str(tmp_path / "nope"))
    assert r.exit_code != 0
    assert "no folder" in r.stderr


# ---------------------------------------------------------------- fetching from a URL (internal hosts allowed)

class _MetadataHandler(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        if self.path == "/md.xml":
            self.send_response(200)
            self.send_header("Content-Type", "application/samlmetadata+xml")
            self.send_header("Content-Length", str(len(self.body)))
            self.end_headers()
            self.wfile.write(self.body)
        elif self.path == "/to-md":
            self.send_response(302)
            self.send_header("Location", "/md.xml")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/to-unspecified":
            self.send_response(302)
            self.send_header("Location", "http://0.0.0.0:1/x")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def md_server(app: Flask, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A local HTTP server with SP metadata; the app is configured to allow internal metadata hosts."""
    settings = app.extensions["idp.settings"]
    monkeypatch.setitem(app.extensions, "idp.settings",
                        dataclasses.replace(settings, metadata_fetch_allow_private=True, metadata_fetch_timeout_s=5))
    handler = type("Handler", (_MetadataHandler,), {"body": (SP_METADATA_DIR / "dropbox-gluu-docs.xml").read_bytes()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def fetch_cli(app: Flask, url: str) -> tuple[int, str, str, list[str]]:
    """Run `apps add --metadata URL`; returns (exit code, stdout, stderr, ResourceWarnings seen).

    The CLI result holds the exception chain (a reference cycle), so garbage is collected here, inside a block that
    records ResourceWarnings instead of letting filterwarnings=error turn them into unraisable-exception failures.
    """
    gc.collect()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        result = cli(app, "apps", "add", "--metadata", url)
        code, out, err = result.exit_code, result.stdout, result.stderr
        del result
        gc.collect()
    return code, out, err, [str(w.message) for w in seen if issubclass(w.category, ResourceWarning)]


def test_url_fetch_registers(app: Flask, md_server: str) -> None:
    code, out, err, _ = fetch_cli(app, f"{md_server}/to-md")
    assert code == 0, err
    slug = out.strip()
    d = show(app, slug)
    assert d["entity_id"] == "Dropbox"
    assert post_locations(d) == ["https://www.dropbox.com/saml_login"]


FETCH_REFUSALS = [
    ("/to-unspecified", "forbidden address"),
    ("/loop", "redirected too many times"),
    ("/missing", "HTTP 404"),
]


def test_url_fetch_refusals(app: Flask, md_server: str) -> None:
    for path, fragment in FETCH_REFUSALS:
        code, out, err, _ = fetch_cli(app, f"{md_server}{path}")
        assert code != 0 and out == "", path
        assert fragment in err, (path, err)
        assert "Traceback" not in err
    assert apps_json(app) == []


def test_url_fetch_refusals_close_their_sockets(app: Flask, md_server: str) -> None:
    leaks = {}
    for path, fragment in FETCH_REFUSALS:
        code, _, err, leaked = fetch_cli(app, f"{md_server}{path}")
        assert code != 0 and fragment in err
        leaks[path] = leaked
    assert leaks == {path: [] for path, _ in FETCH_REFUSALS}
