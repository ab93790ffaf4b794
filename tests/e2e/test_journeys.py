"""Nobody loses the application (issue 10, items 6–9), in Chromium at desktop and phone
widths: the login names the application, the lost password leads back to it, Back
after the sign-in goes on to it, an expired form starts it again."""

from __future__ import annotations

import re

import pytest

from .server import PASSWORD

NEW = "Quiet-Meadow-58-Lantern"
VIEWPORTS = {"desktop": (1280, 800), "mobile": (390, 844)}
APP = "Dossier"  # the name the confidential client was registered with (``--name``)


@pytest.fixture(params=list(VIEWPORTS))
def viewport(request, browser):
    width, height = VIEWPORTS[request.param]
    browser.page.set_viewport_size({"width": width, "height": height})
    return request.param


@pytest.fixture(scope="module")
def journey_users(provider):
    """Accounts of this module only: a reset changes the password of its own user."""
    made = {}
    for name in ("jules", "julie", "justin", "jeanne"):
        for size in VIEWPORTS:
            username = f"{name}-{size}"
            provider.cli(
                "user", "add", username, "--email", f"{username}@exemple.fr",
                "--name", f"{name.title()} Essai", "--password-stdin", stdin=PASSWORD + "\n",
            )  # fmt: skip
            made[(name, size)] = username
    return made


def _at_login(page, provider) -> None:
    page.wait_for_url(re.compile(re.escape(provider.url("/login?tx="))))


def _fill_password(page, username: str, password: str) -> None:
    page.locator("input[autocomplete=username]").fill(username)
    page.locator("input[autocomplete=current-password]").fill(password)
    page.get_by_role("button", name="Se connecter", exact=True).click()


def test_login_page_names_the_application(provider, browser, rp, viewport):
    page = browser.page
    page.goto(rp.authorization_request().url)
    _at_login(page, provider)
    assert page.locator("#login-application").inner_text() == f"Connexion à {APP}"
    assert page.title().startswith(f"Connexion à {APP} ")
    browser.screenshot(f"journeys-login-application-{viewport}.png")
    page.goto(provider.url("/login"))  # "Connexion": the console, no application
    _at_login(page, provider)
    assert page.locator("#login-application").count() == 0


def test_forgotten_password_leads_back_to_the_application(
    provider, browser, rp, mailbox, journey_users, viewport
):
    """Login from the RP → "Mot de passe oublié ?" → "Retour à la connexion" is the same
    login; the reset (link from the e-mail) → "Se connecter" → the RP, not "Mon compte"."""
    username = journey_users[("jules", viewport)]
    page = browser.page
    request = rp.authorization_request()
    page.goto(request.url)
    _at_login(page, provider)
    login_url = page.url
    page.get_by_role("link", name="Mot de passe oublié\u00a0?").click()
    page.wait_for_url(re.compile(re.escape(provider.url("/password/forgot?tx="))))
    page.get_by_role("link", name="Retour à la connexion").click()
    page.wait_for_url(login_url)  # the same login, not a new one
    assert page.locator("#login-application").inner_text() == f"Connexion à {APP}"

    page.get_by_role("link", name="Mot de passe oublié\u00a0?").click()
    seen = len(mailbox.to(f"{username}@exemple.fr"))
    page.locator("input[name=identifier]").fill(username)
    page.locator("form button[type=submit]").click()
    page.wait_for_selector("text=Consultez votre messagerie")
    browser.screenshot(f"journeys-forgot-sent-{viewport}.png")
    message = mailbox.text(mailbox.wait_for(f"{username}@exemple.fr", seen))
    link = re.search(re.escape(provider.issuer) + r"(/password/reset/[\w-]+)", message).group(0)
    assert "tx=" not in link  # the e-mailed link carries no login

    page.goto(link)
    page.wait_for_url(provider.url("/password/reset"))
    page.locator("input[name=new_password]").fill(NEW)
    page.locator("input[name=confirm_password]").fill(NEW)
    page.locator("form button[type=submit]").click()
    page.wait_for_selector("text=Votre mot de passe a bien été modifié")
    browser.screenshot(f"journeys-reset-done-{viewport}.png")
    page.get_by_role("link", name="Se connecter", exact=True).click()
    _at_login(page, provider)
    assert page.locator("#login-application").inner_text() == f"Connexion à {APP}"
    _fill_password(page, username, NEW)
    page.wait_for_url(browser.at_rp)
    rp.finish(request, page.url)  # the RP's own request: its state, its nonce


def test_back_after_signing_in_goes_on_to_the_application(
    provider, browser, rp, journey_users, viewport
):
    username = journey_users[("julie", viewport)]
    page = browser.page
    page.goto(rp.authorization_request().url)
    _at_login(page, provider)
    _fill_password(page, username, PASSWORD)
    page.wait_for_url(browser.at_rp)
    arrived = len(browser.arrived)
    page.go_back()  # the finished login's page
    page.wait_for_url(browser.at_rp)
    assert "Connexion expirée" not in page.content()
    assert len(browser.arrived) == arrived + 1 and "code=" in browser.arrived[-1]


def test_login_form_sent_after_the_browser_restarted_says_why_and_offers_a_sign_in(
    provider, browser, rp, journey_users, viewport
):
    """The cookies went with the browser (closed, reopened on the same tab): the form
    says the page expired and why, and offers a fresh sign-in. The RP's request is not
    handed out again: only the login's URL is left, which must be useless elsewhere."""
    username = journey_users[("justin", viewport)]
    page = browser.page
    request = rp.authorization_request()
    page.goto(request.url)
    _at_login(page, provider)
    browser.context.clear_cookies()
    _fill_password(page, username, PASSWORD)
    heading = page.locator("h1")
    heading.wait_for()
    assert heading.inner_text() == "Page expirée"
    text = page.locator("main").inner_text()
    assert "envoyé deux fois" not in text
    assert "Le navigateur a été fermé, ou ses cookies effacés" in text
    assert request.state not in page.content()
    browser.screenshot(f"journeys-form-expired-{viewport}.png")
    page.locator("main form button").first.click()
    _at_login(page, provider)
    _fill_password(page, username, PASSWORD)
    page.wait_for_url(provider.url("/account/"))


def test_a_login_url_opened_without_its_session_says_it_expired(
    provider, browser, rp, journey_users, viewport
):
    """A login opened in this browser, then used without its session (cookies gone):
    the page says it expired and offers a fresh sign-in, without the RP's request."""
    username = journey_users[("jeanne", viewport)]
    page = browser.page
    request = rp.authorization_request()
    page.goto(request.url)
    _at_login(page, provider)
    login_url = page.url
    browser.context.clear_cookies()
    page.goto(login_url)
    assert page.locator("h1").inner_text() == "Connexion expirée"
    assert request.state not in page.content()
    browser.screenshot(f"journeys-login-expired-{viewport}.png")
    page.locator("main form button").first.click()
    _at_login(page, provider)
    _fill_password(page, username, PASSWORD)
    page.wait_for_url(provider.url("/account/"))
