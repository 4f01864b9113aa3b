"""A webhook receiver on loopback for the tests: a threading HTTP server that records every POST, verifies its
Standard Webhooks signature with the reference library (`standardwebhooks`, independent of the IdP's code) and
answers as scripted (a status, optionally after a delay)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    at: float

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")


@dataclass
class Receiver:
    secrets: list[str] = field(default_factory=list)   # a request verifies when one of them verifies it
    received: list[Received] = field(default_factory=list)
    plan: list[tuple[float, int]] = field(default_factory=list)   # (delay seconds, status) per request, in order
    default: tuple[float, int] = (0.0, 200)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                verified = receiver.verify(body, headers)
                with receiver.lock:
                    delay, status = receiver.plan.pop(0) if receiver.plan else receiver.default
                    receiver.received.append(Received(self.path, headers, body, verified, time.time()))
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass   # the IdP gave up waiting (a timeout test)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def verify(self, body: bytes, headers: dict[str, str]) -> bool:
        for secret in self.secrets:
            try:
                Webhook(secret).verify(body, headers)
                return True
            except Exception:  # noqa: BLE001,S112 - the next secret may verify it
                continue
        return False

    def start(self) -> Receiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def respond(self, *plan: int | tuple[float, int]) -> None:
        with self.lock:
            self.plan.extend((0.0, p) if isinstance(p, int) else p for p in plan)

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r.event for r in self.received]

    def unique(self) -> list[dict[str, Any]]:
        """What a receiver deduplicating by webhook-id keeps (the first copy of each)."""
        seen: set[str] = set()
        out = []
        with self.lock:
            for r in self.received:
                if r.webhook_id not in seen:
                    seen.add(r.webhook_id)
                    out.append(r.event)
        return out

    def wait_for(self, n: int, timeout: float = 30.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                if len(self.received) >= n:
                    return
            time.sleep(0.02)
        raise AssertionError(f"the receiver got {len(self.received)} request(s), expected {n}")
