"""One-time codes (M2): 6 random digits, keyed hash, 5 minutes, once, few attempts.

Attempts are consumed atomically *before* the comparison, so parallel guesses
cannot exceed the cap; the right code is redeemed by a conditional update, so
it works once even under a race.
"""

from __future__ import annotations

import secrets

from flask import current_app
from sqlalchemy import select, update

from .. import audit, clock, throttle
from ..crypto import keyed_hash, same
from ..delivery import DeliveryError
from ..delivery.messages import send_otp
from ..models import LoginTransaction, OtpChallenge, User, db, use_once

RESEND_COOLDOWN = 30  # seconds between two codes for one login
MAX_SENDS = 5  # codes per login
USER_WINDOW = 3600  # per-user budgets below apply across logins, within this window
USER_SENDS = 10  # codes sent to one user
USER_FAILURES_FACTOR = 3  # wrong codes for one user: 3 × otp_max_attempts


class OtpError(Exception):
    """The code was not accepted; subclasses say why."""


class OtpExpired(OtpError):
    """No live code: expired, used, or none sent. Ask for a new one."""


class OtpLocked(OtpError):
    """Too many wrong tries: this code is void. Ask for a new one."""


class OtpWrong(OtpError):
    def __init__(self, remaining: int):
        super().__init__(remaining)
        self.remaining = remaining


class ResendTooSoon(OtpError):
    def __init__(self, wait: int):
        super().__init__(wait)
        self.wait = wait


class ResendLimit(OtpError):
    """No more codes for this login (or this hour, for this user)."""


def _user_keys(user_id: int) -> tuple[str, str]:
    """Per-user counters: codes sent, codes failed. Separate from password failures."""
    return f"otp-send:{user_id}", f"otp-fail:{user_id}"


def _hash(tx: LoginTransaction, code: str) -> str:
    return keyed_hash(current_app.config["SECRET_KEY"], "otp", f"{tx.id}:{code}")


def current_challenge(tx: LoginTransaction) -> OtpChallenge | None:
    return db.session.scalars(
        select(OtpChallenge).where(OtpChallenge.transaction_id == tx.id)
    ).first()


def send_code(tx: LoginTransaction, user: User, channel: str) -> OtpChallenge:
    """Send a new code (the previous one dies); ``DeliveryError`` leaves no trace."""
    conf = current_app.config["IDP"]["mfa"]
    now = clock.now()
    row = current_challenge(tx)
    if row is not None:
        if now - row.sent_at < RESEND_COOLDOWN:
            raise ResendTooSoon(RESEND_COOLDOWN - (now - row.sent_at))
        if row.sends >= MAX_SENDS:
            raise ResendLimit()
    send_key, fail_key = _user_keys(user.id)
    if throttle.is_blocked(send_key) or throttle.is_blocked(fail_key):
        audit.record("otp.throttled", user_id=user.id)
        raise ResendLimit()
    code = f"{secrets.randbelow(10**6):06d}"
    try:
        send_otp(user, channel, code)
    except DeliveryError:
        db.session.rollback()
        audit.record("otp.delivery_failed", user_id=user.id, channel=channel)
        raise
    if row is None:
        row = OtpChallenge(transaction_id=tx.id, user_id=user.id, sends=0)
        db.session.add(row)
    row.channel, row.code_hash, row.sent_at = channel, _hash(tx, code), now
    row.expires_at, row.attempts, row.used = now + conf["otp_ttl_seconds"], 0, False
    row.sends += 1
    audit.record("otp.sent", user_id=user.id, commit=False, channel=channel)
    db.session.commit()
    throttle.register_failure(send_key, USER_SENDS, USER_WINDOW)  # counts sends, not failures
    return row


def verify_code(tx: LoginTransaction, code: str) -> str:
    """Accept the code once and return its channel, or raise an ``OtpError``."""
    max_attempts = current_app.config["IDP"]["mfa"]["otp_max_attempts"]
    row = current_challenge(tx)
    now = clock.now()
    if row is None or row.used:
        raise OtpExpired()
    if row.expires_at <= now:
        audit.record("otp.expired", user_id=row.user_id, channel=row.channel)
        raise OtpExpired()
    _send_key, fail_key = _user_keys(row.user_id)
    if throttle.is_blocked(fail_key):
        audit.record("otp.throttled", user_id=row.user_id)
        raise OtpLocked()
    slot = db.session.execute(
        update(OtpChallenge)
        .where(
            OtpChallenge.id == row.id,
            OtpChallenge.used.is_(False),
            OtpChallenge.attempts < max_attempts,
        )
        .values(attempts=OtpChallenge.attempts + 1)
    )
    db.session.commit()
    if slot.rowcount != 1:
        raise OtpLocked()
    db.session.refresh(row)
    if not same(row.code_hash, _hash(tx, code.strip().replace(" ", ""))):
        remaining = max_attempts - row.attempts
        audit.record("otp.failed", user_id=row.user_id, channel=row.channel, remaining=remaining)
        if throttle.register_failure(fail_key, max_attempts * USER_FAILURES_FACTOR, USER_WINDOW):
            raise OtpLocked()
        if remaining <= 0:
            raise OtpLocked()
        raise OtpWrong(remaining)
    if not use_once(OtpChallenge, row.id):
        raise OtpExpired()
    audit.record("otp.verified", user_id=row.user_id, channel=row.channel)
    return row.channel


def mask_email(address: str) -> str:
    """``jeanne@exemple.fr`` → ``j***@exemple.fr``."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


def mask_phone(e164: str) -> str:
    """``+33612345678`` → ``+33 6 ** ** ** 78``; other countries keep the last two digits."""
    if e164.startswith("+33") and len(e164) == 12:
        return f"+33 {e164[3]} ** ** ** {e164[-2:]}"
    return f"{e164[:3]} {'*' * max(len(e164) - 5, 0)}{e164[-2:]}"
