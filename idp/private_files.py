"""Files only this server's user may read: the instance folder is 0700 and every file in it 0600.

The instance folder holds the SQLite database (password hashes, TOTP secrets, live session ids), the
session-signing key, the data key and the metrics spool. Standard library only: config.py and the app
factory use it before anything else is set up.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("idp")

DIR_MODE = 0o700
FILE_MODE = 0o600


def ensure_private_dir(path: Path) -> None:
    """Create `path` (and its parents) with mode 0700; an existing folder open to others is tightened, with a
    log line for the operator."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        os.chmod(path, DIR_MODE)  # mkdir's mode is filtered by the umask; set it exactly
        return
    if mode & 0o077:
        _tighten(path, mode, DIR_MODE, "folder")


def tighten_files(folder: Path) -> None:
    """Every file directly in `folder` readable or writable by group or others becomes 0600 (logged)."""
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if (stat.S_ISREG(st.st_mode) or stat.S_ISSOCK(st.st_mode)) and st.st_mode & 0o077:
            _tighten(Path(entry.path), stat.S_IMODE(st.st_mode), FILE_MODE, "file")
        elif stat.S_ISDIR(st.st_mode) and st.st_mode & 0o077:
            _tighten(Path(entry.path), stat.S_IMODE(st.st_mode), DIR_MODE, "folder")


def secure_instance_dir(path: Path) -> None:
    """The instance folder 0700 (created if missing) and every file in it 0600."""
    ensure_private_dir(path)
    tighten_files(path)


def create_private_file(path: Path) -> None:
    """Create `path` empty with mode 0600 if it does not exist; an existing one open to others is tightened.

    Used for the SQLite database before SQLite opens it: SQLite gives the -wal and -shm files it creates
    later the mode of the database file, so they are 0600 too.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        for candidate in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"),
                          path.with_name(path.name + "-journal")):
            try:
                mode = stat.S_IMODE(candidate.stat().st_mode)
            except FileNotFoundError:
                continue
            if mode & 0o077:
                _tighten(candidate, mode, FILE_MODE, "file")
        return
    os.close(fd)


def write_private_once(path: Path, text: str) -> str:
    """Write `text` to a new 0600 file at `path` unless another process got there first; returns the file's
    content (the winner's). Temp file with its final mode, fsync, then a hard link: first writer wins."""
    ensure_private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:
        return path.read_text()
    finally:
        os.unlink(tmp)
    return text


def _tighten(path: Path, mode: int, wanted: int, kind: str) -> None:
    try:
        os.chmod(path, wanted)
    except OSError as exc:
        log.error("the %s %s is open to other users (mode %04o) and cannot be tightened: %s", kind, path, mode,
                  exc.strerror)
        return
    log.warning("the %s %s was open to other users (mode %04o); tightened to %04o", kind, path, mode, wanted)
