"""Accounts of health professionals: creation, lookup, password changes.

Identifiers and e-mails are compared by a key: NFKC normalisation and case
folding (Unicode §3.13, UAX #15), so ``alice``, ``Alice`` and a fullwidth
``ａｌｉｃｅ`` are one name, and ``élise`` typed in NFC or NFD is one name.
Control, format (zero-width…) and other invisible characters are refused:
two accounts must never display identically in an RP's logs (SECURITY.md).

E-mail addresses go through one validator, ``validate_email_address``, whoever
sets them (``idp user add``, the operator console); the account console does
not let a user change the address (README, "The account console").
"""

from __future__ import annotations

import re
import unicodedata
from contextlib import suppress

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from sqlalchemy import case, delete, or_, select, update
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
    """How addresses were stored before ``validate_email_address``: lower-cased."""
    return email.strip().lower()


def validate_email_address(raw: str) -> str:
    """The normalised address, or ``UserError``: the one check of an e-mail address.

    The address is where sign-in codes and reset links go, so it must name exactly
    one mailbox, the same for us, the SMTP transport and the user (SECURITY.md,
    "Identifiers"). ``email-validator`` (RFC 5321/5322, IDNA 2008) refuses what a
    mail library would read differently from our duplicate check: a display name
    (``"x" <other@…>``: Flask-Mail parses it and writes to ``other@…``), CR/LF (a
    header injection; before, the trailing ones were stripped silently), a second
    ``@``, a trailing dot, quoted local parts and IP-literal domains. No DNS look-up
    (``check_deliverability=False``): the operator's network may not resolve, and a
    bounce is no proof either way. ``allow_smtputf8=False``: the part before the
    ``@`` must be ASCII, deliverable by any mail relay; an internationalised domain
    is accepted and stored in its Unicode form (``a@école.fr``, also when typed as
    ``a@xn--cole-9oa.fr``), which Flask-Mail encodes in IDNA when sending.

    Normalised: the library's form (domain IDNA-normalised, NFC), lower-cased as
    addresses always were stored here: RFC 5321 lets a mailbox name be
    case-sensitive, but no mail service our users have treats it so, and one
    spelling per mailbox is what RPs and logs see. Duplicates are found by
    ``identity_key`` (case folding, NFKC).
    """
    value = raw.strip(" ") if isinstance(raw, str) else ""  # only plain spaces: never CR/LF
    if not value or len(value) > 254:
        raise UserError("an e-mail address has 1 to 254 characters")
    if invisible_characters(value):
        raise UserError("the e-mail address holds spaces, control or invisible characters")
    try:
        checked = validate_email(
            value,
            check_deliverability=False,
            allow_smtputf8=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_display_name=False,
            strict=True,  # also the 64-octet limit of the part before the @
        )
    except EmailNotValidError as exc:
        raise UserError(f"not a usable e-mail address: {exc}") from None
    return unicodedata.normalize("NFC", checked.normalized).lower()


def mark_email_verified(user: User, channel: str = "email") -> None:
    """The user came back with what only the account's mailbox received (a code typed
    at sign-in, a reset link used): ``email_verified`` becomes true.

    ``channel`` is where that was sent: a code sent by SMS proves the phone, not the
    address. Conditioned on the address being the one that was proven, and not
    committed: it is part of the caller's transaction (the code accepted, the
    password reset), and a rolled back step proves nothing.
    """
    if channel != "email" or user.email_verified:
        return
    db.session.execute(
        update(User).where(User.id == user.id, User.email == user.email).values(email_verified=True)
    )


def find_by_identifier(identifier: str) -> User | None:
    """The identifier field takes the username or the e-mail, compared by key (L2).

    An exact username wins: after the identifier migration, accounts whose
    names collided keep signing in with the exact name they were given.
    """
    value = identifier.strip()
    if not value or len(value) > 254:
        return None
    key = identity_key(value)
    email_keys = {key}
    if "@" in value:  # ``a@xn--cole-9oa.fr`` finds ``a@école.fr``
        with suppress(UserError):
            email_keys.add(identity_key(validate_email_address(value)))
    exact_first = case((User.username == value, 0), else_=1)
    return db.session.scalars(
        select(User)
        .where(
            or_(
                User.username == value,
                User.email == normalize_email(value),
                User.username_key == key,
                User.email_key.in_(email_keys),
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


ROLE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def create_user(username: str, email: str, password: str | None, **fields) -> User:
    """Create and commit an account (``idp user add``); ``fields`` and the checks are
    ``add_user``'s."""
    user = add_user(username, email, password, **fields)
    commit_new_user()
    return user


def add_user(
    username: str,
    email: str,
    password: str | None,
    *,
    name: str = "",
    profession: str = "",
    roles: list[str] | None = None,
    backup_phone: str | None = None,
    national_id: str | None = None,
) -> User:
    """Check and add an account to the caller's transaction (not committed: an
    invitation commits it with its link). ``password`` None: no password yet, nothing
    signs in until the invitation's link sets one (docs/OPERATING.md)."""
    username = unicodedata.normalize("NFC", username.strip())
    national_id = _checked_national_id(national_id)
    if any(not ROLE_NAME.fullmatch(role) for role in roles or []):
        # Roles are matched in SQL as '"<role>"' inside the JSON list (the last-admin
        # rule, idp.account.passwords.is_admin_row): 'x", "admin' would pass for admin.
        raise UserError("a role is letters, digits, '_', '-', '.' or ':' (64 at most)")
    if not username or invisible_characters(username) or "@" in identity_key(username):
        raise UserError(
            "the identifier must be non-empty, without '@', spaces, control or invisible characters"
        )
    if len(username) > 150:
        raise UserError("the identifier is too long (150 characters at most)")
    if any(part in (".", "..") for part in username.split("/")):
        # A browser resolves such a segment in a link: the operator console's page of
        # ``a/..`` would be ``/admin/users/`` (docs/OPERATING.md, "The operator console").
        raise UserError("the identifier must not have a '.' or '..' part between slashes")
    email = validate_email_address(email)
    username_key, email_key = identity_key(username), identity_key(email)
    if len(username_key) > 600 or len(email_key) > 1000:  # NFKC may expand up to 18 times
        raise UserError("the identifier or the e-mail address is too long once normalised")
    if email_taken(username_key, email_key):
        raise UserError(
            "an account with this identifier or e-mail already exists"
            " (compared without case, accents forms or look-alike characters)"
        )
    user = User(
        username=username,
        username_key=username_key,
        email=email,
        email_key=email_key,
        profession=profession,
        roles=sorted(set(roles or [])),
        backup_phone=backup_phone,
        national_id=national_id,
        password_hash=hash_password(password) if password is not None else "",
        password_changed_at=clock.now(),
    )
    set_name(user, name)
    db.session.add(user)
    return user


def commit_new_user() -> None:
    """Commit a step that added an account; a look-alike created at the same moment
    (the unique keys) is a ``UserError``, not a 500."""
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise UserError("an account with this identifier or e-mail already exists") from None


def email_taken(*keys: str, other_than: int | None = None) -> bool:
    """Whether an account (but ``other_than``) has one of these identity keys as its
    identifier or e-mail: both share one name space (``find_by_identifier``)."""
    statement = select(User.id).where(or_(User.username_key.in_(keys), User.email_key.in_(keys)))
    if other_than is not None:
        statement = statement.where(User.id != other_than)
    return db.session.scalars(statement).first() is not None


def set_name(user: User, name: str) -> None:
    """The full name, its given and family parts, and its search key."""
    name = name.strip()
    if len(name) > 200 or invisible_characters(name.replace(" ", "")):
        raise UserError("the name has at most 200 characters, without control characters")
    given, _, family = name.partition(" ")
    user.name, user.given_name, user.family_name = name, given[:100], family[:100]
    user.name_key = identity_key(name)[:600]


def _checked_national_id(value: str | None) -> str | None:
    """RPPS or ADELI as stored (``idp.psc.national_id``), held by no other account."""
    if not value:
        return None
    from .psc.national_id import InvalidNationalId, normalize

    try:
        value = normalize(value)
    except InvalidNationalId as exc:
        raise UserError(f"national identifier refused: {exc}") from None
    if db.session.scalars(select(User.id).where(User.national_id == value)).first():
        raise UserError("another account already has this national identifier")
    return value


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
