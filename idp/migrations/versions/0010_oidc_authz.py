"""One session participant per (IdP session, app, protocol): an app with SAML and OIDC settings can be in one session
under both (its SAML SessionIndex and its OIDC `sid` are different rows, logged out each its own way).

Revision ID: 0010_oidc_authz
Revises: 0009_oidc_grants
Create Date: 2026-12-22
"""
import sqlalchemy as sa
from alembic import op

revision = "0010_oidc_authz"
down_revision = "0009_oidc_grants"
branch_labels = None
depends_on = None

TABLE = "session_participants"
NEW = "uq_session_participant_app_protocol"
# SQLite reflects the unnamed constraint of 0001 without a name: batch mode names it by this convention
CONVENTION = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _old_name() -> str | None:
    for uq in sa.inspect(op.get_bind()).get_unique_constraints(TABLE):
        if uq["column_names"] == ["session_id", "app_id"]:
            return uq["name"]
    return None


def upgrade():
    old = _old_name() or "uq_session_participants_session_id"
    with op.batch_alter_table(TABLE, naming_convention=CONVENTION) as batch_op:
        batch_op.drop_constraint(old, type_="unique")
        batch_op.create_unique_constraint(NEW, ["session_id", "app_id", "protocol"])


def downgrade():
    op.execute(sa.text("DELETE FROM session_participants WHERE protocol <> 'saml'"))
    with op.batch_alter_table(TABLE, naming_convention=CONVENTION) as batch_op:
        batch_op.drop_constraint(NEW, type_="unique")
        batch_op.create_unique_constraint("uq_session_participants_session_id", ["session_id", "app_id"])
