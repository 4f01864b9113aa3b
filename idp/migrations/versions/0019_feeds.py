"""Federation feeds: signed metadata aggregates whose selected SPs become connected apps.

Revision ID: 0019_feeds
Revises: 0018_metadata_refresh
Create Date: 2026-12-05
"""
import sqlalchemy as sa
from alembic import op

from idp.models import UTCDateTime

revision = "0019_feeds"
down_revision = "0018_metadata_refresh"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "feeds",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(length=100), nullable=False, unique=True),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("trust_anchor_pem", sa.Text(), nullable=False),
        sa.Column("selection", sa.JSON(), nullable=False),
        sa.Column("entities", sa.JSON(), nullable=False),
        sa.Column("max_interval_s", sa.Integer(), nullable=False),
        sa.Column("etag", sa.String(length=512), nullable=True),
        sa.Column("last_modified", sa.String(length=512), nullable=True),
        sa.Column("fetched_sha256", sa.String(length=64), nullable=True),
        sa.Column("last_synced_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("next_due_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_outcome", sa.String(length=20), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_feeds_next_due_at", "feeds", ["next_due_at"])
    op.create_table(
        "feed_members",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("feed_id", sa.Integer(), sa.ForeignKey("feeds.id", ondelete="CASCADE"), nullable=False),
        sa.Column("app_id", sa.Integer(), sa.ForeignKey("connected_apps.id", ondelete="CASCADE"), nullable=False,
                  unique=True),
        sa.Column("entity_id", sa.String(length=1024), nullable=False),
        sa.Column("entity_sha256", sa.String(length=64), nullable=False),
        sa.Column("absent", sa.Boolean(), nullable=False),
        sa.Column("disabled_by_feed", sa.Boolean(), nullable=False),
        sa.Column("held_xml", sa.Text(), nullable=True),
        sa.Column("held_reason", sa.String(length=300), nullable=True),
        sa.Column("held_sha256", sa.String(length=64), nullable=True),
    )
    op.create_index("ix_feed_members_feed_id", "feed_members", ["feed_id"])


def downgrade():
    op.drop_index("ix_feed_members_feed_id", table_name="feed_members")
    op.drop_table("feed_members")
    op.drop_index("ix_feeds_next_due_at", table_name="feeds")
    op.drop_table("feeds")
