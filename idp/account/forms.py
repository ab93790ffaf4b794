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
    # Ticked: a password changed because it may have leaked must not leave an intruder in.
    logout_others = BooleanField(_l("Sign out of other devices"), default=True)


class ResetPasswordForm(FlaskForm):
    new_password = _new_password(_l("New password"))
    confirm_password = _new_password(_l("Confirm the new password"))


class RenewPasswordForm(ResetPasswordForm):
    """P6, inside a login: the same choice as the console's change, ticked by default."""

    logout_others = BooleanField(_l("Sign out of other devices"), default=True)


class ForgotForm(FlaskForm):
    identifier = identifier_field()
