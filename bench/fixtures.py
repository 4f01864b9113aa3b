"""The benchmark's own IdP instance: temp dirs, SQLite DB, RSA-2048 key store, a user, connected apps, requests.

Nothing here touches the developer's instance/ or certs/: everything lives under one temporary directory.
"""

from __future__ import annotations

import base64
import re
import secrets
import sqlite3
import zlib
from collections import deque
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote_plus

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, insert, select

from idp import create_app
from idp.certs.generate import generate_key_pair
from idp.certs.keystore import KeyStore
from idp.config import Settings, load_settings
from idp.extensions import db
from idp.models import ConnectedApp
from idp.saml.sp_metadata import parse_sp_metadata
from idp.services import apps as apps_svc
from idp.services import users as users_svc

from .timing import PoolExhausted

INPROCESS_BASE_URL = "http://localhost"
SP_ENTITY = "https://sp.bench.example/saml/metadata"
SP_ACS = "https://sp.bench.example/saml/acs"
TARGET_SLUG = "bench-sp"
FILLER_PREFIX = "filler-"
USERNAME = "jane.doe"
PASSWORD = "correct horse battery staple"  # noqa: S105 - a throw-away bench account
GROUPS = ("staff", "engineering", "vpn-users")
# The app's attribute release: 6 attributes, `groups` multi-valued (3 values).
ATTRIBUTE_MAP = {
    "email": "email", "firstName": "first_name", "lastName": "last_name", "username": "username",
    "displayName": "display_name", "groups": "groups",
}
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
NS_SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
NS_SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
BINDING_POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
NAMEID_EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"

SP_METADATA = """<?xml version="1.0" encoding="UTF-8"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#"
    entityID="{entity_id}">
  <md:SPSSODescriptor AuthnRequestsSigned="true" WantAssertionsSigned="true"
      protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:KeyDescriptor use="signing">
      <ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>
    </md:KeyDescriptor>
    <md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{base}/saml/slo"/>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</md:NameIDFormat>
    <md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
        Location="{acs}" index="0" isDefault="true"/>
  </md:SPSSODescriptor>
</md:EntityDescriptor>
"""


def sp_metadata_xml(entity_id: str, acs: str, cert_b64: str) -> bytes:
    base = acs.rsplit("/saml/", 1)[0]
    return SP_METADATA.format(entity_id=entity_id, acs=acs, cert=cert_b64, base=base).encode()


def _cert_b64(cert_pem: bytes) -> str:
    return "".join(line for line in cert_pem.decode().splitlines() if not line.startswith("-----"))


@dataclass
class SpKeys:
    key: rsa.RSAPrivateKey
    cert_pem: bytes
    cert_b64: str


@dataclass
class Workspace:
    """Paths and secrets of the bench instance; `env()` is what a server process needs to serve it."""

    root: Path
    cert_dir: Path
    instance_dir: Path
    db_path: Path
    secret_key: str
    sp: SpKeys

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.db_path}"

    def env(self, base_url: str) -> dict[str, str]:
        return {
            "IDP_BASE_URL": base_url,
            "IDP_INSTANCE_DIR": str(self.instance_dir),
            "IDP_CERT_DIR": str(self.cert_dir),
            "IDP_DATABASE_URL": self.database_url,
            "IDP_SECRET_KEY": self.secret_key,
            # production argon2id parameters (idp.config.DEFAULT_ARGON2) are the defaults: nothing set here
        }

    def settings(self, base_url: str = INPROCESS_BASE_URL) -> Settings:
        return load_settings(self.env(base_url))

    def idp_key_files(self) -> tuple[Path, Path]:
        """(key.pem, cert.pem) of the active signing key, for pysaml2's key_file/cert_file."""
        kid = KeyStore(self.cert_dir).current().active.kid
        return self.cert_dir / f"{kid}.key", self.cert_dir / f"{kid}.crt"


def make_workspace(root: Path) -> Workspace:
    """Create the directories, the IdP's RSA-2048 key store and the SP's key pair."""
    cert_dir, instance_dir = root / "certs", root / "instance"
    instance_dir.mkdir(parents=True)
    KeyStore(cert_dir).generate_first(f"{INPROCESS_BASE_URL}/saml/metadata", "rsa2048", 365)
    gen = generate_key_pair("sp.bench.example", "rsa2048", 365)
    key = serialization.load_pem_private_key(gen.key_pem, None)
    assert isinstance(key, rsa.RSAPrivateKey)
    sp = SpKeys(key=key, cert_pem=gen.cert_pem, cert_b64=_cert_b64(gen.cert_pem))
    return Workspace(root=root, cert_dir=cert_dir, instance_dir=instance_dir, db_path=root / "idp.sqlite3",
                     secret_key=secrets.token_urlsafe(32), sp=sp)


def clone_instance(ws: Workspace, name: str) -> Workspace:
    """A copy of the instance's database (SQLite online backup, safe with WAL) sharing its keys and secret.

    The scaling runs compare copies that differ only in what they are scaling (apps, events).
    """
    dst_path = ws.root / f"{name}.sqlite3"
    src = sqlite3.connect(ws.db_path)
    dst = sqlite3.connect(dst_path)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    return replace(ws, db_path=dst_path)


def open_app(ws: Workspace) -> Flask:
    """The IdP app over an existing bench database."""
    return create_app(ws.settings())


def create_bench_app(ws: Workspace) -> Flask:
    """The IdP app over the bench DB: schema, groups, the bench user (production argon2id hash), the target app."""
    app = create_app(ws.settings())
    with app.app_context():
        db.create_all()
        for g in GROUPS:
            users_svc.add_group(g)
        pw_hash = app.extensions["idp.passwords"].hash(PASSWORD)
        users_svc.add_user(USERNAME, email="jane.doe@example.org", password_hash=pw_hash, first_name="Jane",
                           last_name="Doe", groups=list(GROUPS))
        row = apps_svc.register_app(sp_metadata_xml(SP_ENTITY, SP_ACS, ws.sp.cert_b64), slug=TARGET_SLUG,
                                    name="Bench SP")
        apps_svc.change_settings(row, attributes=dict(ATTRIBUTE_MAP), sign="both", nameid_format="email",
                                 nameid_field="email")
        db.session.commit()  # services leave the commit to the outer layer: here, the set-up
        db.session.remove()
    return app


_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(html: str) -> str:
    m = _CSRF.search(html)
    if not m:
        raise RuntimeError("no CSRF token on the login page")
    return m.group(1)


def login_test_client(app: Flask) -> FlaskClient:
    """A test client whose cookie jar holds a logged-in IdP session (one password login through /login)."""
    client = app.test_client()
    page = client.get("/login")
    resp = client.post("/login", data={"csrf_token": csrf_token(page.get_data(as_text=True)), "username": USERNAME,
                                       "password": PASSWORD, "next": "/"})
    if resp.status_code != 303:
        raise RuntimeError(f"bench login failed: HTTP {resp.status_code}")
    return client


# ---------------------------------------------------------------- AuthnRequests (single-use IDs: pre-generated)

def authn_request_xml(issuer: str, destination: str, acs_url: str, now: datetime) -> bytes:
    """An AuthnRequest shaped like the ones pysaml2 / python3-saml SPs send (NameIDPolicy, ACS URL, binding)."""
    return (f'<samlp:AuthnRequest xmlns:samlp="{NS_SAMLP}" xmlns:saml="{NS_SAML}" ID="_{secrets.token_hex(16)}" '
            f'Version="2.0" IssueInstant="{now.strftime("%Y-%m-%dT%H:%M:%SZ")}" Destination="{destination}" '
            f'AssertionConsumerServiceURL="{acs_url}" ProtocolBinding="{BINDING_POST}">'
            f"<saml:Issuer>{issuer}</saml:Issuer>"
            f'<samlp:NameIDPolicy Format="{NAMEID_EMAIL}" AllowCreate="true"/>'
            f"</samlp:AuthnRequest>").encode()


def redirect_query(xml: bytes, relay_state: str, key: rsa.RSAPrivateKey | None) -> str:
    """HTTP-Redirect binding query (saml-bindings §3.4.4), signed over the encoded query when a key is given."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    q = f"SAMLRequest={quote_plus(base64.b64encode(comp.compress(xml) + comp.flush()).decode())}"
    q += f"&RelayState={quote_plus(relay_state)}"
    if key is not None:
        q += f"&SigAlg={quote_plus(RSA_SHA256)}"
        sig = key.sign(q.encode(), padding.PKCS1v15(), hashes.SHA256())
        q += f"&Signature={quote_plus(base64.b64encode(sig).decode())}"
    return q


class RequestPool:
    """Pre-generated, signed Redirect-binding AuthnRequests for one IdP base URL; `take()` hands out each once."""

    def __init__(self, sp_key: rsa.RSAPrivateKey, base_url: str, issuers: list[str] | None = None,
                 signed: bool = True) -> None:
        self.sp_key = sp_key if signed else None
        self.destination = f"{base_url}/saml/sso"
        self.issuers = issuers or [SP_ENTITY]
        self._queue: deque[str] = deque()
        self._n = 0

    def refill(self, n: int) -> None:
        """Replace the pool with `n` fresh requests (IssueInstant now, so they stay inside the IdP's window)."""
        now = datetime.now(UTC)
        out = []
        for _ in range(n):
            issuer = self.issuers[self._n % len(self.issuers)]
            self._n += 1
            xml = authn_request_xml(issuer, self.destination, SP_ACS, now)
            out.append("/saml/sso?" + redirect_query(xml, "/dashboard", self.sp_key))
        self._queue = deque(out)

    def take(self) -> str:
        try:
            return self._queue.popleft()
        except IndexError:
            raise PoolExhausted from None

    def take_all(self) -> deque[str]:
        """Hand the whole pool over (to a thread-safe consumer: deque.popleft is atomic)."""
        queue, self._queue = self._queue, deque()
        return queue

    def peek(self) -> str:
        return self._queue[0]

    def __len__(self) -> int:
        return len(self._queue)


# ---------------------------------------------------------------- bulk data for the scaling runs

def count_apps(app: Flask) -> int:
    with app.app_context():
        n = db.session.scalar(select(func.count(ConnectedApp.id))) or 0
        db.session.remove()
        return n


def add_filler_apps(app: Flask, ws: Workspace, count: int, chunk: int = 2000) -> None:
    """Bulk-insert `count` more connected apps with SQLAlchemy core, from one parsed metadata template.

    Each gets a distinct entityID, slug and ACS; the parse happens once (registering 10k apps through
    the service would parse 10k metadata documents and commit 10k times).
    """
    template_xml = sp_metadata_xml("https://TEMPLATE.invalid/saml/metadata", "https://TEMPLATE.invalid/saml/acs",
                                   ws.sp.cert_b64).decode()
    sp = parse_sp_metadata(template_xml.encode())
    sp_dict = sp.to_dict()
    settings = apps_svc.default_settings(sp).to_dict()
    table = ConnectedApp.__table__
    now = datetime.now(UTC)
    with app.app_context():
        start = db.session.scalar(select(func.count(ConnectedApp.id)).where(
            ConnectedApp.slug.like(f"{FILLER_PREFIX}%"))) or 0
        rows = []
        for i in range(start, start + count):
            host = f"sp{i:06d}.filler.example"
            d = dict(sp_dict, entity_id=f"https://{host}/saml/metadata")
            d["acs"] = [dict(e, location=f"https://{host}/saml/acs") for e in sp_dict["acs"]]
            d["slo"] = [dict(e, location=f"https://{host}/saml/slo") for e in sp_dict["slo"]]
            rows.append({
                "slug": f"{FILLER_PREFIX}{i:06d}", "name": f"Filler app {i}", "entity_id": d["entity_id"],
                "enabled": True, "metadata_xml": template_xml.replace("TEMPLATE.invalid", host), "sp": d,
                "settings": settings, "source": "cli", "source_ref": None, "version": 1, "created_at": now,
                "updated_at": now,
            })
            if len(rows) >= chunk:
                db.session.execute(insert(table), rows)
                rows = []
        if rows:
            db.session.execute(insert(table), rows)
        db.session.commit()
        db.session.remove()
