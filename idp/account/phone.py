"""Backup phone change (A2–A3): a password alone never enrols the second factor.

Adding or changing the backup phone needs (a) a recent second factor — a code
e-mailed to the account in this change, or a console session whose code was
typed less than ``FRESH_FACTOR_SECONDS`` ago (a remembered browser is no typed
code) — and (b) the code sent by SMS to the new number, which is only sent once
(a) holds, so nobody can use the provider to text arbitrary numbers. Removing
the phone needs (a). The number waits in ``PhoneChange`` (one per user, bound
to the console session that started it); ``User.backup_phone`` changes only
when the last code is typed, and the account's address is told of every change.

Codes reuse the login's machinery (``idp.auth.otp``): keyed hash, attempts spent
before comparing, resend cooldown, the user's hourly budgets of codes sent and
of wrong codes. Every state move is a compare-and-set on the pending row. No
``request`` here: the views pass the user and their session.
"""

from __future__ import annotations

from flask import current_app
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import ObjectDeletedError

from .. import audit, clock
from ..auth import otp
from ..crypto import random_token
from ..delivery import DeliveryError, DeliverySlow
from ..delivery.messages import send_phone_changed, send_phone_code
from ..models import PhoneChange, SsoSession, User, db
from ..phones import PhoneError, normalize_mobile

FRESH_FACTOR_SECONDS = 600  # a code typed this recently at sign-in stands in for the e-mailed one
CHANGE_SECONDS = 1800  # a pending change is dropped after this, codes or not
EMAIL, SMS = "email", "sms"  # the code a pending change expects


class ChangeRefused(Exception):
    """The change cannot start: the session is not the user's."""


def fresh_second_factor(sso: SsoSession) -> bool:
    """A session started by typing a code (e-mail or SMS) less than ``FRESH_FACTOR_SECONDS``
    ago. An ``SsoSession`` is created at each sign-in and step-up, so ``created_at`` is when
    its factor was proved; ``amr`` ``["pwd", "mfa"]`` (a remembered browser) has no ``otp``."""
    amr = list(sso.amr or [])
    return (
        "otp" in amr and "mfa" in amr and 0 <= clock.now() - sso.created_at <= FRESH_FACTOR_SECONDS
    )


def _owns(user: User, sso: SsoSession | None) -> bool:
    return sso is not None and user.id == sso.user_id


def pending_change(user: User, sso: SsoSession | None) -> PhoneChange | None:
    """The live change this session of ``user`` started; never another user's or session's."""
    if not _owns(user, sso):
        return None
    return db.session.scalars(
        select(PhoneChange)
        .where(
            PhoneChange.user_id == user.id,
            PhoneChange.sid == sso.sid,
            PhoneChange.expires_at > clock.now(),
        )
        .execution_options(populate_existing=True)
    ).first()


def shown(phone: str | None) -> str | None:
    """A number as pages, e-mails and the audit trail show it: masked."""
    return otp.mask_phone(phone) if phone else None


def start_phone_change(user: User, sso: SsoSession, raw: str) -> PhoneChange | None:
    """Ask for a new number (E.164), or none (``raw`` empty): the first code is sent at once.

    Returns the pending change, or None when nothing waits: the number is the current
    one, or a removal in a session with a fresh code (done here). Raises ``PhoneError``
    for an invalid number; ``DeliveryError`` or an ``OtpError`` when the first code could
    not be sent (the change waits: "Renvoyer le code").
    """
    if not _owns(user, sso):
        raise ChangeRefused()
    new = normalize_mobile(raw) if raw.strip() else None
    _drop(user)  # one pending change per user: a new request replaces the old one
    if new == user.backup_phone:
        db.session.commit()
        return None
    fresh = fresh_second_factor(sso)
    if new is None and fresh:
        _apply(user, None)
        return None
    now = clock.now()
    row = PhoneChange(
        user_id=user.id,
        sid=sso.sid,
        nonce=random_token(24),
        phone=new,
        step=SMS if fresh else EMAIL,
        code_hash="",
        sent_at=0,
        code_expires_at=0,
        attempts=0,
        sends=0,
        used=False,
        created_at=now,
        expires_at=now + CHANGE_SECONDS,
    )
    db.session.add(row)
    audit.record(
        "phone.change_started",
        user_id=user.id,
        commit=False,
        phone=shown(new),
        removal=new is None,
        first_code=row.step,
    )
    try:
        db.session.commit()
    except IntegrityError:  # a racing request of this user started one first: it sends
        db.session.rollback()
        raise otp.ResendTooSoon(otp.RESEND_COOLDOWN) from None
    _send(user, row)
    return row


def resend_phone_code(user: User, sso: SsoSession) -> PhoneChange:
    """A new code for the current step ("Renvoyer le code"); the previous one dies."""
    row = pending_change(user, sso)
    if row is None:
        raise otp.OtpExpired()
    now = clock.now()
    if now - row.sent_at < otp.RESEND_COOLDOWN:
        raise otp.ResendTooSoon(otp.RESEND_COOLDOWN - (now - row.sent_at))
    if row.sends >= otp.MAX_SENDS:
        raise otp.ResendLimit()
    _send(user, row)
    return row


def confirm_phone_code(user: User, sso: SsoSession, code: str) -> str:
    """Check the code of the current step and move on, once.

    ``"sms_sent"``: the e-mailed code was right, a code went to the new number (a
    ``DeliveryError`` or ``OtpError`` from that send means the step moved on but the
    SMS did not leave: resend). ``"confirmed"`` / ``"removed"``: done. ``"stale"``:
    another request moved this change on first. Raises an ``OtpError`` otherwise.
    """
    row = pending_change(user, sso)
    if row is None:
        raise otp.OtpExpired()
    if not _check(user, row, code):
        return "stale"
    return _move_on(user, sso, row)


def cancel_phone_change(user: User, sso: SsoSession) -> bool:
    """Drop this session's pending change ("Annuler"); the number stays as it was."""
    if not _owns(user, sso):
        return False
    gone = db.session.execute(
        delete(PhoneChange).where(PhoneChange.user_id == user.id, PhoneChange.sid == sso.sid)
    )
    if gone.rowcount:
        audit.record("phone.change_cancelled", user_id=user.id, commit=False)
    db.session.commit()
    return bool(gone.rowcount)


# -- the pieces -----------------------------------------------------------------------


def _this(row: PhoneChange) -> tuple:
    """The row as it was read: the same change, at the same step, of the same user and session."""
    return (
        PhoneChange.nonce == row.nonce,
        PhoneChange.step == row.step,
        PhoneChange.user_id == row.user_id,
        PhoneChange.sid == row.sid,
    )


def _hash(user: User, row: PhoneChange, code: str) -> str:
    """Keyed on the change, its user, its step and its number: a code proves nothing else."""
    binding = f"{row.nonce}:{user.id}:{row.step}:{row.phone or '-'}"
    return otp.code_hash("phone-change", binding, code)


def _drop(user: User) -> None:
    gone = db.session.execute(delete(PhoneChange).where(PhoneChange.user_id == user.id))
    if gone.rowcount:
        audit.record("phone.change_cancelled", user_id=user.id, commit=False, replaced=True)


def _send(user: User, row: PhoneChange) -> None:
    """Send the code of ``row.step``: by e-mail to the account, or by SMS to the new number.

    Reserved first by ``otp.claim_send`` (cooldown and per-change budget in its
    ``WHERE``), counted in the user's hourly budget shared with login codes.
    """
    now = clock.now()
    previous_sent_at = row.sent_at
    if not otp.claim_send(PhoneChange, row.id, now, *_this(row)):
        raise otp.ResendTooSoon(otp.RESEND_COOLDOWN)
    if not otp.take_send(user.id):
        otp.unclaim_send(PhoneChange, row.id, now, previous_sent_at, *_this(row))
        audit.record("phone.throttled", user_id=user.id, step=row.step)
        raise otp.ResendLimit()
    code = otp.new_code()
    try:
        if row.step == SMS:
            send_phone_code(user, code, sms_to=row.phone)
        else:
            send_phone_code(user, code, shown_phone=shown(row.phone))
    except DeliverySlow:
        pass  # it may still arrive: the code is stored and stays valid for its lifetime
    except DeliveryError:
        otp.unclaim_send(PhoneChange, row.id, now, previous_sent_at, *_this(row))
        audit.record("phone.delivery_failed", user_id=user.id, step=row.step)
        raise
    ttl = current_app.config["IDP"]["mfa"]["otp_ttl_seconds"]
    db.session.execute(
        update(PhoneChange)
        .where(PhoneChange.id == row.id, PhoneChange.sent_at == now, *_this(row))
        .values(code_hash=_hash(user, row, code), code_expires_at=now + ttl, attempts=0)
        .execution_options(synchronize_session=False)
    )
    audit.record("phone.code_sent", user_id=user.id, commit=False, step=row.step)
    db.session.commit()


def _check(user: User, row: PhoneChange, code: str) -> bool:
    """Spend an attempt, then compare. True: right code; False: the change moved on
    meanwhile (another request); else an ``OtpError``."""
    max_attempts = current_app.config["IDP"]["mfa"]["otp_max_attempts"]
    if row.used or not row.code_hash or row.code_expires_at <= clock.now():
        audit.record("phone.code_failed", user_id=user.id, step=row.step, reason="expired")
        raise otp.OtpExpired()
    if not otp.may_try(user.id):
        audit.record("phone.code_failed", user_id=user.id, step=row.step, reason="throttled")
        raise otp.OtpLocked()
    candidate = _hash(user, row, otp.typed(code))
    try:
        remaining = otp.spend_and_compare(PhoneChange, row, candidate, max_attempts, *_this(row))
    except ObjectDeletedError:  # cancelled or replaced by another request meanwhile
        db.session.rollback()
        return False
    except otp.OtpLocked:
        if _moved_on(row):
            return False
        audit.record("phone.code_failed", user_id=user.id, step=row.step, reason="locked")
        raise
    if remaining is None:
        return True
    audit.record("phone.code_failed", user_id=user.id, step=row.step, remaining=remaining)
    raise otp.wrong_code(user.id, remaining, max_attempts)


def _moved_on(row: PhoneChange) -> bool:
    """The change is gone, used, or at another step than when ``row`` was read."""
    current = db.session.execute(
        select(PhoneChange.id).where(
            PhoneChange.id == row.id, PhoneChange.used.is_(False), *_this(row)
        )
    ).first()
    return current is None


def _move_on(user: User, sso: SsoSession, row: PhoneChange) -> str:
    """The code of ``row.step`` was right: the compare-and-set to the next state.

    Conditioned on the row as it was read (change, step, user, session, unused): of
    two racing requests one moves it on, the other gets ``"stale"``.
    """
    still = (
        PhoneChange.id == row.id,
        PhoneChange.user_id == user.id,
        PhoneChange.sid == sso.sid,
        PhoneChange.used.is_(False),
        *_this(row),
    )
    if row.step == EMAIL and row.phone is not None:
        moved = db.session.execute(
            update(PhoneChange)
            .where(*still)
            .values(step=SMS, code_hash="", code_expires_at=0, attempts=0, sends=0, sent_at=0)
            .execution_options(synchronize_session=False)
        )
        if moved.rowcount != 1:
            db.session.rollback()
            return "stale"
        audit.record("phone.owner_confirmed", user_id=user.id, commit=False)
        db.session.commit()
        moved_row = db.session.scalars(
            select(PhoneChange)
            .where(PhoneChange.id == row.id, PhoneChange.nonce == row.nonce)
            .execution_options(populate_existing=True)
        ).first()
        if moved_row is None:  # cancelled or replaced meanwhile
            return "stale"
        _send(user, moved_row)  # (b): only now is the new number texted
        return "sms_sent"
    done = db.session.execute(
        update(PhoneChange)
        .where(*still)
        .values(used=True)
        .execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:
        db.session.rollback()
        return "stale"
    db.session.execute(delete(PhoneChange).where(PhoneChange.id == row.id))
    _apply(user, row.phone)  # commits the whole move
    return "confirmed" if row.phone else "removed"


def _apply(user: User, phone: str | None) -> None:
    """Store the confirmed number (or none) with its audit event, then tell the account."""
    had = db.session.scalars(select(User.backup_phone).where(User.id == user.id)).one()
    db.session.execute(
        update(User)
        .where(User.id == user.id)
        .values(backup_phone=phone, updated_at=clock.now())
        .execution_options(synchronize_session=False)
    )
    if phone is None:
        audit.record("phone.removed", user_id=user.id, commit=False)
    else:
        audit.record(
            "phone.confirmed", user_id=user.id, commit=False, phone=shown(phone), replaced=bool(had)
        )
    db.session.commit()
    db.session.refresh(user)
    _notify(user, phone)


def _notify(user: User, phone: str | None) -> None:
    """The "if this was not you" e-mail; a delivery failure must not undo the change."""
    try:
        send_phone_changed(user, shown(phone))
    except DeliveryError:
        audit.record("mail.failed", user_id=user.id, kind="phone_changed")


__all__ = [
    "CHANGE_SECONDS",
    "FRESH_FACTOR_SECONDS",
    "ChangeRefused",
    "PhoneError",
    "cancel_phone_change",
    "confirm_phone_code",
    "fresh_second_factor",
    "pending_change",
    "resend_phone_code",
    "start_phone_change",
]
