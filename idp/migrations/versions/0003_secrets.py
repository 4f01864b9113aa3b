"""TOTP secrets sealed at rest: users.totp_secret holds `v1:<kid>:<AES-GCM>` (up to ~100 characters).

Existing plain-text secrets keep working and are sealed by `idp db upgrade` (after the migrations, where the
data key is known) or when next read.

Revision ID: 0003_secrets
Revises: 0002_policies_audit
Create Date: 2026-12-05
"""
import sqlalchemy as sa
from alembic import op

revision = "0003_secrets"
down_revision = "0002_policies_audit"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column("totp_secret", existing_type=sa.String(length=64), type_=sa.String(length=255),
                              existing_nullable=True)


def downgrade():
    # sealed values do not fit the old width: open them first (there is no command for it) or reset factors
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column("totp_secret", existing_type=sa.String(length=255), type_=sa.String(length=64),
                              existing_nullable=True)
