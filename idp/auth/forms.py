"""Login forms; field names and autocomplete attributes are part of the contract."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, RadioField, SelectChoice, StringField
from wtforms.validators import DataRequired, Length, Regexp


def identifier_field() -> StringField:
    """The identifier field (L2, R2): the username or the e-mail address."""
    return StringField(
        _l("Identifier or e-mail address"),
        validators=[
            DataRequired(message=_l("Enter your identifier or e-mail address.")),
            Length(max=254),
        ],
        render_kw={"autocomplete": "username", "autocapitalize": "none", "spellcheck": "false"},
    )


class PasswordForm(FlaskForm):
    username = identifier_field()
    password = PasswordField(
        _l("Password"),
        validators=[DataRequired(message=_l("Enter your password.")), Length(max=1024)],
        render_kw={"autocomplete": "current-password"},
    )


class ChannelForm(FlaskForm):
    channel = RadioField(
        _l("Where should we send your code?"),
        choices=[SelectChoice("email", _l("By e-mail")), SelectChoice("sms", _l("By SMS"))],
        default="email",
        validators=[DataRequired(message=_l("Choose where to receive the code."))],
    )


def code_field() -> StringField:
    """A one-time code field (``name="code"``): six digits, a space allowed in the middle."""
    return StringField(
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


class CodeForm(FlaskForm):
    code = code_field()
    remember = BooleanField()  # labelled in the template, with the configured hours
