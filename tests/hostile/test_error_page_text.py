"""Attacker-chosen text never appears on the IdP's own error pages: the user reads a fixed message and the event
id, the request's details (an unknown Issuer, a decoding error) go to the event log for admins.
"""

from __future__ import annotations

import html

import pytest

from ..raw_requests import authn_request_xml
from .saml_tools import SLO_URL, assert_refused, logout_request, send

LURE = "your password expired, re-enter it at https://evil.example/x"
# every word of the lure that is not also ordinary page text
LURE_PARTS = ["password expired", "re-enter", "evil.example", "https://evil"]


def _assert_not_echoed(body: str) -> None:
    text = html.unescape(body)
    assert LURE not in text
    for part in LURE_PARTS:
        assert part not in text, part


@pytest.mark.parametrize("binding", ["redirect", "post"])
def test_unknown_issuer_is_not_echoed_on_the_sso_error_page(client, alice, binding):  # type: ignore[no-untyped-def]
    resp = send(client, binding, "/saml/sso", authn_request_xml(LURE))
    ev = assert_refused(resp, 403, "unknown_sp")
    body = resp.get_data(as_text=True)
    _assert_not_echoed(body)
    assert "does not know" in body                                 # the fixed message for the reason
    assert LURE in ev.detail["message"] and ev.sp_entity_id == LURE  # the details are for admins


@pytest.mark.parametrize("binding", ["redirect", "post"])
def test_unknown_issuer_is_not_echoed_on_the_logout_error_page(client, alice, binding):  # type: ignore[no-untyped-def]
    resp = send(client, binding, SLO_URL.removeprefix("http://localhost"), logout_request(LURE, "alice"))
    ev = assert_refused(resp, 403, "unknown_sp", event_type="logout")
    _assert_not_echoed(resp.get_data(as_text=True))
    assert LURE in ev.detail["message"]


def test_undecodable_request_text_is_not_echoed(client, alice):  # type: ignore[no-untyped-def]
    resp = client.get("/saml/slo?SAMLRequest=" + "your%20password%20expired")
    ev = assert_refused(resp, 400, "malformed_request", event_type="logout")
    _assert_not_echoed(resp.get_data(as_text=True))
    assert "could not be read" in resp.get_data(as_text=True)
    assert ev.detail["message"]
