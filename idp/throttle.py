"""Attempt limits kept in the database, shared by every worker and node.

A key (an account and an address, an account, an address, a user's codes)
collects failures within a window; past the rule's free failures it is blocked,
until the window ends or, with a ``delay``, for a pause that doubles with each
further failure. Password and code failures use different keys, so one never
spends the other's budget. Each block is audited once, when it starts, not at
every refused attempt (SECURITY.md, "Throttling").
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import case, delete, or_, update
from sqlalchemy.exc import IntegrityError

from . import clock
from .crypto import keyed_hash
from .models import Throttle, db


def address_key(prefix: str, ip: str | None) -> str:
    """Counter key for a client address: a keyed hash, never the address itself."""
    secret = current_app.config["SECRET_KEY"]
    return f"{prefix}:{keyed_hash(secret, 'throttle-ip', ip or '-')[:40]}"


@dataclass(frozen=True)
class Rule:
    """``free`` failures within ``window`` seconds; then blocked to the window's end or,
    with ``delay``, for ``delay`` seconds doubling with each further failure (≤ ``max_delay``)."""

    free: int
    window: int
    delay: int | None = None
    max_delay: int | None = None

    def block_until(self, count: int, now: int, window_start: int) -> int:
        if count < self.free:
            return 0
        if self.delay is None:
            return window_start + self.window
        pause = self.delay * 2 ** min(count - self.free, 20)
        return now + min(pause, self.max_delay or pause)


def allowed_network(ip: str | None) -> bool:
    """Addresses of ``[throttle] allow_networks`` (a hospital's own NAT) skip address limits."""
    networks = current_app.config["IDP"]["throttle"]["allow_networks"]
    if not ip or not networks:
        return False
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net, strict=False) for net in networks)


def wait_seconds(key: str) -> int:
    """How long ``key`` is still blocked, in seconds (0: not blocked)."""
    row = db.session.get(Throttle, key)
    return max(0, row.blocked_until - clock.now()) if row else 0


def failures(key: str, window_seconds: int) -> int:
    """Failures counted for ``key`` in its current window."""
    row = db.session.get(Throttle, key)
    if row is None or clock.now() - row.window_start >= window_seconds:
        return 0
    return row.count


def is_blocked(key: str) -> bool:
    return wait_seconds(key) > 0


def register_failure(key: str, limit: int, window_seconds: int) -> bool:
    """Count one failure; return True when the key is now blocked."""
    return count_failure(key, Rule(limit, window_seconds))[0] > 0


def count_failure(key: str, rule: Rule) -> tuple[int, bool]:
    """Count one failure: (seconds the key is now blocked for, whether this failure blocked it)."""
    try:
        return _count(key, rule)
    except IntegrityError:  # another worker created the row first
        db.session.rollback()
        return _count(key, rule)


def _count(key: str, rule: Rule) -> tuple[int, bool]:
    now = clock.now()
    row = db.session.get(Throttle, key, with_for_update=True)
    if row is None:
        row = Throttle(key=key, window_start=now, count=0, blocked_until=0)
        db.session.add(row)
    if now - row.window_start >= rule.window and row.blocked_until <= now:
        row.window_start, row.count, row.blocked_until = now, 0, 0
    was_blocked = row.blocked_until > now
    row.count += 1
    row.blocked_until = max(row.blocked_until, rule.block_until(row.count, now, row.window_start))
    db.session.commit()
    wait = max(0, row.blocked_until - now)
    return wait, wait > 0 and not was_blocked


def take(key: str, limit: int, window_seconds: int) -> bool:
    """Take one unit of a budget of ``limit`` per window, or False once it is spent.

    Conditional UPDATEs (``WHERE count < limit``), not a read then a write: on
    SQLite as on PostgreSQL parallel requests never take more than ``limit``."""
    now = clock.now()
    for _ in range(2):
        if _take_in_window(key, limit, window_seconds, now):
            return True
        restarted = db.session.execute(
            update(Throttle)
            .where(Throttle.key == key, Throttle.window_start <= now - window_seconds)
            .values(window_start=now, count=1, blocked_until=0)
        )
        db.session.commit()
        if restarted.rowcount == 1:
            return True
        db.session.add(Throttle(key=key, window_start=now, count=1, blocked_until=0))
        try:
            db.session.commit()
            return True
        except IntegrityError:  # it exists: full, or another request created it just now
            db.session.rollback()
    return False


def _take_in_window(key: str, limit: int, window_seconds: int, now: int) -> bool:
    taken = db.session.execute(
        update(Throttle)
        .where(
            Throttle.key == key,
            Throttle.window_start > now - window_seconds,
            Throttle.count < limit,
        )
        .values(
            count=Throttle.count + 1,
            blocked_until=case(
                (Throttle.count + 1 >= limit, Throttle.window_start + window_seconds),
                else_=Throttle.blocked_until,
            ),
        )
    )
    db.session.commit()
    return taken.rowcount == 1


def reset(key: str) -> None:
    """Forget ``key``'s failures; committed by the caller's step (a successful sign-in)."""
    db.session.execute(update(Throttle).where(Throttle.key == key).values(count=0, blocked_until=0))


def clear(*keys: str, prefix: str = "", commit: bool = True) -> int:
    """Delete the counters ``keys`` and every one starting with ``prefix`` (operator unlock);
    ``commit=False`` leaves the commit to the caller's step."""
    condition = Throttle.key.in_(keys)
    if prefix:
        condition = or_(condition, Throttle.key.startswith(prefix, autoescape=True))
    removed = db.session.execute(delete(Throttle).where(condition)).rowcount
    if commit:
        db.session.commit()
    return removed
