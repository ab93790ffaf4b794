"""second-factor integrity: fresh-code logins

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 14:30:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('login_transactions', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('fresh_code', sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade():
    with op.batch_alter_table('login_transactions', schema=None) as batch_op:
        batch_op.drop_column('fresh_code')
