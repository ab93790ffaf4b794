"""The login as a guarded state machine (STYLE.md convention 6).

Steps: ``password`` → (``channel`` →) ``otp`` → (``renew``) → done. The
second factor runs when the user's roles or the request demand it (M1) and
this browser is not remembered for the user (M6); ``renew`` when the password
is older than ``max_age_days`` (P6). The user is signed in at the last step.
"""

from __future__ import annotations

from flask import current_app, flash, redirect, url_for
from flask_babel import gettext as _

from ..delivery import DeliveryError
from ..models import LoginTransaction, SsoSession, User
from ..oidc import authorize
from ..oidc.acr import user_requires_mfa
from . import otp, remember, sessions, transaction

AMR_BY_CHANNEL = {"email": ["pwd", "otp", "mfa"], "sms": ["pwd", "sms", "otp", "mfa"]}
AMR_REMEMBERED = ["pwd", "mfa"]
_ENDPOINTS = {
    "password": "auth.login",
    "channel": "auth.channel",
    "otp": "auth.code",
    "renew": "account.password",
}


def _levels() -> dict:
    return current_app.config["IDP"]["acr"]


def needs_second_factor(user: User, tx: LoginTransaction) -> bool:
    return tx.require_mfa or tx.step_up or user_requires_mfa(user)


def step_url(tx_id: str, step: str) -> str:
    return url_for(_ENDPOINTS[step], tx=tx_id)


def after_password(tx: LoginTransaction, tx_id: str, user: User, auth_time: int):
    """The password was right: finish, or go on to the second factor."""
    transaction.advance(tx, tx.step, user_id=user.id, auth_time=auth_time, amr=["pwd"])
    if not needs_second_factor(user, tx):
        return complete(tx, tx_id, user, amr=["pwd"])
    return second_factor(tx, tx_id, user)


def second_factor(tx: LoginTransaction, tx_id: str, user: User):
    """Skip the code on a remembered browser; else choose a channel, or e-mail at once."""
    if remember.is_remembered(user):
        return complete(tx, tx_id, user, amr=AMR_REMEMBERED)
    if user.backup_phone:
        transaction.advance(tx, "channel")
        return redirect(step_url(tx_id, "channel"))
    return send_first_code(tx, tx_id, user, "email")


def send_code_or_explain(tx: LoginTransaction, user: User, channel: str) -> bool:
    """Send a code; on failure flash why (shown on the code page) instead of raising."""
    try:
        otp.send_code(tx, user, channel)
    except DeliveryError:
        flash(_("The code could not be sent. Try again, or choose another way."), "error")
    except otp.ResendTooSoon as wait:
        flash(
            _("A code was sent moments ago. Wait %(n)d seconds to ask for another.", n=wait.wait),
            "error",
        )
    except otp.ResendLimit:
        flash(_("Too many codes were sent for this sign-in. Start again."), "error")
    else:
        return True
    return False


def send_first_code(tx: LoginTransaction, tx_id: str, user: User, channel: str):
    """Send a code and show the code page (with the reason, if it could not be sent)."""
    transaction.advance(tx, tx.step, channel=channel)  # a resend retries this channel
    send_code_or_explain(tx, user, channel)
    transaction.advance(tx, "otp")
    return redirect(step_url(tx_id, "otp"))


def after_code(tx: LoginTransaction, tx_id: str, user: User, channel: str, keep_browser: bool):
    if keep_browser:
        remember.remember(user)
    return complete(tx, tx_id, user, amr=AMR_BY_CHANNEL[channel])


def step_up(sso: SsoSession, args: dict | None):
    """A password session meets a request (or a console page) that needs the second factor."""
    tx_id = transaction.begin(
        args, step_up=True, user_id=sso.user_id, auth_time=sso.auth_time, amr=list(sso.amr)
    )
    return second_factor(transaction.load(tx_id), tx_id, sso.user)


def after_renewal(tx: LoginTransaction, tx_id: str, user: User):
    return complete(tx, tx_id, user, amr=list(tx.amr))


def complete(tx: LoginTransaction, tx_id: str, user: User, *, amr: list[str]):
    """Sign the browser in, close the transaction, go back where the flow started.

    ``auth_time`` is the time of this session's password step (M5); a step-up
    keeps it. The session id is rotated either way.
    """
    from ..account.passwords import password_expired

    if tx.step != "renew" and not tx.step_up and password_expired(user):
        transaction.advance(tx, "renew", amr=list(amr))
        return redirect(step_url(tx_id, "renew"))
    acr = _levels()["mfa"] if "mfa" in amr else _levels()["pwd"]
    args, auth_time = tx.request_args, tx.auth_time
    transaction.finish(tx)
    remember.forget_others(user)
    sso = sessions.start(user, auth_time=auth_time, acr=acr, amr=amr)
    if args is None:
        return redirect(url_for("account.home"))
    return authorize.resume(args, sso)
