"""Safe factor enrolment: recovery codes, admin-issued enrolment links, when TOTP was enrolled.

Revision ID: 0007_enrolment
Revises: 0006_session_amr
Create Date: 2026-12-12
"""
import sqlalchemy as sa
from alembic import op

from idp.models import UTCDateTime

revision = "0007_enrolment"
down_revision = "0006_session_amr"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("totp_enrolled_at", UTCDateTime(timezone=True), nullable=True))
    op.create_table(
        "recovery_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=100), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("recovery_codes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_recovery_codes_user_id"), ["user_id"], unique=False)
    op.create_table(
        "enrolment_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("enrolment_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_enrolment_links_user_id"), ["user_id"], unique=False)


def downgrade():
    with op.batch_alter_table("enrolment_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_enrolment_links_user_id"))
    op.drop_table("enrolment_links")
    with op.batch_alter_table("recovery_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_recovery_codes_user_id"))
    op.drop_table("recovery_codes")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("totp_enrolled_at")
