"""Python side of the Node relying party: runs node/rp.mjs (openid-client 6) once per step, JSON in and out."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.oidc_rp.base import RelyingParty, RPError, RPResult

NODE_DIR = Path(__file__).parent / "node"
SCRIPT = NODE_DIR / "rp.mjs"
STEP_TIMEOUT = 60


def node_binary() -> str:
    """The Node.js executable, or a clear error naming the command that installs it."""
    found = shutil.which("node") or shutil.which("nodejs")
    if not found:
        raise RuntimeError("Node.js is missing: `make test-sqlite` installs Debian's nodejs and npm")
    if not (NODE_DIR / "node_modules" / "openid-client" / "package.json").is_file():
        raise RuntimeError("openid-client is missing: `make test-sqlite` runs `npm ci` in tests/oidc_rp/node")
    return found


class NodeRP(RelyingParty):
    name = "openid-client"

    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str | None = None,
        redirect_uri: str | None = None,
        token_auth: str | None = None,
    ) -> None:
        super().__init__(issuer, client_id, client_secret, redirect_uri, token_auth)
        self.node = node_binary()
        self.session: dict[str, Any] = {}

    def _run(self, step: str, **payload: Any) -> dict[str, Any]:
        rp = {"issuer": self.issuer, "client_id": self.client_id, "token_auth": self.token_auth}
        if self.client_secret:
            rp["client_secret"] = self.client_secret
        if self.redirect_uri:
            rp["redirect_uri"] = self.redirect_uri
        request = json.dumps({"step": step, "rp": rp, "session": self.session, **payload})
        proc = subprocess.run(
            [self.node, str(SCRIPT)],
            input=request,
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT,
            cwd=NODE_DIR,
            check=False,
        )
        try:
            answer = json.loads(proc.stdout)
        except json.JSONDecodeError:
            raise RPError(self.name, step, {"name": "NodeFailed", "message": proc.stderr[-2000:]}) from None
        if proc.returncode != 0 or "error" in answer:
            raise RPError(self.name, step, answer.get("error", {"message": proc.stderr[-2000:]}))
        return answer

    def start(self, scope: str = "openid", **params: Any) -> str:
        self.session = {}
        answer = self._run("start", params={"scope": scope, **params})
        self.session = answer["session"]
        return str(answer["auth_url"])

    def finish(self, callback_url: str) -> RPResult:
        answer = self._run("finish", callback_url=callback_url)
        self.session = answer["session"]
        return RPResult(tokens=answer["tokens"], claims=answer["claims"])

    def userinfo(self) -> dict[str, Any]:
        return dict(self._run("userinfo")["userinfo"])

    def refresh(self, **params: Any) -> RPResult:
        answer = self._run("refresh", params={k: str(v) for k, v in params.items()})
        self.session = answer["session"]
        return RPResult(tokens=answer["tokens"], claims=answer["claims"])

    def client_credentials(self, **params: Any) -> dict[str, Any]:
        return dict(self._run("client_credentials", params={k: str(v) for k, v in params.items()})["tokens"])

    def logout_url(self, **params: Any) -> str:
        return str(self._run("logout_url", params={k: str(v) for k, v in params.items()})["logout_url"])
