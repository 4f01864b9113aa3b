"""How each IdP session was authenticated: RFC 8176 amr values on the session row.

Revision ID: 0006_session_amr
Revises: 0005_passkeys
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = "0006_session_amr"
down_revision = "0005_passkeys"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("idp_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("amr", sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table("idp_sessions", schema=None) as batch_op:
        batch_op.drop_column("amr")
