"""Webhook figures (issue 17): deliveries per wall-second, and what one org-wide `sso.success` subscription costs
an SSO round trip.

`webhook_delivery_per_s`: webhook jobs drained by the worker loop (cli.worker.Worker.run(once=True), what `idp
worker --once` runs) into a receiver on loopback in its own process (a threading http.server answering 204).
Notices are recorded beforehand (sso.success events, one subject each, outside the timed region); a delivery is
the claim (committed), the endpoint read, the secret opened, the Standard Webhooks signature, the POST and its
answer, the delivery-log row and the job marked done (committed). Wall time: the receiver's answer is part of it.

`sso_webhook_ratio`: SSO round trips in-process (bench.inprocess.SsoBench) on two copies of the bench database,
one with an enabled org-wide endpoint subscribed to `sso.success` (each SSO then builds the CloudEvent and
inserts one outbox job in its own transaction; nothing is sent) and one without; runs interleaved, the median of
the per-round ratios (with / without) per CPU-second.

Run alone (a short check): python -m bench.webhooks [--quick]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess  # noqa: S404 - the receiver runs in its own process
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
from flask import Flask
from sqlalchemy import func, select

from idp import audit, create_app
from idp.cli.worker import Worker
from idp.config import load_settings
from idp.errors import EventContext
from idp.events import record_event
from idp.extensions import db
from idp.models import OutboxJob
from idp.reasons import Reason
from idp.services import webhooks as wh

from .fixtures import INPROCESS_BASE_URL, TARGET_SLUG, Workspace


def webhook_env(ws: Workspace) -> dict[str, str]:
    """The bench instance's settings; webhooks may reach loopback (the receiver, over http)."""
    return {**ws.env(INPROCESS_BASE_URL), "IDP_WEBHOOK_ALLOW_PRIVATE": "1"}


def open_webhook_app(ws: Workspace) -> Flask:
    return create_app(load_settings(webhook_env(ws)))


class Receiver:
    """A webhook receiver (http.server, one thread per request) in its own process; GET /count says how many
    POSTs it got."""

    def __init__(self, log: Path) -> None:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Receiver:
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen([sys.executable, "-m", "bench.webhooks", "--receiver",  # noqa: S603
                                          str(self.port)], stdout=fh, stderr=subprocess.STDOUT,
                                         cwd=str(Path(__file__).resolve().parent.parent))
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                self.count()
                return self
            except requests.RequestException:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the webhook receiver did not start: {self.log.read_text()[-1000:]}")

    def count(self) -> int:
        return int(requests.get(f"http://127.0.0.1:{self.port}/count", timeout=5).text)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


def _serve_receiver(port: int) -> None:
    got = [0]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            got[0] += 1
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:  # noqa: N802
            body = str(got[0]).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def subscribe(app: Flask, url: str) -> int:
    with app.app_context(), audit.acting_as("bench"):
        row, _ = wh.add_endpoint(url, ["sso.success"], description="bench")
        db.session.commit()
        ep_id = row.id
        db.session.remove()
    return ep_id


def enqueue_notices(app: Flask, n: int, prefix: str) -> None:
    with app.app_context():
        for i in range(n):
            record_event(EventContext(event_type="sso", app_slug=TARGET_SLUG, username=f"{prefix}{i:06d}"), Reason.OK,
                         client_ip="127.0.0.1", user_agent="bench")
        db.session.commit()
        db.session.remove()


def measure_webhook_deliveries(app: Flask, receiver: Receiver, *, jobs: int, runs: int) -> dict[str, Any]:
    """`runs` times: record `jobs` notices, then time the worker draining them into the receiver."""
    rates, walls = [], []
    for r in range(runs + 1):   # the first run warms up (imports, connections, the subscription cache)
        n = max(10, jobs // 5) if r == 0 else jobs
        before = receiver.count()
        enqueue_notices(app, n, f"wh{r}-")
        with app.app_context():
            worker = Worker(f"bench-{r}")
            t0 = time.perf_counter()
            worker.run(once=True)
            wall = time.perf_counter() - t0
            db.session.remove()
        delivered = receiver.count() - before
        if delivered != n or worker.ran != n:
            raise RuntimeError(f"{delivered} of {n} webhooks delivered ({worker.ran} jobs ran)")
        if r > 0:
            rates.append(n / wall)
            walls.append(round(wall, 3))
    per_wall_s = statistics.median(rates)
    print(f"    webhook deliveries to a loopback receiver: {per_wall_s:,.1f}/wall-s "
          f"({runs} x {jobs} jobs: {', '.join(f'{x:.1f}' for x in rates)})", flush=True)
    return {"per_wall_s": round(per_wall_s, 1), "jobs_per_run": jobs, "runs": runs, "wall_s": walls,
            "what": "worker claims, signs (Standard Webhooks HMAC-SHA256), POSTs a CloudEvent to a loopback "
                    "receiver answering 204, logs the attempt and marks the job done; one commit per claim and "
                    "per job"}


def webhook_section(b: Any, ws: Workspace, root: Path) -> None:
    """Both figures on SQLite copies of the bench database."""
    from .fixtures import clone_instance
    from .inprocess import SsoBench
    from .timing import measure_interleaved, paired_ratio

    plan = b.plan
    b.step(f"webhooks (SQLite): deliveries into a loopback receiver, {plan.lifecycle_runs} x "
           f"{plan.max_deliveries} jobs")

    def deliveries() -> None:
        receiver = Receiver(root / "webhook-receiver.log").start()
        try:
            app = open_webhook_app(clone_instance(ws, "webhooks"))
            subscribe(app, receiver.url)
            d = measure_webhook_deliveries(app, receiver, jobs=plan.max_deliveries, runs=plan.lifecycle_runs)
            with app.app_context():
                db.session.remove()
                db.engine.dispose()
        finally:
            receiver.stop()
        b.put("webhook_delivery_per_s", d["per_wall_s"])
        b.details["webhook_delivery"] = d

    def sso_cost() -> None:
        plain_ws, sub_ws = clone_instance(ws, "sso-no-webhook"), clone_instance(ws, "sso-webhook")
        plain_app, sub_app = open_webhook_app(plain_ws), open_webhook_app(sub_ws)
        subscribe(sub_app, "http://127.0.0.1:9/never-called")   # nothing is sent: no worker runs here
        benches = {"sso round trip, no webhook": SsoBench(plain_app, plain_ws),
                   "sso round trip, org-wide sso.success webhook": SsoBench(sub_app, sub_ws)}
        b.details["sso_webhook_sample"] = benches["sso round trip, org-wide sso.success webhook"].check_sample()
        with sub_app.app_context():
            queued = db.session.scalar(select(func.count()).select_from(OutboxJob)
                                       .where(OutboxJob.kind == wh.KIND)) or 0
            db.session.remove()
        if queued < 1:
            raise RuntimeError("the subscribed SSO enqueued no webhook job")
        m = list(measure_interleaved({k: sb.variant() for k, sb in benches.items()}, seconds=plan.seconds,
                                     runs=plan.runs).values())
        b.put("sso_no_webhook_per_s", m[0].per_cpu_s)
        b.put("sso_webhook_per_s", m[1].per_cpu_s)
        b.put("sso_webhook_ratio", paired_ratio(m[1], m[0]), 3)
        b.details["sso_webhook"] = {"without": m[0].to_dict(), "with": m[1].to_dict()}

    b.optional("webhook_delivery", deliveries)
    b.step(f"SSO round trip with / without an org-wide sso.success webhook ({plan.runs} x {plan.seconds:.0f}s, "
           "interleaved)")
    b.optional("sso_webhook", sso_cost)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--receiver", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receiver:
        _serve_receiver(args.receiver)
        return 0
    import json
    import shutil
    import tempfile

    from .fixtures import create_bench_app, make_workspace
    from .run import FULL, QUICK, Bench

    b = Bench(QUICK if args.quick else FULL, args.quick)
    root = Path(tempfile.mkdtemp(prefix="idp-bench-webhooks-"))
    try:
        ws = make_workspace(root)
        create_bench_app(ws)
        webhook_section(b, ws, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps({"results": b.results, "errors": b.errors}, indent=2))
    return 1 if b.errors else 0


if __name__ == "__main__":
    sys.exit(main())
