"""Browser-side state kept on the server: SSO sessions and pending logins."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .. import clock
from . import db
from .users import User


class SsoSession(db.Model):
    """A signed-in browser. The cookie holds a random id; only its hash is here.

    ``sid`` is a separate public identifier for the ``sid`` claim, so an ID
    token never carries anything that works as a session cookie. The cookie is
    replaced at every sign-in; ``sid`` stays while the same user signs in again
    on the browser, so the ``sid`` an RP holds is the one its back-channel
    Logout Token names (docs/RELYING_PARTIES.md, "Back-channel logout"), and it is the id the
    console's device list puts in URLs (it tells nothing of how many there were).
    """

    __tablename__ = "sso_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    cookie_hash: Mapped[str] = mapped_column(String(64), unique=True)
    sid: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    auth_time: Mapped[int] = mapped_column(BigInteger)
    acr: Mapped[str] = mapped_column(String(100))
    amr: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[int] = mapped_column(BigInteger, default=clock.now)
    # When a code was last typed in this session (not a remembered browser): the
    # operator console asks a fresh one past ``[admin] max_session_minutes``.
    code_at: Mapped[int | None] = mapped_column(BigInteger, default=None)
    last_seen_at: Mapped[int] = mapped_column(BigInteger, default=clock.now)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    user_agent: Mapped[str] = mapped_column(String(300), default="")
    ip_hint: Mapped[str] = mapped_column(String(64), default="")
    # A session opened by Pro Santé Connect keeps PSC's ID token: our logout ends the
    # PSC session too, with it as ``id_token_hint`` (idp/psc/views.py).
    psc_id_token: Mapped[str | None] = mapped_column(Text, default=None)

    user: Mapped[User] = relationship()


class SessionClient(db.Model):
    """An RP that was given an authorization code under an SSO session.

    Written with the code (``idp.oidc.backchannel.record_participation``); read
    when the session ends, to tell each such RP with a Logout Token; gone with
    the session (foreign key, ``ON DELETE CASCADE``) or the client.
    """

    __tablename__ = "session_clients"
    __table_args__ = (UniqueConstraint("sid", "client_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sid: Mapped[str] = mapped_column(String(64), ForeignKey("sso_sessions.sid", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(
        String(100), ForeignKey("clients.client_id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[int] = mapped_column(BigInteger, default=clock.now)


class LoginTransaction(db.Model):
    """A login in progress: the pending authorization request and the step reached.

    Bound to one browser (``browser_hash``) so a leaked id cannot be finished
    elsewhere; cleared at the start and end of each login.
    """

    __tablename__ = "login_transactions"

    id: Mapped[int] = mapped_column(primary_key=True)
    tx_hash: Mapped[str] = mapped_column(String(64), unique=True)
    browser_hash: Mapped[str] = mapped_column(String(64), index=True)
    request_args: Mapped[dict | None] = mapped_column(JSON, default=None)
    step: Mapped[str] = mapped_column(String(20), default="password")
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), default=None
    )
    login_hint: Mapped[str] = mapped_column(Text, default="")
    auth_time: Mapped[int | None] = mapped_column(BigInteger, default=None)
    amr: Mapped[list] = mapped_column(JSON, default=list)
    channel: Mapped[str | None] = mapped_column(String(10), default=None)  # last chosen
    require_mfa: Mapped[bool] = mapped_column(default=False)
    step_up: Mapped[bool] = mapped_column(default=False)
    # The RP wants a code typed in this login (max_age=0 with the 2FA acr, or an
    # essential amr asking for ``otp``): a remembered browser does not stand in.
    fresh_code: Mapped[bool] = mapped_column(default=False)
    # The user's credential when bound: a password replaced since (reset, operator,
    # the user elsewhere) ends this login, whatever step it waits at.
    credential_tag: Mapped[str | None] = mapped_column(String(32), default=None)
    # The RP demands the Pro Santé Connect level (``eidas1``): only PSC can finish it.
    require_psc: Mapped[bool] = mapped_column(default=False)
    # A PSC login in flight from this transaction: the hash of its ``state`` (single
    # use: cleared by the callback's compare-and-set), its ``nonce`` and PKCE verifier.
    psc_state_hash: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    psc_nonce: Mapped[str | None] = mapped_column(String(64), default=None)
    psc_verifier: Mapped[str | None] = mapped_column(String(128), default=None)
    created_at: Mapped[int] = mapped_column(BigInteger, default=clock.now)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)  # purged on each begin

    user: Mapped[User | None] = relationship()
