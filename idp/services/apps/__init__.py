"""Connected apps (SAML settings, OIDC/OAuth client settings or both): settings schema, validation, registry,
the SSO read cache, folder sync.

One module per job; this package re-exports the names callers use, so `from idp.services import apps` and
`from idp.services.apps import …` keep working.
"""

from __future__ import annotations

from .cache import (
    LOOKUP_TTL_S,
    app_config_by_client_id,
    app_config_by_entity_id,
    app_config_by_id,
    app_config_by_slug,
    invalidate_cache,
    saml_app_config_by_id,
    saml_app_config_by_slug,
)
from .folder_sync import SyncReport, sync_folder
from .oidc import (
    add_oidc,
    change_oidc,
    initial_settings,
    register_oidc_app,
    rotate_secret,
    secret_status,
    verify_client_secret,
)
from .oidc_settings import (
    CLIENT_TYPES,
    GRANT_TYPES,
    IP_REFRESH_MODES,
    REFRESH_POLICIES,
    STANDARD_SCOPES,
    TOKEN_AUTH_METHODS,
    OidcSettings,
    format_duration,
    parse_duration,
    parse_jwks,
    parse_refresh_policy,
)
from .registry import (
    change_settings,
    check_entity_id_free,
    get_app,
    idp_entity_id,
    list_apps,
    parse_app_metadata,
    pinned_keys,
    register_app,
    remove_app,
    slugify,
    update_metadata,
)
from .settings import (
    ATTRIBUTE_SOURCES,
    CLEAR,
    ENCRYPTION_ALGORITHMS,
    NAMEID_FIELDS,
    SIGN_MODES,
    SIGNATURE_ALGORITHM_NAMES,
    USER_FIELDS,
    AppConfig,
    AppSettings,
    default_release,
    default_settings,
    nameid_format_uri,
)
from .validation import (
    RESERVED_SLUGS,
    SLUG_RE,
    check_issuer_free,
    metadata_warnings,
    parse_metadata_or_refuse,
    plain_http_endpoint_warnings,
    signing_changes,
    stale_metadata_warning,
    validate_allowed_nameid_format,
    validate_issuer,
    validate_name,
    validate_policy_references,
    validate_relay_state_entry,
    validate_settings,
    validate_slug,
    validate_start_url,
)

__all__ = [
    "ATTRIBUTE_SOURCES", "CLEAR", "ENCRYPTION_ALGORITHMS", "LOOKUP_TTL_S", "NAMEID_FIELDS",
    "RESERVED_SLUGS",
    "SIGNATURE_ALGORITHM_NAMES", "SIGN_MODES", "SLUG_RE", "USER_FIELDS", "AppConfig", "AppSettings", "SyncReport",
    "app_config_by_entity_id", "app_config_by_id", "app_config_by_slug", "change_settings",
    "validate_policy_references", "default_release",
    "default_settings", "nameid_format_uri", "get_app", "invalidate_cache", "list_apps",
    "parse_metadata_or_refuse", "pinned_keys", "register_app", "remove_app", "signing_changes", "slugify",
    "sync_folder", "update_metadata", "validate_name", "validate_settings", "validate_slug",
    # OIDC/OAuth client settings
    "CLIENT_TYPES", "GRANT_TYPES", "IP_REFRESH_MODES", "REFRESH_POLICIES", "STANDARD_SCOPES", "TOKEN_AUTH_METHODS",
    "OidcSettings", "add_oidc", "app_config_by_client_id", "change_oidc", "format_duration", "initial_settings",
    "parse_duration", "parse_jwks", "parse_refresh_policy", "register_oidc_app", "rotate_secret",
    "saml_app_config_by_id", "check_entity_id_free", "check_issuer_free", "idp_entity_id", "parse_app_metadata",
    "metadata_warnings", "plain_http_endpoint_warnings", "stale_metadata_warning", "validate_allowed_nameid_format",
    "validate_issuer", "validate_relay_state_entry",
    "validate_start_url", "saml_app_config_by_slug", "secret_status", "verify_client_secret",
]
