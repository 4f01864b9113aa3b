"""Fixtures shared by the unit tests."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest


@pytest.fixture
def fifo_probe(tmp_path: Path):
    """A named pipe that records whether anyone opened it for reading (an entity fetch from the filesystem)."""
    fifo = tmp_path / "probe.dtd"
    os.mkfifo(fifo)
    opened = threading.Event()

    def writer() -> None:
        try:
            fd = os.open(fifo, os.O_WRONLY)  # blocks until a reader opens the pipe
            opened.set()
            try:
                os.write(fd, b'<!ENTITY leak "x">')
            finally:
                os.close(fd)
        except OSError:
            pass

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    state = {"opened": False}

    def was_opened() -> bool:
        state["opened"] = opened.wait(0.3)
        return state["opened"]

    yield fifo, was_opened
    if not opened.is_set():  # release the writer: open the read end ourselves, then let it finish
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        thread.join(2)
        os.close(fd)
    thread.join(2)
