"""pytest fixtures for the independent RPs. Use from any test module or conftest:

    from tests.oidc_rp.fixtures import oidc_rp_kind, make_oidc_rp  # noqa: F401

`oidc_rp_kind` runs the test once per RP; `make_oidc_rp(issuer, client_id, ...)` builds that RP.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.oidc_rp import RP_KINDS, RelyingParty, make_rp


@pytest.fixture(params=RP_KINDS)
def oidc_rp_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_oidc_rp(oidc_rp_kind: str) -> Callable[..., RelyingParty]:
    def make(issuer: str, client_id: str, **kwargs: Any) -> RelyingParty:
        return make_rp(oidc_rp_kind, issuer, client_id, **kwargs)

    return make
