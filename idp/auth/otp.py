"""One-time codes (M2): 6 random digits, keyed hash, 5 minutes, once, few attempts.

Attempts are consumed atomically *before* the comparison, so parallel guesses
cannot exceed the cap; the right code is redeemed by a conditional update, so
it works once even under a race.

The pieces that make a code (``new_code``, ``code_hash``), reserve its sending
(``claim_send``, ``unclaim_send``, ``take_send``) and check it (``may_try``,
``spend_and_compare``, ``wrong_code``) are shared with the backup phone change
(``idp.account.phone``): both count against the same per-user budgets.
"""

from __future__ import annotations

import secrets

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from .. import audit, clock, throttle
from ..crypto import keyed_hash, same
from ..delivery import DeliveryError, DeliverySlow
from ..delivery.messages import send_otp
from ..models import LoginTransaction, OtpChallenge, User, db, use_once
from ..users import mark_email_verified

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


def user_keys(user_id: int) -> tuple[str, str]:
    """Per-user counters: codes sent, codes failed. Separate from password failures."""
    return f"otp-send:{user_id}", f"otp-fail:{user_id}"


# -- shared by every code: login codes here, backup phone confirmations in account.phone


def new_code() -> str:
    """Six random digits."""
    return f"{secrets.randbelow(10**6):06d}"


def code_hash(purpose: str, binding: str, code: str) -> str:
    """What is stored of a code: a keyed hash, bound to what the code may prove."""
    return keyed_hash(current_app.config["SECRET_KEY"], purpose, f"{binding}:{code}")


def typed(code: str) -> str:
    """The code as the user typed it, spaces dropped (``123 456``)."""
    return code.strip().replace(" ", "")


def take_send(user_id: int) -> bool:
    """Take one code from this user's hourly budget *before* sending it (a send that
    fails or times out may still cost, or arrive); False once it is spent, or once
    the budget of wrong codes is."""
    send_key, fail_key = user_keys(user_id)
    if throttle.is_blocked(fail_key):
        return False
    return throttle.take(send_key, USER_SENDS, USER_WINDOW)


def may_try(user_id: int) -> bool:
    """False once this user's hourly budget of wrong codes is spent."""
    _send_key, fail_key = user_keys(user_id)
    return not throttle.is_blocked(fail_key)


def claim_send(model: type, row_id: int, now: int, *conditions) -> bool:
    """Reserve the right to send a new code for ``row_id``, once: the cooldown and the
    per-row budget are in the ``WHERE`` of one conditional UPDATE, so of two racing
    requests (a double click, two tabs) one sends and the other gets False."""
    claimed = db.session.execute(
        update(model)
        .where(
            model.id == row_id,
            model.sent_at <= now - RESEND_COOLDOWN,
            model.sends < MAX_SENDS,
            *conditions,
        )
        .values(sent_at=now, sends=model.sends + 1)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return claimed.rowcount == 1


def unclaim_send(model: type, row_id: int, now: int, previous_sent_at: int, *conditions) -> None:
    """Nothing was sent after ``claim_send``: give the cooldown back (only if the claim
    is still ours), so the user may retry at once; the attempt stays counted in ``sends``."""
    db.session.rollback()
    db.session.execute(
        update(model)
        .where(model.id == row_id, model.sent_at == now, *conditions)
        .values(sent_at=previous_sent_at)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def spend_and_compare(
    model: type, row, candidate: str, max_attempts: int, *conditions
) -> int | None:
    """Spend one attempt of ``row`` by a conditional UPDATE, *then* compare in constant time.

    None when the code is right (the caller still redeems it once, by a conditional
    update); else the attempts left. ``OtpLocked`` when no attempt could be taken
    (cap reached, code used, or ``conditions`` no longer hold).
    """
    slot = db.session.execute(
        update(model)
        .where(
            model.id == row.id,
            model.used.is_(False),
            model.attempts < max_attempts,
            *conditions,
        )
        .values(attempts=model.attempts + 1)
    )
    db.session.commit()
    if slot.rowcount != 1:
        raise OtpLocked()
    db.session.refresh(row)
    if same(row.code_hash, candidate):
        return None
    return max_attempts - row.attempts


def wrong_code(user_id: int, remaining: int, max_attempts: int) -> OtpError:
    """Count a wrong code against the user's hourly budget; the error to raise."""
    _send_key, fail_key = user_keys(user_id)
    if throttle.register_failure(fail_key, max_attempts * USER_FAILURES_FACTOR, USER_WINDOW):
        return OtpLocked()
    if remaining <= 0:
        return OtpLocked()
    return OtpWrong(remaining)


# -- login codes ----------------------------------------------------------------------


def _hash(tx: LoginTransaction, user_id: int, code: str) -> str:
    """Keyed on the login and its user: a code can only ever prove that user in that login."""
    return code_hash("otp", f"{tx.id}:{user_id}", code)


def current_challenge(tx: LoginTransaction) -> OtpChallenge | None:
    """The code of this login *for its user*: a challenge of anyone else is never seen."""
    if tx.user_id is None:
        return None
    return db.session.scalars(
        select(OtpChallenge).where(
            OtpChallenge.transaction_id == tx.id, OtpChallenge.user_id == tx.user_id
        )
    ).first()


def send_code(tx: LoginTransaction, user: User, channel: str) -> OtpChallenge:
    """Send a new code (the previous one dies); ``DeliveryError`` leaves the previous code,
    ``DeliverySlow`` (raised after the new code is stored) says it may arrive late.

    The send is reserved first by a conditional write (cooldown and budget in its
    ``WHERE``), so a double click or two tabs send one code, never two.
    """
    if user.id != tx.user_id:
        raise OtpExpired()  # never send a code for a user the login is not bound to
    now = clock.now()
    row = current_challenge(tx)
    if row is not None:
        if now - row.sent_at < RESEND_COOLDOWN:
            raise ResendTooSoon(RESEND_COOLDOWN - (now - row.sent_at))
        if row.sends >= MAX_SENDS:
            raise ResendLimit()
    previous_sent_at = row.sent_at if row is not None else None
    reserved = _reserve(tx, row, now)
    if not take_send(user.id):
        unclaim_send(OtpChallenge, reserved.id, now, previous_sent_at or 0)
        audit.record("otp.throttled", user_id=user.id)
        raise ResendLimit()
    code, slow = new_code(), False
    try:
        send_otp(user, channel, code)
    except DeliverySlow:
        slow = True  # it may still arrive: the code stays valid for its lifetime
    except DeliveryError:
        unclaim_send(OtpChallenge, reserved.id, now, previous_sent_at or 0)  # a first row stays
        audit.record("otp.delivery_failed", user_id=user.id, channel=channel)
        raise
    ttl = current_app.config["IDP"]["mfa"]["otp_ttl_seconds"]
    db.session.execute(
        update(OtpChallenge)
        .where(OtpChallenge.id == reserved.id, OtpChallenge.sent_at == now)
        .values(
            channel=channel,
            code_hash=_hash(tx, user.id, code),
            expires_at=now + ttl,
            attempts=0,
            used=False,
        )
        .execution_options(synchronize_session=False)
    )
    audit.record("otp.sent", user_id=user.id, commit=False, channel=channel, slow=slow or None)
    db.session.commit()
    db.session.refresh(reserved)
    if slow:
        raise DeliverySlow(channel)
    return reserved


def _reserve(tx: LoginTransaction, row: OtpChallenge | None, now: int) -> OtpChallenge:
    """Claim the right to send, once; ``ResendTooSoon`` for the request that lost a race.

    Until the new code is written the old one stays valid (a reserved first row
    holds no code and is already expired).
    """
    if row is None:
        row = OtpChallenge(
            transaction_id=tx.id,
            user_id=tx.user_id,
            channel="",
            code_hash="",
            sent_at=now,
            expires_at=now,
            sends=1,
        )
        db.session.add(row)
        try:
            db.session.commit()
        except IntegrityError:  # another request of this login inserted it first
            db.session.rollback()
            raise ResendTooSoon(RESEND_COOLDOWN) from None
        return row
    if not claim_send(OtpChallenge, row.id, now):
        raise ResendTooSoon(RESEND_COOLDOWN)
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
    if not may_try(row.user_id):
        audit.record("otp.throttled", user_id=row.user_id)
        raise OtpLocked()
    remaining = spend_and_compare(
        OtpChallenge, row, _hash(tx, tx.user_id, typed(code)), max_attempts
    )
    if remaining is not None:
        audit.record("otp.failed", user_id=row.user_id, channel=row.channel, remaining=remaining)
        raise wrong_code(row.user_id, remaining, max_attempts)
    if not use_once(OtpChallenge, row.id):
        raise OtpExpired()
    mark_email_verified(tx.user, row.channel)  # an e-mailed code proves the mailbox
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
