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


# ---------------------------------------------------------------- IdP-initiated controls: start URL, RelayState

def assert_refused_page(resp, status: int, reason: str, outcome: str):  # type: ignore[no-untyped-def]
    body = resp.get_data(as_text=True)
    assert resp.status_code == status, body[:400]
    assert "SAMLResponse" not in body and "Traceback" not in body and "evil.example" not in body
    ev = last_event()
    assert (ev.reason, ev.outcome, ev.initiated_by) == (reason, outcome, "idp")
    return ev


def launch(browser, slug: str, relay_state: str | None = None):  # type: ignore[no-untyped-def]
    from urllib.parse import quote
    path = f"/apps/{slug}/sso" + (f"?RelayState={quote(relay_state, safe='')}" if relay_state is not None else "")
    resp = browser.get(path)
    if resp.status_code == 200 and 'name="password"' in resp.get_data(as_text=True):
        resp = browser.login(resp, "alice", PASSWORD)
    return resp


@pytest.mark.parametrize("relay_state", ["https://evil.example/x", "//evil.example/x", "/\\evil.example/x",
                                         "javascript:alert(1)", "HTTPS://evil.example/x"])
def test_absolute_relay_state_refused_without_allow_list(make_sp, browser, alice, relay_state):
    sp = make_sp("pysaml2")
    assert_refused_page(launch(browser, sp.slug, relay_state), 400, "relay_state_not_allowed", "error")


@pytest.mark.parametrize("kind", ["pysaml2", "onelogin"])
def test_start_url_is_the_default_relay_state_and_is_accepted(app, make_sp, browser, alice, kind):
    sp = make_sp(kind)
    assert cli(app, "apps", "set", sp.slug, "--start-url", "https://sp1.example.com/home").exit_code == 0
    form = saml_form(launch(browser, sp.slug))
    assert form is not None and form.action == sp.acs_url and form.relay_state == "https://sp1.example.com/home"
    assert sp.process_response(form.saml_response, None).name_id == "alice"
    # a deep link under the start URL is accepted; a look-alike host is not; a plain path still is
    form = saml_form(launch(browser, sp.slug, "https://sp1.example.com/home/deep?x=1"))
    assert form is not None and form.relay_state == "https://sp1.example.com/home/deep?x=1"
    assert_refused_page(launch(browser, sp.slug, "https://sp1.example.com/homeevil"), 400,
                        "relay_state_not_allowed", "error")
    assert saml_form(launch(browser, sp.slug, "/deep/link")).relay_state == "/deep/link"


def test_relay_state_allow_list_is_exclusive(app, make_sp, browser, alice):
    sp = make_sp("onelogin")
    r = cli(app, "apps", "set", sp.slug, "--relay-state-allow", "https://sp1.example.com/app/",
            "--relay-state-allow", "dashboard")
    assert r.exit_code == 0, r.output
    shown = json.loads(cli(app, "apps", "show", sp.slug, "--format", "json").output)["settings"]
    assert shown["relay_state_allow"] == ["https://sp1.example.com/app/", "dashboard"]
    for ok in ("https://sp1.example.com/app/x", "dashboard"):
        form = saml_form(launch(browser, sp.slug, ok))
        assert form is not None and form.relay_state == ok
    for bad in ("https://sp1.example.com/other", "https://evil.example/x", "/deep/link", "dashboardx"):
        assert_refused_page(launch(browser, sp.slug, bad), 400, "relay_state_not_allowed", "error")
    assert cli(app, "apps", "set", sp.slug, "--clear-relay-state-allow").exit_code == 0
    assert saml_form(launch(browser, sp.slug, "/deep/link")).relay_state == "/deep/link"


def test_relay_state_settings_refuse_bad_values(app, make_sp):
    sp = make_sp("onelogin")
    for args in (("--start-url", "javascript:alert(1)"), ("--start-url", "https://sp1.example.com/" + "x" * 80),
                 ("--relay-state-allow", "")):
        r = cli(app, "apps", "set", sp.slug, *args)
        assert r.exit_code != 0, args


def test_idp_initiated_off(app, make_sp, browser, alice):
    sp = make_sp("pysaml2")
    assert cli(app, "apps", "set", sp.slug, "--idp-initiated", "off").exit_code == 0
    assert json.loads(cli(app, "apps", "show", sp.slug, "--format", "json").output)["settings"]["idp_initiated"] \
        is False
    assert_refused_page(launch(browser, sp.slug), 403, "idp_initiated_disabled", "denied")
    # SP-initiated sign-in still works
    req = sp.authn_request("redirect")
    form = saml_form(browser.sso(req, "alice", PASSWORD))
    assert sp.process_response(form.saml_response, req.request_id).name_id == "alice"
    assert_refused_page(launch(browser, sp.slug), 403, "idp_initiated_disabled", "denied")   # signed in too
    home = browser.get("/").get_data(as_text=True)
    assert "My apps" in home and f'data-slug="{sp.slug}"' not in home
    assert cli(app, "apps", "set", sp.slug, "--idp-initiated", "on").exit_code == 0
    assert f'data-slug="{sp.slug}"' in browser.get("/").get_data(as_text=True)
    assert saml_form(launch(browser, sp.slug)) is not None


# ---------------------------------------------------------------- WantAssertionsSigned is enforced

def test_sign_response_refused_when_metadata_wants_signed_assertions(app, make_sp, browser, alice):
    sp = make_sp("onelogin", want_assertions_signed=True, want_response_signed=False)
    r = cli(app, "apps", "set", sp.slug, "--sign", "response")
    assert r.exit_code != 0 and "WantAssertionsSigned" in r.output
    assert json.loads(cli(app, "apps", "show", sp.slug, "--format", "json").output)["settings"]["sign"] == "both"
    assert cli(app, "apps", "set", sp.slug, "--sign", "assertion").exit_code == 0
    req = sp.authn_request("redirect")
    assert sp.process_response(saml_form(browser.sso(req, "alice", PASSWORD)).saml_response,
                               req.request_id).name_id == "alice"
    other = make_sp("onelogin", want_assertions_signed=False, want_response_signed=True)
    assert cli(app, "apps", "set", other.slug, "--sign", "response").exit_code == 0
