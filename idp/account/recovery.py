"""Lost password (R1–R6): a reset link by e-mail, the same answer either way.

The request path only checks the address throttle and hands the identifier to
a background thread, which looks the account up, issues the link and sends
it: the answer's timing cannot tell whether an account exists.
"""

from __future__ import annotations

import logging
import threading

from flask import Flask, current_app
from sqlalchemy import delete, select

from .. import audit, clock, throttle
from ..crypto import random_token, sha256_hex
from ..delivery import DeliveryError
from ..delivery.messages import send_reset_link
from ..models import PasswordResetToken, User, db, use_once
from ..passwords import hash_password
from ..users import find_by_identifier, mark_email_verified, set_password_hash
from .passwords import PasswordRefused, new_password_errors, notify_change, sign_out_everywhere

log = logging.getLogger("idp.account")
PER_ACCOUNT = (3, 3600)  # reset e-mails per account per hour


class ResetLinkInvalid(Exception):
    """Unknown, expired, used, or voided by a newer link or a password change (R4)."""


class ResetThrottled(Exception):
    """Too many requests from this address; ``wait`` says how long, honestly. Saying so
    reveals nothing about any account (the per-account limit stays silent)."""

    def __init__(self, wait: int):
        super().__init__(wait)
        self.wait = max(1, wait)


def request_reset(identifier: str, ip: str | None) -> None:
    """Answer at once; the account look-up and the e-mail happen in the background.

    Raises ``ResetThrottled`` past ``[throttle] reset_requests_per_hour`` for this
    address (sized for a hospital's NAT; ``allow_networks`` are exempt)."""
    if not throttle.allowed_network(ip):
        address_key = throttle.address_key("reset-ip", ip)
        limit = current_app.config["IDP"]["throttle"]["reset_requests_per_hour"]
        if not throttle.take(address_key, limit, 3600):
            audit.record("password.reset_throttled")
            raise ResetThrottled(throttle.wait_seconds(address_key))
    _in_background(current_app._get_current_object(), identifier)


def send_reset_for(identifier: str) -> None:
    """Issue and mail a link if the identifier names an active account; else nothing."""
    user = find_by_identifier(identifier)
    if user is None or user.disabled:
        audit.record("password.reset_requested", known=False)
        return
    account_key = f"reset-user:{user.id}"
    if throttle.is_blocked(account_key):
        audit.record("password.reset_throttled", user_id=user.id)
        return
    throttle.register_failure(account_key, *PER_ACCOUNT)
    token = issue_token(user)
    audit.record("password.reset_requested", user_id=user.id, known=True)
    url = f"{current_app.config['IDP']['issuer']}/password/reset/{token}"
    try:
        send_reset_link(user, url)
    except DeliveryError:
        audit.record("mail.failed", user_id=user.id, kind="reset")


def issue_token(user: User) -> str:
    """A new link; every older one of this user dies (R4: "voided by a newer request")."""
    token = new_token(user, current_app.config["IDP"]["password"]["reset_link_hours"])
    db.session.commit()
    return token


def new_token(user: User, hours: int) -> str:
    """``issue_token`` inside the caller's step (not committed), valid ``hours``: an
    operator's invitation lives ``[password] invite_link_hours``."""
    db.session.execute(delete(PasswordResetToken).where(PasswordResetToken.user_id == user.id))
    token = random_token(32)
    db.session.add(
        PasswordResetToken(
            token_hash=sha256_hex(token),
            user_id=user.id,
            credential_tag=user.credential_tag,
            expires_at=clock.now() + hours * 3600,
        )
    )
    return token


def _in_background(app: Flask, identifier: str) -> None:
    def work() -> None:
        with app.app_context():
            try:
                send_reset_for(identifier)
            except Exception:  # noqa: BLE001 - a background thread must log, not die silently
                log.exception("password reset request failed")
            finally:
                db.session.remove()

    thread = threading.Thread(target=work, name="password-reset", daemon=True)
    thread.start()
    if app.config.get("TESTING"):
        thread.join(10)  # tests read the mailbox right after the answer


def check_token(token: str) -> PasswordResetToken:
    row = db.session.scalars(
        select(PasswordResetToken).where(PasswordResetToken.token_hash == sha256_hex(token))
    ).first()
    if (
        row is None
        or row.used
        or row.expires_at <= clock.now()
        or row.user.disabled
        or row.credential_tag != row.user.credential_tag
    ):
        raise ResetLinkInvalid()
    return row


def complete_reset(token: str, new: str, confirm: str) -> User:
    """Set the new password once; end every session, token and remembered browser.

    One database transaction: the link is spent only together with the new
    password, the ended sessions and the queued notice (``notify_change``
    commits them all); a failure in between leaves the link usable.
    """
    row = check_token(token)
    user = row.user
    if errors := new_password_errors(user, new, confirm):
        raise PasswordRefused(errors)
    hashed = hash_password(new)  # before the first write: SQLite has one writer at a time
    if not use_once(PasswordResetToken, row.id):
        db.session.rollback()
        raise ResetLinkInvalid()
    mark_email_verified(user)  # the link went to the mailbox: proven, in this same step
    set_password_hash(user, hashed)
    sign_out_everywhere(user, "password_reset")
    audit.record("password.reset", user_id=user.id, commit=False)
    notify_change(user)
    return user
