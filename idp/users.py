"""Accounts of health professionals: creation, lookup, password changes."""

from __future__ import annotations

from sqlalchemy import delete, func, or_, select

from . import clock
from .models import User, db
from .passwords import hash_password


class UserError(ValueError):
    """An account operation was refused; the message says why."""


def normalize_email(email: str) -> str:
    return email.strip().lower()


def find_by_identifier(identifier: str) -> User | None:
    """The identifier field takes the username or the e-mail (case-insensitive) (L2)."""
    value = identifier.strip()
    if not value:
        return None
    return db.session.scalars(
        select(User).where(or_(User.username == value, User.email == normalize_email(value)))
    ).first()


def find_by_username(username: str) -> User | None:
    return db.session.scalars(select(User).where(User.username == username)).first()


def create_user(
    username: str,
    email: str,
    password: str,
    *,
    name: str = "",
    profession: str = "",
    roles: list[str] | None = None,
    backup_phone: str | None = None,
) -> User:
    username = username.strip()
    email = normalize_email(email)
    if not username or any(c.isspace() for c in username) or "@" in username:
        raise UserError("the identifier must be non-empty, without spaces or '@'")
    if "@" not in email or email.startswith("@") or email.endswith("@"):
        raise UserError(f"not an e-mail address: {email!r}")
    clash = db.session.scalars(
        select(User).where(
            or_(
                User.username == username,
                User.email == email,
                func.lower(User.username) == email,
            )
        )
    ).first()
    if clash:
        raise UserError("an account with this identifier or e-mail already exists")
    given, _, family = name.partition(" ")
    user = User(
        username=username,
        email=email,
        name=name,
        given_name=given,
        family_name=family,
        profession=profession,
        roles=sorted(set(roles or [])),
        backup_phone=backup_phone,
        password_hash=hash_password(password),
        password_changed_at=clock.now(),
    )
    db.session.add(user)
    db.session.commit()
    return user


def set_password(user: User, password: str) -> None:
    """Replace the credential; reset links and remembered browsers tied to it die with it."""
    from .models import PasswordResetToken

    user.password_hash = hash_password(password)
    user.password_changed_at = clock.now()
    db.session.execute(delete(PasswordResetToken).where(PasswordResetToken.user_id == user.id))
    db.session.commit()


def list_users() -> list[User]:
    return list(db.session.scalars(select(User).order_by(User.username)))


def disable_user(user: User) -> None:
    """Disable an account and end everything it holds: sessions and tokens."""
    from .auth.sessions import end_all_of  # the auth package imports this module

    user.disabled = True
    end_all_of(user, "account_disabled")
