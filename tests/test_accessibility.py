"""Accessibility beyond axe, server side (issue 10, items 11, 14–16): errors tied to their
fields and focused, pages in one language, the language switch, role names, wording.
The browser half (focus, contrast, reflow, target sizes, axe) is tests/e2e/test_accessibility.py.
"""

from __future__ import annotations

import re

import pytest

from idp.account import recovery
from idp.config import ConfigError, load_settings
from idp.models import User, db
from tests.actions import LoginActions, csrf_of
from tests.factories import PASSWORD, make_client, make_user

EN = {"Accept-Language": "en"}
FR = {"Accept-Language": "fr"}


@pytest.fixture
def secret(smtp, sms_gateway, app):
    with app.app_context():
        make_user("alice")
        make_user("bruno", roles=["patient_data", "admin", "cardio"])
        return make_client()[1]


def _attrs(html: str, name: str) -> dict[str, str]:
    """The attributes of the ``<input name=…>`` of a page (``autofocus`` → ``""``)."""
    tag = re.search(rf"<input[^>]*\bname=\"{name}\"[^>]*>", html)
    assert tag, f"no input {name}"
    return {
        m.group(1): m.group(3) or ""
        for m in re.finditer(r"([\w-]+)(=\"([^\"]*)\")?", tag.group(0)[len("<input") :])
    }


def _autofocused(html: str) -> list[str]:
    """Every element carrying ``autofocus``, in document order (the browser honours the first)."""
    return re.findall(r"<(\w+)[^>]*?\bautofocus\b[^>]*>", html)


def _login_page(client, headers=FR):
    url = client.get("/login", headers=headers).location
    return url, client.get(url, headers=headers)


# -- 11. errors tied to their fields, focus on the first one -----------------------------


def test_empty_login_ties_each_error_to_its_field_and_focuses_the_first(client, secret):
    url, page = _login_page(client)
    response = client.post(url, data={"csrf_token": csrf_of(page.text)}, headers=FR)
    assert response.status_code == 400
    html = response.text
    for name in ("username", "password"):
        attrs = _attrs(html, name)
        assert attrs["aria-invalid"] == "true"
        for ident in attrs["aria-describedby"].split():
            assert f'id="{ident}"' in html, ident
        assert f"{name}-errors" in attrs["aria-describedby"]
    assert "autofocus" in _attrs(html, "username")
    first = re.search(r"<input[^>]*autofocus[^>]*>", html).group(0)
    assert 'name="username"' in first  # the first invalid field gets the focus
    summary = re.search(r'<div class="error-summary" role="alert"[^>]*>(.*?)</div>', html, re.S)
    assert summary and 'href="#username"' in summary.group(1)
    assert "Saisissez votre identifiant" in summary.group(1)


def test_wrong_password_focuses_the_announced_message(client, secret):
    url, page = _login_page(client)
    response = client.post(
        url,
        data={"csrf_token": csrf_of(page.text), "username": "alice", "password": "nope"},
        headers=FR,
    )
    html = response.text
    error = re.search(r"<p[^>]*id=\"login-error\"[^>]*>", html).group(0)
    assert 'role="alert"' in error and 'tabindex="-1"' in error and "autofocus" in error
    assert _autofocused(html) == ["p"]  # nothing else competes for the focus
    assert "login-error" in _attrs(html, "username")["aria-describedby"]


def test_forgot_form_focuses_its_invalid_field(client, secret):
    page = client.get("/password/forgot", headers=FR)
    response = client.post(
        "/password/forgot", data={"csrf_token": csrf_of(page.text), "identifier": ""}, headers=FR
    )
    attrs = _attrs(response.text, "identifier")
    assert attrs["aria-invalid"] == "true" and "autofocus" in attrs
    assert attrs["aria-describedby"] == "identifier-errors"
    assert 'id="identifier-errors"' in response.text


def _summary(html: str) -> str:
    found = re.search(r'<div class="error-summary" role="alert"[^>]*>(.*?)</div>', html, re.S)
    assert found, "no error summary"
    return found.group(1)


def test_forgot_form_has_an_error_summary_and_a_refusal_takes_the_focus(
    client, secret, monkeypatch
):
    page = client.get("/password/forgot", headers=FR)
    response = client.post(
        "/password/forgot", data={"csrf_token": csrf_of(page.text), "identifier": ""}, headers=FR
    )
    assert 'href="#identifier"' in _summary(response.text)
    assert _autofocused(response.text) == ["input"]

    def busy(identifier, ip):
        raise recovery.ResetThrottled(120)

    monkeypatch.setattr(recovery, "request_reset", busy)
    page = client.get("/password/forgot", headers=FR)
    response = client.post(
        "/password/forgot",
        data={"csrf_token": csrf_of(page.text), "identifier": "alice"},
        headers=FR,
    )
    assert response.status_code == 429
    refusal = re.search(r'<p[^>]*id="forgot-error"[^>]*>', response.text).group(0)
    assert 'role="alert"' in refusal and 'tabindex="-1"' in refusal
    assert _autofocused(response.text) == ["p"]  # the message, not <body>


def test_reset_form_has_an_error_summary_tied_to_its_fields(smtp, client, secret):
    page = client.get("/password/forgot", headers=FR)
    client.post(
        "/password/forgot",
        data={"csrf_token": csrf_of(page.text), "identifier": "alice"},
        headers=FR,
    )
    link = re.search(r"http://idp\.test(/password/reset/\S+)", smtp.last_text()).group(1)
    assert client.get(link).status_code == 303
    page = client.get("/password/reset", headers=FR)
    data = {"new_password": "court", "confirm_password": "autre"}
    response = client.post(
        "/password/reset", data={"csrf_token": csrf_of(page.text), **data}, headers=FR
    )
    assert response.status_code == 400
    summary = _summary(response.text)
    assert 'href="#new_password"' in summary and 'href="#confirm_password"' in summary
    assert "Les deux mots de passe saisis sont différents." in summary
    new = _attrs(response.text, "new_password")
    assert new["aria-invalid"] == "true" and "autofocus" in new
    assert new["aria-describedby"] == "new_password-hint new_password-errors"
    assert _attrs(response.text, "confirm_password")["aria-describedby"] == (
        "confirm_password-errors"
    )
    first = re.search(r"<input[^>]*autofocus[^>]*>", response.text).group(0)
    assert 'name="new_password"' in first  # the first invalid field wins the focus


def test_console_password_form_focuses_the_first_invalid_field(client, secret):
    LoginActions(client).submit_password(client.get("/login").location)

    def post(current: str) -> str:
        page = client.get("/account/password", headers=FR)
        data = {"current_password": current, "new_password": "short", "confirm_password": "x"}
        return client.post(
            "/account/password", data={"csrf_token": csrf_of(page.text), **data}, headers=FR
        ).text

    html = post(PASSWORD)  # the new password is refused: the focus goes there
    assert "autofocus" not in _attrs(html, "current_password")
    new = _attrs(html, "new_password")
    assert "autofocus" in new and new["aria-invalid"] == "true"
    assert new["aria-describedby"] == "new_password-hint new_password-errors"
    assert re.search(r"<input[^>]*autofocus[^>]*>", html).group(0) == re.search(
        r'<input[^>]*name="new_password"[^>]*>', html
    ).group(0)
    summary = re.search(r'<div class="error-summary" role="alert"[^>]*>(.*?)</div>', html, re.S)
    assert 'href="#new_password"' in summary.group(1)
    assert 'href="#confirm_password"' in summary.group(1)
    html = post("wrong")  # the current password is wrong: the focus goes there
    assert "autofocus" in _attrs(html, "current_password")
    assert _attrs(html, "current_password")["aria-describedby"] == "current_password-errors"


# -- 14. one language per page --------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected", "absent"),
    [
        (FR, "Cette adresse ne mène à aucune page du portail.", "The requested URL"),
        (EN, "This address does not lead to any page of the portal.", "The requested URL"),
    ],
)
def test_not_found_is_explained_in_the_page_language(client, headers, expected, absent):
    response = client.get("/nowhere", headers=headers)
    assert response.status_code == 404
    assert expected in response.text and absent not in response.text


def test_oidc_error_page_explains_in_french_and_keeps_the_code_small(client, secret):
    response = LoginActions(client).authorize(client_id="nobody")
    assert response.status_code == 400
    html = response.text
    assert "L’application qui vous a envoyé ici n’est pas connue de ce portail." in html
    assert "does not exist" not in html
    assert re.search(r'<p class="detail">[^<]*<code>invalid_client</code></p>', html)
    english = client.get("/authorize?client_id=nobody&response_type=code", headers=EN)
    assert "is not known to this portal" in english.text


def test_roles_are_named_in_the_page_language(client, app, secret):
    with app.app_context():
        make_user("carla", roles=["cardio", "unnamed"])
    app.config["IDP"]["roles"]["cardio"] = {"fr": "Cardiologie", "en": "Cardiology"}
    LoginActions(client).submit_password(client.get("/login").location, "carla")
    french = client.get("/account/", headers=FR).text
    assert re.search(r"<dt>Droits</dt><dd>Cardiologie, unnamed</dd>", french)
    english = client.get("/account/", headers=EN).text
    assert re.search(r"<dt>Roles</dt><dd>Cardiology, unnamed</dd>", english)
    from idp.web import role_label

    with app.test_request_context("/", headers=FR):
        assert role_label("patient_data") == "Accès aux données de santé des patients"
    with app.test_request_context("/", headers=EN):
        assert role_label("patient_data") == "Access to patients' health data"


def test_roles_config_contract():
    settings = load_settings({"roles": {"cardio": {"fr": "Cardiologie", "en": "Cardiology"}}})
    assert settings["roles"]["cardio"] == {"fr": "Cardiologie", "en": "Cardiology"}
    assert settings["roles"]["patient_data"]["fr"]  # the defaults stay
    for bad, message in [
        ({"cardio": {"fr": "Cardiologie"}}, "exactly the keys fr and en"),
        ({"cardio": {"fr": "a", "en": "b", "de": "c"}}, "exactly the keys fr and en"),
        ({"cardio": "Cardiologie"}, "expected a table"),
        ({"cardio": {"fr": " ", "en": "b"}}, "roles.cardio.fr: expected a non-empty string"),
        ({"cardio": {"fr": 1, "en": "b"}}, "non-empty string"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_settings({"roles": bad})
    with pytest.raises(ConfigError, match="roles: expected a table"):
        load_settings({"roles": ["admin"]})


# -- 15. the language switch ----------------------------------------------------------


@pytest.mark.parametrize("path", ["/login", "/password/forgot", "/nowhere"])
def test_every_page_offers_the_language_switch(client, secret, path):
    html = client.get(path, headers=FR, follow_redirects=True).text
    switch = re.search(r'<nav class="lang"[^>]*>(.*?)</nav>', html, re.S).group(1)
    assert re.search(r'href="[^"]*lang=fr"[^>]*lang="fr"[^>]*aria-current="true">Français<', switch)
    assert re.search(r'href="[^"]*lang=en"[^>]*>English<', switch)


def test_the_choice_is_kept_through_the_login_and_after(client, secret):
    url, _ = _login_page(client)
    assert "?tx=" in url
    english = client.get(url + "&lang=en", headers=FR)
    assert '<html lang="en">' in english.text
    # The form posts to the same URL without ``lang``: the choice is remembered.
    response = client.post(
        url,
        data={"csrf_token": csrf_of(english.text), "username": "alice", "password": "x"},
        headers=FR,
    )
    assert '<html lang="en">' in response.text
    assert '<html lang="en">' in client.get("/password/forgot", headers=FR).text
    assert '<html lang="fr">' in client.get("/password/forgot?lang=fr", headers=EN).text
    assert '<html lang="fr">' in client.get("/password/forgot", headers=EN).text


def test_ui_locales_wins_for_its_login_then_the_switch_within_it(client, secret):
    client.get("/password/forgot?lang=fr")  # an earlier choice
    response = LoginActions(client).authorize(ui_locales="en")
    login = response.location
    assert '<html lang="en">' in client.get(login, headers=FR).text  # the RP's wins
    assert '<html lang="fr">' in client.get(login + "&lang=fr").text  # a click wins
    assert '<html lang="fr">' in client.get(login).text  # …for the rest of this login


# -- 16. wording ------------------------------------------------------------------------


def test_console_wording_and_signed_out_count(client, app, secret):
    other = client.application.test_client()
    LoginActions(other).submit_password(other.get("/login").location)
    LoginActions(client).submit_password(client.get("/login").location)
    home = client.get("/account/", headers=FR).text
    assert ">Adresse IP<" in home and ">Dernier changement du mot de passe<" in home
    page = client.get("/account/password", headers=FR)
    client.post(
        "/account/password",
        data={
            "csrf_token": csrf_of(page.text),
            "current_password": PASSWORD,
            "new_password": "Another-Long-Pass-42",
            "confirm_password": "Another-Long-Pass-42",
            "logout_others": "y",
        },
        headers=FR,
    )
    home = client.get("/account/", headers=FR).text
    assert "Votre mot de passe a bien été modifié. 1 autre appareil a été déconnecté." in home
    with app.app_context():
        assert db.session.scalars(db.select(User).filter_by(username="alice")).one()


def test_signed_out_page_says_so(client, secret):
    LoginActions(client).submit_password(client.get("/login").location)
    page = client.get("/account/", headers=FR)
    response = client.post(
        "/logout", data={"csrf_token": csrf_of(page.text), "confirm": "yes"}, headers=FR
    )
    assert "<h1>Vous êtes déconnecté</h1>" in response.text


def test_french_catalogue_uses_no_break_spaces(client):
    from babel.messages.pofile import read_po

    from idp.i18n import SUPPORTED

    assert SUPPORTED == ("fr", "en")
    path = "idp/translations/fr/LC_MESSAGES/messages.po"
    with open(path, "rb") as handle:
        catalog = read_po(handle)
    for message in catalog:
        if not message.id or any(p.startswith("templates/sms/") for p, _ in message.locations):
            continue  # an SMS keeps GSM 03.38 characters only (tests/test_i18n.py)
        texts = message.string if isinstance(message.string, tuple) else (message.string,)
        for text in texts:
            assert not re.search(r" [:;?!]", text), text
            assert not re.search(r"\d\)?d? (minutes?|h)\b", text), text
            assert not re.search(r"\b\d\d \d\d\b", text), text
    remember = catalog.get("Remember this browser for %(hours)d hours").string
    assert remember == "Ne plus me demander de code sur ce navigateur pendant %(hours)d\u00a0h"
