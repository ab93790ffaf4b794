"""The login transaction: a pending authorization request and the step reached.

Stored server-side and bound to the browser through a random key in the
(signed) Flask session, so a transaction id seen elsewhere is useless.
"""

from __future__ import annotations

from flask import current_app, request, session
from sqlalchemy import delete, select, update
from sqlalchemy.orm.attributes import set_committed_value

from .. import audit, clock, throttle
from ..crypto import random_token, sha256_hex
from ..models import LoginTransaction, db

STEPS = ("password", "channel", "otp", "renew")


class TooManyLogins(Exception):
    """This address started more logins this hour than ``[throttle] logins_started_per_hour``."""

    def __init__(self, wait: int):
        super().__init__(wait)
        self.wait = max(1, wait)


def _count_start() -> None:
    """Each started login is a row: an address may start only so many per hour, so an
    anonymous visitor costs a bounded number of rows (SECURITY.md, "Throttling")."""
    ip = request.remote_addr
    if throttle.allowed_network(ip):
        return
    key = throttle.address_key("tx-ip", ip)
    if wait := throttle.wait_seconds(key):
        raise TooManyLogins(wait)
    limit = current_app.config["IDP"]["throttle"]["logins_started_per_hour"]
    _, started = throttle.count_failure(key, throttle.Rule(limit, 3600))
    if started:
        audit.record("login.throttled", scope="logins_started")


def _browser_key() -> str:
    if "browser" not in session:
        session["browser"] = random_token(16)
    return sha256_hex(session["browser"])


def begin(
    request_args: dict | None,
    login_hint: str = "",
    *,
    require_mfa: bool = False,
    step: str = "password",
    **fields,
) -> str:
    """Open a fresh transaction and return its id for the URL; ``TooManyLogins`` past the
    address's hourly budget."""
    _count_start()
    now = clock.now()
    db.session.execute(delete(LoginTransaction).where(LoginTransaction.expires_at < now))
    tx_id = random_token(16)
    db.session.add(
        LoginTransaction(
            tx_hash=sha256_hex(tx_id),
            browser_hash=_browser_key(),
            request_args=request_args,
            login_hint=login_hint[:254],
            step=step,
            require_mfa=require_mfa,
            created_at=now,
            expires_at=now + current_app.config["IDP"]["session"]["login_minutes"] * 60,
            **fields,
        )
    )
    db.session.commit()
    return tx_id


def load(tx_id: str | None) -> LoginTransaction | None:
    """The live transaction for this id *and this browser*, or None."""
    if not tx_id or "browser" not in session:
        return None
    row = db.session.scalars(
        select(LoginTransaction).where(LoginTransaction.tx_hash == sha256_hex(tx_id))
    ).first()
    if row is None or row.expires_at <= clock.now() or row.browser_hash != _browser_key():
        return None
    return row


def advance(tx: LoginTransaction, step: str, **fields) -> bool:
    """Move from the step the request found to ``step``, once: a compare-and-set.

    One conditional UPDATE (``WHERE step = <found> AND user_id = <found>``) in
    one database transaction, so of two racing requests only one moves on. A
    ``user_id`` in ``fields`` binds the user, which only a transaction with no
    user yet accepts: a login never changes user (docs/CONVENTIONS.md, convention 6).

    Moving on ends a step, so this commits, with whatever the step wrote before
    (the password's rehash and throttle reset, for instance).
    """
    assert step in STEPS, step
    bound = fields.get("user_id", tx.user_id)
    if tx.user_id is not None and bound != tx.user_id:
        return False
    moved = db.session.execute(
        update(LoginTransaction)
        .where(LoginTransaction.id == tx.id, *_as_found(tx))
        .values(step=step, **fields)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    if moved.rowcount != 1:
        db.session.expire(tx)
        return False
    # What the UPDATE wrote, set as committed state: nothing left for an autoflush to
    # write back later, unconditionally, over a racing request's move.
    set_committed_value(tx, "step", step)
    for name, value in fields.items():
        set_committed_value(tx, name, value)
    return True


def finish(tx: LoginTransaction) -> bool:
    """Close the transaction as found; False if a racing request already moved or closed it.

    Does not commit: closing the login and opening the session are one step, so
    the caller commits both (or the database failing in between leaves the login
    where it was, to be tried again).
    """
    closed = db.session.execute(
        delete(LoginTransaction)
        .where(LoginTransaction.id == tx.id, *_as_found(tx))
        .execution_options(synchronize_session=False)
    )
    db.session.expunge(tx)
    return closed.rowcount == 1


def _as_found(tx: LoginTransaction) -> tuple:
    """The state this request read: the step, and the user (or none yet)."""
    user = (
        LoginTransaction.user_id.is_(None)
        if tx.user_id is None
        else LoginTransaction.user_id == tx.user_id
    )
    return LoginTransaction.step == tx.step, user
