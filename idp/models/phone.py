"""A backup phone change waiting for its confirmation codes (A2)."""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from .. import clock
from . import db


class PhoneChange(db.Model):
    """At most one per user; ``User.backup_phone`` changes only when its last code is typed.

    ``step`` is the code expected now: ``email`` (sent to the account's address: the
    owner of the account asks) then ``sms`` (sent to the new number: it is theirs).
    ``phone`` is the new number in E.164, or None for a removal. The change belongs to
    the console session that started it (``sid``); codes are keyed on its random
    ``nonce``, its user, its step and its number. Codes as in ``OtpChallenge``: only a
    keyed hash, ``attempts`` spent before comparing, ``sends``, ``used`` flipped once.
    """

    __tablename__ = "phone_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    sid: Mapped[str] = mapped_column(String(64))
    nonce: Mapped[str] = mapped_column(String(64))
    phone: Mapped[str | None] = mapped_column(String(20), default=None)
    step: Mapped[str] = mapped_column(String(10))
    code_hash: Mapped[str] = mapped_column(String(64), default="")
    sent_at: Mapped[int] = mapped_column(BigInteger, default=0)
    code_expires_at: Mapped[int] = mapped_column(BigInteger, default=0)
    attempts: Mapped[int] = mapped_column(default=0)
    sends: Mapped[int] = mapped_column(default=0)
    used: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[int] = mapped_column(BigInteger, default=clock.now)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
