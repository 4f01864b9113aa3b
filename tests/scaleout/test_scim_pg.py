"""SCIM filters on PostgreSQL: userName comparisons are case-insensitive there too (lower() on both sides, where a
plain = or LIKE on PostgreSQL is case-sensitive), LIKE wildcards in a value are literal, and lastModified compares
as a timestamp."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from flask.testing import FlaskClient

from idp.extensions import db

from ..scim_kit import Scim, make_token
from .conftest import needs_services

pytestmark = needs_services


def _names(scim: Scim, expression: str) -> list[str]:
    resp = scim.get(f"/Users?filter={quote(expression)}&sortBy=userName")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return [r["userName"] for r in resp.get_json()["Resources"]]


@pytest.mark.parametrize(("expression", "expected"), [
    ('userName eq "bjensen"', ["BJensen"]),
    ('userName eq "BJENSEN"', ["BJensen"]),
    ('userName co "JEN"', ["BJensen", "jenny_x"]),
    ('userName sw "J"', ["jenny_x"]),
    ('userName co "_"', ["jenny_x"]),            # an underscore is a character, not LIKE's wildcard
    ('userName co "%"', []),
    ('emails co "EXAMPLE.ORG"', ["jenny_x"]),
    ('userName sw "b" or externalId eq "J-1"', ["BJensen", "jenny_x"]),
    ('externalId eq "j-1"', []),                  # externalId is case-exact
    ('meta.lastModified gt "2000-01-01T00:00:00Z" and userName ew "EN"', ["BJensen"]),
])
def test_filters_on_postgresql(client: FlaskClient, expression: str, expected: list[str]) -> None:
    assert db.engine.dialect.name == "postgresql"
    scim = Scim(client, make_token("pg"))
    scim.create_user("BJensen", "bjensen@example.com")
    scim.create_user("jenny_x", "Jenny@Example.org", externalId="J-1")
    scim.create_user("zed", "zed@example.com")
    assert _names(scim, expression) == expected
