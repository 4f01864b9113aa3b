"""OpenID Connect / OAuth client settings of connected apps; the SAML part of an app becomes optional.

Revision ID: 0008_oidc_clients
Revises: 0007_enrolment
Create Date: 2026-12-20
"""
import sqlalchemy as sa
from alembic import op

from idp.models import UTCDateTime

revision = "0008_oidc_clients"
down_revision = "0007_enrolment"
branch_labels = None
depends_on = None

_SAML_COLUMNS = (("entity_id", sa.String(length=1024)), ("metadata_xml", sa.Text()), ("sp", sa.JSON()))


def _alter_saml_columns(nullable: bool) -> None:
    # SQLite cannot drop NOT NULL in place: batch mode copies the table, drops the old one and renames the copy.
    # With foreign keys enforced, that DROP would first delete every row, and ON DELETE CASCADE would take the
    # rows of the tables referring to connected_apps (session_participants, ...) with it. Enforcement can only
    # be switched off outside a transaction, so SQLite's pending one is committed first (SQLite's DDL is not
    # transactional in Alembic anyway: each step of the earlier revisions is already durable).
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        _sqlite_foreign_keys("OFF")
    try:
        with op.batch_alter_table("connected_apps", schema=None) as batch_op:
            for name, type_ in _SAML_COLUMNS:
                batch_op.alter_column(name, existing_type=type_, nullable=nullable)
    finally:
        if sqlite:
            _sqlite_foreign_keys("ON")


def _sqlite_foreign_keys(state: str) -> None:
    """PRAGMA foreign_keys is a no-op inside a transaction: commit SQLite's pending one first."""
    bind = op.get_bind()
    if bind.connection.dbapi_connection.in_transaction:
        bind.exec_driver_sql("COMMIT")
    bind.exec_driver_sql(f"PRAGMA foreign_keys={state}")


def upgrade():
    _alter_saml_columns(nullable=True)
    op.create_table(
        "oidc_clients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("client_type", sa.String(length=20), nullable=False),
        sa.Column("token_endpoint_auth_method", sa.String(length=40), nullable=False),
        sa.Column("require_pkce", sa.Boolean(), nullable=False),
        sa.Column("redirect_uris", sa.JSON(), nullable=False),
        sa.Column("post_logout_redirect_uris", sa.JSON(), nullable=False),
        sa.Column("grant_types", sa.JSON(), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("jwks_uri", sa.String(length=2048), nullable=True),
        sa.Column("jwks", sa.JSON(), nullable=True),
        sa.Column("backchannel_logout_uri", sa.String(length=2048), nullable=True),
        sa.Column("initiate_login_uri", sa.String(length=2048), nullable=True),
        sa.Column("access_token_lifetime", sa.Integer(), nullable=False),
        sa.Column("id_token_lifetime", sa.Integer(), nullable=False),
        sa.Column("refresh_policy", sa.String(length=20), nullable=False),
        sa.Column("refresh_lifetime", sa.Integer(), nullable=True),
        sa.Column("ip_policy_refresh", sa.String(length=10), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["connected_apps.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("app_id"),
    )
    with op.batch_alter_table("oidc_clients", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oidc_clients_client_id"), ["client_id"], unique=True)
    op.create_table(
        "oidc_client_secrets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_pk", sa.Integer(), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["client_pk"], ["oidc_clients.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("secret_hash"),
    )
    with op.batch_alter_table("oidc_client_secrets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oidc_client_secrets_client_pk"), ["client_pk"], unique=False)


def downgrade():
    with op.batch_alter_table("oidc_client_secrets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oidc_client_secrets_client_pk"))
    op.drop_table("oidc_client_secrets")
    with op.batch_alter_table("oidc_clients", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oidc_clients_client_id"))
    op.drop_table("oidc_clients")
    # OIDC-only apps have no SAML part to keep: they go (with their rows elsewhere) before NOT NULL returns
    op.execute(sa.text("DELETE FROM connected_apps WHERE entity_id IS NULL OR metadata_xml IS NULL OR sp IS NULL"))
    _alter_saml_columns(nullable=False)
