"""The account console ("Mon compte") and the lost-password pages.

Console pages need a signed-in user; a user whose roles require the second
factor needs a session that has it (else: step-up, code only).
"""

from __future__ import annotations

from flask import (
    Blueprint,
    flash,
    get_flashed_messages,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import ngettext

from .. import i18n
from ..auth import flow, otp, sessions, transaction
from ..auth import views as auth_views
from ..delivery import DeliveryError
from ..oidc.acr import session_lacks_mfa
from . import phone, profile, recovery
from .forms import (
    ChangePasswordForm,
    ForgotForm,
    PhoneCodeForm,
    ProfileForm,
    RenewPasswordForm,
    ResetPasswordForm,
)
from .passwords import PasswordRefused, change_password, new_password_errors

bp = Blueprint("account", __name__, url_prefix="/account")
RESET_TOKEN = "reset_token"  # session key: the reset link's token, kept out of URLs
recovery_bp = Blueprint("recovery", __name__, url_prefix="/password")


def _signed_in():
    """``(session, None)`` or ``(None, response)`` sending the browser to sign in or step up."""
    sso = sessions.current()
    if sso is None:
        return None, redirect(url_for("auth.login"))
    if session_lacks_mfa(sso):
        return None, flow.step_up(sso, None)
    return sso, None


def _pending(sso) -> dict:
    """What the record pages say of a backup phone change waiting for its codes."""
    change = phone.pending_change(sso.user, sso)
    return {"pending": change, "pending_phone": phone.shown(change.phone) if change else None}


@bp.get("/")
def home():
    sso, stop = _signed_in()
    if stop:
        return stop
    from ..psc import service as psc

    return render_template(
        "account/home.html",
        user=sso.user,
        devices=profile.devices(sso.user, sso),
        psc_link=psc.enabled(),
        **_pending(sso),
    )


@bp.route("/profile", methods=["GET", "POST"])
def edit_profile():
    """A2: set, change or remove the backup mobile phone ("Mettre à jour"); the codes
    that confirm it are asked on the next page."""
    sso, stop = _signed_in()
    if stop:
        return stop
    form = ProfileForm(data={"backup_phone": sso.user.backup_phone or ""})
    if form.validate_on_submit():
        try:
            change = phone.start_phone_change(sso.user, sso, form.backup_phone.data or "")
        except phone.PhoneError:
            form.backup_phone.errors = [
                _("Enter a valid mobile phone number, for example 06 12 34 56 78.")
            ]
        except (DeliveryError, otp.OtpError) as failure:
            _explain_send_failure(failure)
            return redirect(url_for("account.confirm_phone"))
        else:
            if change is None:  # unchanged, or removed in a session with a fresh code
                flash(_("Your record was updated."), "info")
                return redirect(url_for("account.home"))
            return redirect(url_for("account.confirm_phone"))
    status = 400 if request.method == "POST" else 200
    return render_template(
        "account/profile.html", form=form, user=sso.user, **_pending(sso)
    ), status


@bp.route("/profile/confirm", methods=["GET", "POST"])
def confirm_phone():
    """A2: the codes of a backup phone change, one after the other on this page."""
    sso, stop = _signed_in()
    if stop:
        return stop
    user = sso.user
    change = phone.pending_change(user, sso)
    if change is None:
        return redirect(url_for("account.edit_profile"))
    here = url_for("account.confirm_phone")
    action = request.form.get("action") if request.method == "POST" else None
    if action == "cancel":
        phone.cancel_phone_change(user, sso)
        flash(_("The change was cancelled: your backup phone stays as it was."), "info")
        return redirect(url_for("account.home"))
    if action == "resend":
        try:
            phone.resend_phone_code(user, sso)
        except (DeliveryError, otp.OtpError) as failure:
            _explain_send_failure(failure)
        else:
            flash(_("A new code was sent."), "info")
        return redirect(here)
    form = PhoneCodeForm()
    if form.validate_on_submit():
        try:
            outcome = phone.confirm_phone_code(user, sso, form.code.data)
        except otp.OtpWrong as wrong:
            flash(_("Incorrect code. %(n)d attempt(s) left.", n=wrong.remaining), "error")
        except otp.OtpLocked:
            flash(_("Too many incorrect codes. Ask for a new code."), "error")
        except otp.OtpExpired:
            flash(_("This code has expired or was already used. Ask for a new code."), "error")
        except (DeliveryError, otp.OtpError) as failure:  # the SMS after the e-mailed code
            _explain_send_failure(failure)
            return redirect(here)
        else:
            if outcome in ("confirmed", "removed"):
                flash(_("Your record was updated."), "info")
                return redirect(url_for("account.home"))
            return redirect(here)  # on to the SMS, or another request moved on first
        return redirect(here, code=303)
    errors = get_flashed_messages(category_filter=["error"]) + list(form.code.errors)
    return render_template(
        "account/phone_confirm.html",
        form=form,
        change=change,
        email=otp.mask_email(user.email),
        new_phone=phone.shown(change.phone),
        sent=bool(change.code_hash),
        errors=errors,
    ), 200 if request.method == "GET" else 400


def _explain_send_failure(failure: Exception) -> None:
    """Why a confirmation code did not leave, on the code page."""
    if isinstance(failure, DeliveryError):
        flash(_("The code could not be sent. Try again in a moment."), "error")
    elif isinstance(failure, otp.ResendTooSoon):
        flash(
            _(
                "A code was sent moments ago. Wait %(n)d seconds to ask for another.",
                n=failure.wait,
            ),
            "error",
        )
    elif isinstance(failure, otp.ResendLimit):
        flash(_("Too many codes were sent. Try again later."), "error")
    else:
        flash(_("This code has expired or was already used. Ask for a new code."), "error")


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
            ended = change_password(
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
            if form.logout_others.data and not ended:
                flash(_("Your password was changed. No other device was signed in."), "info")
            elif form.logout_others.data:
                flash(
                    ngettext(
                        "Your password was changed. %(num)d other device was signed out.",
                        "Your password was changed. %(num)d other devices were signed out.",
                        ended,
                    ),
                    "info",
                )
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
    form = RenewPasswordForm()
    errors: dict[str, list[str]] = {}
    if form.validate_on_submit():
        new, confirm = form.new_password.data or "", form.confirm_password.data or ""
        errors = new_password_errors(tx.user, new, confirm)
        if not errors:
            return flow.after_renewal(
                tx, tx_id, tx.user, new, logout_others=form.logout_others.data
            )
    status = 400 if request.method == "POST" else 200
    return render_template("account/renew.html", form=form, errors=errors, tx=tx_id), status


@bp.post("/psc/unlink")
def unlink_psc():
    """The user removes the link to their Pro Santé Connect identity (idp/psc/service.py):
    the next PSC login with it finds no account."""
    sso, stop = _signed_in()
    if stop:
        return stop
    from ..psc import service as psc

    if psc.unlink(sso.user):
        flash(_("Your Pro Santé Connect identity is no longer linked to this account."), "info")
    return redirect(url_for("account.home"))


@bp.post("/sessions/<string(maxlength=64):sid>/end")
def end_session(sid: str):
    """By the session's random public ``sid``: a sequential id in the URL would tell how
    many sessions the site has had. Its RPs are told (back-channel logout)."""
    sso, stop = _signed_in()
    if stop:
        return stop
    if profile.end_device(sso.user, sid):
        flash(_("The session was ended."), "info")
    if sid == sso.sid:
        return redirect(url_for("auth.login"))
    return redirect(url_for("account.home"))


# Session key: the authorization request of the login the user left for "Mot de passe
# oublié ?", kept by this browser only (never in the e-mailed link, which may be opened
# elsewhere) so that "Se connecter" after the reset starts it again.
RESET_RESUME = "reset_resume"


def _back_to_login(tx_id: str | None) -> str:
    """ "Retour à la connexion": the login the user came from (its page while it lives,
    else the same authorization request again), or the sign-in page."""
    return auth_views.resume_url(tx_id) or url_for("auth.login")


@recovery_bp.route("/forgot", methods=["GET", "POST"])
def forgot():
    """R1, R2, R5: the same answer whether or not the account exists.

    ``?tx=`` is the login that sent the user here: its links lead back to it, and
    the browser remembers its authorization request for after the reset."""
    tx_id = request.args.get("tx") or None
    form = ForgotForm()
    error, status = None, 400 if request.method == "POST" else 200
    back = _back_to_login(tx_id)
    if form.validate_on_submit():
        try:
            recovery.request_reset(form.identifier.data, request.remote_addr)
        except recovery.ResetThrottled as busy:
            error, status = i18n.wait_message(busy.wait), 429
        else:
            known, args = auth_views.known_request(tx_id)
            if known:
                session[RESET_RESUME] = {"args": args}
            return render_template("account/forgot_sent.html", back=back)
    return render_template(
        "account/forgot.html", form=form, error=error, tx=tx_id, back=back
    ), status


@recovery_bp.route("/reset/<token>", methods=["GET", "POST"])
def reset_link(token: str):
    """The link of the e-mail: its token goes into this browser's (signed) session and
    the browser moves on to a URL without it, so that it does not stay in proxy and
    server access logs, nor in the address bar, while it is valid."""
    try:
        recovery.check_token(token)
    except recovery.ResetLinkInvalid:
        return render_template("account/reset_invalid.html"), 410
    session[RESET_TOKEN] = token
    if request.method == "POST":  # a client that posts to the link itself
        return reset()
    return redirect(url_for("recovery.reset"), code=303)


@recovery_bp.route("/reset", methods=["GET", "POST"])
def reset():
    """R3, R4, R6: a valid link sets a new password once; anything else says so clearly."""
    token = session.get(RESET_TOKEN) or ""
    try:
        row = recovery.check_token(token)
    except recovery.ResetLinkInvalid:
        session.pop(RESET_TOKEN, None)
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
            resume = session.get(RESET_RESUME)
            sessions.end_current("password_reset")  # empties this browser's session too
            sign_in = (
                flow.authorize_url(resume.get("args"))
                if isinstance(resume, dict)
                else url_for("auth.login")
            )
            return render_template("account/reset_done.html", sign_in=sign_in)
    status = 400 if request.method == "POST" else 200
    return render_template(
        "account/reset.html", form=form, errors=errors, username=row.user.username
    ), status
