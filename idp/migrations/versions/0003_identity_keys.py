"""identity keys: look-alike identifiers and e-mails cannot coexist; credential ids

Adds ``users.username_key`` and ``users.email_key`` (NFKC + case folding, see
``idp.users.identity_key``) with unique constraints. Existing accounts that
collide are *reported*, never merged: the oldest account of each collision
gets the key, the others keep a null key (they still sign in with their exact
identifier or e-mail) and are listed in the migration's output for the
operator to rename or disable.

Also adds ``users.credential_id``, a random value replaced at every password
change (it was derived from the hash, which a rehash at sign-in changed too).
Existing reset links and remembered browsers end once, at this upgrade.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 15:00:00

"""
import logging
import secrets
import unicodedata

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")


def _key(value):
    # The same function as idp.users.identity_key, frozen here as migrations must be.
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value.strip()).casefold())


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('username_key', sa.String(length=600), nullable=True))
        batch_op.add_column(sa.Column('email_key', sa.String(length=1000), nullable=True))
        batch_op.add_column(sa.Column('credential_id', sa.String(length=32), nullable=True))

    connection = op.get_bind()
    users = sa.table(
        'users',
        sa.column('id', sa.Integer),
        sa.column('username', sa.String),
        sa.column('email', sa.String),
        sa.column('username_key', sa.String),
        sa.column('email_key', sa.String),
        sa.column('credential_id', sa.String),
    )
    rows = connection.execute(
        sa.select(users.c.id, users.c.username, users.c.email).order_by(users.c.id)
    ).all()
    taken = {}  # key -> (id, username) of the first account holding it, across both columns
    for row in rows:
        values = {'credential_id': secrets.token_hex(16)}
        for column, value in (('username_key', row.username), ('email_key', row.email)):
            key = _key(value)
            holder = taken.get(key)
            if holder is not None and holder[0] != row.id:
                log.warning(
                    "identity collision: account %r (id %s) and account %r (id %s) look alike"
                    " (%s); %r keeps signing in with its exact %s only: rename or disable one",
                    row.username, row.id, holder[1], holder[0], column, row.username,
                    'identifier' if column == 'username_key' else 'e-mail',
                )
                continue
            taken[key] = (row.id, row.username)
            values[column] = key
        connection.execute(users.update().where(users.c.id == row.id).values(**values))

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.alter_column('credential_id', existing_type=sa.String(length=32), nullable=False)
        batch_op.create_unique_constraint(batch_op.f('uq_users_username_key'), ['username_key'])
        batch_op.create_unique_constraint(batch_op.f('uq_users_email_key'), ['email_key'])


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_users_email_key'), type_='unique')
        batch_op.drop_constraint(batch_op.f('uq_users_username_key'), type_='unique')
        batch_op.drop_column('credential_id')
        batch_op.drop_column('email_key')
        batch_op.drop_column('username_key')
