"""Accessible beyond axe (issue 10, items 11–16), in Debian's Chromium.

Every hosted page is visited in French and English, at desktop (1280×800) and mobile
(390×844) widths; on each one:

- axe-core (``node_modules/axe-core``, installed by ``npm ci`` from ``package.json``) is
  injected and any violation of WCAG 2.0–2.2 A/AA fails the test;
- every focusable element is focused and its focus ring must be visible with a contrast of
  at least 3:1 against the background it is drawn on (WCAG 1.4.11, 2.4.7);
- at 320 CSS px, the page does not scroll sideways (WCAG 1.4.10) and every radio,
  checkbox, button and standalone link is at least 24×24 CSS px (WCAG 2.2 2.5.8);
- a screenshot goes to ``test-artifacts/screenshots/a11y-<page>-<lang>-<width>.png``.

After each failed submit the test asserts where the focus is (never ``<body>``).
"""

from __future__ import annotations

import contextlib
import os
import re
from urllib.parse import urlencode

import pytest

from .browser import SCREENSHOTS, BrowserSession
from .server import PASSWORD, REPO_DIR

AXE = REPO_DIR / "node_modules" / "axe-core" / "axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
VIEWPORTS = {"desktop": (1280, 800), "mobile": (390, 844)}
LOCALES = {"fr": "fr-FR", "en": "en-GB"}
NARROW = 320
TARGETS = (
    "input[type=radio], input[type=checkbox], button, a.button, .lang a, a.icon, .bar a,"
    " .error-summary a"
)
FOCUS_PROBE = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const style = getComputedStyle(el);
  // The ring is drawn outside the element (outline-offset): against its surroundings,
  // the dark bar for what sits on it (its links, the skip link drawn over it).
  const bar = document.querySelector('.bar');
  let node = el.closest('.bar') || (el.classList.contains('skip') ? bar : el.parentElement);
  let background = null;
  for (; node; node = node.parentElement) {
    const colour = getComputedStyle(node).backgroundColor;
    if (colour !== 'rgba(0, 0, 0, 0)' && colour !== 'transparent') { background = colour; break; }
  }
  return {what: el.outerHTML.slice(0, 90), style: style.outlineStyle,
          width: parseFloat(style.outlineWidth), colour: style.outlineColor, background};
}"""
FOCUSABLES = """() => Array.from(document.querySelectorAll(
  'a[href], button, input:not([type=hidden]), select, textarea, [tabindex]'
)).filter(el => !el.hidden && el.getClientRects().length).length"""


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE.exists():
        if os.environ.get("IDP_REQUIRE_BROWSER") == "1":
            pytest.fail(f"IDP_REQUIRE_BROWSER=1 but {AXE} is missing: run `npm ci`")
        pytest.skip(f"{AXE} not installed (`npm ci` installs it)")
    return AXE.read_text()


@pytest.fixture(scope="module")
def people(provider) -> dict[str, tuple[str, str]]:
    """One account per (language, width): the code budget and password of each stay its own."""
    made = {}
    for index, key in enumerate(f"{lang}-{width}" for lang in LOCALES for width in VIEWPORTS):
        username, phone = f"a11y-{key}", f"+3361100000{index}"
        provider.cli(
            "user", "add", username, "--email", f"{username}@exemple.fr", "--name", "Ada Lovelace",
            "--role", "patient_data", "--phone", phone, "--password-stdin",
            stdin=PASSWORD + "\n",
        )  # fmt: skip
        made[key] = (username, phone)
    return made


def _luminance(colour: str) -> float:
    red, green, blue = (int(v) / 255 for v in re.findall(r"\d+(?:\.\d+)?", colour)[:3])

    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * linear(red) + 0.7152 * linear(green) + 0.0722 * linear(blue)


def contrast(one: str, two: str) -> float:
    light, dark = sorted((_luminance(one), _luminance(two)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_contrast_formula():
    assert round(contrast("rgb(255, 191, 71)", "rgb(255, 255, 255)"), 2) == 1.64  # the old ring
    assert contrast("rgb(0, 0, 0)", "rgb(255, 255, 255)") == 21


class Audit:
    """Checks one page in one language and width; ``problems`` gathers what failed."""

    def __init__(self, session: BrowserSession, axe: str, lang: str, width: str):
        self.session, self.page, self.axe = session, session.page, axe
        self.lang, self.width = lang, width
        self.problems: list[str] = []
        self.page.set_viewport_size(dict(zip(("width", "height"), VIEWPORTS[width], strict=True)))

    def check(self, name: str) -> None:
        page = self.page
        page.wait_for_load_state("load")
        assert page.locator("html").get_attribute("lang") == self.lang, (name, page.url)
        self._switch(name)
        self._axe(name)
        self.session.screenshot(f"a11y-{name}-{self.lang}-{self.width}.png")
        self._focus_rings(name)
        self._reflow_and_targets(name)

    def _switch(self, name: str) -> None:
        links = self.page.locator("nav.lang a")
        hrefs = [link.get_attribute("href") for link in links.all()]
        assert [h.rsplit("lang=", 1)[-1] for h in hrefs] == ["fr", "en"], (name, hrefs)
        assert [link.inner_text() for link in links.all()] == ["Français", "English"]

    def _axe(self, name: str) -> None:
        self.page.evaluate(self.axe)  # through the DevTools protocol: the CSP does not apply
        violations = self.page.evaluate(
            "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})"
            ".then(r => r.violations.map(v => v.id + ': ' + v.nodes.map(n => n.target).join(' ')))",
            AXE_TAGS,
        )
        self.problems += [f"{name}: axe {v}" for v in violations]

    def _focus_rings(self, name: str) -> None:
        page = self.page
        page.keyboard.press("Tab")  # keyboard modality: programmatic focus shows the ring too
        count = page.evaluate(FOCUSABLES)
        for index in range(count):
            page.evaluate(
                """i => Array.from(document.querySelectorAll(
                  'a[href], button, input:not([type=hidden]), select, textarea, [tabindex]'
                )).filter(el => !el.hidden && el.getClientRects().length)[i].focus()""",
                index,
            )
            ring = page.evaluate(FOCUS_PROBE)
            if ring is None:
                continue
            if ring["style"] == "none" or ring["width"] < 2:
                self.problems.append(f"{name}: no focus ring on {ring['what']}")
            elif (ratio := contrast(ring["colour"], ring["background"])) < 3:
                self.problems.append(
                    f"{name}: focus ring {ring['colour']} on {ring['background']} is "
                    f"{ratio:.2f}:1 on {ring['what']}"
                )

    def _reflow_and_targets(self, name: str) -> None:
        page = self.page
        page.set_viewport_size({"width": NARROW, "height": 640})
        try:
            scroll = page.evaluate("document.documentElement.scrollWidth")
            if scroll > NARROW:
                self.problems.append(f"{name}: {scroll} px wide at {NARROW} px")
            small = page.evaluate(
                """selector => Array.from(document.querySelectorAll(selector))
                  .filter(el => el.getClientRects().length)
                  .map(el => [el.outerHTML.slice(0, 80), el.getBoundingClientRect()])
                  .filter(([, r]) => r.width < 24 || r.height < 24)
                  .map(([what, r]) => `${what} ${r.width}x${r.height}`)""",
                TARGETS,
            )
            self.problems += [f"{name}: target smaller than 24×24: {s}" for s in small]
        finally:
            self.page.set_viewport_size(
                dict(zip(("width", "height"), VIEWPORTS[self.width], strict=True))
            )

    def focused(self) -> dict:
        """The focused element's tag, id, name and ARIA state (``<body>``: tag BODY).
        ``autofocus`` is applied at the first rendering after the parse: wait for it."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        with contextlib.suppress(PlaywrightTimeout):
            self.page.wait_for_function("document.activeElement !== document.body", timeout=3000)
        return self.page.evaluate(
            """() => { const el = document.activeElement;
              return {tag: el.tagName, id: el.id, name: el.getAttribute('name'),
                      invalid: el.getAttribute('aria-invalid'),
                      describedby: el.getAttribute('aria-describedby') || '',
                      role: el.getAttribute('role')}; }"""
        )

    def assert_focus_on_invalid(self, name: str, field: str) -> None:
        """Focus on the first invalid field, its messages tied to it; an error summary
        announces them (role=alert)."""
        focus = self.focused()
        assert focus["tag"] != "BODY", f"{name}: the focus fell to <body>"
        assert focus["name"] == field and focus["invalid"] == "true", (name, focus)
        for ident in focus["describedby"].split():
            assert self.page.locator(f"#{ident}").count() == 1, (name, ident)
        assert f"{field}-errors" in focus["describedby"], (name, focus)
        assert self.page.locator(".error-summary[role=alert]").count() == 1, name


TEXT = {
    "fr": {
        "sign_in": "Se connecter",
        "forgot": "Réinitialiser le mot de passe",
        "confirm": "Valider",
        "by_sms": "Par SMS",
        "remember": "Ne plus me demander de code sur ce navigateur pendant 24\u00a0h",
        "update": "Mettre à jour",
        "change": "Modifier le mot de passe",
        "sign_out": "Se déconnecter",
        "signed_out": "Vous êtes déconnecté",
        "not_found": "Cette adresse ne mène à aucune page du portail.",
        "unknown_client": "L’application qui vous a envoyé ici n’est pas connue de ce portail.",
        "role": "Accès aux données de santé des patients",
        "ip": "Adresse IP",
        "changed": "Dernier changement du mot de passe",
    },
    "en": {
        "sign_in": "Sign in",
        "forgot": "Reset the password",
        "confirm": "Confirm",
        "by_sms": "By SMS",
        "remember": "Remember this browser for 24 hours",
        "update": "Update",
        "change": "Change the password",
        "sign_out": "Sign out",
        "signed_out": "Signed out",
        "not_found": "This address does not lead to any page of the portal.",
        "unknown_client": "The application that sent you here is not known to this portal.",
        "role": "Access to patients' health data",
        "ip": "IP address",
        "changed": "Last password change",
    },
}


def _click(page, name: str) -> None:
    with page.expect_navigation():
        page.get_by_role("button", name=name, exact=True).click()


@pytest.mark.parametrize("width", list(VIEWPORTS))
@pytest.mark.parametrize("lang", list(LOCALES))
def test_every_hosted_page_in_both_languages_and_widths(
    provider, chromium, rp_pages, rp, sms_gateway, axe_source, people, lang, width, request
):
    session = BrowserSession(chromium, rp_pages, locale=LOCALES[lang])
    failed = True
    try:
        _walk(provider, session, rp, sms_gateway, axe_source, people, lang, width)
        failed = False
    finally:
        session.close(failed_as=request.node.name if failed else None)


def _walk(provider, session, rp, sms_gateway, axe, people, lang, width):
    page, text = session.page, TEXT[lang]
    username, phone = people[f"{lang}-{width}"]
    audit = Audit(session, axe, lang, width)

    # The login page an application opened; an empty submit, a wrong password.
    page.goto(rp.authorization_request().url)
    page.wait_for_url(re.compile(re.escape(provider.url("/login?tx="))))
    login_url = page.url
    audit.check("login")
    _click(page, text["sign_in"])
    audit.assert_focus_on_invalid("login-empty", "username")
    audit.check("login-empty")
    page.locator("input[name=username]").fill(username)
    page.locator("input[name=password]").fill("not-the-password")
    _click(page, text["sign_in"])
    focus = audit.focused()
    assert focus["id"] == "login-error" and focus["role"] == "alert", focus
    audit.check("login-refused")

    # The lost-password form, empty.
    page.goto(provider.url("/password/forgot"))
    audit.check("forgot")
    _click(page, text["forgot"])
    audit.assert_focus_on_invalid("forgot-empty", "identifier")
    audit.check("forgot-empty")

    # Back to the login in progress: password, channel, code (remember ticked).
    page.goto(login_url)
    page.locator("input[name=username]").fill(username)
    page.locator("input[name=password]").fill(PASSWORD)
    _click(page, text["sign_in"])
    page.wait_for_url(re.compile(re.escape(provider.url("/login/channel?tx="))))
    audit.check("channel")
    page.get_by_label(text["by_sms"]).check()
    _click(page, text["confirm"])
    page.wait_for_url(re.compile(re.escape(provider.url("/login/otp?tx="))))
    audit.check("otp")
    page.locator("input[name=code]").fill(sms_gateway.code_for(phone))
    page.get_by_label(text["remember"]).check()
    page.get_by_role("button", name=text["confirm"], exact=True).click()
    page.wait_for_url(session.at_rp)

    # The console: record (role names, wording), devices, profile, password.
    page.goto(provider.url("/account/"))
    audit.check("account")
    record = page.locator("dl.record").inner_text()
    assert text["role"] in record and "patient_data" not in record
    assert text["changed"] in record
    assert text["ip"] in page.locator("table.devices thead").inner_text()
    page.goto(provider.url("/account/profile"))
    audit.check("profile")
    page.locator("input[name=backup_phone]").fill("12345")
    _click(page, text["update"])
    audit.assert_focus_on_invalid("profile-invalid", "backup_phone")
    audit.check("profile-invalid")
    page.goto(provider.url("/account/password"))
    audit.check("password")
    page.locator("input[name=current_password]").fill("not-the-password")
    _click(page, text["change"])
    audit.assert_focus_on_invalid("password-invalid", "current_password")
    audit.check("password-invalid")

    # Error pages, in the page's language only.
    page.goto(provider.url("/nowhere"))
    assert text["not_found"] in page.locator("main").inner_text()
    assert "requested URL" not in page.content()
    audit.check("not-found")
    query = urlencode(
        {"client_id": "nobody", "response_type": "code", "scope": "openid",
         "redirect_uri": "https://rp.example/callback"}
    )  # fmt: skip
    page.goto(provider.url(f"/authorize?{query}"))
    shown = page.locator("main").inner_text()
    assert text["unknown_client"] in shown and "does not exist" not in shown
    assert page.locator("p.detail code").inner_text() == "invalid_client"
    audit.check("oidc-error")
    page.goto(provider.url("/login?tx=gone"))
    audit.check("expired")
    page.goto(provider.url("/password/reset/not-a-token"))
    audit.check("reset-invalid")
    page.goto(provider.url("/logout"))
    audit.check("logout-confirm")

    # Signing out from the console says so.
    page.goto(provider.url("/account/"))
    _click(page, text["sign_out"])
    assert page.locator("h1").inner_text() == text["signed_out"]
    audit.check("signed-out")

    assert not audit.problems, "\n".join(audit.problems)
    assert list(SCREENSHOTS.glob(f"a11y-*-{lang}-{width}.png"))


def test_language_switch_is_kept_through_the_login_and_ui_locales_wins(
    provider, browser, rp, sms_gateway, people
):
    """A French browser switches to English on the login page: the channel and code pages
    stay in English. A later login whose RP asks ``ui_locales=en`` is in English although
    the user chose French before it; the user's switch during that login is kept."""
    page = browser.page
    username, phone = people["fr-mobile"]
    page.goto(rp.authorization_request().url)
    page.wait_for_url(re.compile(re.escape(provider.url("/login?tx="))))
    assert page.locator("h1").inner_text() == "Se connecter"
    with page.expect_navigation():
        page.get_by_role("link", name="English").click()
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("nav.lang a[aria-current]").inner_text() == "English"
    page.locator("input[name=username]").fill(username)
    page.locator("input[name=password]").fill(PASSWORD)
    _click(page, "Sign in")
    page.wait_for_url(re.compile(re.escape(provider.url("/login/channel?tx="))))
    assert page.locator("html").get_attribute("lang") == "en"
    page.get_by_label("By SMS").check()
    _click(page, "Confirm")
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("h1").inner_text() == "Enter your code"

    # The user goes back to French on another page; then an RP asks for English.
    page.goto(provider.url("/password/forgot?lang=fr"))
    assert page.locator("html").get_attribute("lang") == "fr"
    page.goto(rp.authorization_request(ui_locales="en", prompt="login").url)
    page.wait_for_url(re.compile(re.escape(provider.url("/login?tx="))))
    assert page.locator("html").get_attribute("lang") == "en"  # the RP's ui_locales wins
    with page.expect_navigation():
        page.get_by_role("link", name="Français").click()
    assert page.locator("h1").inner_text() == "Se connecter"
    page.locator("input[name=username]").fill(username)
    page.locator("input[name=password]").fill("not-the-password")
    _click(page, "Se connecter")
    assert page.locator("html").get_attribute("lang") == "fr"  # kept for this login
    browser.screenshot("a11y-language-switch.png")
