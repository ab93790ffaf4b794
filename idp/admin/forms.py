"""Operator console forms; field names are the contract of DESIGN.md ("Operator console")."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import SelectMultipleField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length
from wtforms.widgets import CheckboxInput, ListWidget


class _Checkboxes(SelectMultipleField):
    """``roles``: one checkbox per configured role (no script needed)."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()

    def pre_validate(self, form) -> None:
        pass  # unknown values are dropped by the service, not a form error


class RecordForm(FlaskForm):
    """A professional's record: what the operator may correct (``user.html``)."""

    email = StringField(
        _l("E-mail"),
        validators=[DataRequired(), Length(max=254)],
        render_kw={"autocomplete": "off", "type": "email"},
    )
    name = StringField(_l("Name"), validators=[Length(max=200)], render_kw={"autocomplete": "off"})
    profession = StringField(
        _l("Profession"), validators=[Length(max=100)], render_kw={"autocomplete": "off"}
    )


class NewUserForm(RecordForm):
    """A new professional: the record, plus the identifier and roles set once here."""

    username = StringField(
        _l("Identifier"),
        validators=[DataRequired(), Length(max=150)],
        render_kw={"autocomplete": "off"},
    )
    roles = _Checkboxes(_l("Roles"))


class NationalIdForm(FlaskForm):
    """The RPPS or ADELI number a Pro Santé Connect login is linked by (empty: no link)."""

    national_id = StringField(
        _l("RPPS or ADELI number"),
        validators=[Length(max=40)],
        render_kw={"autocomplete": "off", "inputmode": "numeric"},
    )


class RolesForm(FlaskForm):
    roles = _Checkboxes(_l("Roles"))


def _uris(label):
    return TextAreaField(label, validators=[Length(max=20000)], render_kw={"rows": 3})


class ClientUrisForm(FlaskForm):
    """One URI per line."""

    redirect_uris = _uris(_l("Redirect URIs"))
    post_logout_redirect_uris = _uris(_l("Post-logout redirect URIs"))
    backchannel_logout_uri = StringField(
        _l("Back-channel logout URI"), validators=[Length(max=2000)]
    )
