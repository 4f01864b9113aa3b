"""What a sign-in flow hands back to the web layer: one value per possible result, never an exception.

The web layer renders each kind (a POST form, a redirect to the login or second-factor page, an
error page or a SAML error Response); the flow has already decided everything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from ..errors import SamlFlowError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Issued(Generic[T]):
    """The request is answered: `result` is the protocol's message for the app (e.g. a SAML Response)."""

    result: T


@dataclass(frozen=True, slots=True)
class NeedsLogin:
    """Nobody is signed in: the parked request `token` continues after the password (or a passkey)."""

    token: str


@dataclass(frozen=True, slots=True)
class NeedsReauthentication:
    """Someone is signed in, but this request needs the credentials again (ForceAuthn, app session timeout)."""

    token: str


@dataclass(frozen=True, slots=True)
class NeedsSecondFactor:
    """The app's policy asks for a second factor this session has not passed. `passkey_required`: only a passkey
    or security key will do (the app requires phishing-resistant sign-in)."""

    token: str
    passkey_required: bool = False


@dataclass(frozen=True, slots=True)
class Denied:
    """The flow stopped: `error` carries the reason code, the event context and (when a registered
    endpoint of the app is known) where the app is told, e.g. by a signed SAML error Response."""

    error: SamlFlowError


Interaction = NeedsLogin | NeedsReauthentication | NeedsSecondFactor
