"""Initial schema: users, groups, connected apps, sessions, SSO events, replay cache.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-28
"""
import sqlalchemy as sa
from alembic import op

from idp.models import UTCDateTime

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('connected_apps',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('slug', sa.String(length=100), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('entity_id', sa.String(length=1024), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('metadata_xml', sa.Text(), nullable=False),
    sa.Column('sp', sa.JSON(), nullable=False),
    sa.Column('settings', sa.JSON(), nullable=False),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('source_ref', sa.String(length=1024), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('connected_apps', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_connected_apps_entity_id'), ['entity_id'], unique=True)
        batch_op.create_index(batch_op.f('ix_connected_apps_slug'), ['slug'], unique=True)

    op.create_table('groups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=150), nullable=False),
    sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('groups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_groups_name'), ['name'], unique=True)

    op.create_table('org_settings',
    sa.Column('key', sa.String(length=100), nullable=False),
    sa.Column('value', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('pending_requests',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('pending_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pending_requests_created_at'), ['created_at'], unique=False)

    op.create_table('seen_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('issuer', sa.String(length=1024), nullable=False),
    sa.Column('request_id', sa.String(length=256), nullable=False),
    sa.Column('expires_at', UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('issuer', 'request_id', name='uq_seen_request')
    )
    with op.batch_alter_table('seen_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_seen_requests_expires_at'), ['expires_at'], unique=False)

    op.create_table('sso_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', UTCDateTime(timezone=True), nullable=False),
    sa.Column('event_type', sa.String(length=20), nullable=False),
    sa.Column('app_slug', sa.String(length=100), nullable=True),
    sa.Column('sp_entity_id', sa.String(length=1024), nullable=True),
    sa.Column('username', sa.String(length=150), nullable=True),
    sa.Column('outcome', sa.String(length=10), nullable=False),
    sa.Column('reason', sa.String(length=40), nullable=False),
    sa.Column('initiated_by', sa.String(length=10), nullable=True),
    sa.Column('binding', sa.String(length=20), nullable=True),
    sa.Column('request_id', sa.String(length=256), nullable=True),
    sa.Column('response_id', sa.String(length=64), nullable=True),
    sa.Column('assertion_id', sa.String(length=64), nullable=True),
    sa.Column('client_ip', sa.String(length=64), nullable=True),
    sa.Column('user_agent', sa.String(length=512), nullable=True),
    sa.Column('detail', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('sso_events', schema=None) as batch_op:
        batch_op.create_index('ix_sso_events_app_at', ['app_slug', 'at'], unique=False)
        batch_op.create_index('ix_sso_events_at', ['at'], unique=False)
        batch_op.create_index('ix_sso_events_outcome_at', ['outcome', 'at'], unique=False)
        batch_op.create_index('ix_sso_events_reason_at', ['reason', 'at'], unique=False)
        batch_op.create_index('ix_sso_events_user_at', ['username', 'at'], unique=False)

    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=150), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('first_name', sa.String(length=150), nullable=False),
    sa.Column('last_name', sa.String(length=150), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=True),
    sa.Column('is_admin', sa.Boolean(), nullable=False),
    sa.Column('disabled', sa.Boolean(), nullable=False),
    sa.Column('totp_secret', sa.String(length=64), nullable=True),
    sa.Column('totp_confirmed', sa.Boolean(), nullable=False),
    sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_users_username'), ['username'], unique=True)

    op.create_table('idp_sessions',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
    sa.Column('authn_at', UTCDateTime(timezone=True), nullable=False),
    sa.Column('mfa_at', UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_seen', UTCDateTime(timezone=True), nullable=False),
    sa.Column('ended_at', UTCDateTime(timezone=True), nullable=True),
    sa.Column('client_ip', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('idp_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_idp_sessions_user_id'), ['user_id'], unique=False)

    op.create_table('persistent_ids',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('app_entity_id', sa.String(length=1024), nullable=False),
    sa.Column('value', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('user_id', 'app_entity_id'),
    sa.UniqueConstraint('value')
    )
    op.create_table('user_groups',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['groups.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'group_id')
    )
    op.create_table('session_participants',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('session_id', sa.String(length=64), nullable=False),
    sa.Column('app_id', sa.Integer(), nullable=False),
    sa.Column('name_id', sa.String(length=512), nullable=False),
    sa.Column('name_id_format', sa.String(length=255), nullable=False),
    sa.Column('session_index', sa.String(length=64), nullable=False),
    sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['app_id'], ['connected_apps.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['session_id'], ['idp_sessions.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('session_id', 'app_id')
    )
    with op.batch_alter_table('session_participants', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_session_participants_session_id'), ['session_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_session_participants_session_index'), ['session_index'], unique=False)


def downgrade():
    for table in ("session_participants", "user_groups", "persistent_ids", "idp_sessions", "users", "sso_events",
                  "seen_requests", "pending_requests", "org_settings", "groups", "connected_apps"):
        op.drop_table(table)
