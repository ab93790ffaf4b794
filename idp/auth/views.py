"""Hosted login pages: ``/login`` (password), ``/login/channel``, ``/login/otp``.

Each view loads the transaction, checks it is at its step (else sends the
browser to the right one), then calls one function of ``flow``.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    flash,
    g,
    get_flashed_messages,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import refresh

from .. import clock, i18n
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


def _guard(*steps: str):
    """The transaction of ``?tx=`` if it is at one of ``steps``; else a response."""
    tx_id = request.args.get("tx")
    tx = transaction.load(tx_id)
    if tx is None:
        return None, None, (render_template("auth/expired.html"), 400)
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
    page = render_template("auth/login.html", form=form, tx=tx_id, error=error)
    return page, status, ({"Retry-After": str(retry_after)} if retry_after else {})


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
        restart=flow.restart_url(tx),
        can_switch=bool(user.backup_phone),
        errors=get_flashed_messages(category_filter=["error"]),
    ), 200 if request.method == "GET" else 400


def _resend(tx, tx_id, user):
    """Resend the code ("Renvoyer le code") on the channel of the code in flight."""
    flow.send_code_or_explain(tx, user, otp.code_page(tx, user).channel)
    return redirect(flow.step_url(tx_id, "otp"), code=303)
