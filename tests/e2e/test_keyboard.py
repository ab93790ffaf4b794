"""A keyboard-only pass of the main flows (issue 10, item 11), in Chromium, French, 1280 px.

Only Tab, Shift+Tab, Enter and Space move and act (text is typed into the focused
field); a page is opened by URL only where a user would come from elsewhere (the
application, the e-mailed reset link). After each error the test asserts where the focus
landed (the first invalid field, or the refusal itself when no field is at fault; never
``<body>``), and that every invalid field says so (``aria-invalid``) and names its
messages (``aria-describedby``, every id present, one of them the error). The counts go
to ``test-artifacts/keyboard-pass.json`` for the closing note of issue 10.
"""

from __future__ import annotations

import json
import re
from collections import Counter

from .browser import SCREENSHOTS
from .edges import code_in
from .server import PASSWORD

NEW = "Amber-Lantern-73-Orchard"
OTHER = "Cobalt-Harbour-19-Meadow"
KEYS = ("Tab", "Shift+Tab", "Enter", "Space")
CHECK = """() => {
  const el = document.activeElement;
  const focus = {tag: el.tagName, id: el.id, name: el.getAttribute('name'),
                 role: el.getAttribute('role'), invalid: el.getAttribute('aria-invalid')};
  const problems = [];
  const invalid = Array.from(document.querySelectorAll('[aria-invalid=true]'));
  for (const field of invalid) {
    const ids = (field.getAttribute('aria-describedby') || '').split(/\\s+/).filter(Boolean);
    const named = ids.map(id => document.getElementById(id));
    if (!ids.length) problems.push(field.name + ': no aria-describedby');
    if (named.some(n => !n)) problems.push(field.name + ': describedby names a missing id');
    if (!named.some(n => n && n.matches('.error, [role=alert]') && n.textContent.trim()))
      problems.push(field.name + ': describedby names no error message');
  }
  for (const list of document.querySelectorAll('ul.error[id]')) {
    if (!invalid.some(f => (f.getAttribute('aria-describedby') || '').split(/\\s+/)
                            .includes(list.id)))
      problems.push(list.id + ': an error tied to no invalid field');
  }
  return {focus, invalid: invalid.map(f => f.name), problems,
          summary: document.querySelectorAll('.error-summary[role=alert]').length};
}"""


class Keyboard:
    """The only keys a keyboard user needs here; counts each press."""

    def __init__(self, page):
        self.page, self.presses = page, Counter()
        self.results: list[dict] = []

    def press(self, key: str) -> None:
        assert key in KEYS, key
        self.page.keyboard.press(key)
        self.presses[key] += 1

    def type(self, text: str) -> None:
        self.page.keyboard.type(text)

    def tab_to(self, selector: str, back: bool = False, limit: int = 25) -> None:
        """Tab (or Shift+Tab) until the focused element matches ``selector``."""
        for _ in range(limit):
            if self.page.evaluate(
                "s => document.activeElement && document.activeElement.matches(s)", selector
            ):
                return
            self.press("Shift+Tab" if back else "Tab")
        raise AssertionError(f"{selector} not reached with the keyboard")

    def submit(self) -> None:
        with self.page.expect_navigation():
            self.press("Enter")

    def after_error(self, flow: str, focus_on: str, summary: bool = True) -> None:
        """The focus is on ``focus_on`` (a selector), never <body>; every invalid field is
        tied to its message; an error summary when fields are at fault."""
        page = self.page
        page.wait_for_function("document.activeElement !== document.body", timeout=3000)
        found = page.evaluate(CHECK)
        on_target = page.evaluate("s => document.activeElement.matches(s)", focus_on)
        self.results.append({"flow": flow, "expected": focus_on, "landed": found["focus"],
                             "invalid_fields": found["invalid"], "problems": found["problems"],
                             "summary": found["summary"], "ok": on_target})  # fmt: skip
        assert found["focus"]["tag"] != "BODY", (flow, found)
        assert on_target, (flow, focus_on, found["focus"])
        assert not found["problems"], (flow, found["problems"])
        if summary:
            assert found["summary"] == 1, (flow, found)


def test_keyboard_only_through_the_main_flows(provider, browser, rp, mailbox):
    page = browser.page
    page.set_viewport_size({"width": 1280, "height": 800})
    username, address = "kb-user", "kb-user@exemple.fr"
    provider.cli(
        "user", "add", username, "--email", address, "--name", "Clavier Seul",
        "--role", "patient_data", "--phone", "+33613000077",
        "--password-stdin", stdin=PASSWORD + "\n",
    )  # fmt: skip
    keys = Keyboard(page)
    request = rp.authorization_request()
    page.goto(request.url)  # from the application
    page.wait_for_url(re.compile(re.escape(provider.url("/login?tx="))))

    # Login: empty, then a wrong password.
    keys.tab_to("input[name=username]")
    keys.submit()
    keys.after_error("login, empty", "input[name=username]")
    keys.type(username)
    keys.tab_to("input[name=password]")
    keys.type("not-the-password")
    keys.submit()
    keys.after_error("login, wrong password", "#login-error[role=alert]", summary=False)

    # Forgot password: empty, then the request.
    keys.tab_to("a[href*='/password/forgot']")
    keys.submit()
    keys.tab_to("input[name=identifier]")
    seen = len(mailbox.to(address))
    keys.submit()
    keys.after_error("forgot, empty", "input[name=identifier]")
    keys.type(username)
    keys.submit()
    assert "Consultez votre messagerie" in page.locator("main").inner_text()

    # Reset (the e-mailed link): too short and mismatched, then a good password.
    text = mailbox.text(mailbox.wait_for(address, seen))
    page.goto(re.search(re.escape(provider.issuer) + r"/password/reset/[\w-]+", text).group(0))
    keys.tab_to("input[name=new_password]")
    keys.type("court")
    keys.tab_to("input[name=confirm_password]")
    keys.type("autre")
    keys.submit()
    keys.after_error("reset, short and mismatched", "input[name=new_password]")
    assert page.evaluate(CHECK)["invalid"] == ["new_password", "confirm_password"]
    keys.type(NEW)
    keys.tab_to("input[name=confirm_password]")
    keys.type(NEW + "x")
    keys.submit()
    keys.after_error("reset, mismatched", "input[name=confirm_password]")
    keys.tab_to("input[name=new_password]", back=True)
    keys.type(NEW)
    keys.tab_to("input[name=confirm_password]")
    keys.type(NEW)
    keys.submit()
    assert "Votre mot de passe a bien été modifié" in page.locator("main").inner_text()

    # "Se connecter": the application's login again; the code, wrong then right.
    keys.tab_to("main a[href*='/authorize']")
    keys.submit()
    page.wait_for_url(re.compile(re.escape(provider.url("/login?tx="))))
    keys.tab_to("input[name=username]")
    keys.type(username)
    keys.tab_to("input[name=password]")
    keys.type(NEW)
    seen = len(mailbox.to(address))
    keys.submit()
    keys.tab_to("input[type=radio]:checked")  # a radio group is one stop: the chosen one
    keys.press("Space")
    keys.tab_to("button[type=submit]")
    keys.submit()
    code = code_in(mailbox.text(mailbox.wait_for(address, seen)))
    keys.tab_to("input[name=code]")
    keys.type(f"{(int(code) + 1) % 10**6:06d}")
    keys.submit()
    keys.after_error("code, wrong", "input[name=code]", summary=False)
    keys.type(code)
    with page.expect_navigation(url=browser.at_rp):
        keys.press("Enter")

    # The console's password change: a wrong current password, then a too-short new one.
    page.goto(provider.url("/account/password"))
    keys.tab_to("input[name=current_password]")
    keys.type("not-the-password")
    keys.tab_to("input[name=new_password]")
    keys.type(OTHER)
    keys.tab_to("input[name=confirm_password]")
    keys.type(OTHER)
    keys.submit()
    keys.after_error("console password, wrong current", "input[name=current_password]")
    keys.type(NEW)
    keys.tab_to("input[name=new_password]")
    keys.type("court")
    keys.tab_to("input[name=confirm_password]")
    keys.type("court")
    keys.submit()
    keys.after_error("console password, too short", "input[name=new_password]")

    # Nothing but the four keys: and each error checked.
    assert set(keys.presses) <= set(KEYS)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS.parent / "keyboard-pass.json").write_text(
        json.dumps({"presses": dict(keys.presses), "errors": keys.results}, indent=1)
    )
    assert len(keys.results) == 8 and all(r["ok"] and not r["problems"] for r in keys.results)
