"""Health professionals who sign in here."""

from __future__ import annotations

import secrets

from sqlalchemy import JSON, BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from .. import clock
from . import db


def key_type(length: int):
    """A comparison key's type: on PostgreSQL in the code-point ("C") collation, so that
    the operator console's prefix ranges are exact whatever the database's collation
    (``idp.admin.accounts.search_users``); SQLite compares bytes already."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")


def new_credential_id() -> str:
    return secrets.token_hex(16)


def new_subject() -> str:
    """A stable, opaque ``sub``: never the username, which may change."""
    return secrets.token_urlsafe(24)


class User(db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    subject: Mapped[str] = mapped_column(String(64), unique=True, default=new_subject)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    # Stored as ``idp.users.validate_email_address`` normalises it (lower-case).
    email: Mapped[str] = mapped_column(String(254), unique=True)
    # True once the user proved control of the mailbox (a code typed at sign-in, a reset
    # link used: ``idp.users.mark_email_verified``); the ``email_verified`` claim says it.
    email_verified: Mapped[bool] = mapped_column(default=False)
    # Comparison keys (NFKC + case folding, ``idp.users.identity_key``): look-alike
    # names cannot coexist. Null only where the 0003 migration found a collision.
    username_key: Mapped[str | None] = mapped_column(key_type(600), unique=True, default=None)
    email_key: Mapped[str | None] = mapped_column(key_type(1000), unique=True, default=None)
    name: Mapped[str] = mapped_column(String(200), default="")
    # ``identity_key(name)``: the operator console's search by the start of the name
    # uses this index (prefix ranges stay fast with a million accounts).
    name_key: Mapped[str] = mapped_column(key_type(600), default="", index=True)
    given_name: Mapped[str] = mapped_column(String(100), default="")
    family_name: Mapped[str] = mapped_column(String(100), default="")
    profession: Mapped[str] = mapped_column(String(100), default="")
    roles: Mapped[list] = mapped_column(JSON, default=list)
    backup_phone: Mapped[str | None] = mapped_column(String(20), default=None)
    # The channel of the last code the user typed right: pre-selected next time.
    last_channel: Mapped[str | None] = mapped_column(String(10), default=None)
    locale: Mapped[str] = mapped_column(String(10), default="fr")
    password_hash: Mapped[str] = mapped_column(String(255), default="")
    password_changed_at: Mapped[int] = mapped_column(BigInteger, default=clock.now)
    disabled: Mapped[bool] = mapped_column(default=False)
    # Pro Santé Connect: the national identifier (RPPS or ADELI, ``idp.psc.national_id``)
    # a PSC login is matched on (its ``SubjectNameID``), never e-mail or name; and PSC's
    # ``sub`` seen at the last such login (docs/OPERATING.md, "Pro Santé Connect").
    national_id: Mapped[str | None] = mapped_column(String(20), unique=True, default=None)
    psc_sub: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[int] = mapped_column(BigInteger, default=clock.now)
    updated_at: Mapped[int] = mapped_column(BigInteger, default=clock.now, onupdate=clock.now)

    # A random value replaced with every password change (``users.set_password``), not
    # when the same password is merely rehashed at sign-in with new argon2 parameters.
    credential_id: Mapped[str] = mapped_column(String(32), default=new_credential_id)

    @property
    def credential_tag(self) -> str:
        """What reset links, remembered browsers and logins in progress are tied to: any
        password change, even within the same second, makes them useless."""
        return self.credential_id

    def get_user_id(self) -> int:
        """Authlib's hook for the resource owner's id."""
        return self.id

    def __repr__(self) -> str:
        return f"<User {self.username}>"
