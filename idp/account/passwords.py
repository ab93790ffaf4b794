"""Password change from the console (P1–P6), by the operator, and what the reset (R6) shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from flask import current_app
from flask_babel import gettext as _

from .. import audit, throttle
from ..auth import otp, remember, sessions
from ..auth.password import (
    LoginThrottled,
    account_prefix,
    check_throttle,
    counters,
    register_failure,
)
from ..delivery import outbox
from ..i18n import wait_message
from ..models import SsoSession, User, db
from ..passwords import verify_password
from ..users import set_password
from .policy import policy_errors


@dataclass
class PasswordRefused(Exception):
    """Messages per form field: ``current``, ``new``, ``confirm``."""

    errors: dict[str, list[str]] = field(default_factory=dict)


def new_password_errors(user: User, new: str, confirm: str) -> dict[str, list[str]]:
    """Every rule the new password breaks, and whether the confirmation matches."""
    conf = current_app.config["IDP"]["password"]
    errors: dict[str, list[str]] = {}
    rules = policy_errors(new, conf["min_length"], username=user.username, email=user.email)
    if new and verify_password(user.password_hash, new):
        rules.append(_("Must differ from your current password."))
    if rules:
        errors["new"] = rules
    if new != confirm:
        errors["confirm"] = [_("The two passwords are different.")]
    return errors


def notify_change(user: User) -> bool:
    """The "if this was not you" e-mail, through the outbox: never lost, never blocking.

    Commits the caller's step with it (the new password, the sessions ended):
    the notice is queued only if the change lands. Returns whether it has left
    already (always true from a web request, where it leaves right after; the
    ``idp`` command waits and can tell the operator)."""
    outbox.enqueue("password_changed", user)
    db.session.commit()
    return outbox.send_soon()


def sign_out_everywhere(user: User, reason: str) -> int:
    """Nothing won with a replaced credential outlives it; needs no request, so CLI-safe."""
    ended = sessions.end_all_of(user, reason)
    remember.forget_user(user)  # not ``keep_current``: that one reads the request's cookie
    return ended


def disable_account(user: User) -> int:
    """Disable an account and end everything it holds: sessions (their RPs are told),
    tokens, remembered browsers, logins in progress. One transaction; returns how
    many sessions ended. The one service behind ``idp user disable`` and any
    operator page."""
    user.disabled = True
    ended = sign_out_everywhere(user, "account_disabled")
    db.session.commit()
    outbox.send_soon()  # the Logout Tokens, after the commit
    return ended


class OperatorChange(NamedTuple):
    """What ``operator_set_password`` did: sessions ended, whether the notice went out."""

    sessions_ended: int
    notified: bool


def operator_set_password(
    user: User, password: str, *, keep_sessions: bool = False
) -> OperatorChange:
    """A password replaced by an operator has usually leaked: the intruder must be out too.

    The one service behind ``idp user set-password`` and any operator page; ``keep_sessions``
    changes only the credential. Raises ``PasswordRefused`` (field ``new``)."""
    conf = current_app.config["IDP"]["password"]
    if rules := policy_errors(
        password, conf["min_length"], username=user.username, email=user.email
    ):
        raise PasswordRefused({"new": rules})
    set_password(user, password)
    ended = 0 if keep_sessions else sign_out_everywhere(user, "password_set_by_operator")
    audit.record(
        "password.changed",
        user_id=user.id,
        commit=False,
        reason="operator",
        keep_sessions=keep_sessions,
    )
    return OperatorChange(ended, notify_change(user))


def unlock_account(user: User) -> int:
    """Clear every attempt counter of the account at once: passwords from every address,
    codes, reset e-mails (``idp user unlock``, the operator console's ``unlock``)."""
    removed = throttle.clear(
        *otp.user_keys(user.id), f"reset-user:{user.id}", prefix=account_prefix(user.id) + ":"
    )
    audit.record("account.unlocked", user_id=user.id, counters=removed)
    return removed


def change_password(
    user: User,
    current: str,
    new: str,
    confirm: str,
    *,
    logout_others: bool,
    keep: SsoSession | None,
    ip: str | None,
) -> int:
    """Check and store; returns how many other sessions were ended. Raises ``PasswordRefused``."""
    keys = counters(user.username, user, ip)  # the same counters as the sign-in page
    try:
        check_throttle(keys)
    except LoginThrottled as throttled:
        raise PasswordRefused({"current": [wait_message(throttled.wait)]}) from None
    if not verify_password(user.password_hash, current):
        audit.record("password.change_failed", user_id=user.id)
        register_failure(keys, user.id)
        raise PasswordRefused({"current": [_("Your current password is incorrect.")]})
    if errors := new_password_errors(user, new, confirm):
        raise PasswordRefused(errors)
    set_password(user, new)
    remember.keep_current(user)  # other browsers' remembered factor died with the old password
    ended = 0
    if logout_others:
        ended = sessions.end_all_of(user, "password_changed", keep=keep)
        remember.forget_user(user, keep_current=True)
    audit.record("password.changed", user_id=user.id, commit=False, logout_others=logout_others)
    notify_change(user)  # commits the whole change at once
    return ended
