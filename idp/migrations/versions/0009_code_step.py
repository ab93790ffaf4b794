"""code step: superseded codes, the user's last channel

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 17:10:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('otp_challenges', schema=None) as batch_op:
        batch_op.add_column(sa.Column('replaced', sa.JSON(), nullable=False, server_default='[]'))
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_channel', sa.String(length=10), nullable=True))


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('last_channel')
    with op.batch_alter_table('otp_challenges', schema=None) as batch_op:
        batch_op.drop_column('replaced')
