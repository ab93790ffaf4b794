"""The Pro Santé Connect button in a real browser (Debian's Chromium), in French, against
the stand-in (tests/e2e/psc_standin.mjs): the login page offering PSC, the stand-in's
login, back at the RP; the PSC-only page an ``eidas1`` RP gets, the "no account for this
identity" page and the "PSC not answering" page. Each of our pages passes axe-core
(WCAG 2.0–2.2 A/AA) and leaves ``test-artifacts/screenshots/psc-<page>.png``."""

from __future__ import annotations

import os

import pytest

from .browser import BrowserSession
from .conftest import PSC_USERS
from .parties import RelyingParty, query_of
from .server import REPO_DIR

AXE = REPO_DIR / "node_modules" / "axe-core" / "axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
PSC_BUTTON = "Se connecter avec Pro Santé Connect"
NOBODY = "810001000006"  # a valid RPPS no account holds


@pytest.fixture(scope="module")
def axe() -> str:
    if not AXE.exists():
        if os.environ.get("IDP_REQUIRE_BROWSER") == "1":
            pytest.fail(f"IDP_REQUIRE_BROWSER=1 but {AXE} is missing: run `npm ci`")
        pytest.skip(f"{AXE} not installed (`npm ci` installs it)")
    return AXE.read_text()


def check(session: BrowserSession, axe: str, name: str) -> None:
    """One of our pages: in French, no axe-core violation, a screenshot."""
    page = session.page
    page.wait_for_load_state("load")
    assert page.locator("html").get_attribute("lang") == "fr", page.url
    page.evaluate(axe)  # through the DevTools protocol: the CSP does not apply
    violations = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})"
        ".then(r => r.violations.map(v => v.id + ': ' + v.nodes.map(n => n.target).join(' ')))",
        AXE_TAGS,
    )
    session.screenshot(f"psc-{name}.png")
    assert violations == [], (name, violations)


def at_standin(session: BrowserSession, standin, national_id: str | None) -> None:
    """Through the stand-in's login form (``national_id``), or straight on when it
    remembers this browser (``None``: no form expected)."""
    page = session.page
    if national_id is None:
        return
    page.wait_for_url(lambda url: url.startswith(standin.wallet))
    page.get_by_label("Identifiant national").fill(national_id)
    session.screenshot("psc-standin.png")
    page.get_by_role("button", name="Valider avec e-CPS").click()


def test_the_psc_button_in_french_against_the_standin(psc_node, browser, axe):
    page, standin = browser.page, psc_node.standin
    rp = RelyingParty(psc_node, psc_node.clients["confidential"])
    try:
        # The login page offers PSC beside the password; an identity linked to nobody.
        page.goto(rp.authorization_request().url)
        assert page.get_by_label("Mot de passe").count() == 1
        check(browser, axe, "login")
        page.get_by_role("button", name=PSC_BUTTON).click()
        at_standin(browser, standin, NOBODY)
        page.wait_for_url(lambda url: url.startswith(psc_node.base_url))
        assert "n’est rattachée à aucun compte du Portail de santé" in page.content()
        check(browser, axe, "unlinked")
        # Back to the password form of the same login; PSC fails at the code exchange.
        page.get_by_role("link", name="Se connecter avec son identifiant").click()
        standin.fail_next_token()
        page.get_by_role("button", name=PSC_BUTTON).click()  # the stand-in remembers us
        page.wait_for_url(lambda url: "/login/psc/callback" in url)
        assert page.get_by_role("heading", name="Pro Santé Connect ne répond pas").count() == 1
        check(browser, axe, "unavailable")
        # An RP demanding eidas1: PSC only, says why; the stand-in's login; back at the RP.
        browser.context.clear_cookies()  # a fresh login at the stand-in too
        request = rp.authorization_request(acr_values="eidas1")
        page.goto(request.url)
        assert page.get_by_label("Mot de passe").count() == 0
        assert "Pro Santé Connect" in page.locator("#psc-only-reason").inner_text()
        check(browser, axe, "only")
        page.get_by_role("button", name=PSC_BUTTON).click()
        at_standin(browser, standin, "8" + PSC_USERS["psc-alice"])
        page.wait_for_url(browser.at_rp)
        assert len(browser.arrived) == 1 and "code" in query_of(browser.arrived[0])
        _, claims = rp.finish(request, browser.arrived[0])
        assert claims["acr"] == "eidas1"
    finally:
        rp.close()
