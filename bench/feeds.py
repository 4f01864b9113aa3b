"""Federation feed figures (issue 18): a generated, signed 10,000-entity aggregate (each SP with a signing
certificate, two ACS, an mdui:DisplayName; half of them in the research-and-scholarship entity category) served
by a loopback HTTP server with an ETag, synced by `idp feeds sync` semantics (services.feeds.sync, a commit per
batch) into a copy of the bench SQLite database, every SP selected.

Each measurement runs in a fresh child process, so its peak memory is its own: VmHWM (peak RSS since exec) at
the end of the child (libxml2's allocations are outside tracemalloc's view, so RSS is the honest figure), and the
child's RSS before the step (the app imported and created) to show what the step itself added.

`feed_verify_10k_s` / `feed_verify_peak_mb`: parse + signature check of the whole document (the one step that
holds the tree). The entity pass alone (iterparse over the same bytes, each entity cleared) is in the details
(`read_entities`): its peak is the document's bytes plus one entity, not the tree.
`feed_sync_10k_s` / `feed_sync_peak_mb`: the first sync (fetch, verify, 10,000 apps created,
audited). `feed_resync_10k_s`: the same document again with --force (fetched, verified, every entity read and
compared by hash, nothing written). `feed_resync_304_s`: the scheduled re-sync, answered 304.

Run alone: `.venv/bin/python -m bench.feeds [--entities N]`; `make bench` runs it too (2,000 entities in quick
mode).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess  # noqa: S404 - each measurement is a child process: its peak RSS is its own
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/feeds.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ENTITIES = 10_000
NS = ('xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" '
      'xmlns:mdui="urn:oasis:names:tc:SAML:metadata:ui" xmlns:mdattr="urn:oasis:names:tc:SAML:metadata:attribute" '
      'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"')
POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
RS = "http://refeds.org/category/research-and-scholarship"


def _entity(i: int, cert_b64: str) -> str:
    eid = f"https://sp{i}.uni{i % 97}.example.edu/shibboleth"
    cat = (f'<md:Extensions><mdattr:EntityAttributes><saml:Attribute Name="http://macedir.org/entity-category" '
           f'NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:uri"><saml:AttributeValue>{RS}'
           "</saml:AttributeValue></saml:Attribute></mdattr:EntityAttributes></md:Extensions>") if i % 2 else ""
    return (f'<md:EntityDescriptor entityID="{eid}">{cat}'
            '<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
            f'<md:Extensions><mdui:UIInfo><mdui:DisplayName xml:lang="en">Service {i} of University {i % 97}'
            "</mdui:DisplayName></mdui:UIInfo></md:Extensions>"
            f'<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert_b64}'
            "</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
            f'<md:SingleLogoutService Binding="{REDIRECT}" Location="https://sp{i}.uni{i % 97}.example.edu/slo"/>'
            "<md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>"
            f'<md:AssertionConsumerService Binding="{POST}" Location="https://sp{i}.uni{i % 97}.example.edu/acs" '
            'index="0" isDefault="true"/>'
            f'<md:AssertionConsumerService Binding="{POST}" Location="https://sp{i}.uni{i % 97}.example.edu/acs2" '
            'index="1"/></md:SPSSODescriptor></md:EntityDescriptor>')


def make_aggregate(n: int, out_dir: Path) -> tuple[Path, Path]:
    """The signed aggregate and its trust anchor (the signer's certificate), as files."""
    from cryptography.hazmat.primitives import serialization
    from lxml import etree

    from idp.certs.generate import generate_key_pair
    from idp.saml.constants import SignatureAlgorithm
    from idp.saml.signing import sign_element

    signer = generate_key_pair("federation-signer.bench.example", "rsa2048", 365)
    sp_certs = [generate_key_pair(f"sp{k}.bench.example", "rsa2048", 365).cert_pem for k in range(3)]
    b64 = ["".join(ln for ln in pem.decode().splitlines() if "-----" not in ln) if isinstance(pem, bytes) else
           "".join(ln for ln in pem.splitlines() if "-----" not in ln) for pem in sp_certs]
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 7 * 86400))
    body = "".join(_entity(i, b64[i % 3]) for i in range(n))
    root = etree.fromstring(f'<md:EntitiesDescriptor {NS} ID="_bench" Name="urn:bench:federation" '
                            f'validUntil="{until}" cacheDuration="PT6H">{body}</md:EntitiesDescriptor>',
                            parser=etree.XMLParser(huge_tree=True))
    key = serialization.load_pem_private_key(signer.key_pem if isinstance(signer.key_pem, bytes)
                                             else signer.key_pem.encode(), None)
    sign_element(root, key, SignatureAlgorithm.RSA_SHA256, "".join(  # type: ignore[arg-type]
        ln for ln in (signer.cert_pem.decode() if isinstance(signer.cert_pem, bytes) else signer.cert_pem)
        .splitlines() if "-----" not in ln))
    doc, anchor = out_dir / "feed.xml", out_dir / "anchor.pem"
    doc.write_bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
    anchor.write_text(signer.cert_pem.decode() if isinstance(signer.cert_pem, bytes) else signer.cert_pem)
    return doc, anchor


class FeedServer:
    """Serves one file with an ETag; 304 on If-None-Match."""

    def __init__(self, path: Path) -> None:
        body = path.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/samlmetadata+xml")
                self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/feed.xml"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _status_mb(field: str) -> float:
    """VmHWM (peak RSS) or VmRSS of this process from /proc (getrusage's maxrss survives exec on Linux: a child
    forked from a big parent would report the parent's size)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mb() -> float:
    return _status_mb("VmHWM")


def child(mode: str, url: str, anchor: Path, doc: Path) -> dict[str, Any]:
    """One measurement, in this (child) process."""
    from idp import create_app
    from idp.config import load_settings
    from idp.extensions import db
    from idp.services import feeds

    app = create_app(load_settings())
    with app.app_context():
        base = _status_mb("VmRSS")
        if mode == "verify":
            from idp.saml.metadata_trust import verify_aggregate

            data = doc.read_bytes()
            t = time.perf_counter()
            verify_aggregate(data, anchor.read_text(), max_bytes=load_settings().feed_max_bytes)
            took = time.perf_counter() - t
            return {"s": took, "base_mb": base, "peak_mb": _rss_mb(), "doc_mb": len(data) / 2**20}
        if mode == "read":   # the entity pass alone (iterparse, each entity cleared): what it holds
            data = doc.read_bytes()
            t = time.perf_counter()
            n = sum(1 for _ in feeds.iter_entities(data))
            return {"s": time.perf_counter() - t, "base_mb": base, "peak_mb": _rss_mb(), "entities": n}
        if mode == "add":
            feeds.add_feed(url, trust_anchor_pem=anchor.read_text(), name="bench")
            db.session.commit()
            return {}
        feed = feeds.get_feed("bench")
        t = time.perf_counter()
        r = feeds.sync(feed, force=mode == "force", commit=db.session.commit)
        db.session.commit()
        took = time.perf_counter() - t
        return {"s": took, "base_mb": base, "peak_mb": _rss_mb(), "outcome": r.outcome, "message": r.message,
                "counts": r.counts}


def _run_child(env: dict[str, str], mode: str, url: str, anchor: Path, doc: Path) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "bench.feeds", "--child", mode, url, str(anchor), str(doc)],  # noqa: S603
                          env=env, capture_output=True, text=True, timeout=1800,
                          cwd=str(Path(__file__).resolve().parent.parent))
    if proc.returncode != 0:
        raise RuntimeError(f"feeds bench child {mode} failed: {proc.stderr[-2000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def measure_feeds(ws: Any, entities: int = ENTITIES) -> dict[str, Any]:
    from bench.fixtures import INPROCESS_BASE_URL, clone_instance

    copy = clone_instance(ws, "feeds")
    t = time.perf_counter()
    doc, anchor = make_aggregate(entities, copy.root)
    gen_s = time.perf_counter() - t
    server = FeedServer(doc)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("IDP_")}, **copy.env(INPROCESS_BASE_URL),
           "IDP_METADATA_FETCH_ALLOW_PRIVATE": "1"}
    try:
        verify = _run_child(env, "verify", server.url, anchor, doc)
        read = _run_child(env, "read", server.url, anchor, doc)
        _run_child(env, "add", server.url, anchor, doc)
        first = _run_child(env, "sync", server.url, anchor, doc)
        if first.get("outcome") != "synced" or first["counts"].get("added") != entities:
            raise RuntimeError(f"first sync: {first}")
        force = _run_child(env, "force", server.url, anchor, doc)
        if force["counts"].get("unchanged") != entities:
            raise RuntimeError(f"forced re-sync: {force}")
        cond = _run_child(env, "sync", server.url, anchor, doc)
        if cond.get("outcome") != "unchanged":
            raise RuntimeError(f"conditional re-sync: {cond}")
    finally:
        server.close()

    def r(v: dict[str, Any]) -> dict[str, Any]:
        return {k: round(x, 2) if isinstance(x, float) else x for k, x in v.items()}

    return {"entities": entities, "doc_mb": round(verify["doc_mb"], 1), "generate_s": round(gen_s, 1),
            "verify": r(verify), "read_entities": r(read), "first_sync": r(first), "forced_resync": r(force),
            "conditional_resync": r(cond)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entities", type=int, default=ENTITIES)
    parser.add_argument("--child", nargs=4, metavar=("MODE", "URL", "ANCHOR", "DOC"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    if args.child:
        mode, url, anchor, doc = args.child
        print(json.dumps(child(mode, url, Path(anchor), Path(doc))))
        return 0
    from bench.fixtures import create_bench_app, make_workspace

    root = Path(tempfile.mkdtemp(prefix="idp-bench-feeds-"))
    try:
        ws = make_workspace(root)
        create_bench_app(ws)
        res = measure_feeds(ws, args.entities)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(res, indent=2))
    print(summary(res))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    return 0


def summary(res: dict[str, Any]) -> str:
    v, f, fr, c = res["verify"], res["first_sync"], res["forced_resync"], res["conditional_resync"]
    rd = res["read_entities"]
    return (f"{res['entities']:,} entities, {res['doc_mb']} MB: verify {v['s']:.1f}s peak {v['peak_mb']:.0f} MB "
            f"(base {v['base_mb']:.0f}); entity pass alone {rd['s']:.1f}s peak {rd['peak_mb']:.0f} MB; "
            f"first sync {f['s']:.1f}s peak {f['peak_mb']:.0f} MB; forced re-sync "
            f"{fr['s']:.1f}s peak {fr['peak_mb']:.0f} MB; 304 re-sync {c['s']:.2f}s")


if __name__ == "__main__":
    raise SystemExit(main())
