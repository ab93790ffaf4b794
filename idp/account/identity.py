"""The national identifier of an account (RPPS or ADELI): the one key a Pro Santé Connect
login is linked by (docs/OPERATING.md, "Pro Santé Connect"; SECURITY.md).

Whoever holds the PSC identity of that number signs in to the account, so every
change goes through here: checked (``idp.psc.national_id``), held by one account at
most, written by a compare-and-set on the value read, audited, and announced to the
user by e-mail (the outbox: committed with the change, sent after it). The operator
edit (``set_national_id``: ``idp user set-national-id``, the operator console) and the
user's own link from the console (``link``, via ``idp.psc.service``) share it.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from .. import audit
from ..delivery import outbox
from ..models import User, db
from ..psc.national_id import InvalidNationalId, normalize
from ..users import UserError


def checked(raw: str) -> str:
    """The identifier as stored, or ``UserError`` saying why not."""
    try:
        return normalize(raw)
    except InvalidNationalId as exc:
        raise UserError(f"national identifier refused: {exc}") from None


def held_by_another(national_id: str, user: User) -> bool:
    return (
        db.session.scalars(
            select(User.id).where(User.national_id == national_id, User.id != user.id)
        ).first()
        is not None
    )


def write(user: User, expected: str | None, national_id: str | None, psc_sub=None) -> bool:
    """Building block (no commit): replace ``expected`` (the value read) by ``national_id``;
    PSC's ``sub`` goes with it (a new identifier is another PSC identity, its old ``sub``
    must not stay). False if another request changed it first. Queues the notice."""
    condition = User.national_id.is_(None) if expected is None else User.national_id == expected
    moved = db.session.execute(
        update(User)
        .where(User.id == user.id, condition)
        .values(national_id=national_id, psc_sub=psc_sub if national_id else None)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:
        return False
    if national_id:
        outbox.enqueue("psc_linked", user, national_id=national_id)
    else:
        outbox.enqueue("psc_unlinked", user)
    return True


def commit_or_taken() -> None:
    """Commit the step; the unique constraint refuses a number linked meanwhile elsewhere."""
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise UserError("another account already has this national identifier") from None


def set_national_id(user: User, raw: str | None, *, actor: User | None = None) -> str | None:
    """An operator records (or, ``raw`` empty, clears) the RPPS or ADELI number of an
    account: one step, committed here; ``UserError`` if the number is refused or another
    account holds it. ``actor``: the administrator acting from the operator console
    (audited as ``actor_id``; none from the shell). Returns the value stored."""
    previous = user.national_id
    value = checked(raw) if raw else None
    if value == previous:
        return value
    if value is not None and held_by_another(value, user):
        raise UserError("another account already has this national identifier")
    if not write(user, previous, value):
        db.session.rollback()
        raise UserError("the national identifier was changed meanwhile: look again")
    audit.record(
        "account.national_id_set",
        user_id=user.id,
        commit=False,
        actor_id=actor.id if actor is not None else None,
        national_id=value,
        previous=previous,
    )
    commit_or_taken()
    db.session.refresh(user)
    outbox.send_soon()
    return value
