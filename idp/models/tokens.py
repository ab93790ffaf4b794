"""Authorization codes and tokens; every secret is stored as its SHA-256."""

from __future__ import annotations

from authlib.oauth2.rfc6749 import TokenMixin
from authlib.oidc.core import AuthorizationCodeMixin
from sqlalchemy import JSON, BigInteger, ForeignKey, String, Text, update
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .. import clock
from . import db
from .clients import Client
from .users import User


class AuthorizationCode(db.Model, AuthorizationCodeMixin):
    __tablename__ = "authorization_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(String(100), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    redirect_uri: Mapped[str] = mapped_column(Text, default="")
    scope: Mapped[str] = mapped_column(Text, default="")
    nonce: Mapped[str | None] = mapped_column(Text, default=None)
    code_challenge: Mapped[str | None] = mapped_column(String(128), default=None)
    code_challenge_method: Mapped[str | None] = mapped_column(String(10), default=None)
    claims_request: Mapped[dict | None] = mapped_column(JSON, default=None)
    auth_time: Mapped[int] = mapped_column(BigInteger)
    acr: Mapped[str] = mapped_column(String(100))
    amr: Mapped[list] = mapped_column(JSON, default=list)
    sid: Mapped[str | None] = mapped_column(String(64), default=None)
    family_id: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[int] = mapped_column(BigInteger, default=clock.now)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    used: Mapped[bool] = mapped_column(default=False)
    replayed: Mapped[bool] = mapped_column(default=False)

    user: Mapped[User] = relationship()

    def is_expired(self) -> bool:
        return clock.now() >= self.expires_at

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> str:
        return self.acr

    def get_amr(self) -> list[str]:
        return list(self.amr)


def revoke_tokens(*conditions) -> None:
    """Revoke access and refresh tokens matching ``conditions`` (caller commits).

    A revoked token is never in its reuse grace (``Token.refresh_rotated_at``
    cleared): logout, ``/revoke``, a password change or a detected replay end
    the grace of tokens rotated moments before (SECURITY.md, "Refresh tokens").
    """
    db.session.execute(
        update(Token)
        .where(*conditions)
        .values(access_revoked=True, refresh_revoked=True, refresh_rotated_at=None)
    )


class Token(db.Model, TokenMixin):
    """An access token and, for clients allowed to, its refresh token.

    ``family_id`` ties together every token descended from one authorization
    code, so a replayed code or refresh token revokes the whole family.
    """

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(String(100), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    access_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    refresh_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    token_type: Mapped[str] = mapped_column(String(20), default="Bearer")
    scope: Mapped[str] = mapped_column(Text, default="")  # of the access token
    grant_scope: Mapped[str] = mapped_column(Text, default="")  # what the user granted
    issued_at: Mapped[int] = mapped_column(BigInteger, default=clock.now)
    expires_in: Mapped[int] = mapped_column(BigInteger, default=0)
    refresh_expires_at: Mapped[int | None] = mapped_column(BigInteger, default=None)
    access_revoked: Mapped[bool] = mapped_column(default=False)
    refresh_revoked: Mapped[bool] = mapped_column(default=False)
    # When a refresh retired this refresh token (rotation); None if never rotated or
    # since revoked. Within ``[tokens] refresh_reuse_seconds`` of it, presenting the
    # token again is a concurrent or retried refresh, not theft.
    refresh_rotated_at: Mapped[int | None] = mapped_column(BigInteger, default=None)
    family_id: Mapped[str] = mapped_column(String(64), index=True)
    sid: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    auth_time: Mapped[int] = mapped_column(BigInteger, default=0)
    acr: Mapped[str] = mapped_column(String(100), default="")
    amr: Mapped[list] = mapped_column(JSON, default=list)
    claims_request: Mapped[dict | None] = mapped_column(JSON, default=None)

    user: Mapped[User] = relationship()
    client: Mapped[Client] = relationship(
        primaryjoin="foreign(Token.client_id) == Client.client_id", viewonly=True
    )

    def check_client(self, client: Client) -> bool:
        return self.client_id == client.get_client_id()

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def get_expires_at(self) -> int:
        return self.issued_at + self.expires_in

    def is_expired(self) -> bool:
        return clock.now() >= self.get_expires_at()

    def is_revoked(self) -> bool:
        return self.access_revoked

    def is_refresh_usable(self) -> bool:
        return (
            not self.refresh_revoked
            and self.refresh_expires_at is not None
            and clock.now() < self.refresh_expires_at
        )

    def in_reuse_grace(self, grace_seconds: int) -> bool:
        """Rotated less than ``grace_seconds`` ago, not revoked since, not expired."""
        now = clock.now()
        return (
            self.refresh_rotated_at is not None
            and now < self.refresh_rotated_at + grace_seconds
            and self.refresh_expires_at is not None
            and now < self.refresh_expires_at
        )

    def get_user(self) -> User:
        return self.user

    def get_client(self) -> Client:
        return self.client
