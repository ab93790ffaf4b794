"""A real browser (Debian's Chromium through Playwright) signs in at the hosted login page.

Never ``playwright install``: the test uses ``/usr/bin/chromium`` and is
skipped without it, unless ``IDP_REQUIRE_BROWSER=1`` (CI), where that fails.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from .conftest import ACR_PWD, PASSWORD, REPO_DIR

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
SCREENSHOTS = REPO_DIR / "test-artifacts" / "screenshots"
FRENCH_CATALOG = REPO_DIR / "idp" / "translations" / "fr" / "LC_MESSAGES" / "messages.mo"
RP_PAGE = "<!doctype html><html lang='fr'><title>RP</title><p>retour à l'application</p></html>"


@pytest.fixture
def chromium():
    if not CHROMIUM.exists():
        if os.environ.get("IDP_REQUIRE_BROWSER") == "1":
            pytest.fail(f"IDP_REQUIRE_BROWSER=1 but {CHROMIUM} is missing")
        pytest.skip(f"{CHROMIUM} not installed (set IDP_REQUIRE_BROWSER=1 to make this fail)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def test_sign_in_with_a_real_browser(provider, chromium, rp):
    redirect_uri = rp.client.redirect_uri
    context = chromium.new_context(locale="fr-FR")
    page = context.new_page()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        # The RP's redirect URI is not a real server: answer it in the browser.
        arrived: list[str] = []

        def rp_callback(route):
            arrived.append(route.request.url)
            route.fulfill(status=200, content_type="text/html; charset=utf-8", body=RP_PAGE)

        page.route(lambda url: url.split("?")[0] == redirect_uri, rp_callback)

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
        page.screenshot(path=str(SCREENSHOTS / "login-fr.png"), full_page=True)

        username.fill("alice")
        password.fill(PASSWORD)
        submit.click()
        page.wait_for_url(lambda url: url.split("?")[0] == redirect_uri)

        assert len(arrived) == 1, arrived
        code = rp.check_callback(request, page.url)  # state and iss checked there
        assert code
        token = rp.fetch_token(request, page.url)
        _, claims = rp.verify_id_token(
            token["id_token"], request, access_token=token["access_token"]
        )
        assert claims["sub"] == provider.users["alice"]["sub"]
        assert claims["acr"] == ACR_PWD and claims["amr"] == ["pwd"]
    except Exception:
        page.screenshot(path=str(SCREENSHOTS / "failure.png"), full_page=True)
        raise
    finally:
        context.close()
