"""Database and Redis stopped mid-flow: 503 with Retry-After, no assertion, recovery without restart."""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest
import requests

from ..sp_harness import OneLoginSP, make_keypair
from .conftest import REDIS_URL, Instance, csrf_of, free_port, idp_cli, idp_env, local, needs_services, reset_services

pytestmark = needs_services
PASSWORD = "correct horse battery"
CLUSTER = os.environ.get("IDP_TEST_PG_CLUSTER", "")


def pg(action: str) -> None:
    ver, name = CLUSTER.split("/")
    subprocess.run(["pg_ctlcluster", ver, name, action] + (["-m", "fast"] if action == "stop" else []), check=True,
                   capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def instance(tmp_path_factory, key_template):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("faults")
    env = idp_env(tmp, key_template)
    reset_services(env)
    idp_cli(env, "db", "init")
    idp_cli(env, "users", "add", "alice", "--email", "alice@example.com", "--password-stdin", stdin=PASSWORD + "\n")
    inst = Instance(env, free_port(), tmp / "i.log")
    md = requests.get(f"{inst.url}/saml/metadata").text
    sp = OneLoginSP(tmp / "sp", md, base_url="https://sp.example.com", keypair=make_keypair(tmp, "sp"))
    (tmp / "sp.xml").write_text(sp.metadata_xml())
    idp_cli(env, "apps", "add", "--metadata", str(tmp / "sp.xml"), "--slug", "app")
    s = requests.Session()
    page = s.get(f"{inst.url}/login")
    s.post(f"{inst.url}/login", data={"csrf_token": csrf_of(page.text), "username": "alice", "password": PASSWORD,
                                      "next": "/"})
    try:
        yield inst, sp, s
    finally:
        inst.stop()


def sso(inst, sp, s):  # type: ignore[no-untyped-def]
    req = sp.authn_request("redirect")
    return req, s.get(inst.url + local(req.url), timeout=30)


def wait_for(fn, timeout=30.0):  # type: ignore[no-untyped-def]
    deadline = time.time() + timeout
    while time.time() < deadline:
        result = fn()
        if result:
            return result
        time.sleep(0.5)
    return fn()


@pytest.mark.skipif(not CLUSTER, reason="needs the private cluster from tests/services.sh")
def test_database_down_then_back(instance):  # type: ignore[no-untyped-def]
    inst, sp, s = instance
    req, ok = sso(inst, sp, s)
    assert "SAMLResponse" in ok.text
    pg("stop")
    try:
        req, resp = sso(inst, sp, s)
        assert resp.status_code == 503
        assert resp.headers.get("Retry-After")
        assert "SAMLResponse" not in resp.text and "Traceback" not in resp.text
        ready = requests.get(f"{inst.url}/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["database"].startswith("error")
        assert requests.get(f"{inst.url}/healthz").status_code == 200
    finally:
        pg("start")
    def recovered():  # type: ignore[no-untyped-def]
        r, resp = sso(inst, sp, s)
        return resp if resp.status_code == 200 and "SAMLResponse" in resp.text else None
    resp = wait_for(recovered)
    assert resp is not None, "the instance must recover by itself once the database is back"


def test_redis_down_then_back(instance, tmp_path):  # type: ignore[no-untyped-def]
    inst, sp, s = instance
    port = int(re.search(r":(\d+)/", REDIS_URL).group(1))
    subprocess.run(["redis-cli", "-p", str(port), "shutdown", "nosave"], capture_output=True, timeout=10)
    try:
        _, resp = sso(inst, sp, s)
        assert resp.status_code == 503 and "SAMLResponse" not in resp.text
        assert requests.get(f"{inst.url}/readyz").json()["checks"]["redis"].startswith("error")
    finally:
        subprocess.run(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                        "no", "--daemonize", "yes", "--dir", str(tmp_path)], check=True, capture_output=True)
    def recovered():  # type: ignore[no-untyped-def]
        _, resp = sso(inst, sp, s)
        return resp if "SAMLResponse" in resp.text else None
    assert wait_for(recovered) is not None
