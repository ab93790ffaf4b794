"""Console forms; field names and autocomplete attributes follow DESIGN.md."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, StringField
from wtforms.validators import DataRequired, Length

from ..auth.forms import code_field, identifier_field


class ProfileForm(FlaskForm):
    backup_phone = StringField(
        _l("Backup phone"),
        validators=[Length(max=30)],
        render_kw={"autocomplete": "tel", "inputmode": "tel", "type": "tel"},
    )


class PhoneCodeForm(FlaskForm):
    """The code page of a backup phone change: the e-mailed code, then the SMS one."""

    code = code_field()


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
