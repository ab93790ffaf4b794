"""Password reset links (R3–R4): random, stored hashed, 24 hours, once."""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .. import clock
from . import db
from .users import User


class PasswordResetToken(db.Model):
    """A reset link. ``credential_tag`` ties it to the credential it replaces:
    any password change since makes it useless, as does a newer request."""

    __tablename__ = "password_reset_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    credential_tag: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[int] = mapped_column(BigInteger, default=clock.now)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    used: Mapped[bool] = mapped_column(default=False)

    user: Mapped[User] = relationship()
