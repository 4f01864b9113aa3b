"""SQLAlchemy 2 typed models. Datetimes are stored and returned as aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    exists,
    select,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from .extensions import db


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC; SQLite drops tzinfo, so it is re-attached on the way out."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


user_groups = Table(
    "user_groups",
    db.metadata,
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("group_id", ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
)


class User(db.Model):  # type: ignore[name-defined]
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(150), unique=True, index=True)
    email: Mapped[str] = mapped_column(String(320))
    first_name: Mapped[str] = mapped_column(String(150), default="")
    last_name: Mapped[str] = mapped_column(String(150), default="")
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # sealed (auth.datakeys: v1:<kid>:<AES-GCM>); never the base32 secret itself
    totp_secret: Mapped[str | None] = mapped_column(String(255), nullable=True)
    totp_confirmed: Mapped[bool] = mapped_column(Boolean, default=False)
    totp_last_step: Mapped[int | None] = mapped_column(Integer, nullable=True)  # replay guard (RFC 6238 §5.2)
    # consecutive wrong TOTP codes (reset by a right one) and when the cap suspended the factor (idp.auth.totp_guard)
    totp_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    totp_suspended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # WebAuthn user handle (base64url of 32 random bytes, made at the first passkey registration): never the
    # username, so an authenticator's account list reveals nothing (auth.passkeys)
    webauthn_user_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    totp_enrolled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # when confirmed
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # values of the admin-defined fields (UserField), {name: value}: str, list[str], bool or "YYYY-MM-DD"; set
    # only through services.user_fields (which validates types and claims unique values in UserFieldUnique)
    custom_fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")
    # SCIM (issue 16): the provisioning client's id for the user, and what meta.lastModified / the ETag say; every
    # change through services bumps `version` (services.users.touch)
    external_id: Mapped[str | None] = mapped_column(String(255), nullable=True, unique=True, index=True)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # the SCIM `emails` list as a provisioning client last wrote it ([{value, type, primary}]); `email` stays the
    # address every other part of the IdP uses (its primary value). Read through services.scim_users, which
    # ignores it once `email` was changed elsewhere (then emails is [{value: email, primary: true}])
    scim_emails: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    groups: Mapped[list[Group]] = relationship(secondary=user_groups, back_populates="members", lazy="selectin")
    __table_args__ = (UniqueConstraint("webauthn_user_id", name="uq_users_webauthn_user_id"),)

    @property
    def group_names(self) -> list[str]:
        return sorted(g.name for g in self.groups)

    @property
    def totp_enrolled(self) -> bool:
        """A confirmed TOTP authenticator."""
        return bool(self.totp_secret and self.totp_confirmed)

    @property
    def mfa_enrolled(self) -> bool:
        """A confirmed TOTP authenticator or a passkey (one EXISTS query when there is no TOTP)."""
        if self.totp_enrolled:
            return True
        if self.id is None:
            return False
        return bool(db.session.scalar(select(exists().where(Passkey.user_id == self.id))))


class UserField(db.Model):  # type: ignore[name-defined]
    """An admin-defined user field (`idp fields add`); its values live in User.custom_fields."""

    __tablename__ = "user_fields"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(150), default="")
    type: Mapped[str] = mapped_column(String(10))                  # attributes.schema.FieldType
    unique: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UserFieldUnique(db.Model):  # type: ignore[name-defined]
    """One user's claim on a value of a unique field: the primary key makes the database refuse a second holder
    (two concurrent imports cannot both win). `value` is the normalised (case-folded) value."""

    __tablename__ = "user_field_unique"
    field_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(512), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)


class Passkey(db.Model):  # type: ignore[name-defined]
    """A WebAuthn credential (passkey or security key) registered by a user (auth.passkeys)."""

    __tablename__ = "passkeys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    credential_id: Mapped[bytes] = mapped_column(LargeBinary(1023), unique=True)   # raw id (at most 1023 bytes)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)                          # COSE key, as registered
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)                  # unsigned 32-bit counter
    transports: Mapped[list[str]] = mapped_column(JSON, default=list)
    aaguid: Mapped[str] = mapped_column(String(36), default="")
    backup_eligible: Mapped[bool] = mapped_column(Boolean, default=False)          # synced passkey (fixed)
    backup_state: Mapped[bool] = mapped_column(Boolean, default=False)             # currently backed up
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Group(db.Model):  # type: ignore[name-defined]
    __tablename__ = "groups"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(150), unique=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    external_id: Mapped[str | None] = mapped_column(String(255), nullable=True, unique=True, index=True)  # SCIM
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    members: Mapped[list[User]] = relationship(secondary=user_groups, back_populates="groups")


class ConnectedApp(db.Model):  # type: ignore[name-defined]
    """A connected app: SAML settings (from the SP's metadata), OpenID Connect / OAuth client settings
    (`oidc`), or both. An OIDC-only app has no entity_id, metadata_xml or sp."""

    __tablename__ = "connected_apps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True, index=True)
    name: Mapped[str] = mapped_column(String(200))
    # SAML part: all three set, or all three None (an OIDC-only app); entity_id unique where set
    entity_id: Mapped[str | None] = mapped_column(String(1024), unique=True, index=True, nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    metadata_xml: Mapped[str | None] = mapped_column(Text, nullable=True)
    sp: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)   # SpMetadata.to_dict()
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # AppSettings.to_dict()
    source: Mapped[str] = mapped_column(String(20), default="cli")   # cli | sync | admin
    source_ref: Mapped[str | None] = mapped_column(String(1024), nullable=True)  # file path or URL
    version: Mapped[int] = mapped_column(Integer, default=1)         # bumped on every change: cache key
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    oidc: Mapped[OidcClient | None] = relationship(back_populates="app", lazy="selectin", uselist=False,
                                                   cascade="all, delete-orphan", passive_deletes=True)

    @property
    def has_saml(self) -> bool:
        return self.entity_id is not None and self.sp is not None

    @property
    def has_oidc(self) -> bool:
        return self.oidc is not None


class MetadataSource(db.Model):  # type: ignore[name-defined]
    """Where a SAML app's metadata is fetched from and how it is refreshed (services.metadata_refresh): a URL or
    an MDQ service, the refresh mode, the trust anchor, the schedule, the last outcome and a held change."""

    __tablename__ = "app_metadata_sources"
    app_id: Mapped[int] = mapped_column(ForeignKey("connected_apps.id", ondelete="CASCADE"), primary_key=True)
    url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    mdq_base: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    refresh_mode: Mapped[str] = mapped_column(String(10), default="auto")      # auto | approve | off
    trust_anchor_pem: Mapped[str | None] = mapped_column(Text, nullable=True)
    max_interval_s: Mapped[int] = mapped_column(Integer)
    etag: Mapped[str | None] = mapped_column(String(512), nullable=True)
    last_modified: Mapped[str | None] = mapped_column(String(512), nullable=True)
    last_fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    next_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    last_outcome: Mapped[str | None] = mapped_column(String(20), nullable=True)  # unchanged|applied|held|refused
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    held_xml: Mapped[str | None] = mapped_column(Text, nullable=True)
    held_diff: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    held_reason: Mapped[str | None] = mapped_column(String(300), nullable=True)
    held_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    rejected_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    fetched_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the document ETag stands for
    # the SP summary (SpMetadata.to_dict) an admin last approved: a manual upload, the metadata in place when the
    # source was set, or an approved change; the dangerous-change rule compares against it
    baseline_sp: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class Feed(db.Model):  # type: ignore[name-defined]
    """A federation feed (services.feeds): a signed SAML metadata aggregate whose selected SPs become connected apps
    and are kept in step with it; the schedule, the conditional-GET validators and the last sync's outcome."""

    __tablename__ = "feeds"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    url: Mapped[str] = mapped_column(String(2048))
    trust_anchor_pem: Mapped[str] = mapped_column(Text)
    # [{"attribute": NAME, "value": VALUE}, ...]: an entity matches when it carries any of them
    selection: Mapped[list[Any]] = mapped_column(JSON, default=list)
    entities: Mapped[list[Any]] = mapped_column(JSON, default=list)     # entityIDs picked by name
    max_interval_s: Mapped[int] = mapped_column(Integer)
    etag: Mapped[str | None] = mapped_column(String(512), nullable=True)
    last_modified: Mapped[str | None] = mapped_column(String(512), nullable=True)
    fetched_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    next_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    last_outcome: Mapped[str | None] = mapped_column(String(20), nullable=True)   # synced | unchanged | refused
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class FeedMember(db.Model):  # type: ignore[name-defined]
    """An entity of a feed that became a connected app: the entity's document hash (a re-sync skips entities
    whose bytes did not change), whether it left the feed and whether the feed disabled its app (an app an admin
    had disabled is not enabled again when it returns), and a held change."""

    __tablename__ = "feed_members"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    feed_id: Mapped[int] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"), index=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("connected_apps.id", ondelete="CASCADE"), unique=True)
    entity_id: Mapped[str] = mapped_column(String(1024))
    entity_sha256: Mapped[str] = mapped_column(String(64))
    absent: Mapped[bool] = mapped_column(Boolean, default=False)             # gone from the feed / its selection
    disabled_by_feed: Mapped[bool] = mapped_column(Boolean, default=False)   # the feed switched the app off
    held_xml: Mapped[str | None] = mapped_column(Text, nullable=True)
    held_reason: Mapped[str | None] = mapped_column(String(300), nullable=True)
    held_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)


class OidcClient(db.Model):  # type: ignore[name-defined]
    """The OpenID Connect / OAuth 2.0 client settings of a connected app (at most one per app)."""

    __tablename__ = "oidc_clients"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("connected_apps.id", ondelete="CASCADE"), unique=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True, index=True)   # random, not guessable
    client_type: Mapped[str] = mapped_column(String(20))                          # confidential | public
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(40))
    require_pkce: Mapped[bool] = mapped_column(Boolean, default=True)
    redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    post_logout_redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    grant_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)                 # the scopes it may ask for
    resources: Mapped[list[str]] = mapped_column(JSON, default=list)   # RFC 8707 resource indicators it may ask for
    jwks_uri: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    jwks: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)       # public keys only
    backchannel_logout_uri: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    initiate_login_uri: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    access_token_lifetime: Mapped[int] = mapped_column(Integer)                   # seconds
    id_token_lifetime: Mapped[int] = mapped_column(Integer)                       # seconds
    refresh_policy: Mapped[str] = mapped_column(String(20))   # until-revoked | expire-after | expire-if-unused | none
    refresh_lifetime: Mapped[int | None] = mapped_column(Integer, nullable=True)  # seconds, for the expire-* ones
    ip_policy_refresh: Mapped[str] = mapped_column(String(10), default="enforce")  # enforce | relax
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    app: Mapped[ConnectedApp] = relationship(back_populates="oidc")
    secrets: Mapped[list[OidcClientSecret]] = relationship(back_populates="client", cascade="all, delete-orphan",
                                                           passive_deletes=True, order_by="OidcClientSecret.id")


class OidcClientSecret(db.Model):  # type: ignore[name-defined]
    """A client secret, stored as its SHA-256 only (256 random bits: see services.apps.oidc). Several are valid
    during a rotation overlap; expires_at None means valid until the next rotation ends it."""

    __tablename__ = "oidc_client_secrets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_pk: Mapped[int] = mapped_column(ForeignKey("oidc_clients.id", ondelete="CASCADE"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    client: Mapped[OidcClient] = relationship(back_populates="secrets")


class OidcGrant(db.Model):  # type: ignore[name-defined]
    """A user's authorization of an OIDC/OAuth app: the scopes consented to (consent "user", from the consent
    page of a self-authorize app) or granted by the admin (consent "admin", a pre-authorized app). Live while
    revoked_at is None; revoking it revokes every refresh token of the grant and makes its access tokens
    inactive at introspection and userinfo (those issued at or before revoked_at)."""

    __tablename__ = "oidc_grants"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("connected_apps.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    consent: Mapped[str] = mapped_column(String(10))                 # user | admin
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    first_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    app: Mapped[ConnectedApp] = relationship()
    user: Mapped[User] = relationship()
    __table_args__ = (UniqueConstraint("app_id", "user_id", name="uq_oidc_grant_app_user"),)


class OidcRefreshToken(db.Model):  # type: ignore[name-defined]
    """One refresh token, stored as its SHA-256 only. Tokens rotate: each use marks the presented one
    rotated_at and issues a successor in the same family; presenting a rotated one again (a reuse) revokes
    the whole family. expires_at None: valid until revoked (or until unused for the app's limit, checked
    against last_used_at)."""

    __tablename__ = "oidc_refresh_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    family_id: Mapped[str] = mapped_column(String(43), index=True)
    grant_id: Mapped[int] = mapped_column(ForeignKey("oidc_grants.id", ondelete="CASCADE"), index=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("connected_apps.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    resources: Mapped[list[str]] = mapped_column(JSON, default=list)   # the family's RFC 8707 resources (2.2)
    session_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)  # IdP session (sid)
    auth_time: Mapped[datetime] = mapped_column(UTCDateTime)
    amr: Mapped[str | None] = mapped_column(String(64), nullable=True)
    acr: Mapped[str | None] = mapped_column(String(255), nullable=True)
    family_started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoke_reason: Mapped[str | None] = mapped_column(String(40), nullable=True)


class PersistentId(db.Model):  # type: ignore[name-defined]
    """Pairwise persistent NameID per (user, app), stable across restarts and key changes."""

    __tablename__ = "persistent_ids"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    app_entity_id: Mapped[str] = mapped_column(String(1024))
    value: Mapped[str] = mapped_column(String(64), unique=True)
    __table_args__ = (UniqueConstraint("user_id", "app_entity_id"),)


class IdpSession(db.Model):  # type: ignore[name-defined]
    """Server-side login session; the browser cookie only carries its random id."""

    __tablename__ = "idp_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    authn_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)   # last password check
    mfa_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # how the user signed in: RFC 8176 values, space-separated in a fixed order ("pwd", "pwd otp mfa", "swk mfa");
    # None on rows from before the column (read as "pwd", or "pwd otp mfa" when mfa_at is set)
    amr: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    client_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(512), nullable=True)   # at sign-in (session lists)
    user: Mapped[User] = relationship(lazy="joined")


class SessionParticipant(db.Model):  # type: ignore[name-defined]
    """An app that received an assertion in an IdP session (needed for single logout)."""

    __tablename__ = "session_participants"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("idp_sessions.id", ondelete="CASCADE"), index=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("connected_apps.id", ondelete="CASCADE"))
    name_id: Mapped[str] = mapped_column(String(512))
    name_id_format: Mapped[str] = mapped_column(String(255))
    session_index: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # saml: name_id / name_id_format / session_index as sent in the assertion;
    # oidc: name_id = the ID token's `sub`, name_id_format = "oidc", session_index = its `sid`
    protocol: Mapped[str] = mapped_column(String(10), default="saml", server_default="saml")
    # one row per protocol: an app with SAML and OIDC settings has its SessionIndex and its sid apart
    __table_args__ = (UniqueConstraint("session_id", "app_id", "protocol", name="uq_session_participant_app_protocol"),)


class PendingRequest(db.Model):  # type: ignore[name-defined]
    """An SSO request parked while the browser logs in (survives SameSite=Lax cross-site POSTs)."""

    __tablename__ = "pending_requests"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class SeenRequest(db.Model):  # type: ignore[name-defined]
    """Replay cache: one row per (issuer, request ID) until it could no longer be fresh."""

    __tablename__ = "seen_requests"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issuer: Mapped[str] = mapped_column(String(1024))
    request_id: Mapped[str] = mapped_column(String(256))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    __table_args__ = (UniqueConstraint("issuer", "request_id", name="uq_seen_request"),)


class SsoEvent(db.Model):  # type: ignore[name-defined]
    """One row per SSO attempt and per logout."""

    __tablename__ = "sso_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    event_type: Mapped[str] = mapped_column(String(20), default="sso")  # sso | logout
    app_slug: Mapped[str | None] = mapped_column(String(100), nullable=True)
    sp_entity_id: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    username: Mapped[str | None] = mapped_column(String(150), nullable=True)
    outcome: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str] = mapped_column(String(40))
    initiated_by: Mapped[str | None] = mapped_column(String(10), nullable=True)  # sp | idp
    binding: Mapped[str | None] = mapped_column(String(20), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    response_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    assertion_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    client_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(512), nullable=True)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # admin-only explanation
    # saml | oidc for sso / logout / token events; None for protocol-neutral ones (signin, account, admin)
    protocol: Mapped[str | None] = mapped_column(String(10), nullable=True)
    __table_args__ = (
        Index("ix_sso_events_at", "at"),
        Index("ix_sso_events_app_at", "app_slug", "at"),
        Index("ix_sso_events_user_at", "username", "at"),
        Index("ix_sso_events_outcome_at", "outcome", "at"),
        Index("ix_sso_events_reason_at", "reason", "at"),
    )


class OrgSetting(db.Model):  # type: ignore[name-defined]
    __tablename__ = "org_settings"
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)


class RecoveryCode(db.Model):  # type: ignore[name-defined]
    """One single-use recovery code of a user, stored as a keyed hash only (idp.auth.recovery_codes)."""

    __tablename__ = "recovery_codes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(100))   # <data key id>:<hex HMAC-SHA256>
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class EnrolmentLink(db.Model):  # type: ignore[name-defined]
    """A one-time link an admin issued so a user may enrol a first factor whatever the org's enrolment mode;
    only the SHA-256 of its token is stored (idp.auth.enrolment_links)."""

    __tablename__ = "enrolment_links"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_by: Mapped[str] = mapped_column(String(200))


class ThrottleCounter(db.Model):  # type: ignore[name-defined]
    """Failed-attempt counters for login and MFA throttling (per account, per IP)."""

    __tablename__ = "throttle_counters"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AdminAudit(db.Model):  # type: ignore[name-defined]
    """Every admin change, from the CLI or the console: who, what, when, before and after."""

    __tablename__ = "admin_audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(60))
    target_type: Mapped[str] = mapped_column(String(40))
    target: Mapped[str] = mapped_column(String(300), index=True)
    before: Mapped[Any] = mapped_column(JSON, nullable=True)
    after: Mapped[Any] = mapped_column(JSON, nullable=True)


class ApiToken(db.Model):  # type: ignore[name-defined]
    """A bearer token an admin issued to an API or SCIM client (`idp tokens api create`): only its SHA-256 is
    stored; the secret is shown once. Scopes as in services.api_tokens.SCOPES."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)       # hex SHA-256 of the secret
    prefix: Mapped[str] = mapped_column(String(16))                       # the secret's first characters (lists)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class OutboxJob(db.Model):  # type: ignore[name-defined]
    """A change to deliver (provisioning, webhooks), written in the same transaction as its cause and run by
    `idp worker` (services.outbox): pending → running → done, or back to pending with a backoff, or dead after
    the last attempt. Jobs of one `key` run in order, one at a time."""

    __tablename__ = "outbox_jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    key: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(10), default="pending")      # pending | running | done | dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    run_after: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    __table_args__ = (
        Index("ix_outbox_jobs_state_run_after", "state", "run_after"),
        Index("ix_outbox_jobs_key_id", "key", "id"),
    )


class AppProvisioning(db.Model):  # type: ignore[name-defined]
    """Outbound SCIM provisioning of a connected app: where, how to authenticate (the secret sealed by
    auth.datakeys), which operations, and the attribute mapping (SCIM path -> source, as AppSettings.attributes)."""

    __tablename__ = "app_provisioning"
    app_id: Mapped[int] = mapped_column(ForeignKey("connected_apps.id", ondelete="CASCADE"), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    base_url: Mapped[str] = mapped_column(String(2048))
    auth_kind: Mapped[str] = mapped_column(String(20), default="bearer")   # bearer | client_credentials
    secret_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)  # bearer token or client secret
    token_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    client_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    operations: Mapped[list[str]] = mapped_column(JSON, default=list)      # create update deactivate delete groups
    mapping: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    deprovision: Mapped[str] = mapped_column(String(10), default="deactivate")   # deactivate | delete
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ProvisionedAccount(db.Model):  # type: ignore[name-defined]
    """A user's account at an app the IdP provisions into: the remote id and what was last pushed."""

    __tablename__ = "provisioned_accounts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("connected_apps.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    remote_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    state: Mapped[str] = mapped_column(String(12), default="pending")   # pending | active | inactive | deleted
    last_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)   # of the last representation pushed
    last_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    __table_args__ = (UniqueConstraint("app_id", "user_id", name="uq_provisioned_accounts_app_user"),
                      Index("ix_provisioned_accounts_app_remote", "app_id", "remote_id"))


class ProvisionedGroup(db.Model):  # type: ignore[name-defined]
    """An IdP group pushed to an app as a SCIM Group: the remote id and what was last pushed (name, members)."""

    __tablename__ = "provisioned_groups"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("connected_apps.id", ondelete="CASCADE"))
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), index=True)
    remote_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    last_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    __table_args__ = (UniqueConstraint("app_id", "group_id", name="uq_provisioned_groups_app_group"),)


class WebhookEndpoint(db.Model):  # type: ignore[name-defined]
    """An HTTPS endpoint subscribed to notification types (notifications.catalog), org-wide or for one app, with
    optional outcome / reason filters. Its signing secret is sealed by auth.datakeys (HMAC needs the secret
    itself, so it cannot be hashed). Disabled automatically after repeated delivery failure (services.webhooks)."""

    __tablename__ = "webhook_endpoints"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str] = mapped_column(String(200), default="", server_default="")
    secret_sealed: Mapped[str] = mapped_column(Text)
    event_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    app_id: Mapped[int | None] = mapped_column(ForeignKey("connected_apps.id", ondelete="CASCADE"), nullable=True,
                                               index=True)
    outcomes: Mapped[list[str]] = mapped_column(JSON, default=list)     # empty: every outcome
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)      # empty: every reason
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    failure_streak: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # failed attempts in a row
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200), default="system")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class WebhookDelivery(db.Model):  # type: ignore[name-defined]
    """One delivery attempt of one notice to one endpoint: the endpoint's delivery log (status code, error,
    duration). Written for every attempt, successful or not."""

    __tablename__ = "webhook_deliveries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    notice_id: Mapped[str] = mapped_column(String(64))
    notice_type: Mapped[str] = mapped_column(String(40))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ok: Mapped[bool] = mapped_column(Boolean, default=False)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    duration_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    __table_args__ = (Index("ix_webhook_deliveries_endpoint_at", "endpoint_id", "at"),
                      Index("ix_webhook_deliveries_at", "at"))


class KnownDevice(db.Model):  # type: ignore[name-defined]
    """An (IP address, user agent) pair a user signed in from: a sign-in from a pair not seen before for that
    user is a "new device" (an email tells them). The fingerprint is a SHA-256 of the pair."""

    __tablename__ = "known_devices"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    fingerprint: Mapped[str] = mapped_column(String(64))
    client_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(512), nullable=True)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    __table_args__ = (UniqueConstraint("user_id", "fingerprint", name="uq_known_devices_user_fingerprint"),
                      Index("ix_known_devices_last_seen", "last_seen"))


class SentNotice(db.Model):  # type: ignore[name-defined]
    """A once-only notice already sent (e.g. "key K expires within 14 days"): its key, so the periodic check
    that finds the same condition every minute sends it once."""

    __tablename__ = "sent_notices"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
