"""OAuth 2.0 / OpenID Connect errors: each carries its wire `error` code, HTTP status and the event's Reason.

One family, raised by the oidc core and the OIDC flows, turned into a response in one place in web/: a JSON
error body at the token, revocation, introspection and userinfo endpoints (RFC 6749 5.2, RFC 6750 3), a
redirect to the client's registered redirect URI at the authorization endpoint (RFC 6749 4.1.2.1, with `iss`,
RFC 9207), or an IdP error page when the redirect URI itself is not trusted (RFC 6749 4.1.2.1, first paragraph).
"""

from __future__ import annotations

from ..reasons import Reason


class OAuthError(Exception):
    """`error` is the OAuth code the client sees; `reason` is the event's code (often the same word);
    `description` is safe to show the client (never a secret, never a stack trace)."""

    error: str = "invalid_request"
    status: int = 400
    reason: Reason = Reason.INVALID_REQUEST

    def __init__(self, description: str, *, reason: Reason | None = None, status: int | None = None) -> None:
        super().__init__(description)
        self.description = description
        if reason is not None:
            self.reason = reason
        if status is not None:
            self.status = status


class InvalidRequest(OAuthError):
    error = "invalid_request"
    reason = Reason.INVALID_REQUEST


class InvalidClient(OAuthError):
    """RFC 6749 5.2: 401, with WWW-Authenticate when the client tried HTTP Basic."""

    error = "invalid_client"
    status = 401
    reason = Reason.INVALID_CLIENT


class InvalidGrant(OAuthError):
    error = "invalid_grant"
    reason = Reason.INVALID_GRANT


class UnauthorizedClient(OAuthError):
    error = "unauthorized_client"
    reason = Reason.UNAUTHORIZED_CLIENT


class UnsupportedGrantType(OAuthError):
    error = "unsupported_grant_type"
    reason = Reason.UNSUPPORTED_GRANT_TYPE


class UnsupportedResponseType(OAuthError):
    error = "unsupported_response_type"
    reason = Reason.UNSUPPORTED_RESPONSE_TYPE


class InvalidScope(OAuthError):
    error = "invalid_scope"
    reason = Reason.INVALID_SCOPE


class AccessDenied(OAuthError):
    """The user or a policy refused (reason: consent_denied, or the policy's own reason code)."""

    error = "access_denied"
    status = 403
    reason = Reason.CONSENT_DENIED


class LoginRequired(OAuthError):
    error = "login_required"
    reason = Reason.LOGIN_REQUIRED


class ConsentRequired(OAuthError):
    error = "consent_required"
    reason = Reason.CONSENT_REQUIRED


class InteractionRequired(OAuthError):
    error = "interaction_required"
    reason = Reason.INTERACTION_REQUIRED


class InvalidToken(OAuthError):
    """RFC 6750 3.1: a bearer token that is expired, revoked, malformed or not ours (401 + WWW-Authenticate)."""

    error = "invalid_token"
    status = 401
    reason = Reason.INVALID_TOKEN


class TemporarilyUnavailable(OAuthError):
    error = "temporarily_unavailable"
    status = 503
    reason = Reason.SIGNING_KEY_UNAVAILABLE


class ServerError(OAuthError):
    error = "server_error"
    status = 500
    reason = Reason.INTERNAL_ERROR
