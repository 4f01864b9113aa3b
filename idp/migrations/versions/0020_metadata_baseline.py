"""Per-app metadata sources remember the admin-approved baseline (the SP summary of the last manual upload or
approval) that the refresh's dangerous-change rule compares against.

Revision ID: 0020_metadata_baseline
Revises: 0019_feeds
Create Date: 2026-12-05
"""
import sqlalchemy as sa
from alembic import op

revision = "0020_metadata_baseline"
down_revision = "0019_feeds"
branch_labels = None
depends_on = None


def upgrade():
    # a plain ADD COLUMN (no batch copy of the table)
    op.add_column("app_metadata_sources", sa.Column("baseline_sp", sa.JSON(), nullable=True))


def downgrade():
    op.drop_column("app_metadata_sources", "baseline_sp")
