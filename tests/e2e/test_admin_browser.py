"""The operator console in Debian's Chromium, in French: every page checked with axe-core
(0 violations of WCAG 2.0–2.2 A/AA), focus rings, reflow at 320 px and target sizes (the
checks of ``test_accessibility.Audit``), a screenshot of each under
``test-artifacts/screenshots/admin-*.png`` (docs/OPERATING.md shows them), and one action
done with the keyboard only."""

from __future__ import annotations

import pytest

from .browser import BrowserSession
from .server import PASSWORD
from .test_accessibility import AXE, Audit


@pytest.fixture(scope="module")
def console(provider):
    if not AXE.exists():
        pytest.skip(f"{AXE} not installed (`npm ci` installs it)")
    for username, options in {
        "root.browser": ["--role", "admin", "--name", "Régine Admin"],
        "dr.helpdesk": ["--role", "patient_data", "--name", "Hélène Dupont",
                        "--profession", "Médecin", "--phone", "+33612340000"],
    }.items():  # fmt: skip
        provider.cli(
            "user", "add", username, "--email", f"{username}@exemple.fr", *options,
            "--password-stdin", stdin=PASSWORD + "\n",
        )  # fmt: skip
    return provider


def _sign_in(session: BrowserSession, provider, mailbox, audit: Audit) -> None:
    page = session.page
    page.goto(provider.url("/admin/users"))  # 403: the console is remembered for afterwards
    assert "Accès refusé" in page.content()
    audit.check("admin-forbidden")
    page.goto(provider.url("/login"))
    page.locator("input[name=username]").fill("root.browser")
    page.locator("input[name=password]").fill(PASSWORD)
    seen = len(mailbox.to("root.browser@exemple.fr"))
    with page.expect_navigation():
        page.locator("input[name=password]").press("Enter")
    code = mailbox.text(mailbox.wait_for("root.browser@exemple.fr", seen))
    page.locator("input[name=code]").fill(__import__("re").search(r"\b\d{6}\b", code).group(0))
    with page.expect_navigation():
        page.locator("input[name=code]").press("Enter")
    page.wait_for_url("**/admin/users")


def test_the_console_in_french_with_axe_and_the_keyboard(
    console, chromium, rp_pages, mailbox, request
):
    session = BrowserSession(chromium, rp_pages, locale="fr-FR")
    failed = True
    try:
        _walk(session, console, mailbox, AXE.read_text())
        failed = False
    finally:
        session.close(failed_as=request.node.name if failed else None)


def _walk(session, provider, mailbox, axe):
    page = session.page
    audit = Audit(session, axe, "fr", "desktop")
    _sign_in(session, provider, mailbox, audit)
    pages = {
        "users": "/admin/users?q=dr.",
        "user": "/admin/users/dr.helpdesk",
        "clients": "/admin/clients",
        "client": "/admin/clients/e2e-confidential",
        "audit": "/admin/audit?user=dr.helpdesk",
    }
    for name, path in pages.items():
        page.goto(provider.url(path))
        audit.check(f"admin-{name}")
    page.goto(provider.url(pages["client"]))
    with page.expect_navigation():
        page.get_by_role("button", name="Renouveler le secret").click()
    audit.check("admin-client-confirm")  # not confirmed: the e2e RP keeps its secret
    page.goto(provider.url("/admin/users"))
    with page.expect_navigation():
        page.get_by_role("button", name="Créer et envoyer l’invitation").click()
    audit.check("admin-users-errors")
    # Keyboard only: Tab to "Débloquer", Enter; on the confirmation, Tab to "Valider", Enter.
    page.goto(provider.url("/admin/users/dr.helpdesk"))
    _tab_to(page, "Débloquer")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "Débloquer le compte de dr.helpdesk" in page.content()
    audit.check("admin-confirm")
    _tab_to(page, "Valider")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "débloqué" in page.locator("[role=status]").inner_text()
    session.screenshot("admin-user-done.png")
    assert not audit.problems, "\n".join(audit.problems)


def _tab_to(page, label: str, limit: int = 80) -> None:
    page.locator("body").focus()
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.innerText || ''").strip() == label:
            return
    raise AssertionError(f"{label!r} is not reachable with Tab")
