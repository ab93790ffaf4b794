"""psc: Pro Santé Connect sign-in (national identifier, PSC logins and sessions)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 10:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('national_id', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('psc_sub', sa.String(length=255), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_users_national_id'), ['national_id'])
    with op.batch_alter_table('sso_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('psc_id_token', sa.Text(), nullable=True))
    with op.batch_alter_table('login_transactions', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('require_psc', sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column('psc_state_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('psc_nonce', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('psc_verifier', sa.String(length=128), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f('uq_login_transactions_psc_state_hash'), ['psc_state_hash']
        )


def downgrade():
    with op.batch_alter_table('login_transactions', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_login_transactions_psc_state_hash'), type_='unique')
        batch_op.drop_column('psc_verifier')
        batch_op.drop_column('psc_nonce')
        batch_op.drop_column('psc_state_hash')
        batch_op.drop_column('require_psc')
    with op.batch_alter_table('sso_sessions', schema=None) as batch_op:
        batch_op.drop_column('psc_id_token')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_users_national_id'), type_='unique')
        batch_op.drop_column('psc_sub')
        batch_op.drop_column('national_id')
