"""Independent OpenID Connect relying parties for the tests: openid-client (Node) and pyoidc (`oic`)."""

from __future__ import annotations

from typing import Any

from tests.oidc_rp.base import RelyingParty, RPError, RPResult

RP_KINDS = ("openid-client", "pyoidc")


def make_rp(kind: str, issuer: str, client_id: str, **kwargs: Any) -> RelyingParty:
    """A relying party of `kind` (one of RP_KINDS) registered as `client_id` at `issuer` (discovery runs now)."""
    if kind == "openid-client":
        from tests.oidc_rp.node_rp import NodeRP

        return NodeRP(issuer, client_id, **kwargs)
    if kind == "pyoidc":
        from tests.oidc_rp.pyoidc_rp import PyoidcRP

        return PyoidcRP(issuer, client_id, **kwargs)
    raise ValueError(f"unknown RP kind {kind}")


__all__ = ["RP_KINDS", "RPError", "RPResult", "RelyingParty", "make_rp"]
