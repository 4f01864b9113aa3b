"""HTTP-Artifact across two IdP processes sharing PostgreSQL and Redis: an artifact issued by one instance is
resolved through the other (the message waits in Redis), once."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from lxml import etree

from ..sp_harness import BINDING_ARTIFACT, Pysaml2SP, SPValidationError
from ..webclient import continuation
from .conftest import csrf_of, idp_cli, local, needs_services

pytestmark = needs_services
PASSWORD = "correct horse battery"
NS = {"samlp": "urn:oasis:names:tc:SAML:2.0:protocol"}


@pytest.fixture(scope="module")
def setup(cluster, tmp_path_factory):  # type: ignore[no-untyped-def]
    a, b, env = cluster
    idp_cli(env, "users", "add", "dana", "--email", "dana@example.com", "--password-stdin", stdin=PASSWORD + "\n")
    md = requests.get(f"{a.url}/saml/metadata").text
    work = tmp_path_factory.mktemp("artsp")
    sp = Pysaml2SP(work, md, base_url="https://art.example.com", artifact_acs=True)
    (work / "sp.xml").write_text(sp.metadata_xml())
    idp_cli(env, "apps", "add", "--metadata", str(work / "sp.xml"), "--slug", "artifact-sp")
    return a, b, sp


def soap_to(base: str):  # type: ignore[no-untyped-def]
    def post(url: str, body: str | bytes, headers: dict[str, str]) -> str:
        resp = requests.post(base + local(url), data=body if isinstance(body, bytes) else body.encode(),
                             headers={"Content-Type": "text/xml"}, timeout=10)
        assert resp.status_code == 200, resp.text[:300]
        return resp.text
    return post


def test_artifact_issued_on_a_is_resolved_once_through_b(setup):  # type: ignore[no-untyped-def]
    a, b, sp = setup
    s = requests.Session()
    req = sp.authn_request("redirect", protocol_binding=BINDING_ARTIFACT, relay_state="x")
    page = s.get(a.url + local(req.url))
    done = s.post(f"{a.url}/login", data={"csrf_token": csrf_of(page.text), "username": "dana",
                                           "password": PASSWORD,
                                           **continuation(page.text)},
                  allow_redirects=False)
    while done.status_code in (302, 303) and not done.headers["Location"].startswith(sp.acs_url):
        done = s.get(a.url + local(done.headers["Location"]), allow_redirects=False)
    assert done.status_code == 302 and done.headers["Location"].startswith(sp.acs_url), done.text[:300]
    artifact = parse_qs(urlsplit(done.headers["Location"]).query)["SAMLart"][0]

    saml_response = sp.resolve_artifact(artifact, soap_to(b.url))
    assert sp.process_response(saml_response, req.request_id).name_id == "dana"
    # once: a second resolve, now through A, gets Success with no message
    with pytest.raises(SPValidationError, match="carries no Response"):
        sp.resolve_artifact(artifact, soap_to(a.url))
    answer = etree.fromstring(soap_to(a.url)(*_resolve_args(sp, artifact)).encode())
    assert answer.find(".//samlp:ArtifactResponse/samlp:Response", NS) is None


def _resolve_args(sp: Pysaml2SP, artifact: str) -> tuple[str, str | bytes, dict[str, str]]:
    from saml2.s_utils import sid
    dest = sp.client.artifact2destination(artifact, "idpsso")
    _mid, req = sp.client.create_artifact_resolve(artifact, dest, sid(), sign=True, sign_alg=sp.sig_alg,
                                                  digest_alg=sp.digest_alg)
    args = sp.client.use_soap(req, dest)
    return args["url"], args["data"], dict(args["headers"])
