"""Admission control around the WSGI app (idp.admission holds the decisions).

Installed by create_app around app.wsgi_app when IDP_MAX_QUEUE_MS > 0 and the server runs threads (IDP_THREADS
> 1, set by `idp serve`). Every request is classified by method and path; health, readiness, /metrics and
static files bypass admission. A request that cannot be answered within the budget gets a small static 503 page
with Retry-After at once: no template, no database, no session.

Shed requests are counted in /metrics (idp_admission_shed_total{class=...}); a reporter thread of each worker
logs a warning and records one aggregated `overload` event (reason `overloaded`, the count in its detail) per
class at most every REPORT_EVERY_S seconds, off the request path: a row per shed request would defeat shedding.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .. import metrics
from ..admission import Admission, ShedLog, WorkClass

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger("idp.admission")

REPORT_EVERY_S = 10.0
# a queued request that gets no slot in this many budgets gives up (a slot held far longer than predicted: a
# database lock wait, a statement timeout) and is answered 503 like a shed one
WAIT_SAFETY_BUDGETS = 8
WAIT_SAFETY_MIN_S = 2.0

BYPASS_EXACT = frozenset({"/healthz", "/readyz", "/metrics"})
BYPASS_PREFIX = ("/static/",)
# POSTs that check a password, TOTP code, recovery code or passkey: argon2 hashing and friends
SIGNIN_POST = frozenset({"/login", "/mfa", "/mfa/recovery", "/passkeys/login", "/account/password",
                         "/admin/users/new"})
# writes that may hash a new password (admin console, REST API, SCIM): argon2 too, so in the sign-in class
SIGNIN_WRITE_PREFIX = ("/admin/users/", "/api/v1/users", "/scim/v2/Users")
# issuing a SAML response or an OIDC code / token (signing)
SSO_EXACT = frozenset({"/saml/sso", "/saml/artifact", "/oauth2/authorize", "/oauth2/token"})
SSO_PREFIX = ("/saml/continue/", "/oauth2/authorize/")

_BUSY_SSO = (b"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Busy</title></head><body>"
             b"<h1>The sign-in service is busy</h1><p>Too many sign-ins at this moment. Please try again in a few "
             b"seconds.</p></body></html>\n")
_BUSY = (b"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Busy</title></head><body>"
         b"<h1>The service is busy</h1><p>Please try again in a few seconds.</p></body></html>\n")

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def classify(method: str, path: str) -> WorkClass | None:
    """The class of a request; None: always answered (ops endpoints and static files)."""
    if path in BYPASS_EXACT or path.startswith(BYPASS_PREFIX):
        return None
    if method == "POST" and path in SIGNIN_POST:
        return WorkClass.SIGNIN
    if method in ("POST", "PUT", "PATCH") and path.startswith(SIGNIN_WRITE_PREFIX) and (
            not path.startswith("/admin/") or path.endswith("/password")):
        return WorkClass.SIGNIN
    if path in SSO_EXACT or path.startswith(SSO_PREFIX) or (path.startswith("/apps/") and path.endswith("/sso")):
        return WorkClass.SSO
    return WorkClass.OTHER


class _Release:
    """The response iterable, releasing the admission slot when the server closes it."""

    def __init__(self, body: Iterable[bytes], release: Callable[[], None]) -> None:
        self._body = body
        self._release = release

    def __iter__(self) -> Any:
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._release()


class AdmissionMiddleware:
    def __init__(self, wsgi_app: WsgiApp, admission: Admission, *, retry_after_s: int = 1,
                 flask_app: Flask | None = None) -> None:
        self.wsgi_app = wsgi_app
        self.admission = admission
        self.retry_after = str(retry_after_s)
        self.flask_app = flask_app
        self.shed_log = ShedLog()
        self.wait_safety_s = max(WAIT_SAFETY_MIN_S, WAIT_SAFETY_BUDGETS * admission.budget_s)
        self.max_body = int(flask_app.config.get("MAX_CONTENT_LENGTH") or 0) if flask_app is not None else 0
        self._reporter_pid: int | None = None
        self._reporter_lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        # the router matches "/" + PATH_INFO.lstrip("/") (werkzeug): `//login` is /login, so classify it as such
        path = "/" + environ.get("PATH_INFO", "").lstrip("/")
        cls = classify(environ.get("REQUEST_METHOD", "GET"), path)
        if cls is None:
            return self.wsgi_app(environ, start_response)
        self._buffer_body(environ)     # a slow body holds a server thread, never an admission slot
        ticket = self.admission.admit(cls)
        if ticket is None:
            return self._shed(cls, start_response)
        if not self.admission.wait(ticket, self.wait_safety_s):
            self.admission.count_shed(cls)
            log.error("admission: a queued %s request got no slot in %.1f s", cls, self.wait_safety_s)
            return self._shed(cls, start_response)
        metrics.count("idp_admission_admitted_total", f'class="{cls}"')
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.admission.release(ticket)

        try:
            body = self.wsgi_app(environ, start_response)
        except BaseException:
            release()
            raise
        return _Release(body, release)

    def _buffer_body(self, environ: dict[str, Any]) -> None:
        """Read the request body before admission (at most MAX_CONTENT_LENGTH + 1 bytes: a larger one is still
        refused 413 by the app). A client that trickles its body keeps this thread, not a slot of its class."""
        if environ.get("REQUEST_METHOD") in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return                       # the app answers 400
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if length <= 0 and not chunked:
            return
        limit = self.max_body + 1 if self.max_body else length
        if length > limit - 1 and self.max_body:
            return                       # too large: the app refuses it (413) without reading it
        stream = environ.get("wsgi.input")
        if stream is None:
            return
        data = stream.read(length if length > 0 else limit)
        environ["wsgi.input"] = io.BytesIO(data)
        if length > 0:
            environ["CONTENT_LENGTH"] = str(len(data))

    def _shed(self, cls: WorkClass, start_response: StartResponse) -> list[bytes]:
        page = _BUSY_SSO if cls is not WorkClass.OTHER else _BUSY
        start_response("503 Service Unavailable", [
            ("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(page))),
            ("Retry-After", self.retry_after), ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"), ("Content-Security-Policy", "default-src 'none'"),
        ])
        metrics.count("idp_admission_shed_total", f'class="{cls}"')
        self.shed_log.add(cls)
        if self._reporter_pid != os.getpid():
            self._start_reporter()
        return [page]

    # ------------------------------------------------------------ the reporter (one thread per worker process)

    def _start_reporter(self) -> None:
        with self._reporter_lock:
            if self._reporter_pid == os.getpid():
                return
            self._reporter_pid = os.getpid()
            threading.Thread(target=self._report_loop, name="idp-admission-report", daemon=True).start()

    def _report_loop(self) -> None:
        while True:
            time.sleep(REPORT_EVERY_S)
            try:
                counts = self.shed_log.drain()
                if counts:
                    self.report(counts)
            except Exception:   # noqa: BLE001 - the reporter must outlive any one failure
                log.exception("admission: the overload report failed")

    def report(self, counts: dict[WorkClass, int]) -> None:
        """Log one warning and record one `overload` event per class for the requests shed since the last report."""
        state = {v.cls.value: f"{v.executing}+{v.waiting}q ~{v.service_ms:.0f}ms" for v in self.admission.snapshot()}
        log.warning("admission: shed %s in the last %.0f s (budget %.0f ms; executing+queued per class: %s)",
                    {str(k): n for k, n in counts.items()}, REPORT_EVERY_S, self.admission.budget_s * 1000, state)
        if self.flask_app is None:
            return
        from ..errors import EventContext
        from ..events import record_event
        from ..extensions import db
        from ..reasons import Reason
        with self.flask_app.app_context():
            try:
                for cls, n in counts.items():
                    ctx = EventContext(event_type="overload", detail={
                        "class": str(cls), "shed": n, "window_s": REPORT_EVERY_S, "worker_pid": os.getpid(),
                        "budget_ms": round(self.admission.budget_s * 1000)})
                    record_event(ctx, Reason.OVERLOADED, client_ip=None, user_agent=None)
                db.session.commit()
            except Exception:   # the event log is down or locked: the warning above stands, shedding goes on
                log.exception("admission: could not record the overload events")
                db.session.rollback()
            finally:
                db.session.remove()


def install(app: Flask) -> None:
    """Wrap app.wsgi_app with admission control: IDP_MAX_QUEUE_MS > 0 in a threaded server (IDP_THREADS > 1, as
    `idp serve` sets it). One thread per process cannot see a backlog (it sits in the kernel); the CLI, tests
    and development servers run without it."""
    s = app.extensions["idp.settings"]
    if s.max_queue_ms <= 0 or s.server_threads <= 1:
        return
    limits = {WorkClass.SIGNIN: s.signin_concurrency, WorkClass.SSO: s.sso_concurrency,
              WorkClass.OTHER: s.other_concurrency}
    # the server's threads that may block here. A request that finds no free thread waits in gunicorn's own queue,
    # out of sight: with many threads, keep a quarter of them free for arrivals to be classified, shed at once or
    # let through (health, readiness, metrics). With few threads (< 16) the queue in the app is short anyway and
    # such a cap would shed at ordinary load: the budget alone decides.
    reserve = s.server_threads // 4
    max_waiting = max(1, s.server_threads - sum(limits.values()) - reserve) if s.server_threads >= 16 else 0
    admission = Admission(limits, s.max_queue_ms / 1000.0, max_waiting=max_waiting,
                          standing_s=s.standing_queue_ms / 1000.0 if s.standing_queue_ms else None)
    app.extensions["idp.admission"] = admission
    app.wsgi_app = AdmissionMiddleware(app.wsgi_app, admission, flask_app=app)  # type: ignore[method-assign]
