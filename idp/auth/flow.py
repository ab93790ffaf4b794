"""The login as a guarded state machine (STYLE.md convention 6).

Steps: ``password`` → (``channel`` → ``otp``, with the second factor) → done.
The user is signed in only when the last step completes.
"""

from __future__ import annotations

from flask import current_app, redirect, url_for

from ..models import LoginTransaction, User
from ..oidc import authorize
from . import sessions, transaction


def password_level() -> tuple[str, list[str]]:
    """acr and amr after the password alone (DESIGN.md, authentication levels)."""
    return current_app.config["IDP"]["acr"]["pwd"], ["pwd"]


def after_password(tx: LoginTransaction, user: User, auth_time: int):
    """The password was right: finish the login (or go on to the next step)."""
    transaction.advance(tx, "done", user_id=user.id, auth_time=auth_time, amr=["pwd"])
    acr, amr = password_level()
    return complete(tx, user, auth_time=auth_time, acr=acr, amr=amr)


def complete(tx: LoginTransaction, user: User, *, auth_time: int, acr: str, amr: list[str]):
    """Sign the browser in, close the transaction, go back where the flow started."""
    args = tx.request_args
    transaction.finish(tx)
    sso = sessions.start(user, auth_time=auth_time, acr=acr, amr=amr)
    if args is None:
        return redirect(url_for("account.home"))
    return authorize.resume(args, sso)
