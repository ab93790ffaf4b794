"""refresh reuse: when a refresh token was rotated

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 17:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('refresh_rotated_at', sa.BigInteger(), nullable=True))


def downgrade():
    with op.batch_alter_table('tokens', schema=None) as batch_op:
        batch_op.drop_column('refresh_rotated_at')
