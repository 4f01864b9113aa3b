"""The built wheel stands alone: installed into a fresh venv, it initialises, serves the login page and the console.

Builds the wheel from this repository's sources, installs it with its runtime dependencies from the package index
into a new venv (no editable install, no source tree on the path, no test extra), then drives the installed `idp`
command and `idp serve` over HTTP on a free loopback port.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import venv
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest
import requests

from ..conftest import ROOT

pytestmark = pytest.mark.slow

ADMIN_PASSWORD = "wheel test admin password"
ADMIN_TOTP: list[pyotp.TOTP] = []  # the admin's authenticator, enrolled by the `server` fixture
# A distribution needs only these; copying them keeps the build away from stale build/ folders in the checkout.
SOURCES = ("pyproject.toml", "README.md", "idp")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(*args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: int = 300) -> str:
    r = subprocess.run([str(a) for a in args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(map(str, args))} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r.stdout


def build_wheel(tmp: Path) -> Path:
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, src / name)
    dist = tmp / "dist"
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps",
        "-w", dist, src, cwd=tmp)
    wheels = list(dist.glob("idp-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def fresh_venv(tmp: Path, wheel: Path) -> Path:
    """A new venv with the wheel and its runtime dependencies only; returns its bin folder."""
    home = tmp / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(home)
    bin_dir = home / "bin"
    run(bin_dir / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel, cwd=tmp,
        env=clean_env(tmp))
    return bin_dir


def clean_env(tmp: Path) -> dict[str, str]:
    """This process's environment without anything that points back at the checkout or its venv."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("IDP_", "PYTHON", "VIRTUAL_ENV", "GUNICORN", "FLASK_"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p and not p.startswith(str(ROOT)))
    env["XDG_RUNTIME_DIR"] = str(tmp)  # gunicorn's control socket lands here, not in a folder other runs share
    return env


@pytest.fixture
def installed(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    wheel = build_wheel(tmp_path)
    bin_dir = fresh_venv(tmp_path, wheel)
    port = free_port()
    env = clean_env(tmp_path) | {
        "IDP_INSTANCE_DIR": str(tmp_path / "instance"),
        "IDP_CERT_DIR": str(tmp_path / "certs"),
        "IDP_BASE_URL": f"http://127.0.0.1:{port}",
        "IDP_BIND": f"127.0.0.1:{port}",
        "IDP_WORKERS": "1",
        "IDP_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "IDP_ARGON2_TIME_COST": "1", "IDP_ARGON2_MEMORY_KIB": "1024", "IDP_ARGON2_PARALLELISM": "1",
    }
    return bin_dir, env


@pytest.fixture
def server(installed: tuple[Path, dict[str, str]], tmp_path: Path) -> Iterator[str]:
    bin_dir, env = installed
    work = tmp_path / "run"  # not the checkout: nothing may be found relative to it
    work.mkdir()
    # the code that runs is the installed copy, and the test SP library is not there
    where = run(bin_dir / "python", "-c",
                "import idp, importlib.util; print(idp.__file__); print(importlib.util.find_spec('saml2'))",
                env=env, cwd=work).split()
    assert Path(where[0]).is_relative_to(bin_dir.parent), where
    assert where[1] == "None", "pysaml2 is a test dependency, not a runtime one"

    assert "created admin user 'admin'" in run(bin_dir / "idp", "db", "init", env=env, cwd=work)
    # the console needs a second factor: the admin's authenticator app gets the printed otpauth:// URI
    uri = run(bin_dir / "idp", "users", "mfa-enroll", "admin", env=env, cwd=work).strip()
    ADMIN_TOTP[:] = [pyotp.parse_uri(uri)]
    run(bin_dir / "idp", "certs", "generate", env=env, cwd=work)
    base = env["IDP_BASE_URL"]
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([bin_dir / "idp", "serve"], env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"idp serve exited:\n{(tmp_path / 'serve.log').read_text()[-3000:]}"
            try:
                if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, f"idp serve did not answer:\n{(tmp_path / 'serve.log').read_text()}"
            time.sleep(0.2)
        yield base
    finally:
        # gunicorn's arbiter and its worker: the whole session, whatever happened above
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        finally:
            log.close()


def test_installed_wheel_serves_login_and_admin_console(server: str) -> None:
    s = requests.Session()
    page = s.get(f"{server}/login", timeout=10)
    assert page.status_code == 200
    assert '<form method="post" action="/login"' in page.text
    assert 'name="username"' in page.text and 'name="password"' in page.text

    stylesheet = re.search(r'<link rel="stylesheet" href="([^"]+)"', page.text)
    assert stylesheet, page.text
    css = s.get(server + stylesheet.group(1), timeout=10)
    assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")
    assert css.text.strip()

    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf, page.text
    r = s.post(f"{server}/login", data={"csrf_token": csrf.group(1), "next": "/admin/apps", "username": "admin",
                                        "password": ADMIN_PASSWORD}, timeout=10)
    assert r.status_code == 200 and r.url.startswith(f"{server}/mfa?"), r.url  # the console asks for the code
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', r.text)
    assert csrf and 'name="code"' in r.text, r.text[:2000]
    r = s.post(f"{server}/mfa", data={"csrf_token": csrf.group(1), "next": "/admin/apps",
                                      "code": ADMIN_TOTP[0].now()}, timeout=10)
    assert r.status_code == 200, r.text[:2000]
    assert r.url == f"{server}/admin/apps", (r.url, r.history)
    assert "<h1>Connected apps</h1>" in r.text
