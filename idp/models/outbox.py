"""Notices waiting to be sent: written in the same transaction as the change they tell of."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from .. import clock
from . import db


class OutboxMessage(db.Model):
    """One notice e-mail ("your password was changed"…) until it has been handed over.

    ``claimed_until`` lets one worker of one node send it at a time; a failed
    attempt is retried at ``next_attempt_at``; ``sent_at`` or ``gave_up`` ends it.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    payload: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[int] = mapped_column(BigInteger, default=clock.now)
    next_attempt_at: Mapped[int] = mapped_column(BigInteger, default=clock.now, index=True)
    claimed_until: Mapped[int] = mapped_column(BigInteger, default=0)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str] = mapped_column(String(100), default="")
    sent_at: Mapped[int | None] = mapped_column(BigInteger, default=None)
    gave_up: Mapped[bool] = mapped_column(default=False)
