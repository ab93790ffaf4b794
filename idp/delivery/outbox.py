"""A durable outbox for notices (SECURITY.md, "Resilience").

A notice ("your password was changed", "your backup phone changed") is a row
written in the same database transaction as the change it reports, so it can
never be lost, and is sent *after* the request by a helper thread, so a slow or
dead mail server never holds a page nor turns a success into an error. Failed
attempts are retried with growing delays for two days; each worker of each
node may send, one at a time per message (a conditional claim).

Back-channel Logout Tokens (``idp.oidc.backchannel``) use the same outbox, with
their own, shorter retry schedule and audit events (``logout.backchannel_*``).
"""

from __future__ import annotations

import logging
import threading
import time

from flask import Flask, current_app, has_request_context
from sqlalchemy import select, update

from .. import audit, clock
from ..models import OutboxMessage, User, db
from ..oidc import backchannel
from . import DeliveryError, messages

log = logging.getLogger("idp.delivery")

NOTICES = (
    "password_changed",
    "phone_changed",
    "email_changed",
    "second_factor_reset",
    "psc_linked",
    "psc_unlinked",
)  # messages.send_<kind>(user, **payload)
RETRY_DELAYS = (60, 300, 900, 3600)  # then hourly
MAX_ATTEMPTS = 50  # about two days
CLAIM_SECONDS = 120  # longer than any hand-over (mail time-out)
INLINE_SECONDS = 10  # in-line delivery (the ``idp`` command, tests) starts no send past this
_poller_lock = threading.Lock()
_poller_running = False
_wake = threading.Event()
_looked = False  # this process started its poller once


def init_app(app: Flask) -> None:
    """Each serving process looks for notices left waiting (a restart, the ``idp``
    command, a mail outage) at its first request."""
    app.before_request(_first_request)


def _background(app: Flask) -> bool:
    """Only a long-lived server (``IDP_BACKGROUND_DELIVERY``) keeps a delivery thread;
    the ``idp`` command and tests deliver in-line, within the mail time-out."""
    return bool(app.config.get("IDP_BACKGROUND_DELIVERY")) and not app.config.get("TESTING")


def _first_request() -> None:
    global _looked
    if not _looked and _background(current_app):
        _looked = True
        _start_poller(current_app._get_current_object())


def enqueue(kind: str, user: User, **payload: str) -> None:
    """Add a notice to the caller's transaction (its commit makes it durable)."""
    assert kind in NOTICES, kind
    db.session.add(OutboxMessage(kind=kind, user_id=user.id, payload=payload))


def send_soon() -> bool:
    """After the commit: deliver in the background (a server) or in-line (the ``idp``
    command, tests); returns whether nothing is left to send. In-line delivery
    starts no hand-over after ``INLINE_SECONDS``: what is left waits for the next
    look (each hand-over has its own time-out)."""
    app = current_app._get_current_object()
    if not (has_request_context() and _background(app)):
        deliver_pending(deadline=time.monotonic() + INLINE_SECONDS)
        return not _pending()
    _start_poller(app)
    return True


def deliver_pending(limit: int = 50, *, deadline: float | None = None) -> int:
    """Send the messages that are due; returns how many were handed over."""
    now = clock.now()
    due = db.session.scalars(
        select(OutboxMessage.id)
        .where(
            OutboxMessage.sent_at.is_(None),
            OutboxMessage.gave_up.is_(False),
            OutboxMessage.next_attempt_at <= now,
            OutboxMessage.claimed_until <= now,
        )
        .order_by(OutboxMessage.next_attempt_at)
        .limit(limit)
    ).all()
    sent = 0
    for message_id in due:
        if deadline is not None and time.monotonic() > deadline:
            break
        sent += _deliver(message_id, now)
    return sent


def _deliver(message_id: int, now: int) -> bool:
    claimed = db.session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.id == message_id,
            OutboxMessage.sent_at.is_(None),
            OutboxMessage.claimed_until <= now,
        )
        .values(claimed_until=now + CLAIM_SECONDS, attempts=OutboxMessage.attempts + 1)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    if claimed.rowcount != 1:
        return False  # another worker has it
    row = db.session.get(OutboxMessage, message_id, populate_existing=True)
    user = db.session.get(User, row.user_id)
    try:
        handed_over = _send(row, user)
    except DeliveryError as exc:
        _failed(row, getattr(exc, "reason", None) or type(exc).__name__)
        return False
    row.sent_at, row.claimed_until = clock.now(), 0
    if row.kind == backchannel.KIND and handed_over:
        audit.record(
            "logout.backchannel_delivered",
            user_id=row.user_id,
            client_id=row.payload.get("client_id"),
            commit=False,
            attempt=row.attempts,
        )
    db.session.commit()
    return True


def _send(row: OutboxMessage, user: User) -> bool:
    """Hand one message over; False when there was no one left to hand it to."""
    if row.kind == backchannel.KIND:
        return backchannel.deliver(row.payload, user)
    getattr(messages, f"send_{row.kind}")(user, **row.payload)
    return True


def _schedule(kind: str) -> tuple[tuple[int, ...], int]:
    """Retry delays and the attempts after which a message is abandoned."""
    if kind == backchannel.KIND:
        return backchannel.RETRY_DELAYS, backchannel.MAX_ATTEMPTS
    return RETRY_DELAYS, MAX_ATTEMPTS


def _failed(row: OutboxMessage, reason: str) -> None:
    delays, max_attempts = _schedule(row.kind)
    delay = delays[min(row.attempts - 1, len(delays) - 1)]
    reason = reason[:100]
    row.next_attempt_at, row.claimed_until, row.last_error = clock.now() + delay, 0, reason
    row.gave_up = row.attempts >= max_attempts
    if row.kind == backchannel.KIND:
        detail = {"client_id": row.payload.get("client_id"), "commit": False}
        audit.record(
            "logout.backchannel_failed",
            user_id=row.user_id,
            error=reason,
            attempt=row.attempts,
            **detail,
        )
        if row.gave_up:
            audit.record(
                "logout.backchannel_abandoned", user_id=row.user_id, attempts=row.attempts, **detail
            )
    else:
        audit.record(
            "mail.failed", user_id=row.user_id, commit=False, kind=row.kind, attempt=row.attempts
        )
    db.session.commit()
    log.warning(
        "%s not sent (attempt %d, %s), retry in %d s", row.kind, row.attempts, reason, delay
    )


def _pending() -> int:
    return (
        db.session.query(OutboxMessage)
        .filter(OutboxMessage.sent_at.is_(None), OutboxMessage.gave_up.is_(False))
        .count()
    )


def _start_poller(app: Flask) -> None:
    """One thread per process delivers, then keeps retrying while notices wait."""
    global _poller_running
    with _poller_lock:
        _wake.set()  # a running poller looks again before it may stop
        if _poller_running:
            return
        _poller_running = True
    threading.Thread(target=_poll, args=(app,), name="outbox", daemon=True).start()


def _poll(app: Flask) -> None:
    """Deliver what is due, sleep until the next retry, stop when nothing waits. A
    database outage does not kill it: it tries again a minute later, quietly."""
    global _poller_running
    with app.app_context():
        while True:
            _wake.clear()
            try:
                deliver_pending()
                soonest = db.session.scalars(
                    select(OutboxMessage.next_attempt_at)
                    .where(OutboxMessage.sent_at.is_(None), OutboxMessage.gave_up.is_(False))
                    .order_by(OutboxMessage.next_attempt_at)
                    .limit(1)
                ).first()
            except Exception as exc:  # noqa: BLE001 - a background thread must not die
                log.warning("outbox: delivery postponed (%s)", type(exc).__name__)
                soonest = clock.now() + 60
            finally:
                db.session.remove()
            with _poller_lock:
                if soonest is None and not _wake.is_set():
                    _poller_running = False
                    return
            _wake.wait(60 if soonest is None else min(60, max(1, soonest - clock.now())))
