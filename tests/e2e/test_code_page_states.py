"""The code page in each of its states, in Chromium, in French, at 1280 and 390 px wide
(issue 10, items 1–5 and 11; README, "The second factor").

sent, wrong, superseded, expired, the login's limit and the account's limit: each test
asserts the visible message, the live region that announces it (``role=status`` for
news, ``role=alert`` for a refusal), that nothing which cannot work is offered, and where
the focus is after each error (the code field, tied to its message, or the message
itself when there is nothing left to type; never ``<body>``). Each state leaves
``test-artifacts/screenshots/code-<state>-fr-<width>.png``.
"""

from __future__ import annotations

import re
import time

import pytest

from .browser import BrowserSession
from .edges import code_in
from .server import PASSWORD
from .test_accessibility import AXE, AXE_TAGS

WIDTHS = {"1280": (1280, 800), "390": (390, 844)}
PHONES = {  # (kind, width): backup phone
    ("cp", "1280"): "+33613000012",
    ("cp", "390"): "+33613000039",
    ("cap", "1280"): "+33613000112",
    ("cap", "390"): "+33613000139",
}
FOCUSED = """() => { const el = document.activeElement;
  return {tag: el.tagName, id: el.id, name: el.getAttribute('name'),
          role: el.getAttribute('role'), invalid: el.getAttribute('aria-invalid'),
          describedby: el.getAttribute('aria-describedby') || ''}; }"""


@pytest.fixture(scope="module")
def code_users(provider) -> dict[tuple[str, str], str]:
    """Per width: ``cp`` (a backup phone), ``exp`` (e-mail only), ``cap`` (a backup phone,
    whose hourly budget of codes the test spends)."""
    made = {}
    for width in WIDTHS:
        for kind in ("cp", "exp", "cap"):
            username = f"{kind}-{width}"
            phone = ["--phone", PHONES[kind, width]] if (kind, width) in PHONES else []
            provider.cli(
                "user", "add", username, "--email", f"{username}@exemple.fr",
                "--name", "Chloé Essai", "--role", "patient_data", *phone,
                "--password-stdin", stdin=PASSWORD + "\n",
            )  # fmt: skip
            made[(kind, width)] = username
    return made


@pytest.fixture(params=list(WIDTHS))
def width(request, browser) -> str:
    w, h = WIDTHS[request.param]
    browser.page.set_viewport_size({"width": w, "height": h})
    return request.param


def _shot(browser: BrowserSession, state: str, width: str) -> None:
    """axe-core (when ``npm ci`` installed it; test_accessibility.py makes CI require it)
    finds nothing on the state, then its screenshot."""
    if AXE.exists():
        browser.page.evaluate(AXE.read_text())
        violations = browser.page.evaluate(
            "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})"
            ".then(r => r.violations.map(v => v.id))",
            AXE_TAGS,
        )
        assert violations == [], (state, violations)
    browser.screenshot(f"code-{state}-fr-{width}.png")


def _text(locator) -> str:
    return " ".join(locator.inner_text().replace("\u00a0", " ").split())


def _focused(page) -> dict:
    """The focused element once ``autofocus`` has been applied (after the first rendering)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function("document.activeElement !== document.body", timeout=3000)
    except PlaywrightTimeout:
        pass
    return page.evaluate(FOCUSED)


def _buttons(page) -> list[str]:
    return [_text(b) for b in page.locator("main button, main a.button").all()]


def _links(page) -> list[str]:
    return [_text(a) for a in page.locator("main a:not(.button)").all()]


def _at(page, provider_or_node, path: str) -> None:
    page.wait_for_url(re.compile(re.escape(provider_or_node.url(path))))


def _sign_in(page, node, username: str) -> None:
    _at(page, node, "/login?tx=")
    page.locator("input[name=username]").fill(username)
    page.locator("input[name=password]").fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Se connecter", exact=True).click()


def _choose(page, node, channel: str) -> None:
    """On the channel page: tick ``Par SMS`` / ``Par e-mail`` and confirm."""
    _at(page, node, "/login/channel?tx=")
    page.get_by_label(channel).check()
    with page.expect_navigation():
        page.get_by_role("button", name="Valider", exact=True).click()
    _at(page, node, "/login/otp?tx=")


def _switch(page, node, channel: str) -> None:
    with page.expect_navigation():
        page.get_by_role("link", name="Recevoir le code par un autre moyen").click()
    _choose(page, node, channel)


def _type(page, code: str) -> None:
    page.locator("input[name=code]").fill(code)
    with page.expect_navigation():
        page.get_by_role("button", name="Valider", exact=True).click()


def _other(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def _assert_field_focused_and_tied(page, message: str) -> None:
    """After a refused code: the focus on the code field, which says it is invalid and
    names the announced message (role=alert)."""
    error = page.locator("#code-error")
    assert error.get_attribute("role") == "alert" and _text(error) == message
    focus = _focused(page)
    assert focus["name"] == "code" and focus["invalid"] == "true", focus
    assert "code-error" in focus["describedby"].split(), focus


def _assert_message_focused(page, ident: str) -> None:
    focus = _focused(page)
    assert focus["id"] == ident and focus["role"] == "alert", focus


def test_sent_wrong_and_superseded(provider, browser, rp, sms_gateway, mailbox, code_users, width):
    """SMS code sent → a wrong code → "another way" (e-mail, within the SMS's 30 s: sent
    at once, the page names the e-mail) → the late SMS code is "replaced", costs no
    attempt → the e-mailed code signs in."""
    page, username, phone = browser.page, code_users[("cp", width)], PHONES["cp", width]
    address = f"{username}@exemple.fr"
    page.goto(rp.authorization_request().url)
    _sign_in(page, provider, username)
    _at(page, provider, "/login/channel?tx=")
    masked = f"+33 6 ** ** ** {phone[-2:]}"
    assert page.get_by_role("radio", name=re.compile(re.escape(masked))).count() == 1  # item 5
    _choose(page, provider, "Par SMS")

    # sent: the news in a status region; the code field has the focus; no alert.
    status = page.locator("#code-status")
    assert status.get_attribute("role") == "status"
    assert f"Un code a été envoyé par SMS au {masked}." in _text(status)
    assert re.search(r"valable jusqu.à \d\d:\d\d\.", _text(status)), _text(status)
    assert page.locator("[role=alert]").count() == 0
    assert _focused(page)["name"] == "code"
    wait = page.locator("#resend-wait")
    assert wait.get_attribute("role") == "status"
    assert re.fullmatch(r"Vous pourrez demander un nouveau code dans \d+ secondes?\.", _text(wait))
    assert _buttons(page) == ["Valider", "Renvoyer le code"]
    assert "Recevoir le code par un autre moyen" in _links(page)
    _shot(browser, "sent", width)

    # wrong: said, announced, the field focused and tied to the message.
    sms_code = sms_gateway.code_for(phone)
    _type(page, _other(sms_code))
    _assert_field_focused_and_tied(page, "Code incorrect. Tentatives restantes : 4.")
    assert page.locator("#code-status").count() == 1  # the code is still valid: so it says
    _shot(browser, "wrong", width)

    # another way, within the SMS's cooldown: the e-mail leaves at once, and is named.
    seen = len(mailbox.to(address))
    _switch(page, provider, "Par e-mail")
    email_code = code_in(mailbox.text(mailbox.wait_for(address, seen)))
    status = _text(page.locator("#code-status"))
    assert "Un nouveau code a été envoyé par e-mail à c***@exemple.fr." in status
    assert "2 codes ont été envoyés pour cette connexion : seul le dernier est valable." in status
    assert "SMS" not in status

    # superseded: the late SMS code is said to be replaced, and costs no attempt.
    _type(page, sms_code)
    _assert_field_focused_and_tied(
        page, "Ce code a été remplacé par un code plus récent. Saisissez le dernier code reçu."
    )
    _shot(browser, "superseded", width)
    _type(page, _other(email_code))
    _assert_field_focused_and_tied(page, "Code incorrect. Tentatives restantes : 4.")
    _type(page, email_code)
    page.wait_for_url(browser.at_rp)


def test_expired(short_otp_node, browser, rp, mailbox, code_users, width):
    """A node whose codes live 2 s: the code typed too late is refused; the page says only
    that (no "valid until" notice), offers no field, focuses the message, and its "Envoyer
    un nouveau code" works at once."""
    page, username = browser.page, code_users[("exp", width)]
    address = f"{username}@exemple.fr"
    seen = len(mailbox.to(address))
    page.goto(rp.authorization_request().url.replace(rp.provider.issuer, short_otp_node.base_url))
    _sign_in(page, short_otp_node, username)
    _at(page, short_otp_node, "/login/otp?tx=")
    code = code_in(mailbox.text(mailbox.wait_for(address, seen)))
    time.sleep(short_otp_node.settings["mfa"]["otp_ttl_seconds"] + 1.1)  # whole seconds
    _type(page, code)

    state = page.locator("#code-state")
    assert state.get_attribute("role") == "alert"
    assert _text(state) == "Ce code a expiré. Demandez un nouveau code."
    assert page.locator(".notice, [role=status]").count() == 0  # no "valable jusqu'à"
    assert page.locator("input[name=code]").count() == 0
    assert _buttons(page) == ["Envoyer un nouveau code"]
    _assert_message_focused(page, "code-state")
    _shot(browser, "expired", width)

    with page.expect_navigation():
        page.get_by_role("button", name="Envoyer un nouveau code").click()
    assert "Un nouveau code a été envoyé par e-mail" in _text(page.locator("#code-status"))
    assert page.locator("[role=alert]").count() == 0


def test_login_limit_then_account_limit(
    provider, browser, new_agent, rp, mailbox, sms_gateway, code_users, width
):
    """Five codes in one login (four switches), all five tries wrong: the page says no
    more codes can go for this sign-in and offers "Recommencer la connexion" (a link
    styled as a button). Five more codes on another device spend the account's hour;
    the restarted sign-in's first code then says the account's limit and when, with no
    button at all."""
    page, username = browser.page, code_users[("cap", width)]
    request = rp.authorization_request()
    page.goto(request.url)
    _sign_in(page, provider, username)
    _choose(page, provider, "Par e-mail")
    for channel in ("Par SMS", "Par e-mail", "Par SMS"):
        _switch(page, provider, channel)
    seen = len(mailbox.to(f"{username}@exemple.fr"))
    _switch(page, provider, "Par e-mail")
    wrong = _other(code_in(mailbox.text(mailbox.wait_for(f"{username}@exemple.fr", seen))))
    assert "5 codes ont été envoyés" in _text(page.locator("#code-status"))
    for _ in range(5):
        _type(page, wrong)

    state, limit = page.locator("#code-state"), page.locator("#code-limit")
    assert _text(state).startswith("Trop de codes incorrects : ce code ne fonctionne plus.")
    assert _text(limit) == "Plus aucun code ne peut être envoyé pour cette connexion."
    assert limit.get_attribute("role") == "alert"
    assert page.locator("input[name=code]").count() == 0
    assert _buttons(page) == ["Recommencer la connexion"]  # no resend, no switch
    assert _links(page) == []
    _assert_message_focused(page, "code-state")
    restart = page.locator("main a.button")
    box = restart.bounding_box()
    assert box["height"] >= 24 and box["width"] >= 24
    looks = restart.evaluate(
        "el => { const s = getComputedStyle(el); return [s.backgroundColor, s.color]; }"
    )
    assert looks == ["rgb(0, 58, 112)", "rgb(255, 255, 255)"]  # as the buttons
    for _ in range(10):  # to the link with the keyboard: its focus ring
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('button')"):
            break
    ring = restart.evaluate(
        "el => { const s = getComputedStyle(el); return [s.outlineStyle, s.outlineWidth,"
        " s.outlineColor]; }"
    )
    assert ring == ["solid", "3px", "rgb(27, 27, 27)"]  # 17:1 on the white card
    _shot(browser, "limit", width)

    # Another device spends the rest of the account's hour: five more codes.
    other = new_agent()
    channel_url = other.authorize_and_sign_in(rp.authorization_request().url, username)
    for channel in ("email", "sms", "email", "sms", "email"):
        other.choose_channel(channel_url, channel)
    sent = len(sms_gateway.requests)

    with page.expect_navigation():
        restart.click()
    assert _text(page.locator("#login-application")) == "Connexion à Dossier"
    _sign_in(page, provider, username)
    _choose(page, provider, "Par SMS")
    state = page.locator("#code-state")
    assert state.get_attribute("role") == "alert"
    assert re.fullmatch(
        r"Votre compte a atteint sa limite de 10 codes par heure\. Vous pourrez demander un "
        r"nouveau code dans \d+ minutes?\. Si vous ne pouvez pas attendre, contactez votre "
        r"administrateur\.",
        _text(state),
    ), _text(state)
    assert "pour cette connexion" not in _text(page.locator("main"))
    assert _buttons(page) == [] and _links(page) == []  # nothing that cannot work
    assert page.locator("input[name=code], .notice").count() == 0
    _assert_message_focused(page, "code-state")
    assert len(sms_gateway.requests) == sent  # nothing was sent
    _shot(browser, "capped", width)
