"""OIDC grants (consent) and refresh token families; a protocol on events and session participants.

Revision ID: 0009_oidc_grants
Revises: 0008_oidc_clients
Create Date: 2026-12-21
"""
import sqlalchemy as sa
from alembic import op

from idp.models import UTCDateTime

revision = "0009_oidc_grants"
down_revision = "0008_oidc_clients"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "oidc_grants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("consent", sa.String(length=10), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("first_used_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["app_id"], ["connected_apps.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("app_id", "user_id", name="uq_oidc_grant_app_user"),
    )
    with op.batch_alter_table("oidc_grants", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oidc_grants_app_id"), ["app_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_oidc_grants_user_id"), ["user_id"], unique=False)
    op.create_table(
        "oidc_refresh_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("family_id", sa.String(length=43), nullable=False),
        sa.Column("grant_id", sa.Integer(), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=True),
        sa.Column("auth_time", UTCDateTime(timezone=True), nullable=False),
        sa.Column("amr", sa.String(length=64), nullable=True),
        sa.Column("acr", sa.String(length=255), nullable=True),
        sa.Column("family_started_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("rotated_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoke_reason", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(["app_id"], ["connected_apps.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["grant_id"], ["oidc_grants.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("oidc_refresh_tokens", schema=None) as batch_op:
        for col in ("family_id", "grant_id", "app_id", "user_id", "session_id"):
            batch_op.create_index(batch_op.f(f"ix_oidc_refresh_tokens_{col}"), [col], unique=False)
    with op.batch_alter_table("session_participants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("protocol", sa.String(length=10), nullable=False, server_default="saml"))
    with op.batch_alter_table("sso_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("protocol", sa.String(length=10), nullable=True))


def downgrade():
    with op.batch_alter_table("sso_events", schema=None) as batch_op:
        batch_op.drop_column("protocol")
    op.execute(sa.text("DELETE FROM session_participants WHERE protocol <> 'saml'"))
    with op.batch_alter_table("session_participants", schema=None) as batch_op:
        batch_op.drop_column("protocol")
    with op.batch_alter_table("oidc_refresh_tokens", schema=None) as batch_op:
        for col in ("family_id", "grant_id", "app_id", "user_id", "session_id"):
            batch_op.drop_index(batch_op.f(f"ix_oidc_refresh_tokens_{col}"))
    op.drop_table("oidc_refresh_tokens")
    with op.batch_alter_table("oidc_grants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oidc_grants_user_id"))
        batch_op.drop_index(batch_op.f("ix_oidc_grants_app_id"))
    op.drop_table("oidc_grants")
