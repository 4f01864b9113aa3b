"""IdP sessions remember the browser's user agent (the session lists on /account and the admin's user page).

Revision ID: 0017_session_user_agent
Revises: 0016_notifications
Create Date: 2026-12-05
"""
import sqlalchemy as sa
from alembic import op

revision = "0017_session_user_agent"
down_revision = "0016_notifications"
branch_labels = None
depends_on = None


def upgrade():
    # a plain ADD COLUMN: a batch copy of idp_sessions would let SQLite's ON DELETE CASCADE take the
    # session_participants rows with the dropped old table
    op.add_column("idp_sessions", sa.Column("user_agent", sa.String(length=512), nullable=True))


def downgrade():
    # a plain DROP COLUMN (SQLite 3.35+) for the same reason: no copy of the table
    op.drop_column("idp_sessions", "user_agent")
