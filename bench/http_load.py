"""SSO over real HTTP: the production server (`idp serve`, gunicorn) as a subprocess, and a threaded client.

Each client thread logs in once through /login (its own IdP session), then sends pre-generated signed
Redirect AuthnRequests over one keep-alive connection and expects 200 with the POST form. Requests that
start after the warm-up and finish before the end of the window are counted.
"""

from __future__ import annotations

import http.client
import os
import socket
import statistics
import subprocess  # noqa: S404 - starts this project's own server
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from .fixtures import PASSWORD, USERNAME, RequestPool, Workspace, csrf_token

COOKIE = "idp_session"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    workers: int
    threads: int | None          # None: `idp serve`'s default
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_server(ws: Workspace, workers: int, threads: int | None = None, timeout_s: float = 60.0,
                 extra_env: dict[str, str] | None = None) -> Server:
    """`idp serve` (gunicorn idp.wsgi:app) on a free loopback port, pointed at the bench instance; `threads`
    None keeps the server's default (what an admin running `idp serve` gets)."""
    port = free_port()
    idp_cmd = Path(sys.executable).parent / "idp"
    if not idp_cmd.exists():
        raise RuntimeError(f"{idp_cmd} not found: install the project into the venv (make install)")
    env = dict(os.environ)
    env.update(ws.env(f"http://127.0.0.1:{port}"))
    env.update({"IDP_BIND": f"127.0.0.1:{port}", "IDP_WORKERS": str(workers)})
    env.pop("IDP_THREADS", None)
    if threads is not None:
        env["IDP_THREADS"] = str(threads)
    env.update(extra_env or {})
    log_path = ws.root / "gunicorn.log"
    log = log_path.open("wb")
    proc = subprocess.Popen([str(idp_cmd), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT,  # noqa: S603
                            cwd=str(ws.root))
    server = Server(proc=proc, port=port, workers=workers, threads=threads, log_path=log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}; see {log_path}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/saml/metadata")
            ok = conn.getresponse().status == 200
            conn.close()
            if ok and len(_worker_pids(proc.pid)) >= workers:
                return server
        except OSError:
            pass
        time.sleep(0.2)
    stop_server(server)
    raise RuntimeError(f"the server did not answer within {timeout_s:.0f}s; see {log_path}")


def stop_server(server: Server) -> None:
    """SIGTERM to the gunicorn master this bench started (graceful), SIGKILL if it does not exit."""
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(timeout=10)


def _worker_pids(master: int) -> list[int]:
    try:
        text = Path(f"/proc/{master}/task/{master}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def server_cpu_s(master: int) -> float:
    """utime + stime of the gunicorn master and its workers, from /proc (Linux); 0.0 elsewhere."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in [master, *_worker_pids(master)]:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])   # utime, stime (fields 14, 15 of proc(5))
    return total / tick


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs from /proc/stat (Linux); (0, 0) elsewhere."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)   # idle + iowait
    return float(sum(fields[:8]) - idle), float(sum(fields[:8]))


# ---------------------------------------------------------------- client

def _cookies(resp: http.client.HTTPResponse, jar: dict[str, str]) -> None:
    for header in resp.headers.get_all("Set-Cookie") or []:
        c: SimpleCookie = SimpleCookie()
        c.load(header)
        for name, morsel in c.items():
            jar[name] = morsel.value


def _cookie_header(jar: dict[str, str]) -> str:
    return "; ".join(f"{k}={v}" for k, v in jar.items())


def http_login(port: int) -> dict[str, str]:
    """Log in through the login form (GET for the CSRF token, POST the password); returns the cookie jar."""
    jar: dict[str, str] = {}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", "/login")
    resp = conn.getresponse()
    page = resp.read().decode()
    _cookies(resp, jar)
    body = urlencode({"csrf_token": csrf_token(page), "username": USERNAME, "password": PASSWORD, "next": "/"})
    conn.request("POST", "/login", body=body, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": _cookie_header(jar)})
    resp = conn.getresponse()
    resp.read()
    _cookies(resp, jar)
    conn.close()
    if resp.status != 303 or COOKIE not in jar:
        raise RuntimeError(f"HTTP login failed: {resp.status}")
    return jar


@dataclass
class ClientStats:
    done: list[tuple[float, float]] = field(default_factory=list)   # (start, latency s)
    errors: list[str] = field(default_factory=list)
    shed: int = 0          # deliberate 503s with Retry-After (admission control), not errors


def _client(port: int, jar: dict[str, str], queue: deque[str], start_at: float, end_at: float,
            stats: ClientStats) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Cookie": _cookie_header(jar), "User-Agent": "idp-bench/1 (http.client)"}
    while time.perf_counter() < start_at:
        time.sleep(0.001)
    while True:
        t0 = time.perf_counter()
        if t0 >= end_at:
            break
        try:
            path = queue.popleft()
        except IndexError:
            stats.errors.append("request pool exhausted")
            break
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            stats.errors.append(f"{type(exc).__name__}: {exc}")
            conn.close()
            continue
        t1 = time.perf_counter()
        if resp.status == 503 and resp.getheader("Retry-After"):
            stats.shed += 1        # shed by admission control: back off as a browser's retry would (capped)
            time.sleep(min(float(resp.getheader("Retry-After") or 1), 1.0))
            continue
        if resp.status != 200 or b'name="SAMLResponse"' not in body:
            stats.errors.append(f"HTTP {resp.status}: {body[:200]!r}")
            continue
        stats.done.append((t0, t1 - t0))
    conn.close()


def run_load(server: Server, pool: RequestPool, *, clients: int, warmup_s: float, seconds: float,
             expected_rate: float) -> dict[str, Any]:
    """Drive `clients` keep-alive connections for warm-up + window; returns throughput, latency and CPU."""
    s0 = time.perf_counter()
    jars = [http_login(server.port) for _ in range(clients)]
    s1 = time.perf_counter()
    pool.refill(min(int(expected_rate * (warmup_s + seconds) * 2.5) + 200, 80_000))
    queue = pool.take_all()
    login_s, pool_s, pool_n = s1 - s0, time.perf_counter() - s1, len(queue)
    stats = [ClientStats() for _ in range(clients)]
    t_start = time.perf_counter() + 0.2
    t_window = t_start + warmup_s
    t_end = t_window + seconds
    threads = [threading.Thread(target=_client, args=(server.port, jars[i], queue, t_start, t_end, stats[i]),
                                daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    while time.perf_counter() < t_window:
        time.sleep(0.005)
    srv0, cli0, w0, m0 = server_cpu_s(server.proc.pid), time.process_time(), time.perf_counter(), machine_cpu()
    while time.perf_counter() < t_end:
        time.sleep(0.005)
    srv1, cli1, w1, m1 = server_cpu_s(server.proc.pid), time.process_time(), time.perf_counter(), machine_cpu()
    for t in threads:
        t.join(timeout=60)
    window = [(s, lat) for st in stats for s, lat in st.done if s >= t_window and s + lat <= t_end]
    errors = [e for st in stats for e in st.errors]
    shed = sum(st.shed for st in stats)
    latencies = sorted(lat * 1000.0 for _, lat in window)
    n = len(window)
    if n < 20:
        raise RuntimeError(f"only {n} HTTP SSO round trips completed; errors: {errors[:3]}")
    q = statistics.quantiles(latencies, n=100)
    server_cpu = srv1 - srv0
    return {
        "per_s": n / seconds,
        "p50_ms": q[49], "p95_ms": q[94], "p99_ms": q[98], "mean_ms": statistics.fmean(latencies),
        "max_ms": latencies[-1], "requests": n, "errors": len(errors), "error_samples": errors[:3], "shed": shed,
        "clients": clients, "workers": server.workers, "threads_per_worker": server.threads,
        "warmup_s": warmup_s, "window_s": round(w1 - w0, 3),
        "server_cpu_ms_per_request": round(1000.0 * server_cpu / n, 3) if server_cpu else None,
        "server_cpu_s": round(server_cpu, 2), "client_cpu_s": round(cli1 - cli0, 2),
        # cores the IdP kept busy over the window (its CPU seconds per second), the load generator's, and the
        # machine's idle share (everything else on it included)
        "server_cores_busy": round(server_cpu / (w1 - w0), 2),
        "client_cores_busy": round((cli1 - cli0) / (w1 - w0), 2),
        "machine_idle_pct": round(100.0 * (1 - (m1[0] - m0[0]) / (m1[1] - m0[1])), 1) if m1[1] > m0[1] else None,
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "setup": {"logins_s": round(login_s, 2), "request_pool": pool_n, "request_pool_s": round(pool_s, 2)},
    }


def tail_log(server: Server, lines: int = 20) -> str:
    """The last lines of the server's output that are not access-log lines of /saml/sso."""
    try:
        text = server.log_path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join([line for line in text.splitlines() if "GET /saml/sso" not in line][-lines:])
