"""A real browser (Debian's Chromium through Playwright) signs in at the hosted login page."""

from __future__ import annotations

import re

from .browser import FRENCH_CATALOG
from .edges import code_in
from .parties import ACR_2FA, ACR_PWD
from .server import PASSWORD

PHONE = "+33612345678"  # hugo's backup phone
NEW = "Quiet-Meadow-58-Lantern"
REMEMBER = "Ne plus me demander de code sur ce navigateur pendant 24\u00a0h"


def test_sign_in_with_a_real_browser(provider, browser, rp):
    page = browser.page
    request = rp.authorization_request()
    page.goto(request.url)
    page.wait_for_url(re.compile(re.escape(provider.url("/login")) + r"\?tx="))
    assert page.locator("html").get_attribute("lang") == "fr"
    username = page.locator("input[autocomplete=username]")
    password = page.locator("input[autocomplete=current-password]")
    submit = page.locator("form button[type=submit]")
    assert username.count() == 1 and password.count() == 1 and submit.count() == 1
    assert password.get_attribute("type") == "password"
    assert page.locator("input[type=hidden][name=csrf_token]").count() == 1
    if FRENCH_CATALOG.exists():  # the French catalogue is compiled: French labels
        assert submit.inner_text().strip() == "Se connecter"
        assert page.get_by_label("Mot de passe").count() == 1
        assert page.get_by_label("Identifiant ou adresse e-mail").count() == 1
    browser.screenshot("login-fr.png")

    username.fill("alice")
    password.fill(PASSWORD)
    submit.click()
    page.wait_for_url(browser.at_rp)

    assert len(browser.arrived) == 1, browser.arrived
    _, claims = rp.finish(request, page.url)  # state and iss checked there
    assert claims["sub"] == provider.users["alice"]["sub"]
    assert claims["acr"] == ACR_PWD and claims["amr"] == ["pwd"]


def _sign_in(page, provider, username: str, password: str = PASSWORD) -> None:
    """The login page in French, filled like a user would."""
    page.wait_for_url(re.compile(re.escape(provider.url("/login?tx="))))
    page.locator("input[autocomplete=username]").fill(username)
    page.locator("input[autocomplete=current-password]").fill(password)
    page.get_by_role("button", name="Se connecter", exact=True).click()


def test_sms_code_and_remembered_browser_in_a_real_browser(provider, browser, rp, sms_gateway):
    """Password → channel (SMS) → the code from the gateway, "remember" ticked → the RP."""
    page = browser.page
    request = rp.authorization_request()
    page.goto(request.url)
    _sign_in(page, provider, "hugo")
    page.wait_for_url(re.compile(re.escape(provider.url("/login/channel?tx="))))
    assert page.locator("legend").inner_text() == "Où souhaitez-vous recevoir votre code\u00a0?"
    radios = page.locator("input[type=radio][name=channel]")
    assert [r.get_attribute("value") for r in radios.all()] == ["email", "sms"]
    assert radios.first.is_checked()  # e-mail unless the user chooses
    assert "+33 6 ** ** ** 78" in page.locator("form").inner_text()
    browser.screenshot("channel-fr.png")

    page.get_by_label("Par SMS").check()
    page.get_by_role("button", name="Valider", exact=True).click()
    page.wait_for_url(re.compile(re.escape(provider.url("/login/otp?tx="))))
    notice = page.get_by_role("status").first.inner_text()
    assert "Un code a été envoyé par SMS au +33 6 ** ** ** 78." in notice
    code = page.locator("input[name=code]")
    assert code.get_attribute("autocomplete") == "one-time-code"
    assert code.get_attribute("inputmode") == "numeric"
    browser.screenshot("otp-fr.png")

    code.fill(sms_gateway.code_for(PHONE))
    page.get_by_label(REMEMBER).check()
    page.get_by_role("button", name="Valider", exact=True).click()
    page.wait_for_url(browser.at_rp)
    _, claims = rp.finish(request, page.url)
    assert claims["acr"] == ACR_2FA and claims["amr"] == ["pwd", "sms", "otp", "mfa"]

    # The same browser, a new sign-in: the password, and no code (M6).
    sent = len(sms_gateway.requests)
    request = rp.authorization_request(prompt="login")
    page.goto(request.url)
    _sign_in(page, provider, "hugo")
    page.wait_for_url(browser.at_rp)
    _, claims = rp.finish(request, page.url)
    assert claims["acr"] == ACR_2FA and claims["amr"] == ["pwd", "mfa"]
    assert len(sms_gateway.requests) == sent


def test_account_console_in_a_real_browser(provider, browser, rp, mailbox, sms_gateway):
    """From "Connexion": "Mon compte", the backup phone (confirmed by the e-mailed code,
    then by a code sent to it), the password rules, the change."""
    page = browser.page
    page.goto(provider.url("/login"))
    _sign_in(page, provider, "karim")
    page.wait_for_url(provider.url("/account/"))
    assert page.locator("h1").inner_text() == "Mon compte"
    record = page.locator("dl.record").inner_text()
    for shown in ("Karim Haddad", "karim", "karim@exemple.fr", "Médecin", "Aucun"):
        assert shown in record  # A1
    browser.screenshot("account.png")

    page.get_by_role("link", name="Modifier", exact=True).click()  # the pen (A2)
    page.wait_for_url(provider.url("/account/profile"))
    phone = page.locator("input[name=backup_phone]")
    assert phone.get_attribute("autocomplete") == "tel"
    phone.fill("12345")
    with page.expect_navigation():
        page.get_by_role("button", name="Mettre à jour").click()
    error = page.locator("#backup_phone-errors")
    assert error.inner_text() == (
        "Saisissez un numéro de téléphone portable valide, par exemple"
        " 06\u00a012\u00a034\u00a056\u00a078."
    )
    assert phone.get_attribute("aria-invalid") == "true"
    browser.screenshot("profile-error.png")
    seen_mail = len(mailbox.to("karim@exemple.fr"))
    phone.fill("06 12 34 56 79")
    page.get_by_role("button", name="Mettre à jour").click()
    # A password-only session: first the code sent to the account's e-mail…
    page.wait_for_url(provider.url("/account/profile/confirm"))
    assert "k***@exemple.fr" in page.locator("main").inner_text()
    assert "+33612345679" not in page.content()
    code = page.locator("input[name=code]")
    assert code.get_attribute("autocomplete") == "one-time-code"
    assert code.get_attribute("inputmode") == "numeric"
    assert page.get_by_role("button", name="Renvoyer le code").count() == 1
    browser.screenshot("phone-email-code.png")
    mail = mailbox.wait_for("karim@exemple.fr", seen_mail)
    code.fill(code_in(mailbox.text(mail)))
    with page.expect_navigation():
        page.get_by_role("button", name="Valider", exact=True).click()
    # …then the code sent by SMS to the new number; only then is it stored.
    page.wait_for_url(provider.url("/account/profile/confirm"))
    assert "+33 6 ** ** ** 79" in page.locator("main").inner_text()
    browser.screenshot("phone-sms-code.png")
    page.locator("input[name=code]").fill(sms_gateway.code_for("+33612345679"))
    page.get_by_role("button", name="Valider", exact=True).click()
    page.wait_for_url(provider.url("/account/"))
    assert page.get_by_role("status").inner_text() == "Votre fiche a bien été mise à jour."
    assert "+33612345679" in page.locator("dl.record").inner_text()

    page.get_by_role("link", name="Modifier mon mot de passe").click()  # the padlock (P1)
    page.wait_for_url(provider.url("/account/password"))
    _fill_password_form(page, PASSWORD, "abc", "abd")
    rules = page.locator("#new_password-errors li").all_inner_texts()
    assert rules == [  # P3: every unmet rule, and only those ("abc" has a lower-case letter)
        "12 caractères minimum.",
        "1 chiffre minimum.",
        "1 majuscule minimum.",
        "1 caractère spécial minimum (exemple\u00a0: @ # & _ *).",
    ]
    assert page.locator("#confirm_password-errors").inner_text() == (
        "Les deux mots de passe saisis sont différents."
    )
    browser.screenshot("password-rules.png")
    _fill_password_form(page, PASSWORD, NEW, NEW)
    page.wait_for_url(provider.url("/account/"))
    changed = page.get_by_role("status").inner_text()
    assert changed.startswith("Votre mot de passe a bien été modifié.")
    browser.screenshot("password-changed.png")  # P5

    # A3: from the next sign-in, the code can go to the new phone.
    page.goto(rp.authorization_request(acr_values=ACR_2FA, prompt="login").url)
    _sign_in(page, provider, "karim", NEW)
    page.wait_for_url(re.compile(re.escape(provider.url("/login/channel?tx="))))
    assert "+33 6 ** ** ** 79" in page.locator("form").inner_text()


def _fill_password_form(page, current: str, new: str, confirm: str) -> None:
    page.get_by_label("Mot de passe actuel").fill(current)
    page.get_by_label("Nouveau mot de passe", exact=True).fill(new)
    page.get_by_label("Confirmation du nouveau mot de passe").fill(confirm)
    with page.expect_navigation():
        page.get_by_role("button", name="Modifier le mot de passe").click()
