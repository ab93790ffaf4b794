"""Console forms; field names and autocomplete attributes follow DESIGN.md."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, StringField
from wtforms.validators import DataRequired, Length, Regexp

from ..auth.forms import identifier_field


class ProfileForm(FlaskForm):
    backup_phone = StringField(
        _l("Backup phone"),
        validators=[Length(max=30)],
        render_kw={"autocomplete": "tel", "inputmode": "tel", "type": "tel"},
    )


class PhoneCodeForm(FlaskForm):
    """The code page of a backup phone change: the e-mailed code, then the SMS one."""

    code = StringField(
        _l("Code"),
        validators=[
            DataRequired(message=_l("Enter the code you received.")),
            Regexp(r"^\s*\d{3}\s?\d{3}\s*$", message=_l("The code has 6 digits.")),
        ],
        render_kw={
            "autocomplete": "one-time-code",
            "inputmode": "numeric",
            "pattern": "[0-9 ]*",
            "maxlength": "7",
        },
    )


def _new_password(label):
    return PasswordField(
        label, validators=[Length(max=1024)], render_kw={"autocomplete": "new-password"}
    )


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField(
        _l("Current password"),
        validators=[DataRequired(message=_l("Enter your current password.")), Length(max=1024)],
        render_kw={"autocomplete": "current-password"},
    )
    new_password = _new_password(_l("New password"))
    confirm_password = _new_password(_l("Confirm the new password"))
    logout_others = BooleanField(_l("Sign out of other devices"))


class ResetPasswordForm(FlaskForm):
    new_password = _new_password(_l("New password"))
    confirm_password = _new_password(_l("Confirm the new password"))


class ForgotForm(FlaskForm):
    identifier = identifier_field()
