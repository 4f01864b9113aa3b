"""idp.oidc.client_auth (which credentials a request carries) and idp.oidc.claims (claims by scope), pure."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from idp.oidc.claims import render_claims
from idp.oidc.client_auth import JWT_BEARER, ClientCredentials, parse_client_credentials
from idp.oidc.errors import InvalidClient, InvalidRequest


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


ASSERTION = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJjbGllbnQtMSJ9.c2ln"   # sub = client-1 (unverified)


@pytest.mark.parametrize(("header", "form", "expected"), [
    (basic("client-1", "s3cret"), {}, ClientCredentials("client_secret_basic", "client-1", "s3cret", basic=True)),
    (basic("client%2D1", "a%2Bb+c"), {}, ClientCredentials("client_secret_basic", "client-1", "a+b c", basic=True)),
    (basic("client-1", "s"), {"client_id": "client-1"},
     ClientCredentials("client_secret_basic", "client-1", "s", basic=True)),
    (None, {"client_id": "c", "client_secret": "s"}, ClientCredentials("client_secret_post", "c", "s")),
    (None, {"client_id": "c"}, ClientCredentials("none", "c")),
    (None, {"client_assertion_type": JWT_BEARER, "client_assertion": ASSERTION},
     ClientCredentials("private_key_jwt", "client-1", assertion=ASSERTION)),
])
def test_one_method(header: str | None, form: dict[str, str], expected: ClientCredentials) -> None:
    assert parse_client_credentials(header, form) == expected


@pytest.mark.parametrize(("header", "form", "error"), [
    (None, {}, InvalidClient),                                                   # nothing at all
    (basic("c", "s"), {"client_secret": "s"}, InvalidRequest),                   # two credentials
    (basic("c", "s"), {"client_id": "d"}, InvalidRequest),                       # two different ids
    (basic("c", "s"), {"client_assertion": ASSERTION, "client_assertion_type": JWT_BEARER}, InvalidRequest),
    (None, {"client_secret": "s"}, InvalidRequest),                              # secret without id
    (None, {"client_id": "c", "client_secret": "s", "client_assertion": ASSERTION,
            "client_assertion_type": JWT_BEARER}, InvalidRequest),
    (None, {"client_assertion": ASSERTION, "client_assertion_type": "urn:x"}, InvalidClient),
    (None, {"client_assertion": ASSERTION}, InvalidClient),
    (None, {"client_assertion": "a.b", "client_assertion_type": JWT_BEARER}, InvalidClient),
    (None, {"client_assertion": ASSERTION, "client_assertion_type": JWT_BEARER, "client_id": "other"},
     InvalidClient),
    ("Bearer abc", {}, InvalidRequest),
    ("Basic", {}, InvalidRequest),
    ("Basic ***", {}, InvalidClient),
    (basic("", "s"), {}, InvalidClient),
    (basic("c", ""), {}, InvalidClient),
    (None, {"client_id": ""}, InvalidRequest),
    (None, {"client_id": "c" * 65}, InvalidRequest),
])
def test_refused(header: str | None, form: dict[str, str], error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_client_credentials(header, form)


FIELDS: dict[str, Any] = {"id": "7", "username": "alice", "email": "alice@example.com", "first_name": "Alice",
                          "last_name": "Liddell", "groups": ["eng", "ops"], "display_name": "Alice Liddell"}


@pytest.mark.parametrize(("mapping", "scopes", "expected"), [
    ({}, ("openid",), {}),
    ({}, ("openid", "email"), {"email": "alice@example.com"}),
    ({}, ("groups",), {"groups": ["eng", "ops"]}),
    ({}, ("profile",), {"name": "Alice Liddell", "given_name": "Alice", "family_name": "Liddell",
                        "preferred_username": "alice"}),
    ({"preferred_username": "email", "email": "username"}, ("profile", "email"),
     {"name": "Alice Liddell", "given_name": "Alice", "family_name": "Liddell",
      "preferred_username": "alice@example.com", "email": "alice"}),
    # plain-named extra entries come with profile; URIs, reserved names and session sources do not
    ({"employee_id": "id", "urn:oid:2.5.4.42": "first_name", "sub": "email", "nonce": "id", "how": "amr"},
     ("profile",), {"name": "Alice Liddell", "given_name": "Alice", "family_name": "Liddell",
                    "preferred_username": "alice", "employee_id": "7"}),
    ({"employee_id": "id"}, ("email",), {"email": "alice@example.com"}),
])
def test_claims_by_scope(mapping: dict[str, str], scopes: tuple[str, ...], expected: dict[str, Any]) -> None:
    assert render_claims(FIELDS, mapping, scopes) == expected


def test_empty_values_are_left_out() -> None:
    fields = {**FIELDS, "last_name": "", "groups": []}
    out = render_claims(fields, {}, ("profile", "groups"))
    assert "family_name" not in out and "groups" not in out


def test_custom_and_formula_sources_become_claims() -> None:
    """Issue 15: admin-defined fields keep their JSON type (a bool is true, not "True"); a formula source is read
    from the value flows.release.claim_fields put under its stored text."""
    fields = {**FIELDS, "contractor": True, "formula:user.email.upper()": "ALICE@EXAMPLE.COM"}
    mapping = {"contractor": "contractor", "shout": "formula:user.email.upper()", "missing": "formula:x"}
    out = render_claims(fields, mapping, ("openid", "profile"))
    assert out["contractor"] is True and out["shout"] == "ALICE@EXAMPLE.COM" and "missing" not in out


def test_the_prepared_subject_lookup_reads_the_same_key() -> None:
    from idp.flows.oidc_subject import PUBLIC_SUBJECT_KEY as FLOW_KEY
    from idp.services.oauth_lookups import PUBLIC_SUBJECT_KEY

    assert PUBLIC_SUBJECT_KEY == FLOW_KEY
