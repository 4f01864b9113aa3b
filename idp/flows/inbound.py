"""The checks every inbound SAML request passes, in one order, for SSO and SLO alike.

signature (only the app's metadata certificates, the app's algorithms) → Destination → IssueInstant
window (and NotOnOrAfter) → the protocol's own checks (e.g. the ACS) → replay cache. Each failure
raises the SamlFlowError subclass that carries its reason code; nothing is trusted before the
signature check has run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..config import Settings
from ..errors import BadSignature, ReplayedRequest, RequestExpired, WrongDestination
from ..replay import remember_request
from ..saml.bindings import DecodedMessage
from ..saml.signing import SignatureError, allowed_algorithms, is_signed, verify_message
from ..services.apps import AppConfig


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """The parsed fields of a message that the checks read (an AuthnRequest, a LogoutRequest or Response)."""

    kind: str                          # AuthnRequest | LogoutRequest | LogoutResponse (for messages)
    id: str
    issuer: str
    destination: str | None
    issue_instant: datetime
    not_on_or_after: datetime | None
    root: Any                          # the parsed element (enveloped signature)
    param: str = "SAMLRequest"         # the binding's parameter (the Redirect signature covers its name)


@dataclass(frozen=True, slots=True)
class InboundRules:
    endpoint_url: str                  # this IdP's endpoint the request must be addressed to
    signature_required: bool           # refuse unsigned requests
    verify_when_present: bool          # check a signature that is present even when not required
    destination_required: bool         # Destination must be present (always, not only when signed)
    # a signed message must carry Destination: true of the browser bindings (saml-bindings-2.0-os §3.4.5.2,
    # §3.5.5.2), not of SOAP, whose messages go straight to the endpoint (§3.2: Destination optional)
    signed_needs_destination: bool = True


def check_inbound(msg: DecodedMessage, raw_query: bytes | None, req: InboundMessage, app: AppConfig,
                  rules: InboundRules, settings: Settings, now: datetime, *,
                  before_replay: Callable[[], None] | None = None, replay_at_commit: bool = False) -> dict[str, Any]:
    """Run the pipeline; returns facts for the event detail (the signature algorithm when verified).

    `replay_at_commit`: the replay-cache row is written by the caller's commit, not now (see
    DbState.remember_at_commit); a caller that asks for it handles RecordedFirstElsewhere at its commit."""
    detail: dict[str, Any] = {}
    signed = is_signed(msg.binding, msg.signed_query, req.root)
    verified = False
    if signed and (rules.signature_required or rules.verify_when_present):
        try:
            detail["signature_algorithm"] = verify_message(
                msg.binding, raw_query, req.root, req.param, app.saml.signing_certs,
                allowed_algorithms(app.settings.allow_sha1))
        except SignatureError as exc:
            raise BadSignature(f"the {req.kind} signature was rejected: {exc}") from None
        verified = True
    elif rules.signature_required:
        raise BadSignature(f"this app must sign its {req.kind}s and this one is not signed")
    if req.destination is not None and req.destination != rules.endpoint_url:
        raise WrongDestination(f"Destination {req.destination[:200]!r} is not this IdP's endpoint "
                               f"{rules.endpoint_url}")
    if req.destination is None and ((verified and rules.signed_needs_destination) or rules.destination_required):
        # saml-bindings-2.0-os §3.4.5.2 / §3.5.5.2: a signed request MUST carry Destination
        raise WrongDestination(f"a signed {req.kind} must carry this IdP's endpoint as Destination")
    window = timedelta(seconds=settings.request_max_age_s)
    if abs(now - req.issue_instant) > window:
        raise RequestExpired(f"IssueInstant {req.issue_instant.isoformat()} is outside the allowed "
                             f"{settings.request_max_age_s}s window")
    if req.not_on_or_after is not None and now >= req.not_on_or_after:
        raise RequestExpired(f"the {req.kind} has expired (NotOnOrAfter {req.not_on_or_after.isoformat()})")
    if before_replay is not None:
        before_replay()
    if not remember_request(req.issuer, req.id, settings.request_max_age_s, at_commit=replay_at_commit):
        raise ReplayedRequest(f"{req.kind} {req.id[:100]!r} from this app was already used")
    return detail
