"""Password change from the console (P1–P6) and the checks shared with the reset (R6)."""

from __future__ import annotations

from dataclasses import dataclass, field

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


def notify_change(user: User) -> None:
    """The "if this was not you" e-mail; a delivery failure must not undo the change."""
    try:
        send_password_changed(user)
    except DeliveryError:
        audit.record("mail.failed", user_id=user.id, kind="password_changed")


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
