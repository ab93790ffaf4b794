"""Password change from the console (P1–P6), by the operator, and what the reset (R6) shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from flask import current_app
from flask_babel import gettext as _

from .. import audit, clock, throttle
from ..auth import remember, sessions
from ..auth.password import throttle_keys
from ..delivery import DeliveryError
from ..delivery.messages import send_password_changed
from ..models import SsoSession, User
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
    """The "if this was not you" e-mail; a delivery failure must not undo the change.

    Returns whether the message was handed over, so an operator can be told."""
    try:
        send_password_changed(user)
    except DeliveryError:
        audit.record("mail.failed", user_id=user.id, kind="password_changed")
        return False
    return True


def sign_out_everywhere(user: User, reason: str) -> int:
    """Nothing won with a replaced credential outlives it; needs no request, so CLI-safe."""
    ended = sessions.end_all_of(user, reason)
    remember.forget_user(user)  # not ``keep_current``: that one reads the request's cookie
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
        "password.changed", user_id=user.id, reason="operator", keep_sessions=keep_sessions
    )
    return OperatorChange(ended, notify_change(user))


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
    ident_key, _ip_key = throttle_keys(user.username, ip)
    if throttle.is_blocked(ident_key):
        raise PasswordRefused({"current": [_("Too many attempts. Please wait a few minutes.")]})
    if not verify_password(user.password_hash, current):
        conf = current_app.config["IDP"]["password"]
        throttle.register_failure(ident_key, conf["max_failures"], conf["lockout_seconds"])
        audit.record("password.change_failed", user_id=user.id)
        raise PasswordRefused({"current": [_("Your current password is incorrect.")]})
    if errors := new_password_errors(user, new, confirm):
        raise PasswordRefused(errors)
    set_password(user, new)
    remember.keep_current(user)  # other browsers' remembered factor died with the old password
    ended = 0
    if logout_others:
        ended = sessions.end_all_of(user, "password_changed", keep=keep)
        remember.forget_user(user, keep_current=True)
    audit.record("password.changed", user_id=user.id, logout_others=logout_others)
    notify_change(user)
    return ended


def renew_password(user: User, new: str, confirm: str) -> None:
    """P6: an expired password replaced right after the sign-in (just verified)."""
    if errors := new_password_errors(user, new, confirm):
        raise PasswordRefused(errors)
    set_password(user, new)
    audit.record("password.changed", user_id=user.id, reason="expired")
    notify_change(user)


def password_expired(user: User) -> bool:
    """P6: past ``max_age_days`` the user is sent to the change page after signing in."""
    days = current_app.config["IDP"]["password"]["max_age_days"]
    return days > 0 and clock.now() - user.password_changed_at > days * 86400
