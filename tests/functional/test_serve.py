"""`idp serve` as an admin runs it: two servers on one host, each with its own gunicorn control socket."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from idp.cli.serve import control_socket_args

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(home: Path, root: Path, port: int) -> dict[str, str]:
    """One server's environment: its own instance and key folders; HOME (gunicorn's default socket) shared."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8",
        "IDP_INSTANCE_DIR": str(root / "instance"), "IDP_CERT_DIR": str(root / "certs"),
        "IDP_BASE_URL": f"http://127.0.0.1:{port}", "IDP_BIND": f"127.0.0.1:{port}", "IDP_WORKERS": "1",
        "IDP_ADMIN_PASSWORD": "an admin password",
        "IDP_ARGON2_TIME_COST": "1", "IDP_ARGON2_MEMORY_KIB": "1024", "IDP_ARGON2_PARALLELISM": "1",
    }


def idp(env: dict[str, str], *args: str) -> None:
    r = subprocess.run([str(BIN / "idp"), *args], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, f"idp {' '.join(args)}: {r.stdout}{r.stderr}"


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"server exited: {log.read_text()[-3000:]}"
        try:
            if requests.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not become healthy: {log.read_text()[-3000:]}")


def control_sockets(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if stat.S_ISSOCK(p.lstat().st_mode)]


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[list[tuple[int, Path, Path]]]:
    """Two `idp serve` processes at once (one worker each); both are stopped whatever the test does."""
    home = tmp_path / "home"
    home.mkdir()
    servers: list[tuple[int, Path, Path]] = []
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name in ("a", "b"):
            port, root = free_port(), tmp_path / name
            env = server_env(home, root, port)
            idp(env, "db", "init")
            idp(env, "certs", "generate", "--key-type", "ec-p256")
            log = tmp_path / f"{name}.log"
            with log.open("wb") as fh:
                procs.append(subprocess.Popen([str(BIN / "idp"), "serve"], env=env, cwd=root, stdout=fh,
                                              stderr=subprocess.STDOUT))
            servers.append((port, root, log))
        for (port, _, log), proc in zip(servers, procs, strict=True):
            wait_healthy(f"http://127.0.0.1:{port}", proc, log)
        yield servers
    finally:
        for proc in procs:
            stop(proc)


@pytest.mark.slow
def test_two_servers_own_control_sockets(two_servers: list[tuple[int, Path, Path]], tmp_path: Path) -> None:
    """Two servers on one host answer /healthz, and each has a control socket of its own (gunicorn's
    default is one path per user, which the second server would take over)."""
    for port, _, _ in two_servers:
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    assert control_sockets(tmp_path / "home") == [], "nothing at gunicorn's shared default (~/.gunicorn/gunicorn.ctl)"
    paths = []
    for port, root, _ in two_servers:
        (sock,) = control_sockets(root / "instance")
        paths.append(sock)
        # the socket answers for this server: it is bound to this server's port
        r = subprocess.run([str(BIN / "gunicornc"), "-s", str(sock), "-c", "show listeners", "-j"],
                           capture_output=True, text=True, timeout=30, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        assert [lnr["address"] for lnr in json.loads(r.stdout)["listeners"]] == [f"http://127.0.0.1:{port}"]
    assert paths[0] != paths[1]


def test_control_socket_path_is_per_instance_and_bind_and_never_too_long(tmp_path: Path) -> None:
    assert control_socket_args(tmp_path, "127.0.0.1:5000") == [
        "--control-socket", str(tmp_path / "gunicorn-127.0.0.1-5000.ctl")]
    assert control_socket_args(tmp_path, "[::1]:5000") == ["--control-socket", str(tmp_path / "gunicorn-1-5000.ctl")]
    unix = control_socket_args(tmp_path, "unix:/run/idp/a-rather-long-folder-name/gunicorn-socket.sock")
    assert unix[0] == "--control-socket" and len(Path(unix[1]).name) == len("gunicorn-.ctl") + 16
    assert control_socket_args(tmp_path / ("x" * 107), "127.0.0.1:5000") == ["--no-control-socket"]
