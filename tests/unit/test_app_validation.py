"""Per-value rules of a connected app's settings (services.apps.validation), shared by the CLI and the console:
the per-app issuer, start URL, RelayState allow-list entries, allowed NameID formats, and the expired-metadata
warning."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from idp.services import ServiceError
from idp.services.apps.validation import (
    stale_metadata_warning,
    validate_allowed_nameid_format,
    validate_issuer,
    validate_relay_state_entry,
    validate_start_url,
)


@pytest.mark.parametrize("value", [
    "https://idp.example.com/tenants/acme", "http://idp.example.com", "HTTPS://IDP.EXAMPLE.COM/x?y=1#z",
    "urn:example:idp:acme", "URN:oid:1.3.6.1.4.1.5923", "https://idp.example.com/" + "x" * 1000,
])
def test_issuer_accepted(value: str) -> None:
    assert validate_issuer(value) == value


@pytest.mark.parametrize(("value", "message"), [
    ("", "1-1024 characters"),
    ("https://idp.example.com/" + "x" * 1001, "1-1024 characters"),
    (" https://idp.example.com", "spaces or control characters"),
    ("https://idp.example.com/\t", "spaces or control characters"),
    ("https://idp.example.com/\u2028", "spaces or control characters"),
    ("https://idp.example.com/<script>", "not allowed in a URI"),
    ('https://idp.example.com/"x', "not allowed in a URI"),
    ("https://idp.example.com/a\\b", "not allowed in a URI"),
    ("idp.example.com", "absolute URI"),
    ("/saml/metadata", "absolute URI"),
    ("https:/idp.example.com", "absolute URI"),
    ("https://", "absolute URI"),
    ("https://[::1", "absolute URI"),
    ("ftp://idp.example.com", "absolute URI"),
    ("javascript:alert(1)", "absolute URI"),
    ("urn:acme", "absolute URI"),
    ("urn::acme", "absolute URI"),
])
def test_issuer_refused(value: str, message: str) -> None:
    with pytest.raises(ServiceError) as refused:
        validate_issuer(value)
    assert message in str(refused.value) and refused.value.field == "issuer"


@pytest.mark.parametrize(("value", "field"), [
    ("javascript:alert(1)", "start_url"), ("/home", "start_url"), ("https://[::1/x", "start_url"),
    ("https://app.example.com/" + "x" * 80, "start_url"),
])
def test_start_url_refused(value: str, field: str) -> None:
    with pytest.raises(ServiceError) as refused:
        validate_start_url(value)
    assert refused.value.field == field


@pytest.mark.parametrize("value", ["", "   ", "ftp://files.example.com/", "//evil.example/x", "<b>", "https://[::1/"])
def test_relay_state_entry_refused(value: str) -> None:
    with pytest.raises(ServiceError) as refused:
        validate_relay_state_entry(value)
    assert refused.value.field == "relay_state_allow"


def test_relay_state_entries_and_formats_accepted() -> None:
    assert validate_start_url("https://app.example.com/home") == "https://app.example.com/home"
    for entry in ("dashboard", "/deep/link", "https://app.example.com/x/"):
        assert validate_relay_state_entry(entry) == entry
    uri = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
    assert validate_allowed_nameid_format(uri) == uri
    with pytest.raises(ServiceError) as refused:
        validate_allowed_nameid_format("urn:oasis:names:tc:SAML:2.0:nameid-format:kerberos")
    assert refused.value.field == "allowed_nameid_formats"


NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(("sp", "warns"), [
    (None, False),
    ({"valid_until": None}, False),
    ({"valid_until": "2031-01-01T00:00:00+00:00"}, False),
    ({"valid_until": "2029-12-31T23:59:00+00:00"}, True),
    ({"valid_until": "2015-01-17T11:39:11"}, True),          # naive: UTC
])
def test_stale_metadata_warning(sp: dict[str, str | None] | None, warns: bool) -> None:
    warning = stale_metadata_warning(sp, NOW)
    assert (warning is not None) == warns
    if warning:
        assert "is in the past" in warning and "ask the SP for fresh metadata" in warning
