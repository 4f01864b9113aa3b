"""Machine codes every SSO outcome carries: Outcome and Reason enums."""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    SUCCESS = "success"
    DENIED = "denied"
    ERROR = "error"


class Reason(StrEnum):
    OK = "ok"
    LOGOUT = "logout"
    # request validation (SAML)
    UNKNOWN_SP = "unknown_sp"
    ACS_NOT_REGISTERED = "acs_not_registered"
    BAD_SIGNATURE = "bad_signature"
    REQUEST_EXPIRED = "request_expired"
    REPLAYED_REQUEST = "replayed_request"
    WRONG_DESTINATION = "wrong_destination"
    MALFORMED_REQUEST = "malformed_request"
    UNSUPPORTED_BINDING = "unsupported_binding"
    UNSUPPORTED_NAMEID_FORMAT = "unsupported_nameid_format"
    NO_PASSIVE = "no_passive"
    NO_AUTHN_CONTEXT = "no_authn_context"
    APP_DISABLED = "app_disabled"
    METADATA_EXPIRED = "metadata_expired"      # the app's trust-anchored metadata is past its validUntil
    UNKNOWN_APP = "unknown_app"
    IDP_INITIATED_DISABLED = "idp_initiated_disabled"     # /apps/<slug>/sso for an app with --idp-initiated off
    RELAY_STATE_NOT_ALLOWED = "relay_state_not_allowed"   # an IdP-initiated RelayState outside the app's allow-list
    USER_DISABLED = "user_disabled"
    # HTTP-Artifact resolution (event_type "artifact"): an authenticated ArtifactResolve for an artifact that was
    # never issued (or is long gone), has expired, was already resolved, or was issued to another app
    UNKNOWN_ARTIFACT = "unknown_artifact"
    ARTIFACT_EXPIRED = "artifact_expired"
    ARTIFACT_REPLAYED = "artifact_replayed"
    ARTIFACT_WRONG_APP = "artifact_wrong_app"
    MISSING_ATTRIBUTE = "missing_attribute"
    # an attribute (or the NameID) the app releases has no value for this user, or its formula failed, and the
    # app says --on-missing deny (Salesforce's NoCustomAttrValue)
    ATTRIBUTE_UNAVAILABLE = "attribute_unavailable"
    # an app's stored release no longer compiles (a field it reads was removed elsewhere): an error, not a denial
    RELEASE_MISCONFIGURED = "release_misconfigured"
    NO_ENCRYPTION_CERT = "no_encryption_cert"
    # policy
    USER_NOT_PERMITTED = "user_not_permitted"
    IP_NOT_ALLOWED = "ip_not_allowed"
    MFA_REQUIRED = "mfa_required"
    PHISHING_RESISTANT_REQUIRED = "phishing_resistant_required"   # the app accepts only a passkey / security key
    MFA_FAILED = "mfa_failed"
    MFA_SUSPENDED = "mfa_suspended"
    PASSKEY_FAILED = "passkey_failed"        # a passkey assertion or registration refused (detail says why)
    PASSKEY_CLONED = "passkey_cloned"        # a valid signature with a sign counter that did not increase
    # sign-in (event_type "signin")
    BAD_CREDENTIALS = "bad_credentials"
    THROTTLED = "throttled"
    SESSION_EXPIRED = "session_expired"
    POLICY_ERROR = "policy_error"
    # admin console (event_type "admin")
    ADMIN_REQUIRED = "admin_required"            # signed in, but not an admin
    ADMIN_MFA_REQUIRED = "admin_mfa_required"    # an admin action from a session without a (recent) second factor
    ADMIN_IP_DENIED = "admin_ip_denied"          # outside the org's admin IP ranges
    # factors (event_type "account"): what the user sees on /account
    MFA_ENROLLED = "mfa_enrolled"
    MFA_RESET = "mfa_reset"                  # every factor removed (admin or the user)
    MFA_REMOVED = "mfa_removed"              # one factor removed (a passkey)
    MFA_UNSUSPENDED = "mfa_unsuspended"      # a suspended TOTP factor restored by an admin
    RECOVERY_CODE_USED = "recovery_code_used"
    ENROLMENT_REFUSED = "enrolment_refused"
    ENROLMENT_LINK_INVALID = "enrolment_link_invalid"
    STEP_UP_REQUIRED = "step_up_required"    # an account security change without a recent second factor
    # OpenID Connect / OAuth 2.0 (protocol "oidc"): the OAuth error codes of RFC 6749 5.2 / OIDC Core 3.1.2.6
    INVALID_REQUEST = "invalid_request"
    INVALID_CLIENT = "invalid_client"
    INVALID_GRANT = "invalid_grant"
    UNAUTHORIZED_CLIENT = "unauthorized_client"
    UNSUPPORTED_GRANT_TYPE = "unsupported_grant_type"
    UNSUPPORTED_RESPONSE_TYPE = "unsupported_response_type"
    INVALID_SCOPE = "invalid_scope"
    INVALID_TOKEN = "invalid_token"  # noqa: S105 - a reason code
    INSUFFICIENT_SCOPE = "insufficient_scope"    # an API / SCIM token without the operation's scope (403)
    REDIRECT_URI_MISMATCH = "redirect_uri_mismatch"
    LOGIN_REQUIRED = "login_required"
    CONSENT_REQUIRED = "consent_required"
    INTERACTION_REQUIRED = "interaction_required"
    CONSENT_DENIED = "consent_denied"            # the user clicked "deny" on the consent page (access_denied)
    CODE_REUSED = "code_reused"                  # an authorization code presented twice: its tokens are revoked
    REFRESH_TOKEN_REUSED = "refresh_token_reused"  # noqa: S105 - a rotated refresh token presented again: the family is revoked
    CONSENT_GIVEN = "consent_given"
    TOKEN_REVOKED = "token_revoked"  # noqa: S105 - a token, grant or family revoked (by the RP, user or admin)
    # logout
    UNKNOWN_SESSION = "unknown_session"
    # a LogoutResponse for a logout chain sent by a browser other than the one the chain runs in (no chain cookie):
    # refused, the chain does not advance (another SP in the chain saw the token in RelayState)
    LOGOUT_NOT_BOUND = "logout_not_bound"
    LOGOUT_FAILED = "logout_failed"          # an app answered the IdP's LogoutRequest with a non-success status
    BACKCHANNEL_LOGOUT_FAILED = "backchannel_logout_failed"  # an RP's back-channel logout POST failed (error)
    # outbound provisioning (event_type "provision", protocol "scim"): detail says the operation, the remote's
    # HTTP status and error
    PROVISIONED = "provisioned"                  # created, updated or linked (import) at the app
    DEPROVISIONED = "deprovisioned"              # deactivated or deleted at the app
    PROVISIONING_FAILED = "provisioning_failed"  # an attempt failed (retried, or the job is dead)
    REMOTE_CONFLICT = "remote_conflict"          # the app holds an account that matches but is not this user's
    # infrastructure
    SIGNING_KEY_UNAVAILABLE = "signing_key_unavailable"
    SERVICE_UNAVAILABLE = "service_unavailable"
    # admission control shed requests (503 at once): one aggregated event (event_type "overload") per server process
    # and class at most every 10 s, the count in its detail
    OVERLOADED = "overloaded"
    INTERNAL_ERROR = "internal_error"


# The outcome a reason implies when a flow stops on it.
DENIAL_REASONS = frozenset({
    Reason.USER_NOT_PERMITTED, Reason.IP_NOT_ALLOWED, Reason.MFA_REQUIRED, Reason.MFA_FAILED,
    Reason.PHISHING_RESISTANT_REQUIRED,
    Reason.MFA_SUSPENDED, Reason.PASSKEY_FAILED, Reason.PASSKEY_CLONED,
    Reason.APP_DISABLED, Reason.METADATA_EXPIRED,
    Reason.IDP_INITIATED_DISABLED, Reason.USER_DISABLED, Reason.NO_PASSIVE,
    Reason.NO_AUTHN_CONTEXT, Reason.ATTRIBUTE_UNAVAILABLE,
    Reason.SESSION_EXPIRED, Reason.BAD_CREDENTIALS, Reason.THROTTLED,
    Reason.ADMIN_REQUIRED, Reason.ADMIN_MFA_REQUIRED, Reason.ADMIN_IP_DENIED,
    Reason.ENROLMENT_REFUSED, Reason.ENROLMENT_LINK_INVALID, Reason.STEP_UP_REQUIRED,
    Reason.INVALID_CLIENT, Reason.INVALID_GRANT, Reason.UNAUTHORIZED_CLIENT, Reason.LOGIN_REQUIRED,
    Reason.CONSENT_REQUIRED, Reason.INTERACTION_REQUIRED, Reason.CONSENT_DENIED, Reason.CODE_REUSED,
    Reason.REFRESH_TOKEN_REUSED, Reason.INVALID_TOKEN, Reason.INSUFFICIENT_SCOPE, Reason.LOGOUT_NOT_BOUND,
    Reason.UNKNOWN_ARTIFACT, Reason.ARTIFACT_EXPIRED, Reason.ARTIFACT_REPLAYED, Reason.ARTIFACT_WRONG_APP,
})
SUCCESS_REASONS = frozenset({Reason.OK, Reason.LOGOUT, Reason.MFA_ENROLLED, Reason.MFA_RESET, Reason.MFA_REMOVED,
                             Reason.MFA_UNSUSPENDED, Reason.RECOVERY_CODE_USED, Reason.CONSENT_GIVEN,
                             Reason.TOKEN_REVOKED, Reason.PROVISIONED, Reason.DEPROVISIONED})


def outcome_for(reason: Reason) -> Outcome:
    if reason in SUCCESS_REASONS:
        return Outcome.SUCCESS
    return Outcome.DENIED if reason in DENIAL_REASONS else Outcome.ERROR
