"""`idp serve`: the production server (gunicorn), with a control socket of its own."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
from pathlib import Path

import click

from idp.config import load_settings

# The longest Unix socket path Linux takes (sockaddr_un.sun_path holds 108 bytes with the final NUL).
_MAX_SOCKET_PATH = 107


def default_bind(base_url: str) -> str:
    """Listen where IDP_BASE_URL points when that is this machine; behind a proxy, on 127.0.0.1:5000."""
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    if parts.hostname in ("127.0.0.1", "localhost", "0.0.0.0", "::1"):  # noqa: S104 - only echoes the admin's URL
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
        return f"{host}:{port}"
    return "127.0.0.1:5000"


def control_socket_args(instance_dir: Path, bind: str) -> list[str]:
    """gunicorn's control socket for this server: one per instance folder and bind address.

    gunicorn (25.1+) otherwise opens $XDG_RUNTIME_DIR/gunicorn.ctl or ~/.gunicorn/gunicorn.ctl, one path
    for every server of the user, so a second server takes the socket over and the first to stop deletes
    it. When the path would not fit in a Unix socket address, the server runs without one.
    """
    label = re.sub(r"[^A-Za-z0-9.]+", "-", bind).strip("-")
    if not label or len(label) > 40:
        label = hashlib.sha256(bind.encode()).hexdigest()[:16]
    path = instance_dir / f"gunicorn-{label}.ctl"
    if len(os.fsencode(path)) > _MAX_SOCKET_PATH:
        return ["--no-control-socket"]
    return ["--control-socket", str(path)]


# Threads per worker when admission control is on (IDP_MAX_QUEUE_MS > 0): every arriving request reaches the app
# at once, so the admission middleware can queue it in the process (FIFO per class, a few executing) or refuse it
# with 503 right away; with one thread per worker the backlog would sit in the kernel, out of the app's sight.
ADMISSION_THREADS = 64


@click.command("serve", help="Run the production server (gunicorn). Bind: IDP_BIND or derived from IDP_BASE_URL.")
@click.option("--bind", envvar="IDP_BIND", default=None)
@click.option("--workers", envvar="IDP_WORKERS", type=click.IntRange(1, 64), default=None)
@click.option("--threads", envvar="IDP_THREADS", type=click.IntRange(1, 256), default=None,
              help=f"Threads per worker (default {ADMISSION_THREADS} with admission control, IDP_MAX_QUEUE_MS > 0, "
                   "else 1). The admission limits, not the threads, bound the requests executing at once.")
def serve_cmd(bind: str | None, workers: int | None, threads: int | None) -> None:
    s = load_settings()
    bind = bind or default_bind(s.base_url)
    workers = workers or (os.cpu_count() or 1)
    if threads is None:
        threads = ADMISSION_THREADS if s.max_queue_ms > 0 else 1
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or shutil.which("gunicorn")
    if gunicorn is None:
        raise click.ClickException("gunicorn is not installed in this environment")
    # threads > 1: gunicorn runs gthread workers; the app learns the count (admission keeps threads for /healthz)
    os.environ["IDP_THREADS"] = str(threads)
    args = [gunicorn, "idp.wsgi:app", "--bind", bind, "--workers", str(workers), "--threads", str(threads),
            "--timeout", "30", "--graceful-timeout", "20", "--keep-alive", "5", "--backlog", "256",
            "--worker-connections", "256",
            "--max-requests", "20000", "--max-requests-jitter", "2000", "--access-logfile", "-",
            *control_socket_args(s.instance_dir, bind)]
    admission = (f"admission budget {s.max_queue_ms} ms" if s.max_queue_ms > 0 and threads > 1
                 else "admission control off")
    click.echo(f"serving {s.base_url} on {bind} with {workers} workers x {threads} threads ({admission})")
    os.execv(gunicorn, args)  # noqa: S606 - fixed program, admin-controlled arguments
