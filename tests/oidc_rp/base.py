"""The one interface both test relying parties (node/rp.mjs and pyoidc_rp.py) offer to the tests."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RPResult:
    """Tokens from the token endpoint and the claims of the ID token the RP validated (None: no ID token)."""

    tokens: dict[str, Any]
    claims: dict[str, Any] | None = field(default=None)


class RPError(Exception):
    """A step the RP refused or the server answered with an error; `error` is the OAuth error code if any."""

    def __init__(self, rp: str, step: str, detail: dict[str, Any]) -> None:
        self.rp = rp
        self.step = step
        self.detail = detail
        self.error: str | None = detail.get("error")
        self.error_description: str | None = detail.get("error_description")
        super().__init__(f"{rp} RP, step {step}: {detail}")


class RelyingParty:
    """One registered client at one issuer. Steps, in order:

    `start(scope=..., **params) -> auth_url` (code flow, PKCE S256, state, nonce; `params` are extra authorization
    request parameters such as prompt, max_age, acr_values, login_hint), then the test drives the browser part and
    hands the redirect back with `finish(callback_url) -> RPResult` (code exchange and ID token validation), then
    `userinfo()`, `refresh()`, `logout_url(post_logout_redirect_uri=..., state=...)`; `client_credentials(scope=...)`
    stands alone. Every refusal raises RPError.
    """

    name = "rp"

    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str | None = None,
        redirect_uri: str | None = None,
        token_auth: str | None = None,
    ) -> None:
        self.issuer = issuer
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.token_auth = token_auth or ("client_secret_basic" if client_secret else "none")
        if self.token_auth not in ("client_secret_basic", "client_secret_post", "none"):
            raise ValueError(f"unsupported token_auth {self.token_auth}")

    @staticmethod
    def _random() -> str:
        return secrets.token_urlsafe(24)

    def start(self, scope: str = "openid", **params: Any) -> str:
        raise NotImplementedError

    def finish(self, callback_url: str) -> RPResult:
        raise NotImplementedError

    def userinfo(self) -> dict[str, Any]:
        raise NotImplementedError

    def refresh(self, **params: Any) -> RPResult:
        raise NotImplementedError

    def client_credentials(self, **params: Any) -> dict[str, Any]:
        raise NotImplementedError

    def logout_url(self, **params: Any) -> str:
        raise NotImplementedError
