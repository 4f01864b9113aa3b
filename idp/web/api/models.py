"""The REST API's request and response bodies, declared once: spectree validates requests against them and the
OpenAPI document is generated from them. Request models forbid unknown members (a typo is a 400 naming it)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

FieldValue = str | bool | list[str] | None


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- problems and pages

class Problem(BaseModel):
    """An RFC 9457 problem document (media type application/problem+json)."""

    type: str = Field(description="A URI naming the kind of problem (urn:idp:problem:CODE).")
    title: str
    status: int
    detail: str = Field(description="What went wrong, for a person.")
    field: str | None = Field(default=None, description="The input the refusal is about, when one is to blame.")
    errors: dict[str, str] | None = Field(default=None, description="Several refused inputs at once: field -> message.")


class PageQuery(BaseModel):
    cursor: str | None = Field(default=None, max_length=200, description="The position from a previous page's `next`.")
    limit: int = Field(50, ge=1, le=200, description="Items per page.")


# ---------------------------------------------------------------- apps

class SamlFacts(BaseModel):
    """What the SP's metadata says, and the values to hand its owner."""

    entity_id: str
    acs: list[dict[str, Any]]
    slo: list[dict[str, Any]]
    signing_certs: int
    encryption_certs: int
    authn_requests_signed: bool
    want_assertions_signed: bool
    launch_url: str
    idp_entity_id: str
    idp_metadata_url: str


class AppPolicy(BaseModel):
    """Who may use the app and how (the access-policy part of the settings)."""

    permitted: str
    allow_groups: list[str]
    deny_groups: list[str]
    assigned_users: list[str]
    ip_policy: str
    ip_ranges: list[str]
    require_mfa: bool
    mfa_action: str
    session_timeout: int | None
    require_phishing_resistant: bool


class OidcSecret(BaseModel):
    created_at: str
    expires_at: str | None


class OidcOut(BaseModel):
    """An app's OpenID Connect / OAuth client settings (never a secret or its hash)."""

    client_id: str
    client_type: str
    token_endpoint_auth_method: str
    require_pkce: bool
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str]
    grant_types: list[str]
    scopes: list[str]
    resources: list[str]
    jwks_uri: str | None
    jwks: list[str] | None = Field(description="The key ids (or types) of the client's registered JWKS.")
    backchannel_logout_uri: str | None
    initiate_login_uri: str | None
    access_token_lifetime: str
    id_token_lifetime: str
    refresh_policy: str
    ip_policy_refresh: str
    secrets: list[OidcSecret]


class AppOut(BaseModel):
    slug: str
    name: str
    enabled: bool
    source: str
    protocols: list[str]
    version: int
    saml: SamlFacts | None
    settings: dict[str, Any] = Field(description="Every setting as `idp apps show --format json` lists it.")
    policy: AppPolicy
    oidc: OidcOut | None
    client_secret: str | None = Field(default=None, description="Only in the answer that made it: shown once.")


class AppList(BaseModel):
    items: list[AppOut]


class OidcIn(Input):
    """OIDC/OAuth client settings to add (create) or change (patch); omitted members keep their value."""

    public: bool | None = Field(default=None, description="Create only: a public client (no secret; PKCE).")
    redirect_uris: list[str] | None = None
    post_logout_redirect_uris: list[str] | None = None
    grant_types: list[Literal["authorization_code", "refresh_token", "client_credentials"]] | None = None
    scopes: list[str] | None = None
    resources: list[str] | None = None
    require_pkce: bool | None = None
    token_endpoint_auth_method: Literal["client_secret_basic", "client_secret_post", "private_key_jwt",
                                        "none"] | None = None
    access_token_lifetime: str | None = Field(default=None, description="A duration such as 10m or 1h.")
    id_token_lifetime: str | None = Field(default=None, description="A duration such as 10m or 1h.")
    refresh_policy: str | None = Field(
        default=None, description="until-revoked, expire-after:90d, expire-if-unused:30d, none")
    jwks_uri: str | None = None
    backchannel_logout_uri: str | None = None
    initiate_login_uri: str | None = None
    ip_policy_refresh: Literal["enforce", "relax"] | None = None


class AppCreate(Input):
    """A new app from SAML metadata (`metadata_xml`), OIDC client settings (`oidc`), or both."""

    metadata_xml: str | None = Field(default=None, max_length=5 * 1024 * 1024,
                                     description="The SP's metadata document.")
    entity_id: str | None = Field(default=None, max_length=1024, description="Pick one SP from an aggregate.")
    name: str | None = Field(default=None, max_length=200)
    slug: str | None = Field(default=None, max_length=100)
    oidc: OidcIn | None = None


class AppPatch(Input):
    """Setting changes, as `idp apps set` makes them; omitted members keep their value, null clears an optional one
    (start_url, issuer, nameid_value, session_timeout)."""

    name: str | None = Field(default=None, max_length=200)
    enabled: bool | None = None
    metadata_xml: str | None = Field(default=None, max_length=5 * 1024 * 1024,
                                     description="Replace the SAML metadata (same entityID), or give an OIDC-only "
                                                 "app its SAML settings.")
    nameid_format: str | None = None
    nameid_field: str | None = None
    allowed_nameid_formats: list[str] | None = None
    attributes: dict[str, str] | None = Field(default=None, description="NAME -> field:F, formula:EXPR or a bare field "
                                                                "name; replaces the attribute map.")
    attribute_formats: dict[str, str] | None = None
    friendly_names: dict[str, str] | None = None
    on_missing: Literal["omit", "deny"] | None = None
    nameid_value: str | None = None
    sign: str | None = None
    signature_algorithm: str | None = None
    require_signed_requests: bool | None = None
    allow_sha1: bool | None = None
    permitted: str | None = None
    allow_groups: list[str] | None = None
    deny_groups: list[str] | None = None
    assigned_users: list[str] | None = None
    ip_policy: str | None = None
    ip_ranges: list[str] | None = None
    require_mfa: bool | None = None
    mfa_action: str | None = None
    session_timeout: int | None = Field(default=None, ge=1, le=10080, description="Minutes; null removes the limit.")
    require_phishing_resistant: bool | None = None
    signing_key: str | None = Field(default=None, description="A published key id to pin, or `active`.")
    encrypt_assertion: bool | None = None
    encryption_algorithm: str | None = None
    idp_initiated: bool | None = None
    start_url: str | None = None
    relay_state_allow: list[str] | None = None
    issuer: str | None = None
    oidc: OidcIn | None = Field(default=None, description="Change the OIDC settings (or add them to an app that "
                                                          "has none).")


# ---------------------------------------------------------------- users and groups

class UserOut(BaseModel):
    """A user as `idp users show --format json` shows them, with the SCIM identity columns."""

    username: str
    email: str
    first_name: str
    last_name: str
    groups: list[str]
    admin: bool
    disabled: bool
    has_password: bool
    fields: dict[str, Any] = Field(description="Values of the admin-defined user fields that are set.")
    external_id: str | None
    created_at: str
    updated_at: str | None
    version: int


class UserPage(BaseModel):
    items: list[UserOut]
    next: str | None = Field(description="The URL of the next page; null on the last.")


class UserQuery(PageQuery):
    q: str | None = Field(default=None, max_length=150, description="Username, email or name contains this.")
    group: str | None = Field(default=None, max_length=150, description="Only members of this group.")
    disabled: bool | None = Field(default=None, description="Only disabled (true) or enabled (false) users.")


class UserCreate(Input):
    username: str = Field(max_length=150)
    email: str = Field(max_length=320)
    first_name: str = Field("", max_length=150)
    last_name: str = Field("", max_length=150)
    groups: list[str] = Field(default_factory=list, max_length=500)
    admin: bool = False
    password: str | None = Field(default=None, max_length=1024,
                                 description="Never returned; none: sign-in needs a reset.")
    fields: dict[str, FieldValue] = Field(default_factory=dict, description="User field values by name.")


class UserPatch(Input):
    email: str | None = Field(default=None, max_length=320)
    first_name: str | None = Field(default=None, max_length=150)
    last_name: str | None = Field(default=None, max_length=150)
    groups: list[str] | None = Field(default=None, max_length=500, description="Replaces the user's groups.")
    admin: bool | None = None
    disabled: bool | None = Field(default=None, description="true ends the user's sessions and revokes their tokens.")
    password: str | None = Field(default=None, max_length=1024, description="A new password; the user's sessions end.")
    fields: dict[str, FieldValue] | None = Field(default=None, description="Values to set; null or \"\" clears one.")


class GroupSummary(BaseModel):
    name: str
    members: int


class GroupList(BaseModel):
    items: list[GroupSummary]


class GroupOut(BaseModel):
    name: str
    members: list[str]
    external_id: str | None
    created_at: str


class GroupCreate(Input):
    name: str = Field(max_length=150)


class MemberAdd(Input):
    username: str = Field(max_length=150)


# ---------------------------------------------------------------- fields

class FieldOut(BaseModel):
    name: str
    label: str
    type: str
    unique: bool
    used_by: list[str] = Field(description="Apps (and where) that release the field.")


class FieldList(BaseModel):
    items: list[FieldOut]


class FieldCreate(Input):
    name: str = Field(max_length=64)
    type: Literal["string", "list", "bool", "date"]
    unique: bool = False
    label: str = Field("", max_length=150)


# ---------------------------------------------------------------- keys

class KeyOut(BaseModel):
    kid: str
    state: str | None
    key_type: str | None
    source: str | None = None
    created_at: str | None = None
    fingerprint_sha256: str | None = None
    not_after: str | None = None
    days_left: int | None = None
    error: str | None = None
    pinned_by: list[str] = Field(default_factory=list, description="Apps pinned to this key.")


class KeyStatusOut(BaseModel):
    keys: list[KeyOut]
    warnings: list[str]


class KeyRotate(Input):
    key_type: Literal["rsa3072", "rsa2048", "ec-p256"] = "rsa3072"
    days: int = Field(730, ge=1, le=3650)


class KeyChange(BaseModel):
    kid: str = Field(description="The key the operation staged, activated or retired.")
    retiring: str | None = Field(default=None, description="activate: the key that stopped signing (still published).")


# ---------------------------------------------------------------- events and audit

class EventQuery(PageQuery):
    app: str | None = Field(default=None, max_length=150)
    user: str | None = Field(default=None, max_length=150)
    outcome: str | None = Field(default=None, max_length=150, description="success, denied or error")
    reason: str | None = Field(default=None, max_length=150)
    protocol: str | None = Field(default=None, max_length=10, description="saml or oidc")
    since: str | None = Field(default=None, max_length=150, description="YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS], UTC")
    until: str | None = Field(default=None, max_length=150, description="As since; a date includes that day.")


class EventOut(BaseModel):
    id: int
    at: str
    event_type: str
    app_slug: str | None
    sp_entity_id: str | None
    username: str | None
    outcome: str
    reason: str
    initiated_by: str | None
    binding: str | None
    request_id: str | None
    response_id: str | None
    assertion_id: str | None
    client_ip: str | None
    user_agent: str | None
    protocol: str | None
    detail: dict[str, Any] | None


class EventPage(BaseModel):
    items: list[EventOut]
    next: str | None


class AuditQuery(PageQuery):
    target: str | None = Field(default=None, max_length=300, description="Only changes to this app, user, group, ...")


class AuditOut(BaseModel):
    id: int
    at: str
    actor: str
    action: str
    target_type: str
    target: str
    before: Any
    after: Any


class AuditPage(BaseModel):
    items: list[AuditOut]
    next: str | None
