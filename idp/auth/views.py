"""Hosted login pages: ``/login`` (password), ``/login/channel``, ``/login/otp``.

Each view loads the transaction, checks it is at its step (else sends the
browser to the right one), then calls one function of ``flow``.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlsplit

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    get_flashed_messages,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import refresh
from sqlalchemy import select

from .. import clock, i18n
from ..clients import find_client
from ..crypto import sha256_hex
from ..models import LoginTransaction, db
from ..web import error_page
from . import flow, otp, remember, sessions, transaction
from .forms import ChannelForm, CodeForm, PasswordForm
from .password import LoginFailed, LoginThrottled, check_credentials

bp = Blueprint("auth", __name__)


@bp.record_once
def _register(state) -> None:
    sessions.init_app(state.app)
    state.app.after_request(remember.write_cookie)


@bp.app_errorhandler(transaction.TooManyLogins)
def _too_many_logins(busy: transaction.TooManyLogins):
    body, status = error_page(_("Too many sign-ins"), i18n.wait_message(busy.wait), 429)
    return body, status, {"Retry-After": str(busy.wait)}


def _use_request_locale(tx) -> None:
    """The RP's ``ui_locales`` wins for the pages of this login (OIDC Core §3.1.2.1)."""
    chosen = i18n.pick((tx.request_args or {}).get("ui_locales")) if tx else None
    if chosen:
        g.ui_locale = chosen
        refresh()  # drop a locale Flask-Babel may have cached earlier in this request


# This browser's last login, in its signed session: ``{"tx": sha256(tx id), "args": the
# stored authorization request}``. It outlives the transaction row (finished, expired,
# purged), so that Back after a sign-in, an expired page and the end of a password reset
# can send the user on to the application they came from (docs/CONVENTIONS.md, conv. 6).
LAST_LOGIN = "last_login"
_LAST_LOGIN_MAX = 1500  # bytes of JSON: the session cookie must stay well under 4 kB


def _remember_login(tx_id: str, tx: LoginTransaction) -> None:
    entry = {"tx": sha256_hex(tx_id), "args": tx.request_args}
    if session.get(LAST_LOGIN) == entry:
        return  # unchanged: no new cookie
    if len(json.dumps(entry["args"])) > _LAST_LOGIN_MAX:
        session.pop(LAST_LOGIN, None)  # too big for a cookie: not known, not a stale one
        return
    session[LAST_LOGIN] = entry


@bp.after_request
def _keep_last_login(response):
    """The sign-in that ends this request empties the session (``sessions.activate``:
    nothing from before it survives); the memory of the login it finished is put back,
    so that Back from the application leads on to it rather than to "expired"."""
    finished = g.get("last_login")
    if finished and g.get("sso_cookie") and LAST_LOGIN not in session:
        session[LAST_LOGIN] = finished
    return response


def remembered_request(tx_id: str | None) -> tuple[bool, dict | None]:
    """``(known, args)``: the authorization request of login ``tx_id`` as this browser
    remembers it (``args`` None: a console sign-in, no application)."""
    entry = session.get(LAST_LOGIN)
    if tx_id and isinstance(entry, dict) and entry.get("tx") == sha256_hex(tx_id):
        return True, entry.get("args")
    return False, None


def known_request(tx_id: str | None) -> tuple[bool, dict | None]:
    """``(known, args)`` of login ``tx_id``: remembered by this browser, else still stored
    for this browser (expired). A login stored for another browser (or for this one
    before its cookies went) is known but gives nothing back: its request carries the
    RP's ``state`` and ``nonce``, and whoever holds only a login's URL must not get
    them (SECURITY.md, "The second factor": a transaction id seen elsewhere is
    useless); the restart then goes to the sign-in page."""
    known, args = remembered_request(tx_id)
    if known or not tx_id:
        return known, args
    row = db.session.scalars(
        select(LoginTransaction).where(LoginTransaction.tx_hash == sha256_hex(tx_id))
    ).first()
    if row is None:
        return False, None
    if row.browser_hash != sha256_hex(session.get("browser", "")):
        return True, None
    return True, row.request_args


def restart_url(tx_id: str | None) -> str | None:
    """The same authorization request again, for a login that can no longer go on; None
    when it is not known (``known_request``). A restart continues nothing (no step, no
    user of that login): it is a fresh login for the same application, as the
    application itself would have started it (``flow.authorize_url``)."""
    known, args = known_request(tx_id)
    return flow.authorize_url(args) if known else None


def resume_url(tx_id: str | None) -> str | None:
    """Back to login ``tx_id``: its current page while it lives in this browser, else the
    same authorization request again (``restart_url``); None when not known."""
    tx = transaction.load(tx_id)
    if tx is not None:
        return flow.step_url(tx_id, tx.step)
    return restart_url(tx_id)


def _application_name(args: dict | None) -> str | None:
    client = find_client(str((args or {}).get("client_id") or ""))
    return client.name if client is not None else None


def expired_page(tx_id: str | None, title: str = "", reason: str = ""):
    """The login (or its form) cannot go on: say so, and offer one button that starts
    the same authorization again when it is known, else the sign-in page."""
    known, args = known_request(tx_id)
    target = urlsplit(flow.authorize_url(args) if known else url_for("auth.login"))
    return render_template(
        "auth/expired.html",
        title=title,
        reason=reason,
        restart_path=target.path,
        restart_params=parse_qsl(target.query, keep_blank_values=True),
        restarts=known,
        app_name=_application_name(args),
    ), 400


def _guard(*steps: str):
    """The transaction of ``?tx=`` if it is at one of ``steps``; else a response.

    A signed-in browser that comes back to a login that is over (Back after the
    sign-in) goes on to its application: the same authorization request again when
    this browser remembers it (the SSO session answers it), else the console. It is
    never told that its sign-in expired while the header shows it signed in."""
    tx_id = request.args.get("tx")
    tx = transaction.load(tx_id)
    if tx is None:
        if sessions.current() is not None:
            known, args = remembered_request(tx_id)
            target = flow.authorize_url(args) if known else url_for("account.home")
            return None, None, redirect(target)
        return None, None, expired_page(tx_id)
    _remember_login(tx_id, tx)
    g.last_login = session.get(LAST_LOGIN)
    _use_request_locale(tx)
    if tx.step not in steps:
        return None, None, redirect(flow.step_url(tx_id, tx.step))
    return tx, tx_id, None


@bp.route("/login", methods=["GET", "POST"])
def login():
    if not request.args.get("tx"):
        # "Connexion" without an application: the account console, signing in if needed.
        if sessions.current() is not None:
            return redirect(url_for("account.home"))
        return redirect(url_for("auth.login", tx=transaction.begin(None)))
    tx, tx_id, stop = _guard("password")
    if stop:
        return stop
    form = PasswordForm()
    if request.method == "GET" and tx.login_hint:
        form.username.data = tx.login_hint
    error, status, retry_after = None, 200, None
    if tx.require_psc:  # the RP demands Pro Santé Connect: no password form to post
        form = PasswordForm(formdata=None)
        if request.method == "POST":  # an old tab, a script: say why, offer PSC (idp/psc/)
            from ..psc import service as psc

            psc.password_refused((tx.request_args or {}).get("client_id"))
            error = _(
                "This application does not accept a password: sign in with Pro Santé Connect."
            )
    if form.validate_on_submit():
        try:
            user = check_credentials(form.username.data, form.password.data, request.remote_addr)
        except LoginFailed:
            error = _("Incorrect identifier or password.")
        except LoginThrottled as throttled:
            error, status = i18n.wait_message(throttled.wait), 429
            retry_after = throttled.wait
        else:
            return flow.after_password(tx, tx_id, user, clock.now())
    elif request.method == "POST":
        status = 400
    page = render_template(
        "auth/login.html",
        form=form,
        tx=tx_id,
        error=error,
        app_name=_application_name(tx.request_args),
        psc=_psc_offer(tx),
    )
    return page, status, ({"Retry-After": str(retry_after)} if retry_after else {})


def _psc_offer(tx: LoginTransaction) -> str | None:
    """The Pro Santé Connect button: ``"only"`` when the RP demands its level, ``"also"``
    beside the password when ``[psc]`` is enabled, else None (idp/psc/)."""
    if not current_app.config["IDP"]["psc"]["enabled"]:
        return None
    return "only" if tx.require_psc else "also"


@bp.route("/login/channel", methods=["GET", "POST"])
def channel():
    """M4: a user with a backup phone chooses e-mail or SMS at each login."""
    tx, tx_id, stop = _guard("channel", "otp")
    if stop:
        return stop
    user = tx.user
    if not user.backup_phone:
        return redirect(flow.step_url(tx_id, "otp"))
    form = ChannelForm()
    if request.method == "GET" and user.last_channel in ("email", "sms"):
        form.channel.data = user.last_channel  # the channel of the last code typed right
    if form.validate_on_submit():
        return flow.send_first_code(tx, tx_id, user, form.channel.data)
    return render_template(
        "auth/channel.html",
        form=form,
        tx=tx_id,
        email=otp.mask_email(user.email),
        phone=otp.mask_phone(user.backup_phone or ""),
        errors=get_flashed_messages(category_filter=["error"]),
    ), 200 if request.method == "GET" else 400


@bp.route("/login/otp", methods=["GET", "POST"])
def code():
    """M2, M3, M6: enter the code, optionally remember this browser for 24 hours."""
    tx, tx_id, stop = _guard("otp")
    if stop:
        return stop
    user = tx.user
    if request.method == "POST" and request.form.get("action") == "resend":
        return _resend(tx, tx_id, user)
    form = CodeForm()
    if form.validate_on_submit():
        try:
            channel_used = otp.verify_code(tx, form.code.data)
        except otp.OtpWrong as wrong:
            flash(_("Incorrect code. %(n)d attempt(s) left.", n=wrong.remaining), "error")
        except otp.OtpSuperseded:
            flash(
                _("This code was replaced by a newer one. Enter the last code you received."),
                "error",
            )
        except otp.OtpError:  # expired, locked, the account's limit: the page's state says it
            pass
        else:
            return flow.after_code(tx, tx_id, user, channel_used, bool(form.remember.data))
        return redirect(flow.step_url(tx_id, "otp"), code=303)
    state = otp.code_page(tx, user)
    destination = (
        otp.mask_phone(user.backup_phone or "")
        if state.channel == "sms"
        else otp.mask_email(user.email)
    )
    return render_template(
        "auth/otp.html",
        form=form,
        tx=tx_id,
        state=state,
        destination=destination,
        valid_until=i18n.time_of_day(state.expires_at),
        account_wait_minutes=i18n.minutes(state.account_wait),
        codes_per_hour=otp.codes_per_hour(),
        restart=flow.authorize_url(tx.request_args),
        can_switch=bool(user.backup_phone),
        errors=get_flashed_messages(category_filter=["error"]),
    ), 200 if request.method == "GET" else 400


def _resend(tx, tx_id, user):
    """Resend the code ("Renvoyer le code") on the channel of the code in flight."""
    flow.send_code_or_explain(tx, user, otp.code_page(tx, user).channel)
    return redirect(flow.step_url(tx_id, "otp"), code=303)
