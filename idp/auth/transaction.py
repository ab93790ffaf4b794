"""The login transaction: a pending authorization request and the step reached.

Stored server-side and bound to the browser through a random key in the
(signed) Flask session, so a transaction id seen elsewhere is useless.
"""

from __future__ import annotations

from flask import current_app, session
from sqlalchemy import delete, select

from .. import clock
from ..crypto import random_token, sha256_hex
from ..models import LoginTransaction, db

STEPS = ("password", "channel", "otp", "renew")


def _browser_key() -> str:
    if "browser" not in session:
        session["browser"] = random_token(16)
    return sha256_hex(session["browser"])


def begin(
    request_args: dict | None,
    login_hint: str = "",
    *,
    require_mfa: bool = False,
    **fields,
) -> str:
    """Open a fresh transaction and return its id for the URL."""
    now = clock.now()
    db.session.execute(delete(LoginTransaction).where(LoginTransaction.expires_at < now))
    tx_id = random_token(16)
    db.session.add(
        LoginTransaction(
            tx_hash=sha256_hex(tx_id),
            browser_hash=_browser_key(),
            request_args=request_args,
            login_hint=login_hint[:254],
            step="password",
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


def advance(tx: LoginTransaction, step: str, **fields) -> None:
    """Move to ``step`` (guarded by the views) and record what the step learnt."""
    assert step in STEPS, step
    tx.step = step
    for name, value in fields.items():
        setattr(tx, name, value)
    db.session.commit()


def finish(tx: LoginTransaction) -> None:
    db.session.delete(tx)
    db.session.commit()
