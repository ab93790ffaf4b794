"""operator console: the acting admin in the audit, name search, the last code's time

Adds ``audit_events.actor_id`` (the administrator who acted from the operator
console), ``users.name_key`` (``identity_key(name)``, indexed: the console's
search by the start of a name; on PostgreSQL the identity keys move to the "C"
collation, where prefix ranges are exact) and ``sso_sessions.code_at`` (when a code was
last typed in the session: the console asks a fresh one past
``[admin] max_session_minutes``). Existing names get their key here.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 20:30:00

"""
import unicodedata

from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def _key(value):
    """``idp.users.identity_key`` as of this revision: NFKC, case folding, NFKC."""
    return unicodedata.normalize(
        'NFKC', unicodedata.normalize('NFKC', (value or '').strip()).casefold()
    )[:600]


def _key_type(length):
    return sa.String(length).with_variant(sa.String(length, collation='C'), 'postgresql')


def upgrade():
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('actor_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_audit_events_actor_id'), ['actor_id'], unique=False)
    with op.batch_alter_table('sso_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('code_at', sa.BigInteger(), nullable=True))
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('name_key', _key_type(600), nullable=False, server_default='')
        )
        batch_op.create_index(batch_op.f('ix_users_name_key'), ['name_key'], unique=False)

    connection = op.get_bind()
    if connection.dialect.name == 'postgresql':
        for column, length in (('username_key', 600), ('email_key', 1000)):
            op.alter_column(
                'users', column, type_=_key_type(length), existing_type=sa.String(length),
                existing_nullable=True,
            )
    users = sa.table(
        'users', sa.column('id', sa.Integer), sa.column('name', sa.String),
        sa.column('name_key', sa.String),
    )
    for row in connection.execute(sa.select(users.c.id, users.c.name)).all():
        if row.name:
            connection.execute(
                users.update().where(users.c.id == row.id).values(name_key=_key(row.name))
            )


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        for column, length in (('username_key', 600), ('email_key', 1000)):
            op.alter_column(
                'users', column, type_=sa.String(length, collation='default'),
                existing_type=_key_type(length), existing_nullable=True,
            )
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_users_name_key'))
        batch_op.drop_column('name_key')
    with op.batch_alter_table('sso_sessions', schema=None) as batch_op:
        batch_op.drop_column('code_at')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_events_actor_id'))
        batch_op.drop_column('actor_id')
