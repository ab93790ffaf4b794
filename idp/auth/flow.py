"""The login as a guarded state machine (docs/CONVENTIONS.md, convention 6).

Steps: ``password`` → (``channel`` →) ``otp`` → (``renew``) → done. The
second factor runs when the user's roles or the request demand it (M1) and
this browser is not remembered for the user (M6); ``renew`` when the password
is older than ``max_age_days`` (P6). The user is signed in at the last step.

Every move is a compare-and-set on the transaction (``transaction.advance``,
``transaction.finish``): of two racing requests one moves on, the other is
sent to wherever the winner left the login. The password step binds the user
once; nothing afterwards can change it (SECURITY.md, "The second factor").
"""

from __future__ import annotations

from urllib.parse import unquote

from flask import current_app, flash, redirect, render_template, url_for
from flask_babel import gettext as _

from .. import audit
from ..delivery import DeliveryError, DeliverySlow, outbox
from ..models import LoginTransaction, SsoSession, User, db
from ..oidc import authorize
from ..oidc.acr import PSC_ACR, user_requires_mfa
from ..passwords import hash_password
from ..users import password_expired, set_password_hash
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
    return tx.require_mfa or tx.step_up or tx.fresh_code or user_requires_mfa(user)


def remembered(user: User, tx: LoginTransaction) -> bool:
    """A remembered browser stands in for the code, unless the RP asked for a fresh one."""
    return not tx.fresh_code and remember.is_remembered(user)


def step_url(tx_id: str, step: str) -> str:
    return url_for(_ENDPOINTS[step], tx=tx_id)


def authorize_url(args: dict | None) -> str:
    """Where "start again" leads: the same authorization request (a fresh login for the
    same application), or the console's sign-in when no application started it."""
    return url_for("oidc.authorize", **args) if args else url_for("auth.login")


def lost_race(tx_id: str):
    """Another request of this login moved it on first: show where it is now."""
    return redirect(url_for("auth.login", tx=tx_id), code=303)


def _factor_step(user: User) -> str:
    return "channel" if user.backup_phone else "otp"


def after_password(tx: LoginTransaction, tx_id: str, user: User, auth_time: int):
    """The password was right: bind the user to this login (once), finish or ask the code."""
    if not needs_second_factor(user, tx):
        return complete(tx, tx_id, user, amr=["pwd"], auth_time=auth_time)
    if remembered(user, tx):
        return complete(tx, tx_id, user, amr=AMR_REMEMBERED, auth_time=auth_time)
    step = _factor_step(user)
    if not transaction.advance(tx, step, amr=["pwd"], **_binding(user, auth_time)):
        return lost_race(tx_id)
    return _factor_page(tx, tx_id, user)


def _binding(user: User, auth_time: int | None) -> dict:
    """What the password step binds, once: the user, the credential, the time."""
    return {"user_id": user.id, "credential_tag": user.credential_tag, "auth_time": auth_time}


def expired(tx: LoginTransaction):
    """The login cannot go on (its user's password changed since it began): end it, say so."""
    transaction.finish(tx)
    db.session.commit()
    return render_template("auth/expired.html"), 400


def _factor_page(tx: LoginTransaction, tx_id: str, user: User):
    """The channel choice, or (no backup phone) an e-mailed code sent at once."""
    if tx.step == "otp":
        send_code_or_explain(tx, user, tx.channel or "email")
    return redirect(step_url(tx_id, tx.step))


def send_code_or_explain(tx: LoginTransaction, user: User, channel: str) -> bool:
    """Send a code; on failure say why instead of raising.

    Only what the code page cannot tell from the database is flashed (a slow or
    failed send); a wait, the login's or the account's limit are states the
    page shows by itself (``otp.code_page``), with what the user can do.
    """
    try:
        otp.send_code(tx, user, channel)
    except DeliverySlow:
        flash(
            _(
                "Sending is taking longer than expected: the code may arrive in a few minutes,"
                " and stays valid until then. If nothing arrives, ask for a new code."
            ),
            "info",
        )
        return True
    except DeliveryError:
        if user.backup_phone:
            flash(_("The code could not be sent. Try again, or choose another way."), "error")
        else:
            flash(_("The code could not be sent. Try again in a moment."), "error")
    except otp.OtpError:  # ResendTooSoon, ResendLimit, AccountCapped: the page shows them
        pass
    else:
        return True
    return False


def send_first_code(tx: LoginTransaction, tx_id: str, user: User, channel: str):
    """The channel was chosen: move to the code step (once) and send the code there."""
    if not transaction.advance(tx, "otp", channel=channel):  # a resend retries this channel
        return lost_race(tx_id)
    send_code_or_explain(tx, user, channel)
    return redirect(step_url(tx_id, "otp"))


def after_code(tx: LoginTransaction, tx_id: str, user: User, channel: str, keep_browser: bool):
    return complete(tx, tx_id, user, amr=AMR_BY_CHANNEL[channel], remember_browser=keep_browser)


def step_up(sso: SsoSession, args: dict | None, *, fresh_code: bool = False):
    """A password session meets a request (or a console page) that needs the second factor.

    The transaction starts at the factor step, already bound to the session's
    user: there is no password step to race.
    """
    user = sso.user
    tx_id = transaction.begin(
        args,
        step=_factor_step(user),
        step_up=True,
        fresh_code=fresh_code,
        amr=list(sso.amr),
        **_binding(user, sso.auth_time),
    )
    tx = transaction.load(tx_id)
    if remembered(user, tx):
        return complete(tx, tx_id, user, amr=AMR_REMEMBERED)
    return _factor_page(tx, tx_id, user)


def after_renewal(
    tx: LoginTransaction, tx_id: str, user: User, new_password: str, *, logout_others: bool
):
    """P6: the expired password is replaced, then the user is signed in.

    The login is closed first (compare-and-set): of two racing posts one
    replaces the password, and a login that outlived a reset never does. The
    new password, its notice and the session are one database transaction:
    all of it lands, or the login waits at this step as before. With
    ``logout_others`` (ticked by default) every other session, token and
    remembered browser of the user ends, as after the console's change.
    The caller has checked the new password against the policy.
    """
    if tx.credential_tag != user.credential_tag:
        return expired(tx)
    args, auth_time, amr = tx.request_args, tx.auth_time, list(tx.amr)
    hashed = hash_password(new_password)  # before the first write: SQLite has one writer
    if not transaction.finish(tx):
        db.session.rollback()
        return lost_race(tx_id)
    set_password_hash(user, hashed)
    if logout_others:
        sessions.end_all_of(user, "password_renewed")
        remember.forget_user(user)
    audit.record(
        "password.changed",
        user_id=user.id,
        commit=False,
        reason="expired",
        logout_others=logout_others,
    )
    outbox.enqueue("password_changed", user)
    response = _sign_in(user, args, auth_time, amr)
    outbox.send_soon()  # after the commit: the notice leaves only if the change landed
    return response


def complete(
    tx: LoginTransaction,
    tx_id: str,
    user: User,
    *,
    amr: list[str],
    auth_time: int | None = None,
    remember_browser: bool = False,
):
    """Close the transaction (or send an expired password to renewal), then sign in.

    ``auth_time`` is the time of this session's password step (M5); a step-up
    keeps it. Closing the transaction is the compare-and-set that lets exactly
    one request sign in.
    """
    if tx.user_id is not None and tx.credential_tag != user.credential_tag:
        return expired(tx)
    bind = _binding(user, auth_time) if tx.user_id is None else {}
    if not tx.step_up and password_expired(user):
        if not transaction.advance(tx, "renew", amr=list(amr), **bind):
            return lost_race(tx_id)
        return redirect(step_url(tx_id, "renew"))
    args, auth_time = tx.request_args, tx.auth_time if auth_time is None else auth_time
    if (tx.user_id not in (None, user.id)) or not transaction.finish(tx):
        db.session.rollback()  # what this step wrote so far (a redeemed code) is undone
        return lost_race(tx_id)
    return _sign_in(user, args, auth_time, amr, remember_browser)


def _console_target(user: User) -> str:
    """After a sign-in or step-up without an RP: the operator console page that asked
    for it (``idp.admin.access``) for an administrator, else the account console.

    ``console_next`` is the decoded path of a page anyone can make a browser ask for
    before it signs in: it must stay a console page once the browser reads it from
    ``Location``. No ``//`` or backslash (another host); no control character (a header
    cannot hold a newline: each sign-in of that browser would fail); no ``.`` or ``..``
    segment, also written ``%2e`` (the browser resolves them:
    ``/admin/users/..%2F..%2Flogout`` would lead out of the console)."""
    from flask import session

    path = session.get("console_next")
    if "admin" not in user.roles or not isinstance(path, str) or not path.isprintable():
        return url_for("account.home")
    segments = path.partition("?")[0].split("/")
    if (
        path.startswith("/admin/")
        and "//" not in path
        and "\\" not in path
        and not any(unquote(segment) in (".", "..") for segment in segments)
    ):
        return path
    return url_for("account.home")


def after_psc(tx: LoginTransaction, tx_id: str, user: User, identity):
    """Pro Santé Connect vouched for ``user`` (``idp.psc.service``): close the login
    (compare-and-set) and sign in at PSC's level, with PSC's ``amr`` and ``auth_time``;
    the session keeps PSC's ID token for the logout. No password step, no code: PSC's
    level is above ours (docs/RELYING_PARTIES.md, "Pro Santé Connect")."""
    args = tx.request_args
    if (tx.user_id not in (None, user.id)) or not transaction.finish(tx):
        db.session.rollback()
        return lost_race(tx_id)
    return _sign_in(
        user,
        args,
        identity.auth_time,
        list(identity.amr),
        acr=PSC_ACR,
        psc_id_token=identity.id_token,
    )


def _sign_in(
    user: User,
    args: dict | None,
    auth_time: int,
    amr: list[str],
    remember_browser=False,
    *,
    acr: str | None = None,
    psc_id_token: str | None = None,
):
    """The session starts; other users' remembered factor on this browser ends *before*
    this one is remembered under a fresh browser id (M7); back where the flow began.

    The last part of the step: the closed login (and the code redeemed, the
    password renewed before it), the session, the remembered browser and the
    RP's authorization code are committed together, once; only then does the
    browser get its cookies (SECURITY.md, "One step, one transaction").
    """
    remember.forget_others(user)
    if remember_browser:
        remember.remember(user)
    if acr is None:
        acr = _levels()["mfa"] if "mfa" in amr else _levels()["pwd"]
    opened = sessions.start(user, auth_time=auth_time, acr=acr, amr=amr, psc_id_token=psc_id_token)
    if args is None:
        response = redirect(_console_target(user))
    else:
        response = authorize.resume(args, opened.row)
    db.session.commit()
    sessions.activate(opened)
    return response
