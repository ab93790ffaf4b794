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
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError

from .. import audit, clock, throttle
from ..crypto import keyed_hash, same
from ..delivery import DeliveryError, DeliverySlow
from ..delivery.messages import send_otp
from ..models import LoginTransaction, OtpChallenge, User, db, use_once
from ..users import mark_email_verified

RESEND_COOLDOWN = 30  # seconds between two codes on one channel for one login
MAX_SENDS = 5  # codes per login
USER_WINDOW = 3600  # per-user budgets apply across logins, within this window:
# codes sent to one user: ``[mfa] codes_per_hour``; wrong codes: 3 × otp_max_attempts
USER_FAILURES_FACTOR = 3


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
    """No more codes for this login: start the sign-in again."""


class AccountCapped(OtpError):
    """This user's codes for the hour are spent, whatever the login: wait ``wait`` seconds."""

    def __init__(self, wait: int):
        super().__init__(wait)
        self.wait = max(1, wait)


class OtpSuperseded(OtpError):
    """A code that a newer one replaced (a resend, a switch): no attempt was spent."""


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
    return throttle.take(send_key, codes_per_hour(), USER_WINDOW)


def codes_per_hour() -> int:
    return current_app.config["IDP"]["mfa"]["codes_per_hour"]


def account_wait(user_id: int) -> int:
    """Seconds before this user may be sent a code again (0: now), across all logins."""
    send_key, fail_key = user_keys(user_id)
    return max(throttle.wait_seconds(send_key), throttle.wait_seconds(fail_key))


def may_try(user_id: int) -> bool:
    """False once this user's hourly budget of wrong codes is spent."""
    _send_key, fail_key = user_keys(user_id)
    return not throttle.is_blocked(fail_key)


def claim_send(model: type, row_id: int, now: int, *conditions, due=None, **values) -> bool:
    """Reserve the right to send a new code for ``row_id``, once: the cooldown (or
    ``due``, when another rule says a new code may go now) and the per-row budget are
    in the ``WHERE`` of one conditional UPDATE, so of two racing requests (a double
    click, two tabs) one sends and the other gets False. ``values`` are written with
    the claim (the login code's channel)."""
    if due is None:
        due = model.sent_at <= now - RESEND_COOLDOWN
    claimed = db.session.execute(
        update(model)
        .where(model.id == row_id, due, model.sends < MAX_SENDS, *conditions)
        .values(sent_at=now, sends=model.sends + 1, **values)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return claimed.rowcount == 1


def unclaim_send(
    model: type, row_id: int, now: int, previous_sent_at: int, *conditions, **values
) -> None:
    """Nothing was sent after ``claim_send``: give the cooldown back (only if the claim
    is still ours), so the user may retry at once; the attempt stays counted in ``sends``.
    ``values`` restore what the claim wrote."""
    db.session.rollback()
    db.session.execute(
        update(model)
        .where(model.id == row_id, model.sent_at == now, *conditions)
        .values(sent_at=previous_sent_at, **values)
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


def _max_attempts() -> int:
    return current_app.config["IDP"]["mfa"]["otp_max_attempts"]


def _due(channel: str, now: int):
    """When a new code may go at once: the cooldown is over, another channel is chosen
    (a switch sends at once), or the current code is dead (expired or locked)."""
    return or_(
        OtpChallenge.sent_at <= now - RESEND_COOLDOWN,
        OtpChallenge.channel != channel,
        OtpChallenge.expires_at <= now,
        OtpChallenge.attempts >= _max_attempts(),
    )


def send_code(tx: LoginTransaction, user: User, channel: str) -> OtpChallenge:
    """Send a new code (the previous one is superseded); ``DeliveryError`` leaves the
    previous code, ``DeliverySlow`` (raised after the new code is stored) says it may
    arrive late.

    The send is reserved first by a conditional write (cooldown, per-channel switch
    and budget in its ``WHERE``), so a double click or two tabs send one code, never
    two. ``AccountCapped`` when the user's hourly budget is spent, before anything.
    """
    if user.id != tx.user_id:
        raise OtpExpired()  # never send a code for a user the login is not bound to
    now = clock.now()
    if wait := account_wait(user.id):
        raise AccountCapped(wait)
    row = current_challenge(tx)
    if row is not None:
        if row.sends >= MAX_SENDS:
            raise ResendLimit()
        if wait := resend_wait(row, channel, now):
            raise ResendTooSoon(wait)
    previous = {"sent_at": row.sent_at, "channel": row.channel} if row is not None else None
    reserved = _reserve(tx, row, now, channel)

    def give_back() -> None:
        if previous is not None:
            unclaim_send(OtpChallenge, reserved.id, now, previous["sent_at"], **{
                "channel": previous["channel"]})  # fmt: skip
        else:
            unclaim_send(OtpChallenge, reserved.id, now, 0)  # a first row stays

    if not take_send(user.id):
        give_back()
        audit.record("otp.throttled", user_id=user.id)
        raise AccountCapped(account_wait(user.id))
    code, slow = new_code(), False
    try:
        send_otp(user, channel, code)
    except DeliverySlow:
        slow = True  # it may still arrive: the code stays valid for its lifetime
    except DeliveryError:
        give_back()
        audit.record("otp.delivery_failed", user_id=user.id, channel=channel)
        raise
    ttl = current_app.config["IDP"]["mfa"]["otp_ttl_seconds"]
    replaced = [*reserved.replaced, *([reserved.code_hash] if reserved.code_hash else [])]
    db.session.execute(
        update(OtpChallenge)
        .where(OtpChallenge.id == reserved.id, OtpChallenge.sent_at == now)
        .values(
            channel=channel,
            code_hash=_hash(tx, user.id, code),
            expires_at=now + ttl,
            attempts=0,
            used=False,
            replaced=replaced[-MAX_SENDS:],
        )
        .execution_options(synchronize_session=False)
    )
    audit.record("otp.sent", user_id=user.id, commit=False, channel=channel, slow=slow or None)
    db.session.commit()
    db.session.refresh(reserved)
    if slow:
        raise DeliverySlow(channel)
    return reserved


def resend_wait(row: OtpChallenge, channel: str, now: int) -> int:
    """Seconds before a new code may go to ``channel`` (0: now); see ``_due``."""
    if row.channel != channel or row.expires_at <= now or row.attempts >= _max_attempts():
        return 0
    return max(0, RESEND_COOLDOWN - (now - row.sent_at))


def _reserve(tx: LoginTransaction, row: OtpChallenge | None, now: int, channel: str):
    """Claim the right to send, once; ``ResendTooSoon`` for the request that lost a race.

    Until the new code is written the old one stays valid (a reserved first row
    holds no code and is already expired).
    """
    if row is None:
        row = OtpChallenge(
            transaction_id=tx.id,
            user_id=tx.user_id,
            channel=channel,
            code_hash="",
            sent_at=now,
            expires_at=now,
            sends=1,
            replaced=[],
        )
        db.session.add(row)
        try:
            db.session.commit()
        except IntegrityError:  # another request of this login inserted it first
            db.session.rollback()
            raise ResendTooSoon(RESEND_COOLDOWN) from None
        return row
    if not claim_send(OtpChallenge, row.id, now, due=_due(channel, now), channel=channel):
        raise ResendTooSoon(RESEND_COOLDOWN)
    db.session.refresh(row)
    return row


def verify_code(tx: LoginTransaction, code: str) -> str:
    """Accept the code once and return its channel, or raise an ``OtpError``.

    A code that a newer one replaced is ``OtpSuperseded``, and gives its attempt
    back: a late SMS is not the user's mistake.
    """
    max_attempts = _max_attempts()
    row = current_challenge(tx)
    now = clock.now()
    if row is None or row.used or not row.holds_code:
        raise OtpExpired()
    if row.expires_at <= now:
        audit.record("otp.expired", user_id=row.user_id, channel=row.channel)
        raise OtpExpired()
    if not may_try(row.user_id):
        audit.record("otp.throttled", user_id=row.user_id)
        raise OtpLocked()
    candidate = _hash(tx, tx.user_id, typed(code))
    remaining = spend_and_compare(OtpChallenge, row, candidate, max_attempts)
    if remaining is not None:
        if any(same(old, candidate) for old in row.replaced):
            db.session.execute(
                update(OtpChallenge)
                .where(OtpChallenge.id == row.id, OtpChallenge.attempts > 0)
                .values(attempts=OtpChallenge.attempts - 1)
            )
            audit.record("otp.superseded", user_id=row.user_id, channel=row.channel)
            raise OtpSuperseded()
        audit.record("otp.failed", user_id=row.user_id, channel=row.channel, remaining=remaining)
        raise wrong_code(row.user_id, remaining, max_attempts)
    if not use_once(OtpChallenge, row.id):
        db.session.rollback()
        raise OtpExpired()
    # Not committed here: the code is spent only if the sign-in it opens lands too.
    tx.user.last_channel = row.channel  # pre-selected at the next sign-in
    mark_email_verified(tx.user, row.channel)  # an e-mailed code proves the mailbox
    audit.record("otp.verified", user_id=row.user_id, channel=row.channel, commit=False)
    return row.channel


@dataclass(frozen=True)
class CodePage:
    """What the code page shows, from the database alone, so that it never contradicts
    itself: the code in flight and its state, and what the user may do next."""

    channel: str
    live: bool  # a code that can still be typed
    expired: bool
    locked: bool
    failed: bool  # the last send did not leave
    codes_sent: int
    expires_at: int
    resend_wait: int  # seconds before "Resend the code" works (same channel)
    login_limit: bool  # no more codes for this login
    account_wait: int  # seconds before the user may get any code again
    too_many_wrong: bool  # why: the account's wrong codes (else: the codes sent)


def code_page(tx: LoginTransaction, user: User) -> CodePage:
    row = current_challenge(tx)
    now = clock.now()
    channel = (row.channel if row else "") or tx.channel or "email"
    wait = account_wait(user.id)
    too_many_wrong = bool(wait) and throttle.is_blocked(user_keys(user.id)[1])
    if row is None:
        return CodePage(channel, False, False, False, False, 0, 0, 0, False, wait, too_many_wrong)
    holds = row.holds_code and not row.used
    expired = holds and row.expires_at <= now
    locked = holds and not expired and row.attempts >= _max_attempts()
    return CodePage(
        channel=channel,
        live=holds and not expired and not locked,
        expired=expired,
        locked=locked,
        failed=not row.holds_code,
        codes_sent=len(row.replaced) + (1 if row.holds_code else 0),
        expires_at=row.expires_at,
        resend_wait=resend_wait(row, channel, now) if row.holds_code else 0,
        login_limit=row.sends >= MAX_SENDS,
        account_wait=wait,
        too_many_wrong=too_many_wrong,
    )


def mask_email(address: str) -> str:
    """``jeanne@exemple.fr`` → ``j***@exemple.fr``."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


def mask_phone(e164: str) -> str:
    """``+33612345678`` → ``+33 6 ** ** ** 78``; other countries keep the last two digits."""
    if e164.startswith("+33") and len(e164) == 12:
        return f"+33 {e164[3]} ** ** ** {e164[-2:]}"
    return f"{e164[:3]} {'*' * max(len(e164) - 5, 0)}{e164[-2:]}"
