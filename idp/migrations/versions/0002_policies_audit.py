"""Policies, MFA and admin audit: TOTP replay guard, throttle counters, audit trail, pending-request expiry.

Revision ID: 0002_policies_audit
Revises: 0001_initial
Create Date: 2026-11-28
"""
import sqlalchemy as sa
from alembic import op

from idp.models import UTCDateTime

revision = "0002_policies_audit"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("totp_last_step", sa.Integer(), nullable=True))

    # Parked requests live minutes; dropping the ones in flight is harmless (the user starts again).
    op.execute("DELETE FROM pending_requests")
    with op.batch_alter_table("pending_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_pending_requests_created_at")
        batch_op.add_column(sa.Column("expires_at", UTCDateTime(timezone=True), nullable=False,
                                      server_default=sa.func.current_timestamp()))
        batch_op.create_index("ix_pending_requests_expires_at", ["expires_at"], unique=False)

    op.create_table(
        "throttle_counters",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_start", UTCDateTime(timezone=True), nullable=False),
        sa.Column("locked_until", UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "admin_audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=60), nullable=False),
        sa.Column("target_type", sa.String(length=40), nullable=False),
        sa.Column("target", sa.String(length=300), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("admin_audit", schema=None) as batch_op:
        batch_op.create_index("ix_admin_audit_at", ["at"], unique=False)
        batch_op.create_index("ix_admin_audit_target", ["target"], unique=False)


def downgrade():
    op.drop_table("admin_audit")
    op.drop_table("throttle_counters")
    with op.batch_alter_table("pending_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_pending_requests_expires_at")
        batch_op.drop_column("expires_at")
        batch_op.create_index("ix_pending_requests_created_at", ["created_at"], unique=False)
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("totp_last_step")
