"""Browser tests: a live IdP (werkzeug server in a thread) driven by Playwright on Debian's chromium.

Recipe from ECOSYSTEM.md: never `playwright install`; pass chromium's path and the
background-networking flags. Screenshots of the main pages go to test-artifacts/screenshots/
(not committed).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from idp import create_app
from idp.extensions import db
from idp.services import users as users_svc

from ..conftest import make_settings, reset_backends
from ..webclient import AUTHENTICATORS, enrol_totp

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
ADMIN_PASSWORD = "admin password 1"
USER_PASSWORD = "user password 1"

pytestmark = pytest.mark.browser


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def pw_browser() -> Iterator[Any]:
    exe = _chromium()
    if exe is None:
        pytest.fail("chromium is not installed: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=ARGS, headless=True)
        yield browser
        browser.close()


class LiveIdp:
    def __init__(self, app: Any, url: str) -> None:
        self.app = app
        self.url = url


@pytest.fixture
def live_idp(tmp_path: Path, key_template: Path) -> Iterator[LiveIdp]:
    """A real HTTP server on a free loopback port; IDP_BASE_URL is its URL, so every emitted URL works."""
    yield from _serve(tmp_path, key_template, "127.0.0.1")


@pytest.fixture
def live_idp_localhost(tmp_path: Path, key_template: Path) -> Iterator[LiveIdp]:
    """As live_idp, but IDP_BASE_URL is http://localhost:PORT: WebAuthn needs a domain as RP ID (never an IP
    address) and a secure context (localhost is one, over plain http too)."""
    yield from _serve(tmp_path, key_template, "localhost")


def _serve(tmp_path: Path, key_template: Path, host: str) -> Iterator[LiveIdp]:
    import socket
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    base = f"http://{host}:{port}"
    settings = make_settings(tmp_path, key_template, base_url=base)
    app = create_app(settings)
    with app.app_context():
        reset_backends(app)
        AUTHENTICATORS.clear()
        pw = app.extensions["idp.passwords"]
        users_svc.add_group("engineering")
        admin = users_svc.add_user("admin", email="admin@example.com", password_hash=pw.hash(ADMIN_PASSWORD),
                                   first_name="Ada", is_admin=True)
        enrol_totp(admin)  # the console needs the second factor: `login` enters the admin's code
        users_svc.add_user("alice", email="alice@example.com", password_hash=pw.hash(USER_PASSWORD),
                           first_name="Alice", last_name="Liddell", groups=["engineering"])
        users_svc.add_user("bob", email="bob@example.com", password_hash=pw.hash(USER_PASSWORD), first_name="Bob")
        db.session.commit()  # services leave the commit to the outer layer: here, the set-up
        db.session.remove()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LiveIdp(app, base)
    finally:
        server.shutdown()
        thread.join(5)
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def page(pw_browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = pw_browser.new_context(viewport={"width": 1366, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    yield pg
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        shot(pg, f"FAILED-{request.node.name}")
    context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: Any, call: Any) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


def shot(page: Any, name: str) -> None:
    """Keep a screenshot as a test artifact (test-artifacts/screenshots, not committed)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:120]
    page.screenshot(path=str(ARTIFACTS / f"{safe}.png"), full_page=True)


def login(page: Any, base: str, username: str, password: str, next_path: str = "/") -> None:
    """Sign in on the login page; a user with an authenticator (the admin) then enters the code the IdP asks
    for (the console's step-up)."""
    page.goto(f"{base}/login?next={next_path}")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#submit")
    page.wait_for_load_state("networkidle")
    if username in AUTHENTICATORS and page.locator("#code").count():
        page.fill("#code", AUTHENTICATORS[username].code())
        page.click("#submit")
        page.wait_for_load_state("networkidle")


os.environ.setdefault("PW_TEST_SCREENSHOT_DIR", str(ARTIFACTS))
