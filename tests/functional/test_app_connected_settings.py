"""Issue 15, connected-app settings: the admin's NameID choice is authoritative (a requested NameIDPolicy format
is honoured only when allowed for the app), checked end to end with the independent SPs and the CLI."""

from __future__ import annotations

import base64
import json

import pytest

from idp.saml.constants import NAMEID_EMAIL, NAMEID_PERSISTENT, NAMEID_TRANSIENT

from ..webclient import saml_form
from .conftest import PASSWORD, last_event


def cli(app, *args):  # type: ignore[no-untyped-def]
    result = app.test_cli_runner().invoke(args=list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result


@pytest.mark.parametrize("kind", ["pysaml2", "onelogin"])
def test_requested_email_refused_for_persistent_app(make_sp, browser, alice, kind):
    sp = make_sp(kind, settings={"nameid_format": "persistent"})
    req = sp.authn_request("redirect", name_id_format=NAMEID_EMAIL)
    form = saml_form(browser.sso(req, "alice", PASSWORD))
    assert form is not None and form.action == sp.acs_url
    xml = base64.b64decode(form.saml_response).decode()
    assert "InvalidNameIDPolicy" in xml and "urn:oasis:names:tc:SAML:2.0:status:Requester" in xml
    assert "Assertion" not in xml and "alice@example.com" not in xml
    ev = last_event()
    assert (ev.outcome, ev.reason) == ("error", "unsupported_nameid_format")


def test_configured_and_unspecified_formats_are_honoured(make_sp, browser, alice):
    sp = make_sp("pysaml2", settings={"nameid_format": "persistent"})
    for fmt in (NAMEID_PERSISTENT, "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"):
        req = sp.authn_request("redirect", name_id_format=fmt)
        form = saml_form(browser.sso(req, "alice", PASSWORD))
        res = sp.process_response(form.saml_response, req.request_id)
        assert res.name_id_format == NAMEID_PERSISTENT and "alice" not in res.name_id


def test_allow_list_set_with_cli_lets_the_format_through(app, make_sp, browser, alice):
    sp = make_sp("onelogin", settings={"nameid_format": "persistent"})
    r = cli(app, "apps", "set", sp.slug, "--allowed-nameid-format", "email",
            "--allowed-nameid-format", NAMEID_TRANSIENT)
    assert r.exit_code == 0, r.output
    shown = json.loads(cli(app, "apps", "show", sp.slug, "--format", "json").output)
    assert shown["settings"]["allowed_nameid_formats"] == [NAMEID_EMAIL, NAMEID_TRANSIENT]
    assert "allowed_nameid_formats" in cli(app, "apps", "show", sp.slug).output
    req = sp.authn_request("redirect", name_id_format=NAMEID_EMAIL)
    res = sp.process_response(saml_form(browser.sso(req, "alice", PASSWORD)).saml_response, req.request_id)
    assert (res.name_id_format, res.name_id) == (NAMEID_EMAIL, "alice@example.com")
    # cleared: refused again
    assert cli(app, "apps", "set", sp.slug, "--clear-allowed-nameid-formats").exit_code == 0
    req = sp.authn_request("redirect", name_id_format=NAMEID_EMAIL)
    xml = base64.b64decode(saml_form(browser.send(req)).saml_response).decode()
    assert "InvalidNameIDPolicy" in xml and "Assertion" not in xml


def test_allow_list_refuses_unknown_format(app, make_sp, alice):
    sp = make_sp("onelogin", settings={"nameid_format": "persistent"})
    r = cli(app, "apps", "set", sp.slug, "--allowed-nameid-format", "kerberos")
    assert r.exit_code != 0 and "kerberos" in r.output
