"""Login forms; field names and autocomplete attributes are part of the contract."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length


class PasswordForm(FlaskForm):
    username = StringField(
        _l("Identifier or e-mail address"),
        validators=[
            DataRequired(message=_l("Enter your identifier or e-mail address.")),
            Length(max=254),
        ],
        render_kw={"autocomplete": "username", "autocapitalize": "none", "spellcheck": "false"},
    )
    password = PasswordField(
        _l("Password"),
        validators=[DataRequired(message=_l("Enter your password.")), Length(max=1024)],
        render_kw={"autocomplete": "current-password"},
    )
