"""The password step (L2, L3): one generic failure, comparable timing, throttled."""

from __future__ import annotations

from flask import current_app

from .. import audit, throttle
from ..crypto import keyed_hash
from ..models import User, db
from ..passwords import hash_password, needs_rehash, verify_password
from ..users import find_by_identifier, normalize_email

IP_LIMIT_FACTOR = 4  # an address may fail for several identifiers, within reason


class LoginFailed(Exception):
    """Wrong identifier or password; deliberately says nothing more."""


class LoginThrottled(Exception):
    """Too many failures for this identifier or address; try again later."""


def throttle_keys(identifier: str, ip: str | None) -> tuple[str, str]:
    """Failure counters for a typed identifier and a client address."""
    secret = current_app.config["SECRET_KEY"]
    ident = keyed_hash(secret, "throttle-login", normalize_email(identifier))[:40]
    return f"pwd:{ident}", throttle.address_key("pwd-ip", ip)


def check_credentials(identifier: str, password: str, ip: str | None) -> User:
    """Return the user, or raise ``LoginFailed`` / ``LoginThrottled``.

    The throttle is keyed on the typed identifier, whether or not an account
    has it, so being throttled reveals nothing about existence.
    """
    conf = current_app.config["IDP"]["password"]
    ident_key, ip_key = throttle_keys(identifier, ip)
    if throttle.is_blocked(ident_key) or throttle.is_blocked(ip_key):
        audit.record("login.throttled")
        raise LoginThrottled()
    user = find_by_identifier(identifier)
    usable = user is not None and not user.disabled
    ok = verify_password(user.password_hash if usable else None, password) and usable
    if not ok:
        window = conf["lockout_seconds"]
        throttle.register_failure(ident_key, conf["max_failures"], window)
        throttle.register_failure(ip_key, conf["max_failures"] * IP_LIMIT_FACTOR, window)
        audit.record("login.failed", user_id=user.id if user else None)
        raise LoginFailed()
    throttle.reset(ident_key)
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
        db.session.commit()
    return user
