"""SCIM: the `emails` list a provisioning client wrote (users.email stays the primary address).

Revision ID: 0014_scim_emails
Revises: 0013_lifecycle
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = "0014_scim_emails"
down_revision = "0013_lifecycle"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("users", sa.Column("scim_emails", sa.JSON(), nullable=True))


def downgrade():
    # native DROP COLUMN (SQLite 3.35+): a batch copy of users would take every row referring to it along
    op.drop_column("users", "scim_emails")
