"""One function per message: render its templates, hand it to a transport."""

from __future__ import annotations

from flask import current_app, render_template
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ..models import User
from .mail import send_mail
from .sms import send_sms


def otp_minutes() -> int:
    """The code's lifetime as users read it: whole minutes, rounded up."""
    return -(-current_app.config["IDP"]["mfa"]["otp_ttl_seconds"] // 60)


def _locale(user: User) -> str:
    return user.locale if user.locale in ("fr", "en") else "fr"


def send_otp(user: User, channel: str, code: str) -> None:
    """The one-time code, by e-mail or SMS, in the user's language."""
    minutes = otp_minutes()
    context = {"user": user, "code": code, "minutes": minutes}
    with force_locale(_locale(user)):
        if channel == "sms":
            send_sms(user.backup_phone, render_template("sms/otp.txt", **context).strip())
            return
        subject = _("Your sign-in code for the health portal")  # never the code itself
        send_mail(
            user.email,
            subject,
            render_template("mail/otp.txt", **context),
            render_template("mail/otp.html", **context),
        )


def _mail(user: User, subject, template: str, *, to: str | None = None, **context) -> None:
    with force_locale(_locale(user)):
        context["user"] = user
        send_mail(
            to or user.email,
            str(subject),
            render_template(f"mail/{template}.txt", **context),
            render_template(f"mail/{template}.html", **context),
        )


def send_reset_link(user: User, url: str) -> None:
    """R3: the identifier and a link to set a new password."""
    hours = current_app.config["IDP"]["password"]["reset_link_hours"]
    _mail(user, _l("Reset your health portal password"), "reset", url=url, hours=hours)


def send_password_changed(user: User) -> None:
    """Notice after any password change or reset: "if this was not you…"."""
    _mail(user, _l("Your health portal password was changed"), "password_changed")


def send_phone_code(
    user: User, code: str, *, sms_to: str | None = None, shown_phone: str | None = None
) -> None:
    """A code confirming a backup phone change: by SMS to ``sms_to`` (the new number is
    theirs), else by e-mail to the account (its owner asks), naming ``shown_phone``
    (masked; None for a removal)."""
    minutes = otp_minutes()
    if sms_to:
        with force_locale(_locale(user)):
            text = render_template("sms/phone_code.txt", code=code, minutes=minutes)
            send_sms(sms_to, text.strip())
        return
    _mail(
        user,
        _l("Your code to confirm the change of your backup phone"),
        "phone_changed",
        code=code,
        minutes=minutes,
        phone=shown_phone,
    )


def send_phone_changed(user: User, shown_phone: str | None = None) -> None:
    """Notice after the backup phone was added, changed or removed (``shown_phone``
    None): "if this was not you…"."""
    _mail(
        user,
        _l("The backup phone of your health portal account was changed"),
        "phone_changed",
        code=None,
        phone=shown_phone,
    )


def send_invitation(user: User, url: str) -> None:
    """A professional created by an operator: the identifier and a link to choose a
    first password (the reset page), valid ``[password] invite_link_hours``."""
    hours = current_app.config["IDP"]["password"]["invite_link_hours"]
    _mail(user, _l("Your health portal account is ready"), "invite", url=url, hours=hours)


def send_email_changed(user: User, old: str) -> None:
    """Notice to the *old* address after an operator changed it: "if this was not
    expected…" (the new address's owner may not be the account's)."""
    _mail(
        user,
        _l("The e-mail address of your health portal account was changed"),
        "email_changed",
        to=old,
        new=user.email,
    )


def send_second_factor_reset(user: User) -> None:
    """Notice after an operator removed the backup phone and every remembered browser."""
    _mail(
        user, _l("The second factor of your health portal account was reset"), "second_factor_reset"
    )


def send_psc_linked(user: User, national_id: str = "") -> None:
    """Notice after a Pro Santé Connect identity was linked to the account (by the user
    or an operator): whoever holds it can now sign in; "if this was not you…"."""
    _mail(
        user,
        _l("Your health portal account was linked to Pro Santé Connect"),
        "psc_linked",
        national_id=national_id,
    )


def send_psc_unlinked(user: User) -> None:
    """Notice after the link to Pro Santé Connect was removed: "if this was not you…"."""
    _mail(
        user,
        _l("Your health portal account is no longer linked to Pro Santé Connect"),
        "psc_unlinked",
    )
