"""What a professional's page in the operator console shows besides the record: lock
state, recent failures, remembered browsers, last sign-ins (only times and counts)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select

from .. import clock
from ..account.passwords import account_counter_keys, account_counter_prefix
from ..models import RememberedBrowser, User, db
from ..models.audit import AuditEvent, Throttle


@dataclass(frozen=True)
class Counter:
    kind: str  # "password", "code", "reset"
    failures: int
    blocked_until: int


@dataclass(frozen=True)
class Overview:
    counters: list[Counter]
    locked: bool
    failures: list[AuditEvent]
    sign_ins: list[AuditEvent]
    browsers: list[RememberedBrowser]
    invited: bool  # no password chosen yet


def overview(user: User, limit: int = 10) -> Overview:
    """Lock state, recent failures, remembered browsers and last sign-ins: never a
    hash, a code or a token (only times and counts)."""
    now = clock.now()
    rows = db.session.scalars(
        select(Throttle).where(
            or_(
                Throttle.key.in_(account_counter_keys(user)),
                Throttle.key.startswith(account_counter_prefix(user), autoescape=True),
            )
        )
    ).all()
    counters = [
        Counter(_kind(row.key), row.count, row.blocked_until)
        for row in rows
        if row.count or row.blocked_until > now
    ]

    def events(*names: str) -> list[AuditEvent]:
        return list(
            db.session.scalars(
                select(AuditEvent)
                .where(AuditEvent.user_id == user.id, AuditEvent.event.in_(names))
                .order_by(AuditEvent.id.desc())
                .limit(limit)
            )
        )

    browsers = db.session.scalars(
        select(RememberedBrowser)
        .where(RememberedBrowser.user_id == user.id, RememberedBrowser.expires_at > now)
        .order_by(RememberedBrowser.created_at.desc())
    ).all()
    return Overview(
        counters=counters,
        locked=any(c.blocked_until > now for c in counters),
        failures=events("login.failed", "otp.failed", "password.change_failed"),
        sign_ins=events("login.succeeded"),
        browsers=list(browsers),
        invited=not user.password_hash,
    )


def _kind(key: str) -> str:
    if key.startswith("pwd:"):
        return "password"
    if key.startswith("otp-"):
        return "code"
    return "reset"
