"""The notification types: their names (the interface webhook subscriptions and admins' filters use) and how an
event row or an audit action maps to one.

Names are `noun.verb` in lower case. Events map by (event_type, reason, outcome); audit rows by action. A type
not listed here is never published: adding one is adding it to TYPES and to a mapping below.
"""

from __future__ import annotations

from collections.abc import Mapping

# type -> what it means (shown by `idp webhooks types`, the console and the README)
TYPES: Mapping[str, str] = {
    "sso.success": "a user was signed in to an app (SAML assertion or OIDC authorization issued)",
    "sso.denied": "a policy refused a sign-in to an app (reason says which rule)",
    "sso.error": "an SSO request failed (malformed, unknown app, bad signature, internal error)",
    "logout": "a single logout (SAML or OIDC), whatever its outcome",
    "signin.success": "a user signed in to the IdP (password, passkey, second factor)",
    "signin.failed": "a sign-in to the IdP failed (bad credentials, throttled, factor refused)",
    "signin.new_device": "a user signed in to the IdP from an IP address and user agent not seen for them before",
    "mfa.enrolled": "a user added a second factor or a passkey",
    "mfa.removed": "a factor or passkey was removed, or every factor reset",
    "account.event": "another account security event (recovery code used, enrolment refused, step-up asked)",
    "token.revoked": "an OAuth token, grant or token family was revoked",
    "token.event": "another OAuth token endpoint outcome (refused grant, reused code or refresh token)",
    "user.created": "a user was created (console, CLI, import, REST API or SCIM)",
    "user.updated": "a user's profile, fields or identity changed",
    "user.deactivated": "a user was deactivated: sessions ended, grants and tokens revoked (data.after counts them)",
    "user.reactivated": "a deactivated user was enabled again",
    "user.deleted": "a user was deleted",
    "password.changed": "a user's password was changed by the user or reset by an admin",
    "group.changed": "a group was created, renamed or its members changed",
    "group.deleted": "a group was deleted",
    "app.changed": "a connected app was added, changed or removed (data.action says which)",
    "metadata.refresh_failed": "an app's metadata refresh was refused (fetch failed, bad or missing signature, "
                               "validUntil, unusable metadata); the app keeps its current metadata",
    "key.rotated": "the signing keys changed (a next key made, activated or the old key retired)",
    "key.expiring": "a published signing key's certificate expires within 30, 14, 7 or 1 days",
    "provisioning.success": "a user or group was created, updated or deactivated at an app (outbound SCIM)",
    "provisioning.failed": "an outbound provisioning attempt failed",
    "provisioning.conflict": "an app holds an account matching a user that is not that user's",
    "api.denied": "a REST API or SCIM request was refused (invalid token, missing scope)",
    "admin.denied": "an admin console request was refused (not an admin, no second factor, IP)",
    "admin.changed": "another admin change: org settings, fields, API tokens, webhooks",
    "webhook.disabled": "a webhook endpoint was disabled after repeated delivery failures",
    "webhook.test": "a test delivery asked for by an admin (`idp webhooks test`, the console's Test button)",
}
# sent only by the test button, to the endpoint tested: not a type endpoints subscribe to
TEST_TYPE = "webhook.test"

_ACCOUNT_TYPES = {"mfa_enrolled": "mfa.enrolled", "mfa_reset": "mfa.removed", "mfa_removed": "mfa.removed"}
_PROVISION_TYPES = {"provisioned": "provisioning.success", "deprovisioned": "provisioning.success",
                    "provisioning_failed": "provisioning.failed", "remote_conflict": "provisioning.conflict"}


def for_event(event_type: str, reason: str, outcome: str) -> str | None:
    """The notification type of an event row (None: not published)."""
    if event_type == "sso":
        return f"sso.{outcome}"
    if event_type == "artifact":   # a refused artifact resolution is part of a sign-in that failed
        return None if outcome == "success" else f"sso.{outcome}"
    if event_type == "logout":
        return "logout"
    if event_type == "signin":
        return "signin.success" if outcome == "success" else "signin.failed"
    if event_type == "account":
        return _ACCOUNT_TYPES.get(reason, "account.event")
    if event_type == "token":
        return "token.revoked" if reason == "token_revoked" else "token.event"
    if event_type == "provision":
        return _PROVISION_TYPES.get(reason)
    if event_type in ("api", "scim"):
        return "api.denied" if outcome != "success" else None
    if event_type == "admin":
        return "admin.denied" if outcome != "success" else None
    return None


_AUDIT_EXACT = {
    "user.add": "user.created", "user.update": "user.updated", "user.fields": "user.updated",
    "user.identity": "user.updated", "user.deactivate": "user.deactivated", "user.reactivate": "user.reactivated",
    "user.delete": "user.deleted",
    "user.password_change": "password.changed", "user.password_reset": "password.changed",
    "group.remove": "group.deleted",
    "app.metadata_refresh_failed": "metadata.refresh_failed",
    "certs.rotate": "key.rotated", "certs.activate": "key.rotated", "certs.retire": "key.rotated",
}
# audit actions whose notice is an event's (published from the event row instead) or that say nothing new
_AUDIT_SILENT = frozenset({"mfa.enrolled", "user.mfa_reset", "user.passkey_removed", "user.passkeys_removed",
                           "user.passkey_renamed", "user.mfa_unsuspended", "outbox.retry"})


def for_audit(action: str) -> str | None:
    """The notification type of an audit action (None: not published)."""
    if action in _AUDIT_EXACT:
        return _AUDIT_EXACT[action]
    if action in _AUDIT_SILENT:
        return None
    prefix = action.split(".", 1)[0]
    if prefix == "group":
        return "group.changed"
    if prefix == "app":
        return "app.changed"
    if prefix == "user":
        return "user.updated"
    if prefix == "certs":
        return "key.rotated"
    return "admin.changed"


def is_known(type_: str) -> bool:
    return type_ in TYPES
