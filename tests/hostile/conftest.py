"""Fixtures for the hostile-input suite: the functional fixtures plus probes that notice file reads and connections."""

from __future__ import annotations

import os
import re
import select
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from idp.models import User
from idp.services import users as users_svc

from ..functional.conftest import *  # noqa: F403 - app, client, alice, bob, browser, make_sp, sp_keys
from ..functional.conftest import PASSWORD
from ..webclient import enrol_totp

ADMIN_PASSWORD = "admin passphrase 1"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class ConnectionProbe:
    """A listening socket on 127.0.0.1: `url` to put into hostile input, `connected()` to ask whether anyone dialled.

    The kernel completes a TCP handshake into the backlog without accept(), so a pending connection makes the
    listening socket readable: nothing is served, and nothing can slip through unseen.
    """

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/probe.dtd"

    def connected(self, wait: float = 0.3) -> bool:
        readable, _, _ = select.select([self.sock], [], [], wait)
        return bool(readable)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def conn_probe() -> Iterator[ConnectionProbe]:
    probe = ConnectionProbe()
    yield probe
    probe.close()


class FifoProbe:
    """A named pipe that records whether anyone opened it for reading (as tests/unit/conftest.py fifo_probe).

    Put its path where a hostile document names a file (entity, DTD, XInclude). Reading it would block the reader
    until the writer thread answers, so an open is noticed; one probe per message, because a second reader of a
    finished pipe would hang.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        os.mkfifo(path)
        self._opened = threading.Event()
        self._thread = threading.Thread(target=self._write, daemon=True)
        self._thread.start()

    def _write(self) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY)  # blocks until a reader opens the pipe
            self._opened.set()
            try:
                os.write(fd, b'<!ENTITY leak "leaked-file-content">')
            finally:
                os.close(fd)
        except OSError:
            pass

    def opened(self, wait: float = 0.05) -> bool:
        return self._opened.wait(wait)

    def close(self) -> None:
        if not self._opened.is_set():  # release the writer: open the read end ourselves
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
            self._thread.join(2)
            os.close(fd)
        self._thread.join(2)


@pytest.fixture
def fifos(tmp_path: Path) -> Iterator[Callable[[], FifoProbe]]:
    made: list[FifoProbe] = []

    def make() -> FifoProbe:
        probe = FifoProbe(tmp_path / f"probe-{len(made)}.dtd")
        made.append(probe)
        return probe

    yield make
    for probe in made:
        probe.close()


@pytest.fixture
def admin(app: Flask) -> User:
    pw = app.extensions["idp.passwords"]
    user = users_svc.add_user("admin", email="admin@example.com", password_hash=pw.hash(ADMIN_PASSWORD),
                              first_name="Ada", is_admin=True)
    enrol_totp(user)  # the console needs a session that passed the second factor (webclient.login_admin)
    return user


def csrf_token(client: FlaskClient, path: str = "/login") -> str:
    m = _CSRF.search(client.get(path).get_data(as_text=True))
    assert m, f"no form with a CSRF token on {path}"
    return m.group(1)


def login(client: FlaskClient, username: str = "alice", password: str = PASSWORD, next_url: str = "/",
          **headers: Any) -> Any:
    """The password step only (for the admin console, `webclient.login_admin` adds the second factor)."""
    token = csrf_token(client)
    return client.post("/login", data={"csrf_token": token, "username": username, "password": password,
                                       "next": next_url}, headers=headers or None)

