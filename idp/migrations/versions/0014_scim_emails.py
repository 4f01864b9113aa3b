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
    with op.batch_alter_table("users") as batch:
        batch.drop_column("scim_emails")
