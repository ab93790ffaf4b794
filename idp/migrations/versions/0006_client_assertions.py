"""client assertions: the jti of each private_key_jwt assertion, used once

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 17:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('client_assertion_jtis',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('client_id', sa.String(length=100), nullable=False),
    sa.Column('jti_hash', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_client_assertion_jtis')),
    sa.UniqueConstraint('client_id', 'jti_hash', name=op.f('uq_client_assertion_jtis_client_id'))
    )
    with op.batch_alter_table('client_assertion_jtis', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_client_assertion_jtis_expires_at'), ['expires_at'], unique=False)


def downgrade():
    with op.batch_alter_table('client_assertion_jtis', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_client_assertion_jtis_expires_at'))
    op.drop_table('client_assertion_jtis')
