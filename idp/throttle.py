"""Attempt limits kept in the database, shared by every worker and node.

A key (``login:<identifier>``, ``login-ip:<hash>``) collects failures within a
window; past the limit it is blocked until the window ends. Password and code
failures use different keys, so one never spends the other's budget.
"""

from __future__ import annotations

from flask import current_app
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from . import clock
from .crypto import keyed_hash
from .models import Throttle, db


def address_key(prefix: str, ip: str | None) -> str:
    """Counter key for a client address: a keyed hash, never the address itself."""
    secret = current_app.config["SECRET_KEY"]
    return f"{prefix}:{keyed_hash(secret, 'throttle-ip', ip or '-')[:40]}"


def is_blocked(key: str) -> bool:
    row = db.session.get(Throttle, key)
    return bool(row and row.blocked_until > clock.now())


def register_failure(key: str, limit: int, window_seconds: int) -> bool:
    """Count one failure; return True when the key is now blocked."""
    try:
        return _count(key, limit, window_seconds)
    except IntegrityError:  # another worker created the row first
        db.session.rollback()
        return _count(key, limit, window_seconds)


def _count(key: str, limit: int, window_seconds: int) -> bool:
    now = clock.now()
    row = db.session.get(Throttle, key, with_for_update=True)
    if row is None:
        row = Throttle(key=key, window_start=now, count=0, blocked_until=0)
        db.session.add(row)
    if now - row.window_start >= window_seconds:
        row.window_start, row.count, row.blocked_until = now, 0, 0
    row.count += 1
    if row.count >= limit:
        row.blocked_until = row.window_start + window_seconds
    db.session.commit()
    return row.blocked_until > now


def reset(key: str) -> None:
    db.session.execute(update(Throttle).where(Throttle.key == key).values(count=0, blocked_until=0))
    db.session.commit()
