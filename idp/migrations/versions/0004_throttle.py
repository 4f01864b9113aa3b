"""TOTP long-window cap: consecutive wrong codes and the suspension time on the user row.

Revision ID: 0004_throttle
Revises: 0003_secrets
Create Date: 2026-12-05
"""
import sqlalchemy as sa
from alembic import op

from idp.models import UTCDateTime

revision = "0004_throttle"
down_revision = "0003_secrets"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("totp_failures", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("totp_suspended_at", UTCDateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("totp_suspended_at")
        batch_op.drop_column("totp_failures")
