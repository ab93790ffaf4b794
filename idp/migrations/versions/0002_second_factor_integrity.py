"""second-factor integrity: fresh-code logins, confirmed backup phone changes

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
        batch_op.add_column(sa.Column('credential_tag', sa.String(length=32), nullable=True))

    # A backup phone change waits here for its codes (e-mail, then SMS to the new number).
    op.create_table('phone_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('sid', sa.String(length=64), nullable=False),
    sa.Column('nonce', sa.String(length=64), nullable=False),
    sa.Column('phone', sa.String(length=20), nullable=True),
    sa.Column('step', sa.String(length=10), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('sent_at', sa.BigInteger(), nullable=False),
    sa.Column('code_expires_at', sa.BigInteger(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('sends', sa.Integer(), nullable=False),
    sa.Column('used', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('expires_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_phone_changes_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_phone_changes')),
    sa.UniqueConstraint('user_id', name=op.f('uq_phone_changes_user_id'))
    )
    with op.batch_alter_table('phone_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_phone_changes_expires_at'), ['expires_at'], unique=False)


def downgrade():
    with op.batch_alter_table('phone_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_phone_changes_expires_at'))

    op.drop_table('phone_changes')
    with op.batch_alter_table('login_transactions', schema=None) as batch_op:
        batch_op.drop_column('credential_tag')
        batch_op.drop_column('fresh_code')
