"""Second-factor state: one-time code challenges and remembered browsers."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from .. import clock
from . import db


class OtpChallenge(db.Model):
    """The code sent for one login transaction; a new code replaces this row.

    Only a keyed hash of the code is stored. ``attempts`` counts wrong tries;
    ``used`` flips once, atomically, on the right one. ``replaced`` keeps the
    hashes of the codes this one superseded (a resend, a switch), so that a late
    SMS is answered "replaced by a newer code" instead of "incorrect".
    """

    __tablename__ = "otp_challenges"

    id: Mapped[int] = mapped_column(primary_key=True)
    transaction_id: Mapped[int] = mapped_column(
        ForeignKey("login_transactions.id", ondelete="CASCADE"), unique=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(10))
    code_hash: Mapped[str] = mapped_column(String(64))
    sent_at: Mapped[int] = mapped_column(BigInteger, default=clock.now)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(default=0)
    sends: Mapped[int] = mapped_column(default=1)
    used: Mapped[bool] = mapped_column(default=False)
    replaced: Mapped[list] = mapped_column(JSON, default=list)

    @property
    def holds_code(self) -> bool:
        """False for a send that failed (the row only counts it) or is under way."""
        return bool(self.code_hash)


class RememberedBrowser(db.Model):
    """A remembered second factor (M6): the cookie's random id, hashed, per user."""

    __tablename__ = "remembered_browsers"

    id: Mapped[int] = mapped_column(primary_key=True)
    browser_hash: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # The credential it was earned with: any password change makes the record useless.
    credential_tag: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[int] = mapped_column(BigInteger, default=clock.now)
    expires_at: Mapped[int] = mapped_column(BigInteger)
