"""Authorization codes and tokens; every secret is stored as its SHA-256."""

from __future__ import annotations

from dataclasses import dataclass

from authlib.oauth2.rfc6749 import TokenMixin
from authlib.oidc.core import AuthorizationCodeMixin
from sqlalchemy import JSON, BigInteger, ForeignKey, String, Text, bindparam, insert, select, update
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


class RefreshState:
    """When a refresh token may still be presented: shared by the ORM row and the
    refresh grant's read of it (``RefreshGrant``), so the rule is written once."""

    __slots__ = ()
    refresh_revoked: bool
    refresh_expires_at: int | None
    refresh_rotated_at: int | None

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


class Token(db.Model, RefreshState, TokenMixin):
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

    def get_user(self) -> User:
        return self.user

    def get_client(self) -> Client:
        return self.client


# The token endpoint's statements, built once and run on the Core (no ORM unit of
# work, no identity map): a refresh grant is a handful of small statements, and
# building and flushing ORM objects cost more than the database did (README.md,
# "Performance"; bench/profile_refresh.py shows where the time goes).
_tokens = Token.__table__
_users = User.__table__
_REFRESH_FIELDS = (
    "id",
    "client_id",
    "user_id",
    "scope",
    "grant_scope",
    "refresh_expires_at",
    "refresh_revoked",
    "refresh_rotated_at",
    "family_id",
    "sid",
    "auth_time",
    "acr",
    "amr",
    "claims_request",
)
_FIND_REFRESH = (
    select(*(_tokens.c[name] for name in _REFRESH_FIELDS), _users.c.disabled.label("user_disabled"))
    .join_from(_tokens, _users, _tokens.c.user_id == _users.c.id)
    .where(_tokens.c.refresh_token_hash == bindparam("token_hash"))
)
_INSERT_TOKEN = insert(_tokens)
_RETIRE_LIVE = (
    update(_tokens)
    .where(_tokens.c.id == bindparam("token_id"), _tokens.c.refresh_revoked.is_(False))
    .values(refresh_revoked=True, access_revoked=True, refresh_rotated_at=bindparam("now"))
)
# Writes that change nothing, conditioned on the state a refresh relies on: they
# hold the row (PostgreSQL row lock, SQLite write lock) until the commit.
_HOLD_LIVE = (
    update(_tokens)
    .where(_tokens.c.id == bindparam("token_id"), _tokens.c.refresh_revoked.is_(False))
    .values(refresh_rotated_at=_tokens.c.refresh_rotated_at)
)
_HOLD_IN_GRACE = (
    update(_tokens)
    .where(
        _tokens.c.id == bindparam("token_id"),
        _tokens.c.refresh_rotated_at.is_not(None),
        _tokens.c.refresh_rotated_at > bindparam("rotated_after"),
        _tokens.c.refresh_expires_at > bindparam("now"),
    )
    .values(refresh_rotated_at=_tokens.c.refresh_rotated_at)
)
# FOR SHARE (PostgreSQL): waits for a revocation that is updating the row (woken by
# a refresh's commit) to commit, then reads what it wrote; a plain SELECT would read
# the version before it.
_REVOCATION_STATE = (
    select(_tokens.c.refresh_revoked, _tokens.c.refresh_rotated_at)
    .where(_tokens.c.id == bindparam("token_id"))
    .with_for_update(read=True)
)


@dataclass(frozen=True, slots=True)
class RefreshGrant(RefreshState):
    """A refresh token's row as the refresh grant reads it, with its owner's state.

    Authlib's grant asks for ``check_client`` and ``get_scope``; the lineage
    (family, session, acr, amr, ``claims``) is copied to the tokens it gives.
    """

    id: int
    client_id: str
    user_id: int
    user_disabled: bool
    scope: str
    grant_scope: str
    refresh_expires_at: int | None
    refresh_revoked: bool
    refresh_rotated_at: int | None
    family_id: str
    sid: str | None
    auth_time: int
    acr: str
    amr: list
    claims_request: dict | None

    def check_client(self, client: Client) -> bool:
        return self.client_id == client.get_client_id()

    def get_scope(self) -> str:
        return self.scope


def find_refresh(token_hash: str) -> RefreshGrant | None:
    """The token whose refresh token hashes to ``token_hash``, in whatever state it is."""
    row = db.session.execute(_FIND_REFRESH, {"token_hash": token_hash}).first()
    return None if row is None else RefreshGrant(**row._mapping)


def insert_token(**values) -> None:
    """Add one token row in the current transaction (the caller commits)."""
    db.session.execute(_INSERT_TOKEN, values)


def retire_refresh(token_id: int, now: int) -> bool:
    """Rotate a live refresh token out (compare-and-set): True for the one request that did."""
    return db.session.execute(_RETIRE_LIVE, {"token_id": token_id, "now": now}).rowcount == 1


def hold_live(token_id: int) -> bool:
    """Hold a refresh token that is still live until the commit; False if it is not."""
    return db.session.execute(_HOLD_LIVE, {"token_id": token_id}).rowcount == 1


def hold_in_grace(token_id: int, now: int, grace_seconds: int) -> bool:
    """Hold a token rotated less than ``grace_seconds`` ago, not revoked since and not
    expired, until the commit; False otherwise."""
    params = {"token_id": token_id, "rotated_after": now - grace_seconds, "now": now}
    return db.session.execute(_HOLD_IN_GRACE, params).rowcount == 1


def revocation_state(token_id: int):
    """The row's ``refresh_revoked`` and ``refresh_rotated_at`` once any transaction
    writing it has committed (a share lock, held until the caller ends its own);
    None if the row is gone."""
    return db.session.execute(_REVOCATION_STATE, {"token_id": token_id}).first()
