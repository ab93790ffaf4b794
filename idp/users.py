"""Accounts of health professionals: creation, lookup, password changes.

Identifiers and e-mails are compared by a key: NFKC normalisation and case
folding (Unicode §3.13, UAX #15), so ``alice``, ``Alice`` and a fullwidth
``ａｌｉｃｅ`` are one name, and ``élise`` typed in NFC or NFD is one name.
Control, format (zero-width…) and other invisible characters are refused:
two accounts must never display identically in an RP's logs (SECURITY.md).
"""

from __future__ import annotations

import unicodedata

from flask import current_app
from sqlalchemy import case, delete, or_, select
from sqlalchemy.exc import IntegrityError

from . import clock
from .models import User, db
from .models.users import new_credential_id
from .passwords import hash_password


class UserError(ValueError):
    """An account operation was refused; the message says why."""


# Unicode general categories never allowed in an identifier or an e-mail address:
# controls, format characters (zero-width space and joiners, bidi marks…),
# surrogates, private use, unassigned, and separators (spaces of every kind).
_REFUSED_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"}


def identity_key(value: str) -> str:
    """The comparison key of an identifier or e-mail: NFKC, then case folding, then NFKC."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value.strip()).casefold())


def invisible_characters(value: str) -> bool:
    return any(unicodedata.category(char) in _REFUSED_CATEGORIES for char in value)


def normalize_email(email: str) -> str:
    return email.strip().lower()


def find_by_identifier(identifier: str) -> User | None:
    """The identifier field takes the username or the e-mail, compared by key (L2).

    An exact username wins: after the identifier migration, accounts whose
    names collided keep signing in with the exact name they were given.
    """
    value = identifier.strip()
    if not value or len(value) > 254:
        return None
    key = identity_key(value)
    exact_first = case((User.username == value, 0), else_=1)
    return db.session.scalars(
        select(User)
        .where(
            or_(
                User.username == value,
                User.email == normalize_email(value),
                User.username_key == key,
                User.email_key == key,
            )
        )
        .order_by(exact_first, User.id)
    ).first()


def find_by_username(username: str) -> User | None:
    """The account named ``username`` (the CLI's argument), by key if not exactly."""
    exact = db.session.scalars(select(User).where(User.username == username)).first()
    if exact is not None:
        return exact
    return db.session.scalars(
        select(User).where(User.username_key == identity_key(username))
    ).first()


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
    username = unicodedata.normalize("NFC", username.strip())
    email = normalize_email(unicodedata.normalize("NFC", email))
    if not username or invisible_characters(username) or "@" in identity_key(username):
        raise UserError(
            "the identifier must be non-empty, without '@', spaces, control or invisible characters"
        )
    if "@" not in email or email.startswith("@") or email.endswith("@"):
        raise UserError(f"not an e-mail address: {email!r}")
    if len(username) > 150 or len(email) > 254:
        raise UserError("the identifier (150) or the e-mail address (254) is too long")
    if invisible_characters(email):
        raise UserError("the e-mail address holds spaces, control or invisible characters")
    username_key, email_key = identity_key(username), identity_key(email)
    if len(username_key) > 600 or len(email_key) > 1000:  # NFKC may expand up to 18 times
        raise UserError("the identifier or the e-mail address is too long once normalised")
    clash = db.session.scalars(
        select(User).where(
            or_(
                User.username_key.in_([username_key, email_key]),
                User.email_key.in_([username_key, email_key]),
            )
        )
    ).first()
    if clash:
        raise UserError(
            "an account with this identifier or e-mail already exists"
            " (compared without case, accents forms or look-alike characters)"
        )
    given, _, family = name.partition(" ")
    user = User(
        username=username,
        username_key=username_key,
        email=email,
        email_key=email_key,
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
    try:
        db.session.commit()
    except IntegrityError:  # a look-alike created at the same moment
        db.session.rollback()
        raise UserError("an account with this identifier or e-mail already exists") from None
    return user


def set_password(user: User, password: str) -> None:
    """Replace the credential; reset links and remembered browsers tied to it die with it.

    Does not commit: the caller's step (a reset, a renewal, an operator's change)
    commits the new password with the sessions it ends and the notice it sends.
    """
    set_password_hash(user, hash_password(password))


def set_password_hash(user: User, password_hash: str) -> None:
    """``set_password`` with the hash computed beforehand, so that a step can hash
    before its first write (SQLite lets one writer in at a time)."""
    from .models import PasswordResetToken

    user.password_hash = password_hash
    user.password_changed_at = clock.now()
    user.credential_id = new_credential_id()
    db.session.execute(delete(PasswordResetToken).where(PasswordResetToken.user_id == user.id))


def password_expired(user: User) -> bool:
    """P6: past ``[password] max_age_days`` the password must be renewed at sign-in."""
    days = current_app.config["IDP"]["password"]["max_age_days"]
    return days > 0 and clock.now() - user.password_changed_at > days * 86400


def list_users() -> list[User]:
    return list(db.session.scalars(select(User).order_by(User.username)))


def disable_user(user: User) -> None:
    """Disable an account and end everything it holds: sessions and tokens."""
    from .auth.sessions import end_all_of  # the auth package imports this module

    user.disabled = True
    end_all_of(user, "account_disabled")
    db.session.commit()
