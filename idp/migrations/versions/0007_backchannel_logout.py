"""back-channel logout: which RPs took part in each SSO session

``session_clients`` lists the clients given an authorization code under each
SSO session (by its public ``sid``), so that ending the session can send each
of them a Logout Token (OpenID Connect Back-Channel Logout 1.0; docs/RELYING_PARTIES.md,
"Back-channel logout"). Rows go with their session or client.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 17:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('session_clients',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sid', sa.String(length=64), nullable=False),
    sa.Column('client_id', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['clients.client_id'], name=op.f('fk_session_clients_client_id_clients'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['sid'], ['sso_sessions.sid'], name=op.f('fk_session_clients_sid_sso_sessions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_session_clients')),
    sa.UniqueConstraint('sid', 'client_id', name=op.f('uq_session_clients_sid'))
    )
    with op.batch_alter_table('session_clients', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_session_clients_client_id'), ['client_id'], unique=False)


def downgrade():
    with op.batch_alter_table('session_clients', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_session_clients_client_id'))
    op.drop_table('session_clients')
