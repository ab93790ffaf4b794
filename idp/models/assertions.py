"""Client assertions already used (``private_key_jwt``, RFC 7523 §3 item 7)."""

from __future__ import annotations

from sqlalchemy import BigInteger, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from . import db


class ClientAssertionJti(db.Model):
    """One ``jti`` seen from one client, kept until its assertion can no longer be accepted.

    The unique (client_id, jti_hash) pair is what makes an assertion single use:
    of two concurrent requests with one assertion, the second INSERT fails. The
    ``jti`` is stored as a SHA-256 hash so that its size is bounded whatever the
    client sends. ``idp purge`` deletes rows past ``expires_at``.
    """

    __tablename__ = "client_assertion_jtis"
    __table_args__ = (UniqueConstraint("client_id", "jti_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(String(100))
    jti_hash: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
