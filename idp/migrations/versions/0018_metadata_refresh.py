"""Per-app metadata sources: a URL or MDQ service, refresh mode, trust anchor, schedule, last outcome, held change.

Revision ID: 0018_metadata_refresh
Revises: 0017_session_user_agent
Create Date: 2026-12-05
"""
import sqlalchemy as sa
from alembic import op

from idp.models import UTCDateTime

revision = "0018_metadata_refresh"
down_revision = "0017_session_user_agent"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "app_metadata_sources",
        sa.Column("app_id", sa.Integer(), sa.ForeignKey("connected_apps.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("url", sa.String(length=2048), nullable=True),
        sa.Column("mdq_base", sa.String(length=2048), nullable=True),
        sa.Column("refresh_mode", sa.String(length=10), nullable=False),
        sa.Column("trust_anchor_pem", sa.Text(), nullable=True),
        sa.Column("max_interval_s", sa.Integer(), nullable=False),
        sa.Column("etag", sa.String(length=512), nullable=True),
        sa.Column("last_modified", sa.String(length=512), nullable=True),
        sa.Column("last_fetched_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("next_due_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_outcome", sa.String(length=20), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("held_xml", sa.Text(), nullable=True),
        sa.Column("held_diff", sa.JSON(), nullable=True),
        sa.Column("held_reason", sa.String(length=300), nullable=True),
        sa.Column("held_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("rejected_sha256", sa.String(length=64), nullable=True),
        sa.Column("fetched_sha256", sa.String(length=64), nullable=True),
    )
    op.create_index("ix_app_metadata_sources_next_due_at", "app_metadata_sources", ["next_due_at"])


def downgrade():
    op.drop_index("ix_app_metadata_sources_next_due_at", table_name="app_metadata_sources")
    op.drop_table("app_metadata_sources")
