"""A SCIM 2.0 service the IdP provisions into, written by others: scim2-server (python-scim), started on loopback
as its own process, with a bearer token. Stopping it loses what it holds (it keeps resources in memory)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

BIN = Path(sys.executable).parent


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class ScimPeer:
    def __init__(self, log: Path, token: str = "peer-token-1") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = token
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ScimPeer:
        fh = self.log.open("ab")
        self.proc = subprocess.Popen([str(BIN / "scim2-server"), "--hostname", "127.0.0.1", "--port",
                                      str(self.port), "--bearer-token", self.token],
                                     stdout=fh, stderr=subprocess.STDOUT)
        fh.close()
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                if self._get("/ServiceProviderConfig").status_code == 200:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"scim2-server did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Content-Type": "application/scim+json"}

    def _get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, headers=self._headers(), timeout=5)

    def users(self) -> list[dict[str, Any]]:
        r = self._get("/Users?startIndex=1&count=1000")
        r.raise_for_status()
        return list(r.json().get("Resources") or [])

    def user(self, user_name: str) -> dict[str, Any] | None:
        r = self._get("/Users?filter=" + quote(f"userName eq {json.dumps(user_name)}"))
        r.raise_for_status()
        found = r.json().get("Resources") or []
        assert len(found) <= 1
        return found[0] if found else None

    def add_user(self, user_name: str, **attrs: Any) -> str:
        body = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": user_name, **attrs}
        r = requests.post(self.url + "/Users", headers=self._headers(), data=json.dumps(body), timeout=5)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def delete_user(self, remote_id: str) -> None:
        r = requests.delete(f"{self.url}/Users/{remote_id}", headers=self._headers(), timeout=5)
        assert r.status_code == 204, r.text

    def groups(self) -> list[dict[str, Any]]:
        r = self._get("/Groups?startIndex=1&count=1000")
        r.raise_for_status()
        return list(r.json().get("Resources") or [])

    def group(self, display_name: str) -> dict[str, Any] | None:
        found = [g for g in self.groups() if g.get("displayName") == display_name]
        assert len(found) <= 1
        return found[0] if found else None

    def delete_group(self, remote_id: str) -> None:
        r = requests.delete(f"{self.url}/Groups/{remote_id}", headers=self._headers(), timeout=5)
        assert r.status_code == 204, r.text

    def requests_to(self, endpoint: str) -> list[str]:
        """The access-log lines of requests the server got for `endpoint` (e.g. "/Groups")."""
        return [line for line in self.log.read_text(errors="replace").splitlines() if f" {endpoint}" in line]
