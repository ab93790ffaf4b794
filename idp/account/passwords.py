"""Password change from the console (P1–P6), by the operator, and what the reset (R6) shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import String, cast, exists, or_, select, update
from sqlalchemy.orm import aliased
from sqlalchemy.orm.attributes import set_committed_value

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


class AccountActionRefused(Exception):
    """An operator's action that would lock the portal out of its own administration:
    ``reason`` is ``self`` (disabling oneself), ``last_admin`` (disabling the last enabled
    admin), ``own_admin_role`` or ``last_admin_role`` (removing one's own ``admin`` role,
    or the last enabled admin's)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


ADMIN_ROLE = "admin"


def is_admin_row(table=User):
    """SQL: the account holds the ``admin`` role (``roles`` is a JSON list of strings)."""
    return cast(table.roles, String).like('%"' + ADMIN_ROLE + '"%')


def enabled_admin_ids(*, lock: bool = False) -> list[int]:
    """The enabled accounts holding ``admin``; ``lock`` takes their rows (PostgreSQL
    ``FOR UPDATE``, in id order): two operators changing admins at once are serialised,
    and the second one's next statement sees the first's result."""
    statement = select(User.id).where(User.disabled.is_(False), is_admin_row()).order_by(User.id)
    if lock:
        statement = statement.with_for_update()
    return list(db.session.scalars(statement))


def keep_an_admin(user: User, **values) -> bool:
    """Write ``values`` on ``user``'s row (a change that may leave it no enabled admin:
    disabled, or its ``admin`` role gone) only if the portal keeps an enabled admin:
    the row is no enabled admin now, or another enabled admin remains. False, nothing
    written, otherwise.

    The check is the UPDATE's own condition, not a read before it: two admins disabling
    each other (or removing each other's role) at the same moment must not both win.
    SQLite lets one writer in at a time and evaluates it under the write lock; on
    PostgreSQL the admins' rows are locked first (``enabled_admin_ids``), so that the
    UPDATE, a statement later, sees the other operator's committed change. Not
    committed: the caller's step commits (docs/CONVENTIONS.md, convention 17)."""
    enabled_admin_ids(lock=True)
    other = aliased(User)
    another_admin = exists().where(
        other.id != user.id, other.disabled.is_(False), is_admin_row(other)
    )
    done = db.session.execute(
        update(User)
        .where(
            User.id == user.id,
            or_(User.disabled.is_(True), ~is_admin_row(), another_admin),
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:
        return False
    for name, value in values.items():
        set_committed_value(user, name, value)
    return True


def disable_account(user: User, *, actor: User | None = None) -> int:
    """Disable an account and end everything it holds: sessions (their RPs are told),
    tokens, remembered browsers, logins in progress. One transaction; returns how
    many sessions ended. The one service behind ``idp user disable`` and the operator
    console's ``disable``. Never oneself, never the last enabled admin
    (``AccountActionRefused``): the portal keeps someone who can undo it."""
    if actor is not None and actor.id == user.id:
        raise AccountActionRefused("self")
    if not keep_an_admin(user, disabled=True):
        db.session.rollback()
        raise AccountActionRefused("last_admin")
    ended = sign_out_everywhere(user, "account_disabled")
    audit.record(
        "account.disabled", user_id=user.id, actor_id=actor.id if actor else None, commit=False
    )
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


def unlock_account(user: User, *, actor: User | None = None) -> int:
    """Clear every attempt counter of the account at once: passwords from every address,
    codes, reset e-mails (``idp user unlock``, the operator console's ``unlock``)."""
    removed = throttle.clear(
        *account_counter_keys(user), prefix=account_counter_prefix(user), commit=False
    )
    audit.record(
        "account.unlocked",
        user_id=user.id,
        actor_id=actor.id if actor else None,
        commit=False,
        counters=removed,
    )
    db.session.commit()
    return removed


def account_counter_keys(user: User) -> tuple[str, ...]:
    """The account's own attempt counters (codes, reset e-mails) besides the password ones."""
    return (*otp.user_keys(user.id), f"reset-user:{user.id}")


def account_counter_prefix(user: User) -> str:
    """Every password counter of the account (per address and overall) starts with this."""
    return account_prefix(user.id) + ":"


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
