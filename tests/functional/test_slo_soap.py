"""SAML single logout over the SOAP back channel (flows.slo_soap) against a real pysaml2 SP on loopback.

The SP verifies the IdP's signed LogoutRequest with pysaml2 (signature against the IdP's metadata, Destination,
NameID, SessionIndex) and answers with a pysaml2-built SOAP LogoutResponse; every way the answer can fail is a
failure event of its own while the IdP session still ends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from idp.config import Settings

from ..conftest import make_settings
from ..soap_sp import SoapLogoutSP, soap_prefixes
from .conftest import events
from .test_slo import deliver, live_sessions, sign_in

SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
PARTIAL = "urn:oasis:names:tc:SAML:2.0:status:PartialLogout"
SOAP_ACTION = "http://www.oasis-open.org/committees/security"


@pytest.fixture
def settings(tmp_path: Path, key_template: Path, request: pytest.FixtureRequest) -> Settings:
    # the test SPs listen on loopback: allowed here, except where a test asks for the default (param False)
    return make_settings(tmp_path, key_template, saml_backchannel_allow_private=getattr(request, "param", True),
                         saml_backchannel_timeout_s=1.0)


@pytest.fixture
def soap_sp(client: FlaskClient, tmp_path: Path, sp_keys: Any) -> Iterator[Callable[..., SoapLogoutSP]]:
    """Start a SOAP-logout SP, register it as a connected app (its slug in `.slug`)."""
    from idp.services import apps as apps_svc

    idp_md = client.get("/saml/metadata").get_data(as_text=True)
    started: list[SoapLogoutSP] = []

    def factory(mode: str = "ok", **kw: Any) -> SoapLogoutSP:
        n = len(started) + 1
        workdir = tmp_path / f"soap{n}"
        workdir.mkdir()
        sp = SoapLogoutSP(workdir, idp_md, keypair=sp_keys[f"sp{min(n, 3)}"], mode=mode, **kw)
        started.append(sp)
        sp.slug = apps_svc.register_app(sp.metadata_xml().encode(), slug=f"soap-{n}").slug  # type: ignore[attr-defined]
        return sp

    with soap_prefixes():
        yield factory
    for sp in started:
        sp.close()


def end_sessions(app: Flask) -> None:
    r = app.test_cli_runner().invoke(args=["users", "end-sessions", "alice"])
    assert r.exit_code == 0, r.output


def soap_events() -> list[Any]:
    return [e for e in events(event_type="logout") if e.binding == "soap"]


def test_admin_ends_a_session_and_the_sp_is_told_over_soap(app: Flask, soap_sp, browser, alice):  # type: ignore[no-untyped-def]
    sp = soap_sp("ok")
    result = sign_in(browser, sp)
    end_sessions(app)
    assert live_sessions() == 0
    [got] = sp.received
    assert got.verified, got.error           # pysaml2 verified the IdP's signature against the IdP's metadata
    assert (got.name_id, got.session_indexes) == (result.name_id, [result.session_index])
    assert got.headers["content-type"].startswith("text/xml")
    assert got.headers["soapaction"].strip('"') == SOAP_ACTION
    [ev] = soap_events()
    assert (ev.app_slug, ev.reason, ev.outcome, ev.username, ev.request_id) == (
        sp.slug, "logout", "success", "alice", got.request_id)
    assert ev.detail["propagated"] is True and ev.detail["authenticated_by"] == "signature"
    session_ev = [e for e in events(event_type="logout") if e.binding is None][-1]
    assert session_ev.detail["saml_apps_notified"] == {sp.slug: "logout"}
    assert session_ev.detail["saml_apps_not_notified"] == []


@pytest.mark.parametrize(("mode", "reason", "cause"), [
    ("unsigned", "bad_signature", "not signed"),
    ("wrong_irt", "malformed_request", "InResponseTo"),
    ("fault", "backchannel_logout_failed", "SOAP fault"),
    ("error", "backchannel_logout_failed", "HTTP 500"),
    ("failure", "logout_failed", "Responder"),
    ("sleep", "backchannel_logout_failed", "did not answer within"),
])
def test_a_failed_answer_is_a_failure_event_and_the_session_still_ends(app: Flask, soap_sp, browser, alice,  # type: ignore[no-untyped-def]
                                                                      mode, reason, cause):
    sp = soap_sp(mode, delay=2.0)
    sign_in(browser, sp)
    end_sessions(app)
    assert live_sessions() == 0
    assert sp.received and sp.received[0].verified
    [ev] = soap_events()
    assert (ev.app_slug, ev.reason, ev.outcome) == (sp.slug, reason, "error")
    assert cause in ev.detail["error_description"]
    if mode == "sleep":
        assert ev.detail["failure"] == "timeout"
    session_ev = [e for e in events(event_type="logout") if e.binding is None][-1]
    assert session_ev.detail["saml_apps_notified"] == {sp.slug: reason}


@pytest.mark.parametrize("settings", [False], indirect=True)
def test_a_private_address_is_refused_without_the_setting(app: Flask, soap_sp, browser, alice):  # type: ignore[no-untyped-def]
    sp = soap_sp("ok")
    sign_in(browser, sp)
    end_sessions(app)
    assert live_sessions() == 0
    assert sp.received == []                 # nothing was sent
    [ev] = soap_events()
    assert (ev.reason, ev.outcome) == ("backchannel_logout_failed", "error")
    assert "IDP_SAML_BACKCHANNEL_ALLOW_PRIVATE" in ev.detail["error_description"]


def test_apps_of_a_session_are_told_in_parallel(app: Flask, soap_sp, make_sp, browser, alice):  # type: ignore[no-untyped-def]
    slow, fast = soap_sp("sleep", delay=0.5), soap_sp("sleep", delay=0.3)   # each answers well within 1 s
    front = make_sp("pysaml2")                 # front channel only: cannot be told without the browser
    for sp in (slow, fast, front):
        sign_in(browser, sp)
    end_sessions(app)
    assert {e.app_slug: e.reason for e in soap_events()} == {slow.slug: "logout", fast.slug: "logout"}
    session_ev = [e for e in events(event_type="logout") if e.binding is None][-1]
    assert session_ev.detail["saml_apps_not_notified"] == [front.slug]
    # both requests were on the wire at once: each SP was asked before the other answered (in turn, the second
    # would only be asked after the first answered)
    [slow_got], [fast_got] = slow.received, fast.received
    assert slow_got.verified and fast_got.verified
    assert slow_got.answered is not None and fast_got.answered is not None
    assert max(slow_got.arrived, fast_got.arrived) < min(slow_got.answered, fast_got.answered)


def test_front_channel_chain_logs_out_a_soap_only_app_first(soap_sp, make_sp, browser, alice):  # type: ignore[no-untyped-def]
    initiator = make_sp("pysaml2")
    soap_only = soap_sp("ok", front_channel=False)
    r1 = sign_in(browser, initiator)
    r2 = sign_in(browser, soap_only)
    logout = initiator.logout_request(r1.name_id, r1.session_index, "redirect")
    kind, where = deliver(browser, browser.send(logout))
    assert live_sessions() == 0
    [got] = soap_only.received
    assert got.verified and got.name_id == r2.name_id
    # no browser step was needed: the initiator gets its answer at once, a full Success
    assert kind == "redirect" and where.startswith(initiator.slo_url)
    from urllib.parse import urlsplit
    status = initiator.process_logout_response("redirect", query=urlsplit(where).query,
                                               request_id=logout.request_id)
    assert (status, initiator.last_logout_sub_status) == (SUCCESS, None)
    [ev] = soap_events()
    assert (ev.app_slug, ev.reason, ev.initiated_by) == (soap_only.slug, "logout", "idp")


def test_front_channel_chain_is_partial_when_the_soap_only_app_fails(soap_sp, make_sp, browser, alice):  # type: ignore[no-untyped-def]
    initiator = make_sp("pysaml2")
    soap_only = soap_sp("fault", front_channel=False)
    r1 = sign_in(browser, initiator)
    sign_in(browser, soap_only)
    logout = initiator.logout_request(r1.name_id, r1.session_index, "redirect")
    kind, where = deliver(browser, browser.send(logout))
    from urllib.parse import urlsplit
    status = initiator.process_logout_response("redirect", query=urlsplit(where).query,
                                               request_id=logout.request_id)
    assert (status, initiator.last_logout_sub_status) == (SUCCESS, PARTIAL)
    assert [e.reason for e in soap_events()] == ["backchannel_logout_failed"]
