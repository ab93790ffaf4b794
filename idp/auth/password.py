"""The password step (L2, L3): one generic failure, comparable timing, throttled.

Throttling follows NIST SP 800-63B §3.2.2 without handing attackers a lock-out
weapon (SECURITY.md, "Throttling"):

- per (account, address) pair: ``[password] max_failures`` free failures, then
  a pause of 60 s that doubles with each further failure, up to
  ``lockout_seconds``; the same account from another address is not held back;
- per account: past ``[throttle] account_failures_per_hour`` failures from all
  addresses, addresses that already failed for it are refused until the hour
  ends, while an address that did not fail still gets its attempt checked;
- per address: ``[throttle] address_failures_per_hour`` failures across
  identifiers (sized for a hospital's NAT; ``allow_networks`` skip it).

Counters are keyed on the account when the identifier names one, else on the
typed identifier, so unknown identifiers are throttled alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from .. import audit, throttle
from ..crypto import keyed_hash
from ..models import User
from ..passwords import hash_password, needs_rehash, verify_password
from ..users import find_by_identifier, identity_key

FIRST_PAUSE = 60  # seconds, after max_failures for one (account, address) pair
WINDOW = 3600


class LoginFailed(Exception):
    """Wrong identifier or password; deliberately says nothing more."""


class LoginThrottled(Exception):
    """Too many failures; ``wait`` says honestly how many seconds to wait."""

    def __init__(self, wait: int):
        super().__init__(wait)
        self.wait = max(1, wait)


@dataclass(frozen=True)
class Counters:
    """The three throttle keys of one attempt."""

    pair: str
    account: str
    address: str | None  # None: an allow-listed network


def account_prefix(user_id: int) -> str:
    """Every password counter of one account starts with this (``idp user unlock``)."""
    return f"pwd:u{user_id}"


def counters(identifier: str, user: User | None, ip: str | None) -> Counters:
    secret = current_app.config["SECRET_KEY"]
    if user is not None:
        subject = account_prefix(user.id)
    else:
        subject = "pwd:i" + keyed_hash(secret, "throttle-login", identity_key(identifier))[:40]
    where = keyed_hash(secret, "throttle-ip", ip or "-")[:32]
    address = None if throttle.allowed_network(ip) else throttle.address_key("pwd-ip", ip)
    return Counters(pair=f"{subject}:{where}", account=f"{subject}:all", address=address)


def _rules() -> tuple[throttle.Rule, throttle.Rule, throttle.Rule]:
    conf, limits = current_app.config["IDP"]["password"], current_app.config["IDP"]["throttle"]
    pair = throttle.Rule(
        conf["max_failures"], WINDOW, delay=FIRST_PAUSE, max_delay=conf["lockout_seconds"]
    )
    account = throttle.Rule(limits["account_failures_per_hour"], WINDOW)
    address = throttle.Rule(limits["address_failures_per_hour"], WINDOW)
    return pair, account, address


def check_throttle(keys: Counters) -> None:
    """Raise ``LoginThrottled`` (with the honest wait) before the password is even checked."""
    waits = [throttle.wait_seconds(keys.pair)]
    if keys.address:
        waits.append(throttle.wait_seconds(keys.address))
    if throttle.failures(keys.pair, WINDOW):  # only addresses that failed for this account
        waits.append(throttle.wait_seconds(keys.account))
    if wait := max(waits):
        raise LoginThrottled(wait)


def register_failure(keys: Counters, user_id: int | None) -> None:
    """Count a wrong password on each key; each block is audited once, when it starts."""
    pair, account, address = _rules()
    for scope, key, rule in (
        ("pair", keys.pair, pair),
        ("account", keys.account, account),
        ("address", keys.address, address),
    ):
        if key is None:
            continue
        wait, started = throttle.count_failure(key, rule)
        if started:
            audit.record("login.throttled", user_id=user_id, scope=scope, seconds=wait)


def check_credentials(identifier: str, password: str, ip: str | None) -> User:
    """Return the user, or raise ``LoginFailed`` / ``LoginThrottled``."""
    user = find_by_identifier(identifier)
    keys = counters(identifier, user, ip)
    check_throttle(keys)
    usable = user is not None and not user.disabled
    ok = verify_password(user.password_hash if usable else None, password) and usable
    if not ok:
        audit.record("login.failed", user_id=user.id if user else None)
        register_failure(keys, user.id if user else None)
        raise LoginFailed()
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)  # hashed before the step's first write
    throttle.reset(keys.pair)  # committed with the step's move (``transaction.advance``/sign-in)
    return user
