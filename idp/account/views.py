"""The account console ("Mon compte") and the lost-password pages.

Console pages need a signed-in user; a user whose roles require the second
factor needs a session that has it (else: step-up, code only).
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ..auth import flow, sessions, transaction
from ..oidc.acr import session_lacks_mfa
from . import profile, recovery
from .forms import ChangePasswordForm, ForgotForm, ProfileForm, ResetPasswordForm
from .passwords import PasswordRefused, change_password, renew_password

bp = Blueprint("account", __name__, url_prefix="/account")
recovery_bp = Blueprint("recovery", __name__, url_prefix="/password")


def _signed_in():
    """``(session, None)`` or ``(None, response)`` sending the browser to sign in or step up."""
    sso = sessions.current()
    if sso is None:
        return None, redirect(url_for("auth.login"))
    if session_lacks_mfa(sso):
        return None, flow.step_up(sso, None)
    return sso, None


@bp.get("/")
def home():
    sso, stop = _signed_in()
    if stop:
        return stop
    return render_template(
        "account/home.html", user=sso.user, devices=profile.devices(sso.user, sso)
    )


@bp.route("/profile", methods=["GET", "POST"])
def edit_profile():
    """A2: set, change or remove the backup mobile phone ("Mettre à jour")."""
    sso, stop = _signed_in()
    if stop:
        return stop
    form = ProfileForm(data={"backup_phone": sso.user.backup_phone or ""})
    if form.validate_on_submit():
        try:
            profile.set_backup_phone(sso.user, form.backup_phone.data or "")
        except profile.PhoneError:
            form.backup_phone.errors = [
                _("Enter a valid mobile phone number, for example 06 12 34 56 78.")
            ]
        else:
            flash(_("Your record was updated."), "info")
            return redirect(url_for("account.home"))
    status = 400 if request.method == "POST" else 200
    return render_template("account/profile.html", form=form, user=sso.user), status


@bp.route("/password", methods=["GET", "POST"])
def password():
    """P1–P6; with ``?tx=`` the renewal of an expired password inside a login (P6)."""
    if request.args.get("tx"):
        return _renew()
    sso, stop = _signed_in()
    if stop:
        return stop
    form = ChangePasswordForm()
    errors: dict[str, list[str]] = {}
    if form.validate_on_submit():
        try:
            change_password(
                sso.user,
                form.current_password.data,
                form.new_password.data or "",
                form.confirm_password.data or "",
                logout_others=form.logout_others.data,
                keep=sso,
                ip=request.remote_addr,
            )
        except PasswordRefused as refused:
            errors = refused.errors
        else:
            flash(_("Your password was changed."), "info")
            return redirect(url_for("account.home"))
    status = 400 if request.method == "POST" else 200
    return render_template("account/password.html", form=form, errors=errors, user=sso.user), status


def _renew():
    tx_id = request.args["tx"]
    tx = transaction.load(tx_id)
    if tx is None or tx.step != "renew":
        return render_template("auth/expired.html"), 400
    form = ResetPasswordForm()
    errors: dict[str, list[str]] = {}
    if form.validate_on_submit():
        try:
            renew_password(tx.user, form.new_password.data or "", form.confirm_password.data or "")
        except PasswordRefused as refused:
            errors = refused.errors
        else:
            return flow.after_renewal(tx, tx_id, tx.user)
    status = 400 if request.method == "POST" else 200
    return render_template("account/renew.html", form=form, errors=errors, tx=tx_id), status


@bp.post("/sessions/<int(max=2147483647):session_id>/end")
def end_session(session_id: int):
    sso, stop = _signed_in()
    if stop:
        return stop
    if profile.end_device(sso.user, session_id):
        flash(_("The session was ended."), "info")
    if session_id == sso.id:
        return redirect(url_for("auth.login"))
    return redirect(url_for("account.home"))


@recovery_bp.route("/forgot", methods=["GET", "POST"])
def forgot():
    """R1, R2, R5: the same answer whether or not the account exists."""
    form = ForgotForm()
    if form.validate_on_submit():
        recovery.request_reset(form.identifier.data, request.remote_addr)
        return render_template("account/forgot_sent.html")
    status = 400 if request.method == "POST" else 200
    return render_template("account/forgot.html", form=form), status


@recovery_bp.route("/reset/<token>", methods=["GET", "POST"])
def reset(token: str):
    """R3, R4, R6: a valid link sets a new password once; anything else says so clearly."""
    try:
        row = recovery.check_token(token)
    except recovery.ResetLinkInvalid:
        return render_template("account/reset_invalid.html"), 410
    form = ResetPasswordForm()
    errors: dict[str, list[str]] = {}
    if form.validate_on_submit():
        try:
            recovery.complete_reset(
                token, form.new_password.data or "", form.confirm_password.data or ""
            )
        except PasswordRefused as refused:
            errors = refused.errors
        except recovery.ResetLinkInvalid:
            return render_template("account/reset_invalid.html"), 410
        else:
            sessions.end_current("password_reset")
            return render_template("account/reset_done.html")
    status = 400 if request.method == "POST" else 200
    return render_template(
        "account/reset.html", form=form, errors=errors, username=row.user.username
    ), status
