"""User lifecycle: SCIM identity columns on users and groups (externalId, lastModified, version for ETags), API
tokens, the outbox of durable jobs, outbound provisioning settings and provisioned accounts.

Revision ID: 0013_lifecycle
Revises: 0012_user_fields
Create Date: 2026-12-05
"""
import sqlalchemy as sa
from alembic import op

from idp.models import UTCDateTime

revision = "0013_lifecycle"
down_revision = "0012_user_fields"
branch_labels = None
depends_on = None


def upgrade():
    # plain ADD COLUMNs (no batch copy of users / groups: see 0012); uniqueness of external_id by index
    for table in ("users", "groups"):
        op.add_column(table, sa.Column("external_id", sa.String(length=255), nullable=True))
        op.add_column(table, sa.Column("updated_at", UTCDateTime(timezone=True), nullable=True))
        op.add_column(table, sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
        op.create_index(f"ix_{table}_external_id", table, ["external_id"], unique=True)
        op.execute(sa.text(f"UPDATE {table} SET updated_at = created_at"))
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("expires_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_used_ip", sa.String(length=64), nullable=True),
        sa.Column("revoked_at", UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_table(
        "outbox_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("run_after", UTCDateTime(timezone=True), nullable=False),
        sa.Column("locked_by", sa.String(length=100), nullable=True),
        sa.Column("locked_until", UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_outbox_jobs_state_run_after", "outbox_jobs", ["state", "run_after"])
    op.create_index("ix_outbox_jobs_key_id", "outbox_jobs", ["key", "id"])
    op.create_table(
        "app_provisioning",
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("base_url", sa.String(length=2048), nullable=False),
        sa.Column("auth_kind", sa.String(length=20), nullable=False),
        sa.Column("secret_sealed", sa.Text(), nullable=True),
        sa.Column("token_url", sa.String(length=2048), nullable=True),
        sa.Column("client_id", sa.String(length=255), nullable=True),
        sa.Column("operations", sa.JSON(), nullable=False),
        sa.Column("mapping", sa.JSON(), nullable=False),
        sa.Column("deprovision", sa.String(length=10), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["connected_apps.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("app_id"),
    )
    op.create_table(
        "provisioned_accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("remote_id", sa.String(length=255), nullable=True),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=True),
        sa.Column("last_synced_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["connected_apps.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("app_id", "user_id", name="uq_provisioned_accounts_app_user"),
    )
    op.create_index("ix_provisioned_accounts_user_id", "provisioned_accounts", ["user_id"])
    op.create_index("ix_provisioned_accounts_app_remote", "provisioned_accounts", ["app_id", "remote_id"])


def downgrade():
    op.drop_table("provisioned_accounts")
    op.drop_table("app_provisioning")
    op.drop_index("ix_outbox_jobs_key_id", table_name="outbox_jobs")
    op.drop_index("ix_outbox_jobs_state_run_after", table_name="outbox_jobs")
    op.drop_table("outbox_jobs")
    op.drop_table("api_tokens")
    for table in ("groups", "users"):
        op.drop_index(f"ix_{table}_external_id", table_name=table)
        for column in ("version", "updated_at", "external_id"):
            op.drop_column(table, column)   # native DROP COLUMN (SQLite 3.35+): no copy of the table
