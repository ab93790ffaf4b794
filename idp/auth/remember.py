"""Remembered second factor (M6–M8): a browser cookie and, per user, a 24-hour record.

The cookie holds a random browser id (only its hash is stored). When another
user signs in on the same browser, every other user's record for it is
deleted, so the code is asked again (M7).

Nothing here commits: each change belongs to the step that makes it (a
sign-in, a password change) and is committed with it.
"""

from __future__ import annotations

from flask import current_app, g, request
from sqlalchemy import delete, select, update

from .. import audit, clock
from ..cookies import cookie_name
from ..crypto import random_token, sha256_hex
from ..models import RememberedBrowser, User, db

COOKIE = "idp_browser"
COOKIE_DAYS = 400  # the id outlives the 24-hour records; it proves nothing by itself


def _browser_hash(fresh: bool = False) -> str | None:
    """Hash of this browser's id; ``fresh`` issues a new id (never trust a planted one)."""
    value = g.get("browser_cookie") or request.cookies.get(cookie_name(COOKIE))
    if fresh:
        value = g.browser_cookie = random_token(32)
    return sha256_hex(value) if value else None


def is_remembered(user: User) -> bool:
    browser = _browser_hash()
    if browser is None:
        return False
    row = db.session.scalars(
        select(RememberedBrowser).where(
            RememberedBrowser.browser_hash == browser,
            RememberedBrowser.user_id == user.id,
            RememberedBrowser.expires_at > clock.now(),
            RememberedBrowser.credential_tag == user.credential_tag,
        )
    ).first()
    return row is not None


def remember(user: User) -> None:
    """Spare ``user`` the code on this browser for ``remember_browser_hours``."""
    hours = current_app.config["IDP"]["mfa"]["remember_browser_hours"]
    old = _browser_hash()
    if old is not None:  # this user's record under the old id goes with it
        db.session.execute(
            delete(RememberedBrowser).where(
                RememberedBrowser.browser_hash == old, RememberedBrowser.user_id == user.id
            )
        )
    browser = _browser_hash(fresh=True)
    db.session.add(
        RememberedBrowser(
            browser_hash=browser,
            user_id=user.id,
            credential_tag=user.credential_tag,
            expires_at=clock.now() + hours * 3600,
        )
    )
    audit.record("browser.remembered", user_id=user.id, commit=False, hours=hours)


def _ids_of_this_browser() -> list[str]:
    """Hashes of every id this browser holds in this request: the one it came with
    and, if this request issued a fresh one, that one too."""
    values = {request.cookies.get(cookie_name(COOKIE)), g.get("browser_cookie")}
    return [sha256_hex(value) for value in values if value]


def forget_others(user: User) -> None:
    """``user`` signed in here: other users' remembered second factor on this browser ends.

    Keyed on the id the request came with, not only on a fresh one this request
    may issue: an old cookie value copied elsewhere must not keep its power (M7).
    """
    browsers = _ids_of_this_browser()
    if not browsers:
        return
    others = db.session.scalars(
        select(RememberedBrowser).where(
            RememberedBrowser.browser_hash.in_(browsers), RememberedBrowser.user_id != user.id
        )
    ).all()
    for row in others:
        audit.record("browser.forgotten", user_id=row.user_id, commit=False, reason="other_user")
        db.session.delete(row)


def keep_current(user: User) -> None:
    """After a password change made here, this browser keeps its remembered factor
    (it just proved both); every other browser's record stays void."""
    browser = _browser_hash()
    if browser is None:
        return
    db.session.execute(
        update(RememberedBrowser)
        .where(RememberedBrowser.browser_hash == browser, RememberedBrowser.user_id == user.id)
        .values(credential_tag=user.credential_tag)
    )


def forget_user(user: User, *, keep_current: bool = False) -> None:
    """Forget ``user`` on every browser (password change or reset), or all but this one."""
    statement = delete(RememberedBrowser).where(RememberedBrowser.user_id == user.id)
    current = _browser_hash() if keep_current else None
    if current:
        statement = statement.where(RememberedBrowser.browser_hash != current)
    result = db.session.execute(statement)
    if result.rowcount:
        audit.record("browser.forgotten", user_id=user.id, commit=False, reason="credentials")


def write_cookie(response):
    value = g.get("browser_cookie")
    if value:
        response.set_cookie(
            cookie_name(COOKIE),
            value,
            max_age=COOKIE_DAYS * 86400,
            httponly=True,
            secure=current_app.config["SESSION_COOKIE_SECURE"],
            samesite="Lax",
            path="/",
        )
    return response
