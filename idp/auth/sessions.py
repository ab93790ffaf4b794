"""SSO sessions: an opaque cookie, a server-side record, rotated at every sign-in.

Every way a session ends goes through ``_end_rows``, which queues the RPs'
back-channel Logout Tokens in the same transaction (``idp.oidc.backchannel``).
"""

from __future__ import annotations

from typing import NamedTuple

from flask import Flask, current_app, g, request, session
from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import joinedload

from .. import audit, clock
from ..cookies import cookie_name
from ..crypto import random_token, sha256_hex
from ..delivery import outbox
from ..models import AuthorizationCode, LoginTransaction, SsoSession, Token, User, db
from ..models.tokens import revoke_tokens
from ..oidc import backchannel

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
    """A session written but not yet committed, the cookie value it will get, and how
    many Logout Tokens its start queued (another user's session ended here)."""

    row: SsoSession
    cookie: str
    queued: int


def start(
    user: User, *, auth_time: int, acr: str, amr: list[str], psc_id_token: str | None = None
) -> Opened:
    """Sign the browser in: a new cookie value at every sign-in (session fixation).

    The same user signing in again (``prompt=login``, a step-up) continues the
    session under its public ``sid``, so the ``sid`` in every ID token an RP got
    is the one its Logout Token will name (docs/RELYING_PARTIES.md, "Back-channel logout"); the
    session of another user on this browser ends, and its RPs are told.

    Does not commit: the caller's step does, then calls ``activate`` — a session
    the database never stored gives the browser no cookie and clears nothing.
    """
    previous = current()
    value = random_token(32)
    now = clock.now()
    facts = dict(
        cookie_hash=sha256_hex(value),
        auth_time=auth_time,
        acr=acr,
        amr=list(amr),
        last_seen_at=now,
        expires_at=now + _lifetime(),
        user_agent=(request.user_agent.string or "")[:300],
        ip_hint=_ip_hint(request.remote_addr),
        psc_id_token=psc_id_token,  # a Pro Santé Connect session: its logout ends PSC's too
    )
    if "otp" in amr:  # a code typed in this very login (the operator console's freshness)
        facts["code_at"] = now
    row, queued = None, 0
    if previous is not None and previous.user_id == user.id:
        # Compare-and-set on the cookie it was read with: a session ended meanwhile
        # (from the console elsewhere, or by this very step) is not brought back; a
        # new one starts instead.
        continued = db.session.execute(
            update(SsoSession)
            .where(SsoSession.id == previous.id, SsoSession.cookie_hash == previous.cookie_hash)
            .values(**facts)
            .execution_options(synchronize_session=False)
        )
        if continued.rowcount == 1:
            row = db.session.get(SsoSession, previous.id, populate_existing=True)
    elif previous is not None:
        queued = _end_rows([previous])[1]
    if row is None:
        row = SsoSession(sid=random_token(16), user_id=user.id, created_at=now, **facts)
        db.session.add(row)
    audit.record("login.succeeded", user_id=user.id, commit=False, acr=acr, amr=" ".join(amr))
    return Opened(row, value, queued)


def activate(opened: Opened) -> None:
    """After the commit: the browser's cookie, nothing from before the sign-in survives,
    and the Logout Tokens of a session this sign-in ended leave."""
    session.clear()
    g.sso, g.sso_cookie = opened.row, opened.cookie
    if opened.queued:
        outbox.send_soon()


def _end_rows(rows: list[SsoSession]) -> tuple[list[str], int]:
    """Delete these sessions if they are still there (one conditional DELETE), and
    queue a Logout Token for each RP of each session this call ended, in the
    caller's transaction. Returns the ``sid`` ended and how many tokens wait."""
    if not rows:
        return [], 0
    owner = {row.sid: row.user_id for row in rows}
    pairs = backchannel.participants(list(owner))  # read first: they go with the session
    ended = list(
        db.session.scalars(
            delete(SsoSession)
            .where(SsoSession.sid.in_(list(owner)))
            .returning(SsoSession.sid)  # the ORM forgets the rows (a new one may reuse an id)
        )
    )
    queued = 0
    for sid in ended:
        queued += backchannel.enqueue([p for p in pairs if p[0] == sid], owner[sid])
    return ended, queued


def _ip_hint(address: str | None) -> str:
    """A partial address for the user's own session list (never the full IP)."""
    if not address:
        return ""
    if ":" in address:
        return ":".join(address.split(":")[:3]) + ":…"
    return ".".join(address.split(".")[:2]) + ".x.x"


def end(row: SsoSession, reason: str) -> bool:
    """End one session, revoke the tokens issued under it and tell its RPs (back-channel
    logout); False if it had already ended."""
    revoke_tokens(Token.sid == row.sid)
    ended, queued = _end_rows([row])
    if ended:
        audit.record("session.ended", user_id=row.user_id, commit=False, reason=reason)
    db.session.commit()
    if queued:
        outbox.send_soon()
    return bool(ended)


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
    sids, queued = _end_rows(ended)  # and each of their RPs is told (back-channel logout)
    audit.record("sessions.revoked", user_id=user.id, commit=False, reason=reason, count=len(sids))
    # The caller's step commits (a replaced password and the ends land together), then
    # calls ``outbox.send_soon()`` for the Logout Tokens queued here.
    return len(sids)


def sessions_of(user: User) -> list[SsoSession]:
    now = clock.now()
    return list(
        db.session.scalars(
            select(SsoSession)
            .where(SsoSession.user_id == user.id, SsoSession.expires_at > now)
            .order_by(SsoSession.last_seen_at.desc())
        )
    )
