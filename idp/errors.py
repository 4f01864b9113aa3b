"""One exception family for SSO/SLO failures; each carries the Reason the event log records.

Views never format errors themselves: they raise, and one handler (web/errors.py) records the
event and renders either a 4xx page (no trustworthy ACS) or a signed SAML error to the ACS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .reasons import Reason


@dataclass
class EventContext:
    """What is known about an attempt so far; filled in as the flow progresses."""

    event_type: str = "sso"
    app_slug: str | None = None
    sp_entity_id: str | None = None
    username: str | None = None
    initiated_by: str | None = None
    binding: str | None = None
    request_id: str | None = None
    response_id: str | None = None
    assertion_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    protocol: str | None = None        # saml | oidc (None: SAML for sso / logout events, else protocol-neutral)
    # whether a signed-in user (or a verified client) is behind the attempt; None: when `username` is set. A failed
    # sign-in names the account as typed but is not authenticated (False): its events are rate-limited per IP. Once
    # the password was verified for a real account (a wrong second factor, a passkey-only app) it is authenticated
    authenticated: bool | None = None
    # stored past the per-address limit of anonymous events although not authenticated: a wrong password for an
    # existing account (the sign-in throttle bounds those per address, so they need no share of the junk budget)
    always_stored: bool = False


class SamlFlowError(Exception):
    """A flow stopped. `http_status` for the browser page; `saml_status` when the SP gets an error Response."""

    reason: Reason = Reason.INTERNAL_ERROR
    http_status: int = 400
    saml_status: str | None = None
    saml_sub_status: str | None = None

    def __init__(self, message: str, *, reason: Reason | None = None, http_status: int | None = None,
                 saml_status: str | None = None, saml_sub_status: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        if http_status is not None:
            self.http_status = http_status
        if saml_status is not None:
            self.saml_status = saml_status
        if saml_sub_status is not None:
            self.saml_sub_status = saml_sub_status
        # Set by the flow when a registered ACS is known, so the SP can be told via a SAML status.
        self.reply_to: Any = None
        self.context: EventContext | None = None


class MalformedRequest(SamlFlowError):
    reason = Reason.MALFORMED_REQUEST


class UnknownSession(SamlFlowError):
    reason = Reason.UNKNOWN_SESSION


class LogoutNotBound(SamlFlowError):
    """A LogoutResponse for a logout chain, from a browser other than the one the chain runs in."""

    reason = Reason.LOGOUT_NOT_BOUND


class UnknownSp(SamlFlowError):
    reason = Reason.UNKNOWN_SP
    http_status = 403


class AcsNotRegistered(SamlFlowError):
    reason = Reason.ACS_NOT_REGISTERED
    http_status = 403


class BadSignature(SamlFlowError):
    reason = Reason.BAD_SIGNATURE
    http_status = 403


class RequestExpired(SamlFlowError):
    reason = Reason.REQUEST_EXPIRED


class ReplayedRequest(SamlFlowError):
    reason = Reason.REPLAYED_REQUEST
    http_status = 409


class WrongDestination(SamlFlowError):
    reason = Reason.WRONG_DESTINATION


class UnsupportedBinding(SamlFlowError):
    reason = Reason.UNSUPPORTED_BINDING


class AppDisabled(SamlFlowError):
    reason = Reason.APP_DISABLED
    http_status = 403


class MetadataExpired(SamlFlowError):
    """The app's metadata, fetched under a trust anchor, is past its validUntil: no SSO or SLO with it until a
    fresh verified document is applied."""

    reason = Reason.METADATA_EXPIRED
    http_status = 403


class IdpInitiatedDisabled(SamlFlowError):
    reason = Reason.IDP_INITIATED_DISABLED
    http_status = 403


class RelayStateNotAllowed(SamlFlowError):
    reason = Reason.RELAY_STATE_NOT_ALLOWED
    http_status = 400


class UnknownApp(SamlFlowError):
    reason = Reason.UNKNOWN_APP
    http_status = 404


class AccessDenied(SamlFlowError):
    http_status = 403


class ServiceUnavailable(SamlFlowError):
    reason = Reason.SERVICE_UNAVAILABLE
    http_status = 503


class SigningKeyUnavailable(SamlFlowError):
    reason = Reason.SIGNING_KEY_UNAVAILABLE
    http_status = 503


class AppMisconfigured(SamlFlowError):
    reason = Reason.NO_ENCRYPTION_CERT
    http_status = 503
