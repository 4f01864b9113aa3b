"""Unit tests for idp.saml.sp_metadata: the real-world SP metadata corpus as golden inputs, then hostile input."""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from idp.saml.constants import BINDING_POST, BINDING_REDIRECT
from idp.saml.sp_metadata import (
    MAX_METADATA_BYTES,
    Endpoint,
    MetadataError,
    SpMetadata,
    list_sp_entity_ids,
    parse_sp_metadata,
    safe_parse_xml,
)

# Several corpus certificates have a non-positive serial number (old OpenSSL / SimpleSAMLphp / Shibboleth keys);
# cryptography 50 loads them with this deprecation warning. They are accepted on purpose: SP metadata certificates
# only carry a key.
NEGATIVE_SERIAL = (
    "ignore:Parsed a serial number which wasn't positive:cryptography.utils.CryptographyDeprecationWarning"
)

CORPUS_DIR = Path(
    os.environ.get("IDP_SP_METADATA_DIR") or Path(__file__).resolve().parents[1] / "data" / "sp-metadata"
)
SKIP_REASON = f"SP metadata corpus not found at {CORPUS_DIR} (set IDP_SP_METADATA_DIR to its folder)"

SAML1_ARTIFACT = "urn:oasis:names:tc:SAML:1.0:profiles:artifact-01"
SIMPLESIGN = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST-SimpleSign"
ARTIFACT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Artifact"


# --------------------------------------------------------------------------------------------------------------------
# The corpus table: every file in the corpus folder has one row, checked by reading the files themselves.


@dataclass(frozen=True)
class Facts:
    acs: int  # every AssertionConsumerService, all bindings
    post_acs: int
    default_post_acs: str
    signing: int  # distinct certificates
    encryption: int
    ars: bool
    was: bool
    nameid_formats: int


@dataclass(frozen=True)
class Parses:
    entities: dict[str, Facts]  # entityID -> facts; more than one means entity_id must be given


@dataclass(frozen=True)
class Refused:
    entity_ids: tuple[str, ...]  # what list_sp_entity_ids still reports
    fragment: str


F, T = False, True
CORPUS: dict[str, Parses | Refused] = {
    "crewjam-go-saml-sp-post-and-artifact.xml": Parses(
        {"https://example.com/saml2/metadata": Facts(2, 1, "https://example.com/saml2/acs", 1, 1, T, T, 0)}
    ),
    "dropbox-gluu-docs.xml": Parses({"Dropbox": Facts(1, 1, "https://www.dropbox.com/saml_login", 0, 0, F, F, 1)}),
    "eshipglobal-shibboleth-sp-duplicate-keys.xml": Parses(
        {
            "https://miamioh.eshipglobal.com/shibboleth": Facts(
                6, 1, "https://miamioh.eshipglobal.com/Shibboleth.sso/SAML2/POST", 1, 1, F, F, 0
            )
        }
    ),
    "firstmarblehead-openam-sp.xml": Parses(
        {
            "sso.firstmarblehead.com/miamioh_sso": Facts(
                3,
                1,
                "https://sso.firstmarblehead.com/openam/Consumer/metaAlias/fmdrealm001/miamioh_sso_sp",
                1,
                1,
                T,
                T,
                7,
            )
        }
    ),
    "gartner-pingfederate-signed.xml": Parses(
        {"http://www.gartner.com": Facts(1, 1, "https://ssofed.gartner.com/sp/ACS.saml2", 0, 1, F, F, 0)}
    ),
    "gitlab-omniauth-saml-ruby-saml.xml": Parses(
        {
            "https://dev.aa.kndr.org/users/auth/saml/metadata": Facts(
                1, 1, "https://dev.aa.kndr.org/users/auth/saml/callback", 0, 0, F, F, 0
            )
        }
    ),
    "google-workspace-gluu-docs.xml": Parses(
        {"google.com/a/domain.com": Facts(1, 1, "https://www.google.com/a/domain.com/acs", 0, 0, F, F, 1)}
    ),
    "microsoft-online-office365-signed.xml": Parses(
        {"urn:federation:MicrosoftOnline": Facts(3, 1, "https://login.microsoftonline.com/login.srf", 2, 0, F, T, 5)}
    ),
    "nextcloud-user-saml-signed-sha256.xml": Parses(
        {
            "http://localhost:8080/apps/user_saml/saml/metadata": Facts(
                1, 1, "http://localhost:8080/apps/user_saml/saml/acs", 1, 0, T, T, 1
            )
        }
    ),
    "oracle-crmondemand-saml1-artifact.xml": Refused(
        ("168d407fc35649049f433155c96801e17ab76a27",), "no usable HTTP-POST AssertionConsumerService"
    ),
    "pac4j-sp-jenkins-saml-plugin-style.xml": Parses(
        {
            "urn:mace:saml:pac4j.org": Facts(
                1, 1, "http://localhost:8080/callback?client_name=SAML2Client", 1, 1, F, F, 4
            )
        }
    ),
    "pysaml2-sp-entity-categories.xml": Parses(
        {
            "https://esi-coco.example.edu/saml2/metadata/": Facts(
                1, 1, "https://esi-coco.example.edu/saml2/acs/", 1, 1, F, T, 0
            )
        }
    ),
    "pysaml2-sp-post-redirect-artifact-paos.xml": Parses(
        {
            "https://lingon.ladok.umu.se:8087/sp.xml": Facts(
                4, 1, "https://lingon.ladok.umu.se:8087/acs/post", 1, 1, F, T, 0
            )
        }
    ),
    "pysaml2-sp-two-encryption-keys.xml": Parses(
        {"urn:mace:example.com:saml:roland:sp": Facts(1, 1, "http://lingon.catalogix.se:8087/", 1, 2, F, T, 0)}
    ),
    "python3-saml-no-keydescriptor.xml": Parses(
        {
            "http://stuff.com/endpoints/metadata.php": Facts(
                1, 1, "http://stuff.com/endpoints/endpoints/acs.php", 0, 0, F, F, 1
            )
        }
    ),
    "python3-saml-signature-inside-spssodescriptor.xml": Parses(
        {"http://pytoolkit.com:8000/metadata/": Facts(1, 1, "http://pytoolkit.com:8000/?acs", 1, 1, F, F, 1)}
    ),
    "python3-saml-signed-sha1-expired.xml": Parses(
        {
            "https://example.com//demo1/metadata.php": Facts(
                1, 1, "https://example.com//demo1/index.php?acs", 1, 1, T, F, 1
            )
        }
    ),
    "sans-simplesamlphp-sp.xml": Parses(
        {
            "https://access.sans.org/bridge/module.php/saml/sp/metadata.php/bridge": Facts(
                4, 1, "https://access.sans.org/bridge/module.php/saml/sp/saml2-acs.php/bridge", 1, 1, F, T, 1
            )
        }
    ),
    "shibboleth-sp-style-simplesign-first-no-keys.xml": Parses(
        {
            "https://sp-b.example.org/shibboleth": Facts(
                4, 1, "https://sp-b.example.org/Shibboleth.sso/SAML2/POST", 0, 0, F, F, 2
            )
        }
    ),
    "simplesamlphp-two-sps-entitiesdescriptor.xml": Parses(
        {
            f"https://{host}/simplesaml/module.php/saml/sp/metadata.php/default-sp": Facts(
                2, 1, f"https://{host}/simplesaml/module.php/saml/sp/saml2-acs.php/default-sp", 1, 1, F, F, 0
            )
            for host in ("sp1.example.com", "sp2.example.com")
        }
    ),
    "spid-django-signed-sha256.xml": Parses(
        {"https://localhost:8000/spid/metadata/": Facts(1, 1, "https://localhost:8000/spid/acs/", 1, 1, T, T, 1)}
    ),
    "swamid-shibboleth-sp-uu-se.xml": Parses(
        {
            "https://akka-anv.uu.se/shibboleth": Facts(
                12, 2, "https://akka-anv.uu.se/Shibboleth.sso/SAML2/POST", 1, 1, F, F, 0
            )
        }
    ),
    "switch-aaitest-aggregate-excerpt.xml": Parses(
        {
            "https://dev.renku.ch/auth/realms/Renku": Facts(
                1, 1, "https://dev.renku.ch/auth/realms/Renku/broker/eduID-test/endpoint", 1, 1, F, F, 1
            ),
            "urn:auth0:fmi-test": Facts(1, 1, "https://fmi-test.auth0.com/login/callback", 1, 1, F, F, 1),
            "https://moodle-test.unifr.ch/shibboleth": Facts(
                6, 2, "https://moodle-test.unifr.ch/Shibboleth.sso/SAML2/POST", 1, 1, F, F, 1
            ),
        }
    ),
    "testshib-shibboleth-sp-and-idp.xml": Parses(
        {
            "https://sp.testshib.org/shibboleth-sp": Facts(
                8, 2, "https://sp.testshib.org/Shibboleth.sso/SAML2/POST", 1, 1, F, F, 2
            )
        }
    ),
    "wecomply-nonconformant.xml": Parses(
        {
            "https://training.wecomply.com/wc2": Facts(
                1,
                1,
                "https://training.wecomply.com/wc2/ServiceProviderSAMLRequestHandler.ashx?accesscode=miami",
                1,
                1,
                F,
                F,
                0,
            )
        }
    ),
}


def _corpus_files() -> list[str]:
    found = {p.name for p in CORPUS_DIR.glob("*.xml")} if CORPUS_DIR.is_dir() else set()
    return sorted(found | set(CORPUS))


def _read(name: str) -> bytes:
    if not CORPUS_DIR.is_dir():
        pytest.skip(SKIP_REASON)
    path = CORPUS_DIR / name
    if not path.is_file():
        pytest.fail(f"the table has a row for {name}, but {path} does not exist")
    return path.read_bytes()


def _parsed_pairs() -> list[tuple[str, str]]:
    return [
        (name, entity_id)
        for name, outcome in sorted(CORPUS.items())
        if isinstance(outcome, Parses)
        for entity_id in outcome.entities
    ]


@pytest.mark.filterwarnings(NEGATIVE_SERIAL)
@pytest.mark.parametrize("name", _corpus_files())
def test_corpus_file_outcome(name: str) -> None:
    data = _read(name)
    assert name in CORPUS, f"{name} is new in the corpus: add its expected outcome to CORPUS"
    outcome = CORPUS[name]

    if isinstance(outcome, Refused):
        assert list_sp_entity_ids(data) == list(outcome.entity_ids)
        with pytest.raises(MetadataError, match=outcome.fragment):
            parse_sp_metadata(data)
        return

    ids = list(outcome.entities)
    assert list_sp_entity_ids(data) == ids
    if len(ids) > 1:
        with pytest.raises(MetadataError) as excinfo:
            parse_sp_metadata(data)
        message = str(excinfo.value)
        assert "--entity-id" in message
        for entity_id in ids:
            assert repr(entity_id) in message
    else:
        assert parse_sp_metadata(data).entity_id == ids[0]

    for entity_id, facts in outcome.entities.items():
        md = parse_sp_metadata(data, entity_id=entity_id)
        assert md.entity_id == entity_id
        got = Facts(
            acs=len(md.acs),
            post_acs=len(md.post_acs()),
            default_post_acs=md.default_post_acs().location,
            signing=len(md.signing_certs),
            encryption=len(md.encryption_certs),
            ars=md.authn_requests_signed,
            was=md.want_assertions_signed,
            nameid_formats=len(md.nameid_formats),
        )
        assert got == facts, entity_id
        assert md.default_post_acs().binding == BINDING_POST
        for pem in md.signing_certs + md.encryption_certs:
            x509.load_pem_x509_certificate(pem.encode("ascii"))
        if md.valid_until is not None:
            assert md.valid_until.utcoffset() == timedelta(0)


@pytest.mark.filterwarnings(NEGATIVE_SERIAL)
@pytest.mark.parametrize(("name", "entity_id"), _parsed_pairs())
def test_corpus_round_trips_through_json(name: str, entity_id: str) -> None:
    md = parse_sp_metadata(_read(name), entity_id=entity_id)
    encoded = json.dumps(md.to_dict())
    decoded = SpMetadata.from_dict(json.loads(encoded))
    assert decoded == md
    assert decoded.to_dict() == md.to_dict()


def _corpus(name: str, entity_id: str | None = None) -> SpMetadata:
    return parse_sp_metadata(_read(name), entity_id=entity_id)


def test_nameid_formats_are_trimmed_and_entity_id_kept_as_written() -> None:
    md = _corpus("firstmarblehead-openam-sp.xml")
    assert md.entity_id == "sso.firstmarblehead.com/miamioh_sso"
    assert md.nameid_formats == (
        "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
        "urn:oasis:names:tc:SAML:2.0:nameid-format:transient",
        "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
        "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified",
        "urn:oasis:names:tc:SAML:1.1:nameid-format:WindowsDomainQualifiedName",
        "urn:oasis:names:tc:SAML:2.0:nameid-format:kerberos",
        "urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName",
    )
    # The document's default ACS is HTTP-Artifact; the default *POST* ACS is index 1.
    assert md.acs[0].binding == ARTIFACT and md.acs[0].is_default is True
    assert md.default_post_acs().index == 1
    assert md.signing_certs != md.encryption_certs
    assert md.encryption_methods == ("http://www.w3.org/2001/04/xmlenc#aes128-cbc",)
    assert md.slo[0].response_location == md.slo[0].location


def test_simplesign_at_lowest_index_is_not_the_post_default() -> None:
    md = _corpus("shibboleth-sp-style-simplesign-first-no-keys.xml")
    assert md.acs[0].binding == SIMPLESIGN
    assert md.default_post_acs() == Endpoint(BINDING_POST, "https://sp-b.example.org/Shibboleth.sso/SAML2/POST", 2)


def test_duplicate_key_descriptors_collapse_to_one_cert_each() -> None:
    md = _corpus("eshipglobal-shibboleth-sp-duplicate-keys.xml")
    assert md.signing_certs == md.encryption_certs
    assert md.default_post_acs().index == 10
    assert [e.binding for e in md.slo].count(BINDING_REDIRECT) == 1


@pytest.mark.filterwarnings(NEGATIVE_SERIAL)
def test_hard_wrapped_attribute_values_are_rejoined() -> None:
    md = _corpus("swamid-shibboleth-sp-uu-se.xml")
    assert [e.index for e in md.post_acs()] == [1, 7]
    assert {e.binding for e in md.acs} == {
        BINDING_POST,
        SIMPLESIGN,
        ARTIFACT,
        "urn:oasis:names:tc:SAML:2.0:bindings:PAOS",
        "urn:oasis:names:tc:SAML:1.0:profiles:browser-post",
        SAML1_ARTIFACT,
    }
    # A KeyDescriptor without use is both a signing and an encryption key.
    assert md.signing_certs == md.encryption_certs
    assert "http://www.w3.org/2009/xmlenc11#rsa-oaep" in md.encryption_methods
    assert len(md.encryption_methods) == 6


@pytest.mark.filterwarnings(NEGATIVE_SERIAL)
def test_aggregate_picks_the_sp_next_to_an_idp() -> None:
    data = _read("testshib-shibboleth-sp-and-idp.xml")
    md = parse_sp_metadata(data)
    assert md.entity_id == "https://sp.testshib.org/shibboleth-sp"
    assert md.display_name == "TestShib Test SP"
    assert len(md.encryption_methods) == 9
    assert "http://schemas.xmlsoap.org/ws/2003/07/secext" in {e.binding for e in md.acs}
    with pytest.raises(MetadataError, match="identity provider"):
        parse_sp_metadata(data, entity_id="https://idp.testshib.org/idp/shibboleth")


def test_aggregate_valid_until_and_display_names() -> None:
    data = _read("switch-aaitest-aggregate-excerpt.xml")
    renku = parse_sp_metadata(data, entity_id="https://dev.renku.ch/auth/realms/Renku")
    assert renku.valid_until == datetime(3001, 1, 1, tzinfo=UTC)
    assert renku.display_name == "dev-renku"
    assert len(renku.requested_attributes) == 7
    moodle = parse_sp_metadata(data, entity_id="https://moodle-test.unifr.ch/shibboleth")
    assert [e.location for e in moodle.post_acs()] == [
        "https://moodle-test.unifr.ch/Shibboleth.sso/SAML2/POST",
        "https://sr-svx-43.unifr.ch/Shibboleth.sso/SAML2/POST",
    ]
    with pytest.raises(MetadataError, match="'https://nope.example.org/sp' is not in this metadata"):
        parse_sp_metadata(data, entity_id="https://nope.example.org/sp")


def test_valid_until_without_time_zone_is_utc() -> None:
    md = _corpus("gitlab-omniauth-saml-ruby-saml.xml")
    assert md.valid_until == datetime(2001, 2, 3, 4, 5, 6, 789000, tzinfo=UTC)
    assert [(a.name, a.friendly_name) for a in md.requested_attributes][:2] == [
        ("email", "Email address"),
        ("name", "Full name"),
    ]
    assert md.requested_attributes[0].name_format == "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"


def test_expired_metadata_and_certificates_are_accepted() -> None:
    md = _corpus("python3-saml-signed-sha1-expired.xml")
    assert md.valid_until == datetime(2015, 1, 17, 11, 39, 11, tzinfo=UTC)
    cert = x509.load_pem_x509_certificate(md.signing_certs[0].encode())
    assert cert.not_valid_after_utc < datetime.now(UTC)


def test_other_corpus_details() -> None:
    pac4j = _corpus("pac4j-sp-jenkins-saml-plugin-style.xml")
    assert {e.location for e in pac4j.slo} == {
        "http://localhost:8080/callback?client_name=SAML2Client&logoutendpoint=true"
    }
    two_keys = _corpus("pysaml2-sp-two-encryption-keys.xml")
    assert len(set(two_keys.encryption_certs)) == 2
    assert two_keys.display_name == "urn:mace:example.com:saml:roland:sp"
    assert [a.is_required for a in two_keys.requested_attributes] == [True, True, True, False]
    wecomply = _corpus("wecomply-nonconformant.xml")  # the commented-out ACS must not appear
    assert wecomply.acs == (
        Endpoint(
            BINDING_POST,
            "https://training.wecomply.com/wc2/ServiceProviderSAMLRequestHandler.ashx?accesscode=miami",
            1,
            True,
        ),
    )
    assert wecomply.display_name == "WeComply"
    assert _corpus("gartner-pingfederate-signed.xml").signing_certs == ()
    assert _corpus("crewjam-go-saml-sp-post-and-artifact.xml").valid_until == datetime(
        2015, 12, 3, 1, 57, 9, tzinfo=UTC
    )
    assert _corpus("dropbox-gluu-docs.xml").nameid_formats == (
        "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
    )


# --------------------------------------------------------------------------------------------------------------------
# Synthetic documents


def _cert_b64(common_name: str = "sp.example.org") -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")


POST_ACS = f'<md:AssertionConsumerService Binding="{BINDING_POST}" Location="https://sp.example.org/acs" index="0"/>'


def _sp(
    body: str = POST_ACS,
    *,
    entity_id: str = "https://sp.example.org/sp",
    role_attrs: str = "",
    entity_attrs: str = "",
    protocols: str = "urn:oasis:names:tc:SAML:2.0:protocol",
) -> str:
    return (
        '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
        'xmlns:ds="http://www.w3.org/2000/09/xmldsig#" xmlns:mdui="urn:oasis:names:tc:SAML:metadata:ui" '
        f'entityID="{entity_id}" {entity_attrs}>'
        f'<md:SPSSODescriptor protocolSupportEnumeration="{protocols}" {role_attrs}>{body}</md:SPSSODescriptor>'
        "</md:EntityDescriptor>"
    )


def _key(cert: str, use: str | None = None, extra: str = "") -> str:
    use_attr = f' use="{use}"' if use else ""
    return (
        f"<md:KeyDescriptor{use_attr}><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate>"
        f"</ds:X509Data></ds:KeyInfo>{extra}</md:KeyDescriptor>"
    )


def _parse(doc: str, entity_id: str | None = None) -> SpMetadata:
    return parse_sp_metadata(doc.encode("utf-8"), entity_id=entity_id)


def _refused(doc: str | bytes, match: str) -> str:
    data = doc.encode("utf-8") if isinstance(doc, str) else doc
    with pytest.raises(MetadataError, match=match) as excinfo:
        parse_sp_metadata(data)
    return str(excinfo.value)


def test_minimal_document() -> None:
    md = _parse(_sp())
    assert md == SpMetadata(
        entity_id="https://sp.example.org/sp",
        acs=(Endpoint(BINDING_POST, "https://sp.example.org/acs", 0, None, None),),
        slo=(),
        signing_certs=(),
        encryption_certs=(),
        nameid_formats=(),
        authn_requests_signed=False,
        want_assertions_signed=False,
        requested_attributes=(),
        encryption_methods=(),
        valid_until=None,
        display_name=None,
    )


# XML safety ---------------------------------------------------------------------------------------------------------

BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10) for i in range(1, 10))
    + b']><md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="&lol9;"/>'
)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(BILLION_LAUGHS, id="billion-laughs"),
        pytest.param(
            b'<!DOCTYPE md [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b'<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="&x;"/>',
            id="external-entity",
        ),
        pytest.param(
            b'<!DOCTYPE md [<!ENTITY % p SYSTEM "http://127.0.0.1:9/evil.dtd"> %p;]>'
            b'<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="x"/>',
            id="external-parameter-entity",
        ),
        pytest.param(
            b'<!DOCTYPE md SYSTEM "file:///etc/passwd">'
            b'<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="x"/>',
            id="external-dtd",
        ),
        pytest.param(
            '<!DOCTYPE md [<!ENTITY x "y">]><md:EntityDescriptor '
            'xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="&x;"/>'.encode("utf-16"),
            id="utf16-doctype-past-the-byte-scan",
        ),
        pytest.param(
            '<!DOCTYPE md [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]><md:EntityDescriptor '
            'xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="x"/>'.encode("utf-16"),
            id="utf16-external-parameter-entity",
        ),
    ],
)
def test_doctype_is_refused(data: bytes) -> None:
    started = time.monotonic()
    # A UTF-16 parameter-entity reference slips past the byte-level DOCTYPE scan; libxml2 then stops on the
    # deny-all resolver (or on the DTD) before the DOCTYPE check runs, so the message may be the not-well-formed
    # one. Either way the document is refused and nothing is read (see test_external_parameter_entity_not_fetched).
    message = _refused(data, "^The metadata (contains a DOCTYPE declaration|is not well-formed XML: )")
    assert time.monotonic() - started < 2
    assert "root:" not in message


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-32"])
def test_external_parameter_entity_not_fetched(fifo_probe, encoding: str) -> None:
    fifo, was_opened = fifo_probe
    data = (f'<!DOCTYPE md [<!ENTITY % p SYSTEM "file://{fifo}"> %p;]><md:EntityDescriptor '
            f'xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="x"/>').encode(encoding)
    with pytest.raises(MetadataError):
        parse_sp_metadata(data)
    assert not was_opened(), "metadata parsing opened a file named by an untrusted document"


def test_oversized_input_is_refused_before_parsing() -> None:
    doc = _sp().encode()
    padded = doc + b" " * (MAX_METADATA_BYTES + 1 - len(doc))
    _refused(padded, "over the 5.0 MiB limit")
    with pytest.raises(MetadataError, match="over the 100 bytes limit"):
        safe_parse_xml(doc, max_bytes=100)
    assert parse_sp_metadata(doc + b" " * 1000).entity_id == "https://sp.example.org/sp"


def test_safe_parse_xml_is_reusable_for_other_documents() -> None:
    root = safe_parse_xml(b'\n<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="x"/>')
    assert root.get("ID") == "x"
    with pytest.raises(MetadataError, match="DOCTYPE"):
        safe_parse_xml(b"<!DOCTYPE a><a/>")


def test_deep_nesting_is_refused() -> None:
    _refused(b"<a>" * 1000 + b"</a>" * 1000, "not well-formed XML: Excessive depth")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty"),
        (b"   \r\n\t", "empty"),
        (b"hello, this is not XML", "metadata is not well-formed XML: "),
        (b'{"entityID": "x"}', "metadata is not well-formed XML: "),
        (_sp().encode()[:-25], "metadata is not well-formed XML: "),
        (b'<?xml version="1.0" encoding="UTF-8"?><a>\xff\xfe</a>', "metadata is not well-formed XML: "),
        (b'<?xml version="1.0" encoding="x-no-such-charset"?><a/>', "metadata is not well-formed XML: "),
        (b"<a><b></a>", "metadata is not well-formed XML: "),
    ],
)
def test_malformed_input(data: bytes, match: str) -> None:
    message = _refused(data, match)
    assert len(message) < 400


def test_str_input_is_a_programming_error() -> None:
    with pytest.raises(TypeError):
        parse_sp_metadata(_sp())  # type: ignore[arg-type]


def test_bom_and_leading_whitespace_are_accepted() -> None:
    doc = '<?xml version="1.0" encoding="UTF-8"?>' + _sp()
    assert _parse("\n \t" + doc).entity_id == "https://sp.example.org/sp"
    assert parse_sp_metadata(b"\xef\xbb\xbf\r\n  " + doc.encode()).entity_id == "https://sp.example.org/sp"
    assert parse_sp_metadata(doc.encode("utf-16")).entity_id == "https://sp.example.org/sp"


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ("<html><body>hi</body></html>", "not SAML 2.0 metadata: the root element is 'html' in no namespace"),
        (
            '<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"/>',
            "root element is 'Assertion' in namespace 'urn:oasis:names:tc:SAML:2.0:assertion'",
        ),
        ('<EntityDescriptor entityID="x"/>', "root element is 'EntityDescriptor' in no namespace"),
    ],
)
def test_wrong_root_element(doc: str, match: str) -> None:
    _refused(doc, match)


def test_comments_do_not_split_text() -> None:
    cert = _cert_b64()
    half = len(cert) // 2
    doc = _sp(
        '<md:Extensions><mdui:UIInfo><mdui:DisplayName xml:lang="en">Pay<!-- c -->roll</mdui:DisplayName>'
        "</mdui:UIInfo></md:Extensions>"
        + _key(f"{cert[:half]}<!-- injected -->\n{cert[half:]}", "signing")
        + "<md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:email<!-- x -->Address</md:NameIDFormat>"
        "<md:NameIDFormat><?pi x?>urn:oasis:names:tc:SAML:2.0:nameid-format:<!--y-->transient</md:NameIDFormat>"
        + POST_ACS,
        entity_id="https://sp.example.org/sp",
    ).replace("<md:EntityDescriptor", "<!-- before the root --><md:EntityDescriptor")
    md = _parse(doc)
    assert md.nameid_formats == (
        "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
        "urn:oasis:names:tc:SAML:2.0:nameid-format:transient",
    )
    assert md.display_name == "Payroll"
    assert len(md.signing_certs) == 1


# Entities and aggregates ---------------------------------------------------------------------------------------------


def test_entity_id_is_kept_as_written_apart_from_surrounding_whitespace() -> None:
    assert _parse(_sp(entity_id="  urn:Example:SP/Path?x=1  ")).entity_id == "urn:Example:SP/Path?x=1"
    assert _parse(_sp(entity_id="  urn:x  "), entity_id=" urn:x").entity_id == "urn:x"


@pytest.mark.parametrize("entity_id", ["", "   "])
def test_empty_entity_id(entity_id: str) -> None:
    _refused(_sp(entity_id=entity_id), "empty or missing entityID")


def test_missing_and_overlong_entity_id() -> None:
    _refused(_sp().replace('entityID="https://sp.example.org/sp"', ""), "empty or missing entityID")
    _refused(_sp(entity_id="urn:" + "x" * 1100), "longer than 1024 characters")


def test_idp_only_document() -> None:
    doc = (
        '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://idp.example.org">'
        '<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        f'<md:SingleSignOnService Binding="{BINDING_REDIRECT}" Location="https://idp.example.org/sso"/>'
        "</md:IDPSSODescriptor></md:EntityDescriptor>"
    )
    message = _refused(doc, "no SAML 2.0 SPSSODescriptor")
    assert "identity provider" in message
    with pytest.raises(MetadataError, match="identity provider"):
        parse_sp_metadata(doc.encode(), entity_id="https://idp.example.org")
    assert list_sp_entity_ids(doc.encode()) == []


def test_saml1_only_sp_is_not_an_sp_here() -> None:
    message = _refused(_sp(protocols="urn:oasis:names:tc:SAML:1.1:protocol"), "no SAML 2.0 SPSSODescriptor")
    assert "protocolSupportEnumeration" in message


@pytest.mark.parametrize(
    "protocols",
    [
        "urn:oasis:names:tc:SAML:1.1:protocol urn:oasis:names:tc:SAML:2.0:protocol",
        "\n  urn:oasis:names:tc:SAML:2.0:protocol\n  ",
        "urn:oasis:names:tc:SAML:1.1:protocol urn\n:oasis:names:tc:SAML:2.0:protocol",
        "urn:oasis:names:tc:SAML:2.0:pro\ntocol urn:oasis:names:tc:SAML:1.1:protocol",
        "urn:oasis:names:tc:SAML:1.1:protocol ur\nn:oasis:names:tc:SAML:2.0:protocol",
        "http://schemas.xmlsoap.org/ws/2003/07/secext urn:oasis:names:tc:SAML:2.0:protocol",
    ],
)
def test_protocol_support_enumeration_tolerates_wrapping(protocols: str) -> None:
    assert _parse(_sp(protocols=protocols)).entity_id == "https://sp.example.org/sp"


def test_protocol_must_be_exactly_saml2() -> None:
    _refused(_sp(protocols="urn:oasis:names:tc:SAML:2.0:protocolX"), "no SAML 2.0 SPSSODescriptor")


def _aggregate(*entities: str, attrs: str = "") -> str:
    inner = "".join(e.replace(' xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata"', "") for e in entities)
    return (
        '<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
        f'xmlns:ds="http://www.w3.org/2000/09/xmldsig#" {attrs}>{inner}</md:EntitiesDescriptor>'
    )


def test_aggregate_with_several_sps_needs_an_entity_id() -> None:
    a, b = _sp(entity_id="https://a.example.org/sp"), _sp(entity_id="https://b.example.org/sp")
    nested = _aggregate(a, _aggregate(b).replace(' xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata"', ""))
    message = _refused(nested, "choose one with --entity-id")
    assert "'https://a.example.org/sp'" in message and "'https://b.example.org/sp'" in message
    assert list_sp_entity_ids(nested.encode()) == ["https://a.example.org/sp", "https://b.example.org/sp"]
    assert _parse(nested, "https://b.example.org/sp").entity_id == "https://b.example.org/sp"
    with pytest.raises(MetadataError, match="'https://c.example.org/sp' is not in this metadata"):
        _parse(nested, "https://c.example.org/sp")


def test_duplicate_entity_ids_are_ambiguous() -> None:
    doc = _aggregate(_sp(), _sp())
    _refused(doc, "appears 2 times")
    with pytest.raises(MetadataError, match="appears 2 times"):
        _parse(doc, "https://sp.example.org/sp")


def test_valid_until_earliest_of_aggregate_entity_and_role() -> None:
    inner = _sp(entity_attrs='validUntil="2031-01-01T00:00:00+02:00"', role_attrs='validUntil="2032-01-01T00:00:00Z"')
    assert _parse(inner).valid_until == datetime(2030, 12, 31, 22, 0, tzinfo=UTC)
    doc = _aggregate(inner, attrs='validUntil="2030-06-01T12:00:00.123456789Z"')
    assert _parse(doc).valid_until == datetime(2030, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)
    _refused(_sp(entity_attrs='validUntil="next tuesday"'), "validUntil='next tuesday' is not an xs:dateTime")
    _refused(_sp(entity_attrs='validUntil="2030-02-30T00:00:00Z"'), "not a valid date and time")


# Endpoints ----------------------------------------------------------------------------------------------------------


def _acs(location: str, binding: str = BINDING_POST, extra: str = 'index="0"') -> str:
    return f'<md:AssertionConsumerService Binding="{binding}" Location="{location}" {extra}/>'


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        (_acs("javascript:alert(document.domain)"), "'javascript:alert(document.domain)'"),
        (_acs("/saml/acs"), "'/saml/acs'"),
        (_acs("//sp.example.org/acs"), "'//sp.example.org/acs'"),
        (_acs("file:///etc/passwd"), "'file:///etc/passwd'"),
        (_acs("https:///acs"), "'https:///acs'"),
        (_acs("https://user:pw@sp.example.org/acs"), "'https://user:pw@sp.example.org/acs'"),
        (_acs("https://sp.example.org:99999/acs"), "'https://sp.example.org:99999/acs'"),
        (
            POST_ACS
            + f'<md:SingleLogoutService Binding="{BINDING_REDIRECT}" Location="data:text/html,&lt;script&gt;"/>',
            "'data:text/html,<script>'",
        ),
        (
            POST_ACS + f'<md:SingleLogoutService Binding="{BINDING_POST}" Location="https://sp.example.org/slo" '
            'ResponseLocation="javascript:void(0)"/>',
            "'javascript:void(0)'",
        ),
        (POST_ACS + _acs("vbscript:msgbox", ARTIFACT, 'index="1"'), "'vbscript:msgbox'"),
        (_acs("https://sp.example.org/acs&#x7f;"), "'https://sp.example.org/acs\\x7f'"),
    ],
)
def test_unsafe_endpoint_urls_are_refused(body: str, shown: str) -> None:
    message = _refused(_sp(body), "Location")
    assert shown in message


def test_offending_url_is_truncated_in_the_message() -> None:
    message = _refused(_sp(_acs("javascript:" + "a" * 5000)), "is not an absolute http")
    assert len(message) < 300


def test_no_post_acs() -> None:
    body = _acs("https://sp.example.org/artifact", ARTIFACT) + _acs(
        "https://sp.example.org/redirect", BINDING_REDIRECT, 'index="1"'
    )
    message = _refused(_sp(body), "no usable HTTP-POST AssertionConsumerService")
    assert ARTIFACT in message
    _refused(_sp(""), "no usable HTTP-POST AssertionConsumerService")


def test_post_acs_without_location() -> None:
    _refused(_sp(f'<md:AssertionConsumerService Binding="{BINDING_POST}" index="0"/>'), "HTTP-POST .* no Location")
    _refused(_sp('<md:AssertionConsumerService Location="https://sp.example.org/acs" index="0"/>'), "no Binding")


@pytest.mark.parametrize("index", ["-1", "abc", "1.5", "", "70000", "0x10", "99999999999999999999"])
def test_bad_acs_index(index: str) -> None:
    _refused(_sp(_acs("https://sp.example.org/acs", extra=f'index="{index}"')), "index must be an integer")


def test_duplicate_acs_index() -> None:
    body = _acs("https://sp.example.org/a") + _acs("https://sp.example.org/b")
    _refused(_sp(body), 'share index="0"')


def test_acs_index_may_be_missing_and_padded() -> None:
    md = _parse(
        _sp(_acs("https://sp.example.org/acs", extra='index=" 7 "') + _acs("https://sp.example.org/b", extra=""))
    )
    assert [e.index for e in md.acs] == [7, None]


def test_uri_attributes_drop_wrapping_whitespace() -> None:
    body = (
        '<md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bind\n  ings:HTTP-POST" '
        'Location="https://sp.example.org/\n  acs" index="0"/>'
    )
    assert _parse(_sp(body)).acs == (Endpoint(BINDING_POST, "https://sp.example.org/acs", 0),)


def _acs_list(*specs: tuple[str, str, int | None, bool | None]) -> tuple[Endpoint, ...]:
    return tuple(Endpoint(binding, location, index, is_default) for binding, location, index, is_default in specs)


def _with_acs(acs: tuple[Endpoint, ...]) -> SpMetadata:
    return SpMetadata("urn:x", acs, (), (), (), (), False, False, (), (), None, None)


@pytest.mark.parametrize(
    ("acs", "expected"),
    [
        # isDefault="true" wins, wherever it is (saml-metadata-2.0-os §2.2.3).
        (_acs_list((BINDING_POST, "a", 1, None), (BINDING_POST, "b", 0, True)), "b"),
        # The default of another binding does not count.
        (_acs_list((ARTIFACT, "x", 0, True), (BINDING_POST, "a", 2, False), (BINDING_POST, "b", 3, None)), "b"),
        # No isDefault at all: the first in document order.
        (_acs_list((BINDING_POST, "a", 5, None), (BINDING_POST, "b", 1, None)), "a"),
        # All isDefault="false": the lowest index.
        (_acs_list((BINDING_POST, "a", 5, False), (BINDING_POST, "b", 1, False)), "b"),
    ],
)
def test_default_post_acs_rule(acs: tuple[Endpoint, ...], expected: str) -> None:
    assert _with_acs(acs).default_post_acs().location == expected


def test_default_post_acs_without_any() -> None:
    with pytest.raises(MetadataError, match="no usable HTTP-POST"):
        _with_acs(_acs_list((ARTIFACT, "x", 0, True))).default_post_acs()


def test_is_default_and_flags_are_xs_boolean() -> None:
    md = _parse(
        _sp(
            _acs("https://sp.example.org/acs", extra='index="0" isDefault=" 1 "'),
            role_attrs='AuthnRequestsSigned="1" WantAssertionsSigned="false"',
        )
    )
    assert md.acs[0].is_default is True
    assert (md.authn_requests_signed, md.want_assertions_signed) == (True, False)
    _refused(_sp(role_attrs='WantAssertionsSigned="yes"'), "WantAssertionsSigned='yes' is not a valid boolean")
    _refused(_sp(role_attrs='AuthnRequestsSigned="TRUE"'), "not a valid boolean")


# Keys ---------------------------------------------------------------------------------------------------------------


def test_certificates_by_use_deduplicated_in_order() -> None:
    a, b, c = _cert_b64("a"), _cert_b64("b"), _cert_b64("c")
    gcm = "http://www.w3.org/2009/xmlenc11#aes256-gcm"
    body = (
        _key(a, "signing")
        + _key(b, "encryption", f'<md:EncryptionMethod Algorithm="{gcm}"/>')
        + _key(c, None, '<md:EncryptionMethod Algorithm="http://www.w3.org/2009/xmlenc11#rsa-\n oaep"/>')
        + _key(a, "signing")
        + POST_ACS
    )
    md = _parse(_sp(body))

    def b64(pem: str) -> str:
        return "".join(pem.splitlines()[1:-1])

    assert [b64(p) for p in md.signing_certs] == [a, c]
    assert [b64(p) for p in md.encryption_certs] == [b, c]
    assert md.encryption_methods == (gcm, "http://www.w3.org/2009/xmlenc11#rsa-oaep")
    assert md.signing_certs[0].startswith("-----BEGIN CERTIFICATE-----\n")
    assert md.signing_certs[0].endswith("\n-----END CERTIFICATE-----\n")


def test_signature_keys_are_not_sp_keys() -> None:
    sp_cert, signer_cert = _cert_b64("sp"), _cert_b64("signer")
    signature = (
        "<ds:Signature><ds:SignedInfo/><ds:SignatureValue>AAAA</ds:SignatureValue><ds:KeyInfo><ds:X509Data>"
        f"<ds:X509Certificate>{signer_cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></ds:Signature>"
    )
    doc = _sp(signature + _key(sp_cert, "signing") + POST_ACS).replace(
        'entityID="https://sp.example.org/sp" >', f'entityID="https://sp.example.org/sp" >{signature}'
    )
    md = _parse(doc)
    assert len(md.signing_certs) == 1
    assert sp_cert in "".join(md.signing_certs[0].split())


@pytest.mark.parametrize(
    ("cert", "match"),
    [
        ("not*base64!", "not valid base64"),
        ("QUJDRA=", "not valid base64"),
        ("QUJDRA==", "cannot be read as an X.509 certificate"),
        (" \n ", "X509Certificate element is empty"),
    ],
)
def test_bad_certificate(cert: str, match: str) -> None:
    _refused(_sp(_key(cert, "signing") + POST_ACS), match)


def test_key_descriptor_problems() -> None:
    _refused(_sp(_key(_cert_b64(), "both") + POST_ACS), "use='both'")
    no_cert = "<md:KeyDescriptor><ds:KeyInfo><ds:KeyName>sp</ds:KeyName></ds:KeyInfo></md:KeyDescriptor>"
    _refused(_sp(no_cert + POST_ACS), "no ds:KeyInfo/ds:X509Data/ds:X509Certificate")


# Attributes and names ---------------------------------------------------------------------------------------------


def test_requested_attributes_come_from_the_default_service() -> None:
    body = POST_ACS + (
        '<md:AttributeConsumingService index="0">'
        '<md:ServiceName xml:lang="de">Andere</md:ServiceName>'
        '<md:RequestedAttribute Name="other"/></md:AttributeConsumingService>'
        '<md:AttributeConsumingService index="1" isDefault="true">'
        '<md:ServiceName xml:lang="fr">Paie</md:ServiceName>'
        '<md:ServiceName xml:lang="en">  Pay\n   roll  </md:ServiceName>'
        '<md:RequestedAttribute Name=" urn:oid:0.9.2342.19200300.100.1.3 " FriendlyName=" mail " '
        'NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:uri" isRequired="true"/>'
        '<md:RequestedAttribute Name="displayName"/>'
        "</md:AttributeConsumingService>"
    )
    md = _parse(_sp(body))
    assert [(a.name, a.friendly_name, a.name_format, a.is_required) for a in md.requested_attributes] == [
        ("urn:oid:0.9.2342.19200300.100.1.3", "mail", "urn:oasis:names:tc:SAML:2.0:attrname-format:uri", True),
        ("displayName", None, None, False),
    ]
    assert md.display_name == "Pay roll"
    _refused(
        _sp(
            POST_ACS + '<md:AttributeConsumingService index="0"><md:RequestedAttribute/></md:AttributeConsumingService>'
        ),
        "RequestedAttribute has no Name",
    )


def test_display_name_preference() -> None:
    ui = (
        '<md:Extensions><mdui:UIInfo><mdui:DisplayName xml:lang="sv">Lön</mdui:DisplayName>'
        '<mdui:DisplayName xml:lang="en">Payroll</mdui:DisplayName></mdui:UIInfo></md:Extensions>'
    )
    org = (
        '<md:Organization><md:OrganizationName xml:lang="en">ACME Inc.</md:OrganizationName>'
        '<md:OrganizationDisplayName xml:lang="en">ACME</md:OrganizationDisplayName>'
        '<md:OrganizationURL xml:lang="en">https://acme.example</md:OrganizationURL></md:Organization>'
    )
    with_org = _sp(ui + POST_ACS).replace("</md:SPSSODescriptor>", "</md:SPSSODescriptor>" + org)
    assert _parse(with_org).display_name == "Payroll"
    assert _parse(_sp(POST_ACS).replace("</md:SPSSODescriptor>", "</md:SPSSODescriptor>" + org)).display_name == "ACME"
    assert _parse(_sp(POST_ACS)).display_name is None


def test_round_trip_of_a_rich_document() -> None:
    cert = _cert_b64()
    body = (
        _key(cert)
        + POST_ACS
        + _acs("https://sp.example.org/acs2", extra='index="3" isDefault="false"')
        + f'<md:SingleLogoutService Binding="{BINDING_REDIRECT}" Location="https://sp.example.org/slo" '
        'ResponseLocation="https://sp.example.org/slo/resp"/>'
        '<md:AttributeConsumingService index="0"><md:ServiceName xml:lang="en">S</md:ServiceName>'
        '<md:RequestedAttribute Name="mail" isRequired="1"/></md:AttributeConsumingService>'
    )
    md = _parse(_sp(body, entity_attrs='validUntil="2031-01-01T00:00:00-05:00"'))
    assert md.valid_until == datetime(2031, 1, 1, 5, tzinfo=UTC)
    as_json = json.dumps(md.to_dict())
    assert SpMetadata.from_dict(json.loads(as_json)) == md
    assert json.loads(as_json)["valid_until"] == "2031-01-01T05:00:00+00:00"


def test_certificate_with_a_key_the_verifier_cannot_use_is_refused() -> None:
    """An Ed25519 certificate parses, but no SAML signature here can be checked with it: refused at
    import rather than failing every request of the app later."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sp.example.org")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + timedelta(days=30)).sign(key, None))
    b64 = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    data = f"""<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata"
        xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="https://sp.example.org/saml">
      <md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
        <md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{b64}</ds:X509Certificate>
        </ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
        <md:AssertionConsumerService Binding="{BINDING_POST}" Location="https://sp.example.org/acs" index="0"/>
      </md:SPSSODescriptor></md:EntityDescriptor>""".encode()
    with pytest.raises(MetadataError, match="Ed25519 key"):
        parse_sp_metadata(data)
