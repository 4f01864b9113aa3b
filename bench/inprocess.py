"""SP-initiated SSO through the WSGI app in-process (a logged-in browser's environ) and its profile."""

from __future__ import annotations

import base64
import cProfile
import io
import os
import platform
import pstats
import re
import sys
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from flask import Flask
from lxml import etree
from sqlalchemy import event

from idp.extensions import db

from .fixtures import INPROCESS_BASE_URL, RequestPool, Workspace, login_test_client
from .micro import count_attributes, xmlsec1_verify

REPO = Path(__file__).resolve().parent.parent
_RESPONSE_FIELD = re.compile(rb'name="SAMLResponse" value="([^"]+)"')


class SsoBench:
    """One logged-in browser sending pre-generated, signed Redirect AuthnRequests to /saml/sso.

    Each round trip calls the WSGI application directly with a complete environ (session cookie,
    client address, user agent), as a WSGI server would: werkzeug's test client spends ~0.6 ms per
    request on its own URL and cookie-jar handling, which is harness cost, not IdP cost. The
    server's own cost is in the HTTP figures (gunicorn).
    """

    def __init__(self, app: Flask, ws: Workspace, issuers: list[str] | None = None) -> None:
        self.app = app
        self.ws = ws
        self.client = login_test_client(app)
        self.pool = RequestPool(ws.sp.key, INPROCESS_BASE_URL, issuers)
        cookies = "; ".join(f"{c.key}={c.value}" for c in (self.client._cookies or {}).values())
        self._environ = {
            "REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "SERVER_NAME": "localhost", "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "localhost",
            "HTTP_COOKIE": cookies, "HTTP_USER_AGENT": "Mozilla/5.0 (X11; Linux x86_64) bench",
            "HTTP_ACCEPT": "text/html", "wsgi.version": (1, 0), "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr, "wsgi.multithread": False, "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }

    def one(self) -> bytes:
        path, _, query = self.pool.take().partition("?")
        environ = {**self._environ, "PATH_INFO": path, "QUERY_STRING": query, "wsgi.input": io.BytesIO()}
        status: list[str] = []

        def start_response(s: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status.append(s)
            return None

        chunks = self.app.wsgi_app(environ, start_response)
        try:
            body = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        if not status or not status[0].startswith("200") or b'name="SAMLResponse"' not in body:
            raise RuntimeError(f"SSO round trip failed: HTTP {status[:1]}: {body[:300]!r}")
        return body

    def variant(self) -> tuple[Callable[[], object], Callable[[int], None]]:
        """(op, before_run) for measure_interleaved."""
        return self.one, self.pool.refill

    def check_sample(self) -> dict[str, object]:
        """One round trip, its Response decoded and checked: InResponseTo, attributes, both signatures (xmlsec1)."""
        self.pool.refill(1)
        request_id = _request_id(self.pool.peek())
        body = self.one()
        m = _RESPONSE_FIELD.search(body)
        assert m is not None
        xml = base64.b64decode(unescape(m.group(1).decode()))
        root = etree.fromstring(xml)
        status = root.find("{urn:oasis:names:tc:SAML:2.0:protocol}Status/"
                           "{urn:oasis:names:tc:SAML:2.0:protocol}StatusCode").get("Value")
        _, cert = self.ws.idp_key_files()
        return {"html_bytes": len(body), "response_bytes": len(xml), "status": status.rsplit(":", 1)[1],
                "in_response_to_matches": root.get("InResponseTo") == request_id,
                "attributes": count_attributes(xml), "xmlsec1_verified": xmlsec1_verify(xml, cert)}

    # ------------------------------------------------------------ profile

    def profile(self, n: int, cpu_ms_per_rt: float | None, out: Path) -> list[tuple[str, float, float]]:
        """cProfile `n` round trips; write a text report to `out`; return the top self-time functions."""
        self.pool.refill(n + 20)
        for _ in range(20):
            self.one()
        prof = cProfile.Profile()
        w0 = time.perf_counter()
        prof.enable()
        for _ in range(n):
            self.one()
        prof.disable()
        wall = time.perf_counter() - w0
        stats = pstats.Stats(prof)
        text, top = _report(stats, n, wall, cpu_ms_per_rt)
        out.write_text(text + "\n" + self.sql_report(20))
        try:
            extra = _pyinstrument(self, min(n, 300))
        except ImportError:
            extra = None
        if extra:
            with out.open("a") as f:
                f.write("\n" + extra)
        return top


    def sql_report(self, n: int) -> str:
        """The SQL statements and commits of `n` round trips, per round trip (SQLAlchemy engine events)."""
        with self.app.app_context():
            engine = db.engine
        statements: Counter[str] = Counter()
        commits = [0]

        def on_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements[" ".join(statement.split())] += 1

        def on_commit(conn: Any) -> None:
            commits[0] += 1

        self.pool.refill(n)
        event.listen(engine, "before_cursor_execute", on_execute)
        event.listen(engine, "commit", on_commit)
        try:
            for _ in range(n):
                self.one()
        finally:
            event.remove(engine, "before_cursor_execute", on_execute)
            event.remove(engine, "commit", on_commit)
        total = sum(statements.values())
        lines = [f"5. SQL per round trip ({n} round trips): {total / n:.1f} statements, {commits[0] / n:.1f} commits",
                 "-" * 100]
        for stmt, count in statements.most_common():
            short = re.sub(r"SELECT .*? FROM", "SELECT ... FROM", stmt) if len(stmt) > 150 else stmt
            lines.append(f"  {count / n:4.1f} x  {short[:160]}")
        return "\n".join(lines) + "\n"


def _request_id(path_and_query: str) -> str:
    """The ID of the AuthnRequest inside a Redirect-binding URL."""
    qs = parse_qs(path_and_query.split("?", 1)[1])
    xml = zlib.decompress(base64.b64decode(qs["SAMLRequest"][0]), -15)
    return str(etree.fromstring(xml).get("ID"))


# ---------------------------------------------------------------- report

# (label, filename suffix, function name): cumulative time of these, per round trip
PHASES = [
    ("whole WSGI request", "flask/app.py", "wsgi_app"),
    ("  session cookie -> IdpSession (flask-login)", "idp/web/login_views.py", "load_principal"),
    ("  decode_redirect (inflate, query)", "idp/saml/bindings.py", "decode_redirect"),
    ("  receive_authn_request", "idp/flows/sso.py", "receive_authn_request"),
    ("    parse_authn_request", "idp/saml/requests.py", "parse_authn_request"),
    ("    app_config_by_entity_id", "idp/services/apps/cache.py", "app_config_by_entity_id"),
    ("    verify_redirect_signature", "idp/saml/signing.py", "verify_redirect_signature"),
    ("    remember_request (replay check; row written by the commit)", "idp/replay.py", "remember_request"),
    ("  proceed (gate + issue)", "idp/flows/sso.py", "proceed"),
    ("    app_config_by_id", "idp/services/apps/cache.py", "app_config_by_id"),
    ("    decide (policy incl. org ranges, TOTP lookups)", "idp/flows/authorize.py", "decide"),
    ("      trusted_ranges (org setting query)", "idp/services/org.py", "trusted_ranges"),
    ("      evaluate (pure policy engine)", "idp/policy/engine.py", "evaluate"),
    ("    session_index_for (session participant row)", "idp/flows/saml_subject.py", "session_index_for"),
    ("    user_fields", "idp/services/users.py", "user_fields"),
    ("    build_response (build + 2 signatures)", "idp/saml/responses.py", "build_response"),
    ("      sign_element", "idp/saml/signing.py", "sign_element"),
    ("    record_event (event row)", "idp/events.py", "record_event"),
    ("    event_dict (the JSON log line, after the commit)", "idp/events.py", "event_dict"),
    ("    metrics.count_event (after the commit)", "idp/metrics.py", "count_event"),
    ("  commit (the request's unit of work; event metric + log line after it)", "idp/web/uow.py", "commit"),
    ("  post_form (render the POST page)", "idp/web/responses.py", "post_form"),
    ("  current_client (client IP)", "idp/web/context.py", "current_client"),
    ("  after_request security headers", "idp/__init__.py", "_security_headers"),
    ("connection checkouts from the pool (after each commit)", "sqlalchemy/pool/base.py", "_checkout"),
    ("  pool_pre_ping: a SELECT 1 at each checkout", "sqlalchemy/engine/default.py", "_do_ping_w_event"),
    ("db.session.commit (all callers)", "sqlalchemy/orm/scoping.py", "commit"),
    ("db.session.execute / scalar / scalars (all callers)", "sqlalchemy/orm/scoping.py", "execute|scalar|scalars"),
    ("db.session.get (all callers)", "sqlalchemy/orm/scoping.py", "get"),
    ("refresh of attributes expired by a commit (one SELECT each)", "sqlalchemy/orm/state.py", "_load_expired"),
]

# self time grouped by where the code lives
GROUPS = [
    ("xmlsec C (verify POST-binding requests, encryption)", re.compile(r"xmlsec")),
    ("cryptography C (RSA sign + verify)", re.compile(r"cryptography|RSAPublicKey|RSAPrivateKey")),
    ("sqlite3 C (execute, commit)", re.compile(r"sqlite3")),
    ("lxml C (parse, build, serialise)", re.compile(r"lxml")),
    ("SQLAlchemy (Python)", re.compile(r"/sqlalchemy/")),
    ("Flask / Werkzeug / Jinja2 / flask-login / flask-wtf", re.compile(r"/(flask|werkzeug|jinja2|markupsafe|"
                                                                          r"flask_login|flask_wtf|itsdangerous)/")),
    ("idp (this project)", re.compile(r"/idp/")),
    ("Python stdlib", re.compile(r"/lib/python3\.\d+/(?!site-packages)|^~$")),
]


def _key_label(key: tuple[str, int, str]) -> str:
    filename, line, func = key
    if filename == "~":
        return func
    short = filename
    for marker in ("/site-packages/", "/lib/python3."):
        if marker in filename:
            short = filename.split(marker, 1)[1]
            if marker == "/lib/python3.":
                short = short.split("/", 1)[1]
            break
    else:
        if filename.startswith(str(REPO) + "/"):
            short = filename[len(str(REPO)) + 1:]
    return f"{short}:{line}({func})"


def _group_of(key: tuple[str, int, str]) -> str:
    filename, _, func = key
    text = func if filename == "~" else filename
    for label, pattern in GROUPS:
        if filename == "~" and label == "Python stdlib":
            continue
        if pattern.search(text):
            return label
    if filename == "~":
        return "Python builtins (str, dict, re, hashlib, zlib, ...)"
    return "other"


def _report(stats: pstats.Stats, n: int, wall: float,
            cpu_ms: float | None) -> tuple[str, list[tuple[str, float, float]]]:
    raw = stats.stats  # type: ignore[attr-defined]
    total_tt = sum(v[2] for v in raw.values())
    per = 1000.0 / n
    lines = [
        "Profile of the SSO round trip (SP-initiated, HTTP-Redirect, signed AuthnRequest, existing session)",
        "=" * 100,
        f"generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} by `make bench` (bench/inprocess.py), "
        f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"loadavg {os.getloadavg()[0]:.2f}",
        f"cProfile over {n} round trips through the WSGI app: GET /saml/sso?SAMLRequest=... -> 200 POST form",
        "(parse + validate request, policy, build, sign Response + Assertion, event row).",
        f"Without the profiler one round trip costs {cpu_ms:.2f} CPU-ms (the bench's sso_roundtrip figure); "
        f"under cProfile {wall / n * 1000:.2f} ms wall." if cpu_ms else "",
        "cProfile adds a fixed cost per Python call, so Python-heavy parts (SQLAlchemy, Flask) look larger",
        "than they are and C calls (RSA, c14n) smaller; compare shares, not absolute milliseconds.",
        "",
        "1. Where the time goes (cumulative ms per round trip; nested lines are part of the line above)",
        "-" * 100,
    ]
    for label, suffix, funcs in PHASES:
        names = set(funcs.split("|"))
        ct = sum(v[3] for k, v in raw.items() if k[0].endswith(suffix) and k[2] in names)
        calls = sum(v[1] for k, v in raw.items() if k[0].endswith(suffix) and k[2] in names)
        if not calls:
            continue  # a function this version of the code does not have
        lines.append(f"  {label:<58} {ct * per:8.3f} ms  {100 * ct / total_tt:5.1f} %  ({calls / n:.1f} calls/rt)")
    lines += ["", "2. Self time by library (ms per round trip)", "-" * 100]
    by_group: dict[str, float] = defaultdict(float)
    for k, v in raw.items():
        by_group[_group_of(k)] += v[2]
    for label, tt in sorted(by_group.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {label:<58} {tt * per:8.3f} ms  {100 * tt / total_tt:5.1f} %")
    lines.append(f"  {'total':<58} {total_tt * per:8.3f} ms")
    n_calls = sum(v[1] for v in raw.values())
    lines.append(f"  Python function calls per round trip: {n_calls / n:.0f}")
    top = sorted(raw.items(), key=lambda kv: -kv[1][2])[:30]
    lines += ["", "3. Top 30 functions by self time", "-" * 100,
              f"  {'self ms/rt':>10} {'cum ms/rt':>10} {'calls/rt':>8}  function"]
    top_out = []
    for k, v in top:
        lines.append(f"  {v[2] * per:10.3f} {v[3] * per:10.3f} {v[1] / n:8.1f}  {_key_label(k)}")
        top_out.append((_key_label(k), v[2] * per, 100 * v[2] / total_tt))
    lines += ["", "4. pstats, top 40 by cumulative time (whole run)", "-" * 100]
    buf = io.StringIO()
    stats.stream = buf  # type: ignore[attr-defined]
    stats.sort_stats("cumulative").print_stats(40)
    text = re.sub(r"\S*/site-packages/|\S*/lib/python3\.\d+/", "", buf.getvalue())
    lines.append(text.replace(str(REPO) + "/", "").strip("\n"))
    return "\n".join(lines) + "\n", top_out


def _pyinstrument(bench: SsoBench, n: int) -> str | None:
    """A pyinstrument call tree as well, when pyinstrument happens to be installed (optional, not required)."""
    from pyinstrument import Profiler

    bench.pool.refill(n)
    profiler = Profiler(interval=0.0002)
    profiler.start()
    for _ in range(n):
        bench.one()
    profiler.stop()
    return (f"6. pyinstrument call tree ({n} round trips, sampling)\n" + "-" * 100 + "\n"
            + profiler.output_text(unicode=False, color=False, show_all=False))
