"""Admission control (IDP_MAX_QUEUE_MS) on the production server: `idp serve` (gunicorn, gthread) on loopback.

One worker with a small budget. A flood of SSO requests gets some quick 503s with Retry-After while the admitted
ones are answered 200, and /healthz answers throughout; a password-spraying flood (wrong passwords from many
addresses) is shed in its own class and does not starve SSO for users who already have a session.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import sqlite3
import statistics
import subprocess  # noqa: S404 - starts the project's own server
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import pytest

from bench.fixtures import RequestPool, create_bench_app, make_workspace
from bench.http_load import Server, _cookie_header, _cookies, free_port, http_login, stop_server

pytestmark = pytest.mark.slow

BUDGET_MS = 100
FLOOD_S = 5.0


Fixture = tuple[Server, RequestPool, list[dict[str, str]], Path]


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    ok_ms: list[float] = field(default_factory=list)
    shed_ms: list[float] = field(default_factory=list)
    other: list[int] = field(default_factory=list)
    shed_headers: list[dict[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def add(self, status: int, ms: float, headers: http.client.HTTPMessage, body: bytes) -> None:
        with self.lock:
            if status == 503:
                self.shed_ms.append(ms)
                if len(self.shed_headers) < 20:
                    self.shed_headers.append({k.lower(): v for k, v in headers.items()} | {"body": body.decode()})
            elif status in (200, 303):
                self.ok_ms.append(ms)
            else:
                self.other.append(status)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fixture]:
    """`idp serve` with one worker of 32 threads over a bench instance (its user signed in 4 times)."""
    root: Path = tmp_path_factory.mktemp("admission")
    ws = make_workspace(root)
    app = create_bench_app(ws)
    with app.app_context():
        from idp.extensions import db
        db.session.remove()
        db.engine.dispose()
    port = free_port()
    env = dict(os.environ)
    env.update(ws.env(f"http://127.0.0.1:{port}"))
    # a small budget, and X-Forwarded-For trusted: the spraying flood comes from many addresses (the per-address
    # sign-in throttle would otherwise refuse it before any password is hashed)
    env.update({"IDP_BIND": f"127.0.0.1:{port}", "IDP_WORKERS": "1", "IDP_THREADS": "32",
                "IDP_MAX_QUEUE_MS": str(BUDGET_MS), "IDP_TRUSTED_PROXIES": "1"})
    log_path = root / "gunicorn.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "idp"), "serve"], env=env, cwd=root,  # noqa: S603
                                stdout=log, stderr=subprocess.STDOUT)
    srv = Server(proc=proc, port=port, workers=1, threads=32, log_path=log_path)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            finally:
                conn.close()
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.2)
        jars = [http_login(port) for _ in range(4)]
        yield srv, RequestPool(ws.sp.key, srv.base_url), jars, ws.db_path
    finally:
        stop_server(srv)


def _get(conn: http.client.HTTPConnection, path: str, headers: dict[str, str], tally: Tally) -> None:
    t0 = time.perf_counter()
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    tally.add(resp.status, (time.perf_counter() - t0) * 1000, resp.headers, body)


def _sso_client(port: int, jar: dict[str, str], queue: list[str], end_at: float, tally: Tally,
                pause_s: float = 0.0) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Cookie": _cookie_header(jar)}
    while time.perf_counter() < end_at:
        try:
            path = queue.pop()
        except IndexError:
            break
        try:
            _get(conn, path, headers, tally)
        except (OSError, http.client.HTTPException) as exc:
            with tally.lock:
                tally.errors.append(repr(exc))
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        if pause_s:
            time.sleep(pause_s)
    conn.close()


def _metric(port: int, name: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics", headers={"X-Forwarded-For": "127.0.0.1"})   # IDP_TRUSTED_PROXIES=1
    text = conn.getresponse().read().decode()
    conn.close()
    m = re.search(rf"^{re.escape(name)} (\d+)$", text, re.MULTILINE)
    return int(m.group(1)) if m else 0


def test_sso_flood_is_shed_at_once_and_health_answers(
        server: Fixture) -> None:
    srv, pool, jars, _ = server
    pool.refill(4000)
    queue = list(pool.take_all())
    tally = Tally()
    end_at = time.perf_counter() + FLOOD_S
    threads = [threading.Thread(target=_sso_client, args=(srv.port, jars[i % len(jars)], queue, end_at, tally),
                                daemon=True) for i in range(48)]
    for t in threads:
        t.start()
    health: list[tuple[int, float]] = []
    time.sleep(1.0)
    while time.perf_counter() < end_at - 0.5:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
        t0 = time.perf_counter()
        conn.request("GET", "/healthz")
        health.append((conn.getresponse().status, time.perf_counter() - t0))
        conn.close()
        time.sleep(0.3)
    for t in threads:
        t.join(90)

    assert not tally.errors, tally.errors[:3]
    assert tally.other == [], "no status but 200 and the deliberate 503"
    assert len(tally.ok_ms) >= 20 and len(tally.shed_ms) >= 20, (len(tally.ok_ms), len(tally.shed_ms))
    for h in tally.shed_headers:
        assert h["retry-after"].isdigit() and 1 <= int(h["retry-after"]) <= 5
        assert h["cache-control"] == "no-store"
        assert h["content-type"].startswith("text/html")
        assert "sign-in service is busy" in h["body"]
    # refused at once, not after waiting in the queue: a 503 is much quicker than an admitted answer
    assert statistics.median(tally.shed_ms) < statistics.median(tally.ok_ms)
    assert statistics.median(tally.shed_ms) < 1000
    assert health and all(status == 200 for status, _ in health), health
    assert max(s for _, s in health) < 10
    assert _metric(srv.port, 'idp_admission_shed_total{class="sso"}') >= len(tally.shed_ms)
    assert _metric(srv.port, 'idp_admission_admitted_total{class="sso"}') >= len(tally.ok_ms)


def _spray(port: int, end_at: float, tally: Tally) -> None:
    """Wrong passwords for made-up accounts, each try from another address (X-Forwarded-For)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    jar: dict[str, str] = {}
    conn.request("GET", "/login")
    resp = conn.getresponse()
    page = resp.read().decode()
    _cookies(resp, jar)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    assert token, page[:500]
    while time.perf_counter() < end_at:
        body = urlencode({"csrf_token": token.group(1), "username": f"nobody-{secrets.token_hex(4)}",
                          "password": "Winter2026!", "next": "/"})
        ip = f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"
        t0 = time.perf_counter()
        try:
            conn.request("POST", "/login", body=body, headers={
                "Content-Type": "application/x-www-form-urlencoded", "Cookie": _cookie_header(jar),
                "X-Forwarded-For": ip})
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            with tally.lock:
                tally.errors.append(repr(exc))
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            continue
        tally.add(resp.status, (time.perf_counter() - t0) * 1000, resp.headers, data)
    conn.close()


def test_password_spraying_does_not_starve_sso(server: Fixture) -> None:
    srv, pool, jars, _ = server
    pool.refill(1000)
    queue = list(pool.take_all())
    spray, sso = Tally(), Tally()
    end_at = time.perf_counter() + FLOOD_S + 1.0
    sprayers = [threading.Thread(target=_spray, args=(srv.port, end_at, spray), daemon=True) for _ in range(24)]
    for t in sprayers:
        t.start()
    time.sleep(1.0)    # the burst is on
    users = [threading.Thread(target=_sso_client, args=(srv.port, jars[i], queue, end_at, sso, 0.05), daemon=True)
             for i in range(2)]
    for t in users:
        t.start()
    for t in [*sprayers, *users]:
        t.join(90)

    assert not spray.errors and not sso.errors, (spray.errors[:3], sso.errors[:3])
    # the wrong passwords are answered (200: the form again) or shed; never another 5xx
    assert all(s < 500 for s in spray.other), spray.other
    assert len(spray.shed_ms) >= 10, "the spraying burst is shed in its own class"
    for h in spray.shed_headers:
        assert h["retry-after"].isdigit()
    # the users with a session still get their SSO answers
    answered = len(sso.ok_ms) + len(sso.shed_ms)
    assert sso.other == [] and answered >= 10
    assert len(sso.ok_ms) >= 0.9 * answered, (len(sso.ok_ms), len(sso.shed_ms))
    assert _metric(srv.port, 'idp_admission_shed_total{class="signin"}') >= len(spray.shed_ms)


def test_shed_requests_are_one_aggregated_event_per_class(server: Fixture) -> None:
    """Runs after the floods: each class that shed requests has `overload` events (reason overloaded) whose
    counts add up to at most the shed requests, never a row per shed request."""
    srv, _, _, db_path = server
    if _metric(srv.port, 'idp_admission_shed_total{class="sso"}') == 0:    # run alone: flood first
        test_sso_flood_is_shed_at_once_and_health_answers(server)
    shed = _metric(srv.port, 'idp_admission_shed_total{class="sso"}')
    assert shed > 0
    rows: list[tuple[str, str, str]] = []
    deadline = time.monotonic() + 30    # the reporter writes at most every 10 s
    while time.monotonic() < deadline:
        with sqlite3.connect(db_path) as conn:
            rows = conn.execute("SELECT reason, outcome, detail FROM sso_events WHERE event_type = 'overload'"
                                ).fetchall()
        if any('"sso"' in r[2] for r in rows):
            break
        time.sleep(1.0)
    assert rows and all(r[0] == "overloaded" and r[1] == "error" for r in rows), rows
    details = [json.loads(r[2]) for r in rows]
    sso_rows = [d for d in details if d["class"] == "sso"]
    assert sso_rows and len(sso_rows) < 10
    assert 0 < sum(d["shed"] for d in sso_rows) <= shed
