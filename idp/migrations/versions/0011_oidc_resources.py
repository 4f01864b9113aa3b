"""RFC 8707 resource indicators: the resources an OIDC client may ask for (its allowlist), and the resources a
refresh token family was issued for (section 2.2). Existing rows get an empty list: no resource allowed, and
existing families keep the client id as their only audience (as they had).

Revision ID: 0011_oidc_resources
Revises: 0010_oidc_authz
Create Date: 2026-12-23
"""
import sqlalchemy as sa
from alembic import op

revision = "0011_oidc_resources"
down_revision = "0010_oidc_authz"
branch_labels = None
depends_on = None

TABLES = ("oidc_clients", "oidc_refresh_tokens")


def upgrade():
    for table in TABLES:
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(sa.Column("resources", sa.JSON(), nullable=True))
        op.execute(sa.text(f"UPDATE {table} SET resources = '[]'"))
        with op.batch_alter_table(table) as batch_op:
            batch_op.alter_column("resources", existing_type=sa.JSON(), nullable=False)


def downgrade():
    for table in TABLES:
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column("resources")
