"""email_verified: the address is verified only once its mailbox was proven

Adds ``users.email_verified``. Until now the ``email_verified`` claim was
always true; from now on it is true only once the user came back with what
the mailbox received (``idp.users.mark_email_verified``).

Existing accounts: true for those whose audit trail shows such a proof — an
e-mailed code accepted (``otp.verified`` with channel ``email``) or a reset
link used (``password.reset``) — false for the others, since the operator's
word proved nothing. Addresses could not be changed before this revision, so
a past proof still holds for the address the account has. The audit trail is
kept ``[audit] retention_days`` (365): older proofs are not found, and those
users get ``true`` back at their next e-mailed code or reset link.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 17:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('email_verified', sa.Boolean(), nullable=False, server_default=sa.false())
        )

    connection = op.get_bind()
    audit = sa.table(
        'audit_events',
        sa.column('event', sa.String),
        sa.column('user_id', sa.Integer),
        sa.column('detail', sa.JSON),
    )
    proven = set()
    for row in connection.execute(
        sa.select(audit.c.event, audit.c.user_id, audit.c.detail).where(
            audit.c.event.in_(['otp.verified', 'password.reset']), audit.c.user_id.is_not(None)
        )
    ):
        if row.event == 'password.reset' or (row.detail or {}).get('channel') == 'email':
            proven.add(row.user_id)
    users = sa.table('users', sa.column('id', sa.Integer), sa.column('email_verified', sa.Boolean))
    for user_id in sorted(proven):
        connection.execute(
            users.update().where(users.c.id == user_id).values(email_verified=True)
        )


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('email_verified')
