"""Admin-defined user fields: their definitions (user_fields), each user's values (users.custom_fields, a JSON
object; existing users get {}), and the claims on values of unique fields (user_field_unique).

Revision ID: 0012_user_fields
Revises: 0011_oidc_resources
Create Date: 2026-12-05
"""
import sqlalchemy as sa
from alembic import op

from idp.models import UTCDateTime

revision = "0012_user_fields"
down_revision = "0011_oidc_resources"
branch_labels = None
depends_on = None


def upgrade():
    # a plain ADD COLUMN with a server default (no batch copy of the users table: on SQLite a copy would drop
    # and re-create it, and ON DELETE CASCADE would take sessions, passkeys ... with it)
    op.add_column("users", sa.Column("custom_fields", sa.JSON(), nullable=False, server_default="{}"))
    op.create_table(
        "user_fields",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=150), nullable=False),
        sa.Column("type", sa.String(length=10), nullable=False),
        sa.Column("unique", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "user_field_unique",
        sa.Column("field_name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=512), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("field_name", "value"),
    )
    op.create_index("ix_user_field_unique_user_id", "user_field_unique", ["user_id"])


def downgrade():
    op.drop_index("ix_user_field_unique_user_id", table_name="user_field_unique")
    op.drop_table("user_field_unique")
    op.drop_table("user_fields")
    op.drop_column("users", "custom_fields")   # native DROP COLUMN (SQLite 3.35+): no copy of the users table
