"""SSO sessions: an opaque cookie, a server-side record, rotated at every sign-in."""

from __future__ import annotations

from typing import NamedTuple

from flask import Flask, current_app, g, request, session
from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import joinedload

from .. import audit, clock
from ..cookies import cookie_name
from ..crypto import random_token, sha256_hex
from ..models import AuthorizationCode, LoginTransaction, SsoSession, Token, User, db
from ..models.tokens import revoke_tokens

COOKIE = "idp_sso"
_TOUCH_EVERY = 60  # seconds between ``last_seen_at`` writes, to keep reads cheap


def _lifetime() -> int:
    return current_app.config["IDP"]["session"]["sso_hours"] * 3600


def current() -> SsoSession | None:
    """The browser's live SSO session, or None (expired, ended, disabled account)."""
    if "sso" in g:
        return g.sso
    g.sso = None
    value = request.cookies.get(cookie_name(COOKIE))
    if value:
        row = db.session.scalars(
            select(SsoSession)
            .options(joinedload(SsoSession.user))
            .where(SsoSession.cookie_hash == sha256_hex(value))
        ).first()
        now = clock.now()
        if row and row.expires_at > now and not row.user.disabled:
            if now - row.last_seen_at >= _TOUCH_EVERY:
                g.sso_touch = (row.id, now)  # written after the response's step, not inside it
            g.sso = row
    return g.sso


def _touch(response):
    """``last_seen_at`` (the console's device list), in its own small transaction once the
    request's step has committed; a failed request (4xx/5xx) or a database error skips it."""
    touch = g.pop("sso_touch", None)
    if touch is None or response.status_code >= 400:
        return response
    row_id, now = touch
    try:
        db.session.execute(
            update(SsoSession).where(SsoSession.id == row_id).values(last_seen_at=now)
        )
        db.session.commit()
    except SQLAlchemyError:
        db.session.rollback()  # a convenience: never worth failing the answer for
    return response


class Opened(NamedTuple):
    """A session written but not yet committed, and the cookie value it will get."""

    row: SsoSession
    cookie: str


def start(user: User, *, auth_time: int, acr: str, amr: list[str]) -> Opened:
    """Sign the browser in: the previous session (any user) ends, a new id is issued.

    Does not commit: the caller's step does, then calls ``activate`` — a session
    the database never stored gives the browser no cookie and clears nothing.
    """
    previous = current()
    value = random_token(32)
    now = clock.now()
    row = SsoSession(
        cookie_hash=sha256_hex(value),
        sid=random_token(16),
        user_id=user.id,
        auth_time=auth_time,
        acr=acr,
        amr=list(amr),
        created_at=now,
        last_seen_at=now,
        expires_at=now + _lifetime(),
        user_agent=(request.user_agent.string or "")[:300],
        ip_hint=_ip_hint(request.remote_addr),
    )
    db.session.add(row)
    if previous is not None:
        if previous.user_id == user.id:
            # Same person, new session id: tokens issued under the old one follow it,
            # so ending this session later still reaches them.
            db.session.execute(update(Token).where(Token.sid == previous.sid).values(sid=row.sid))
        # A statement, not ``session.delete``: the step may have ended it already.
        db.session.execute(delete(SsoSession).where(SsoSession.id == previous.id))
    audit.record("login.succeeded", user_id=user.id, commit=False, acr=acr, amr=" ".join(amr))
    return Opened(row, value)


def activate(opened: Opened) -> None:
    """After the commit: the browser's cookie, and nothing from before the sign-in survives."""
    session.clear()
    g.sso, g.sso_cookie = opened.row, opened.cookie


def _ip_hint(address: str | None) -> str:
    """A partial address for the user's own session list (never the full IP)."""
    if not address:
        return ""
    if ":" in address:
        return ":".join(address.split(":")[:3]) + ":…"
    return ".".join(address.split(".")[:2]) + ".x.x"


def end(row: SsoSession, reason: str) -> None:
    """End one session and revoke the tokens issued under it."""
    revoke_tokens(Token.sid == row.sid)
    db.session.execute(delete(SsoSession).where(SsoSession.id == row.id))
    audit.record("session.ended", user_id=row.user_id, commit=False, reason=reason)
    db.session.commit()


def end_current(reason: str) -> None:
    row = current()
    if row is not None:
        end(row, reason)
    g.sso, g.sso_cookie = None, ""
    session.clear()


def _write_cookie(response):
    value = g.get("sso_cookie")
    if value is None:
        return response
    settings = current_app.config
    if value:
        response.set_cookie(
            cookie_name(COOKIE),
            value,
            max_age=_lifetime(),
            httponly=True,
            secure=settings["SESSION_COOKIE_SECURE"],
            samesite="Lax",
            path="/",
        )
    else:
        response.delete_cookie(
            cookie_name(COOKIE),
            path="/",
            httponly=True,
            samesite="Lax",
            secure=settings["SESSION_COOKIE_SECURE"],
        )
    return response


def init_app(app: Flask) -> None:
    app.after_request(_write_cookie)
    app.after_request(_touch)


def end_all_of(user: User, reason: str, *, keep: SsoSession | None = None) -> int:
    """End every session of ``user`` (but ``keep``) and revoke every token of theirs
    not issued under ``keep`` — including tokens whose session is long gone (P4, R4).

    Without ``keep`` (a reset, an operator's change, a disabled account) what was
    on its way ends too: logins in progress (one waiting at the renewal step would
    otherwise let whoever typed the old password choose the next one) and codes
    issued but not yet redeemed.
    """
    rows = db.session.scalars(select(SsoSession).where(SsoSession.user_id == user.id)).all()
    ended = [row for row in rows if keep is None or row.id != keep.id]
    conditions = [Token.user_id == user.id]
    if keep is not None:
        conditions.append(or_(Token.sid.is_(None), Token.sid != keep.sid))
    else:
        db.session.execute(delete(LoginTransaction).where(LoginTransaction.user_id == user.id))
        db.session.execute(
            delete(AuthorizationCode).where(
                AuthorizationCode.user_id == user.id, AuthorizationCode.used.is_(False)
            )
        )
    revoke_tokens(*conditions)
    if ended:
        db.session.execute(delete(SsoSession).where(SsoSession.id.in_([r.id for r in ended])))
    audit.record("sessions.revoked", user_id=user.id, commit=False, reason=reason, count=len(ended))
    return len(ended)  # the caller's step commits: a replaced password and the ends land together


def sessions_of(user: User) -> list[SsoSession]:
    now = clock.now()
    return list(
        db.session.scalars(
            select(SsoSession)
            .where(SsoSession.user_id == user.id, SsoSession.expires_at > now)
            .order_by(SsoSession.last_seen_at.desc())
        )
    )
