"""Hosted login pages: ``/login`` (password step)."""

from __future__ import annotations

from flask import Blueprint, g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _

from .. import clock, i18n
from . import flow, sessions, transaction
from .forms import PasswordForm
from .password import LoginFailed, LoginThrottled, check_credentials

bp = Blueprint("auth", __name__)
bp.record_once(lambda state: sessions.init_app(state.app))


def _use_request_locale(tx) -> None:
    """The RP's ``ui_locales`` wins for the whole login (OIDC Core §3.1.2.1)."""
    chosen = i18n.pick((tx.request_args or {}).get("ui_locales")) if tx else None
    if chosen:
        session["ui_locale"] = chosen
        g.ui_locale = chosen


@bp.route("/login", methods=["GET", "POST"])
def login():
    tx_id = request.args.get("tx")
    tx = transaction.load(tx_id)
    if tx is None:
        if tx_id:  # expired, finished, or from another browser
            return render_template("auth/expired.html"), 400
        # "Connexion" without an application: sign in to the account console.
        return redirect(url_for("auth.login", tx=transaction.begin(None)))
    _use_request_locale(tx)
    if tx.step != "password":  # the guard: this page serves the password step only
        return render_template("auth/expired.html"), 400
    form = PasswordForm()
    if request.method == "GET" and tx.login_hint:
        form.username.data = tx.login_hint
    error = None
    status = 200
    if form.validate_on_submit():
        try:
            user = check_credentials(form.username.data, form.password.data, request.remote_addr)
        except LoginFailed:
            error = _("Incorrect identifier or password.")
        except LoginThrottled:
            error, status = _("Too many attempts. Please wait a few minutes and try again."), 429
        else:
            return flow.after_password(tx, user, clock.now())
    elif request.method == "POST":
        status = 400
    return render_template("auth/login.html", form=form, tx=tx_id, error=error), status
