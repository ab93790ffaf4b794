"""Audit trail and attempt throttles; both live in the database so every node shares them."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from .. import clock
from . import db


class AuditEvent(db.Model):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[int] = mapped_column(BigInteger, default=clock.now, index=True)
    event: Mapped[str] = mapped_column(String(50), index=True)
    user_id: Mapped[int | None] = mapped_column(index=True, default=None)
    # The administrator who acted (operator console); None for the user's own steps and
    # for the ``idp`` command, whose operator is the shell's user (docs/OPERATING.md).
    actor_id: Mapped[int | None] = mapped_column(index=True, default=None)
    client_id: Mapped[str | None] = mapped_column(String(100), default=None)
    request_id: Mapped[str | None] = mapped_column(String(64), default=None)
    ip_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    detail: Mapped[dict] = mapped_column(JSON, default=dict)


class Throttle(db.Model):
    """Failure counter for one key (an identifier, an address) within a window."""

    __tablename__ = "throttles"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger)
    count: Mapped[int] = mapped_column(default=0)
    blocked_until: Mapped[int] = mapped_column(BigInteger, default=0)
