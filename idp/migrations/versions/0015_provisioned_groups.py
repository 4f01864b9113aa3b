"""Outbound provisioning of groups: the SCIM Group each IdP group is at an app (remote id, last pushed hash).

Revision ID: 0015_provisioned_groups
Revises: 0014_scim_emails
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

from idp.models import UTCDateTime

revision = "0015_provisioned_groups"
down_revision = "0014_scim_emails"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "provisioned_groups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("remote_id", sa.String(length=255), nullable=True),
        sa.Column("last_hash", sa.String(length=64), nullable=True),
        sa.Column("last_synced_at", UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["app_id"], ["connected_apps.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["group_id"], ["groups.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("app_id", "group_id", name="uq_provisioned_groups_app_group"),
    )
    op.create_index("ix_provisioned_groups_group_id", "provisioned_groups", ["group_id"])


def downgrade():
    op.drop_table("provisioned_groups")
