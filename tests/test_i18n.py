"""Translations: the French catalog is complete, compiled and in step with the code,
and pages follow ``ui_locales`` / ``Accept-Language`` (French by default).

When a test here fails after you added or changed a string, run ``make translations``,
translate the new or fuzzy entries of ``idp/translations/fr/LC_MESSAGES/messages.po``
(formal "vous", wording of the French user guide), then run ``make translations`` again.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from tests.actions import LoginActions
from tests.factories import make_client

ROOT = Path(__file__).resolve().parent.parent
TRANSLATIONS = ROOT / "idp" / "translations"
POT = TRANSLATIONS / "messages.pot"
FR_PO = TRANSLATIONS / "fr" / "LC_MESSAGES" / "messages.po"
FR_MO = FR_PO.with_suffix(".mo")

HOW_TO_FIX = (
    "Run `make translations`, translate every new or fuzzy entry (remove the `#, fuzzy` "
    "line once checked) in idp/translations/fr/LC_MESSAGES/messages.po, then run "
    "`make translations` again to recompile messages.mo."
)
# GSM 03.38 default alphabet and its extension table (SMS texts).
GSM_03_38 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡"
    "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
    "^{}\\[~]|€"
)
PLACEHOLDER = re.compile(r"%\((\w+)\)[-#0 +]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]")


# --------------------------------------------------------------------------- helpers


def _read_po(path: Path) -> Catalog:
    with path.open("rb") as fp:
        return read_po(fp, locale="fr" if path == FR_PO else None)


def _key(message) -> tuple[str | None, str | tuple]:
    msgid = message.id
    return (message.context, tuple(msgid) if isinstance(msgid, list | tuple) else msgid)


def _keys(catalog: Catalog) -> set:
    return {_key(m) for m in catalog if m.id}


def _show(keys) -> str:
    lines = []
    for context, msgid in sorted(keys, key=repr):
        text = msgid if isinstance(msgid, str) else " / ".join(msgid)
        lines.append(f"  - {text!r}" + (f" (context {context!r})" if context else ""))
    return "\n".join(lines)


def _strings(message) -> list[str]:
    return list(message.string) if isinstance(message.string, tuple | list) else [message.string]


def _ids(message) -> list[str]:
    return list(message.id) if isinstance(message.id, tuple | list) else [message.id]


def _makefile_extract_args(output: Path) -> list[str]:
    """The `pybabel extract` arguments of the Makefile's `translations` target."""
    for line in (ROOT / "Makefile").read_text(encoding="utf-8").splitlines():
        if "pybabel extract" not in line:
            continue
        words = shlex.split(line.strip())
        args = words[words.index("extract") :]
        if "-o" not in args:
            pytest.fail("the Makefile's `pybabel extract` line must write its output with -o")
        args[args.index("-o") + 1] = str(output)
        return args
    pytest.fail("no `pybabel extract` command in the Makefile's `translations` target")


@pytest.fixture(scope="module")
def extracted(tmp_path_factory) -> Catalog:
    """The strings marked for translation in idp/ and templates/ right now, extracted
    exactly as `make translations` does (same mapping file and keywords)."""
    output = tmp_path_factory.mktemp("i18n") / "current.pot"
    command = [sys.executable, "-m", "babel.messages.frontend", "-q"]
    command += _makefile_extract_args(output)
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"extraction failed:\n{result.stderr}"
    return _read_po(output)


@pytest.fixture(scope="module")
def french() -> Catalog:
    assert FR_PO.is_file(), f"{FR_PO.relative_to(ROOT)} is missing. {HOW_TO_FIX}"
    return _read_po(FR_PO)


# --------------------------------------------------------------- catalog in step with code


def test_every_marked_string_is_in_the_template(extracted):
    missing = _keys(extracted) - _keys(_read_po(POT))
    assert not missing, (
        f"Strings marked for translation are missing from idp/translations/messages.pot:\n"
        f"{_show(missing)}\n{HOW_TO_FIX}"
    )


def test_every_marked_string_is_in_the_french_catalog(extracted, french):
    missing = _keys(extracted) - _keys(french)
    assert not missing, (
        f"Strings marked for translation have no French entry yet:\n{_show(missing)}\n{HOW_TO_FIX}"
    )


def test_the_french_catalog_has_no_stale_entries(extracted, french):
    stale = _keys(french) - _keys(extracted)
    assert not stale, (
        f"The French catalog still has strings the code no longer uses:\n{_show(stale)}\n"
        "Run `make translations` to drop them."
    )


# ------------------------------------------------------------------ the French catalog


def test_every_french_entry_is_translated_and_checked(french):
    assert not french.fuzzy, f"The French catalog header is marked fuzzy. {HOW_TO_FIX}"
    untranslated = {_key(m) for m in french if m.id and not all(s.strip() for s in _strings(m))}
    fuzzy = {_key(m) for m in french if m.id and m.fuzzy}
    assert not untranslated, f"Untranslated French entries:\n{_show(untranslated)}\n{HOW_TO_FIX}"
    assert not fuzzy, (
        f"Fuzzy French entries (a guess by `pybabel update`; check, fix, then remove the "
        f"`#, fuzzy` line):\n{_show(fuzzy)}\n{HOW_TO_FIX}"
    )


def test_french_translations_keep_their_placeholders(french):
    problems = [
        f"  - {m.id!r}: {'; '.join(map(str, errors))}" for m, errors in french.check() if m.id
    ]
    for message in french:
        if not message.id:
            continue
        expected = {name for text in _ids(message) for name in PLACEHOLDER.findall(text)}
        for text in _strings(message):
            if set(PLACEHOLDER.findall(text)) != expected:
                problems.append(f"  - {message.id!r}: placeholders {sorted(expected)} in {text!r}")
    assert not problems, "French translations with broken placeholders:\n" + "\n".join(problems)


def test_template_translations_are_safe_html(french):
    """Jinja's i18n extension marks template translations as safe (Markup): they are not
    escaped, so a translation must not bring `<`, `>`, `&` or `"` the English text lacks
    (use ’ for apostrophes and « » for quotes)."""
    unsafe = []
    for message in french:
        if not message.id or not any(p.startswith("templates/") for p, _ in message.locations):
            continue
        source = "".join(_ids(message))
        for text in _strings(message):
            if any(c in text and c not in source for c in '<>&"'):
                unsafe.append(f"  - {message.id!r}: {text!r}")
    assert not unsafe, "Template translations with raw HTML characters:\n" + "\n".join(unsafe)


def test_sms_translations_use_the_gsm_alphabet(french):
    """An SMS with one character outside GSM 03.38 (’, no-break space, ê, ç…) is sent as
    UCS-2: 70 characters per part instead of 160."""
    outside = []
    for message in french:
        if any(p.startswith("templates/sms/") for p, _ in message.locations):
            for text in _strings(message):
                if bad := sorted({c for c in text if c not in GSM_03_38}):
                    outside.append(f"  - {message.id!r}: {bad} in {text!r}")
    assert not outside, "SMS translations outside the GSM alphabet:\n" + "\n".join(outside)


def test_the_compiled_catalog_matches_the_po(french):
    assert FR_MO.is_file(), f"{FR_MO.relative_to(ROOT)} is missing. {HOW_TO_FIX}"
    with FR_MO.open("rb") as fp:
        compiled = read_mo(fp)
    in_mo = {_key(m): tuple(_strings(m)) for m in compiled if m.id}
    in_po = {_key(m): tuple(_strings(m)) for m in french if m.id and not m.fuzzy}
    assert in_mo == in_po, (
        "idp/translations/fr/LC_MESSAGES/messages.mo is out of date with messages.po: "
        "run `make translations` (or `.venv/bin/pybabel compile -d idp/translations`)."
    )


def test_guide_wording_is_used(french):
    """The French wording of the portal's user guide, for the strings it names."""
    wording = {
        "Sign in": "Se connecter",
        "Identifier or e-mail address": "Identifiant ou adresse e-mail",
        "Password": "Mot de passe",
        "Incorrect identifier or password.": "Identifiant ou mot de passe incorrect.",
        "My account": "Mon compte",
        "Health portal": "Portail de santé",
        "Sign out": "Se déconnecter",
    }
    for msgid, expected in wording.items():
        message = french.get(msgid)
        assert message is not None and message.string == expected, (msgid, message)


# ----------------------------------------------------------------------- rendered pages


def _login_page(client, **headers):
    response = client.get("/login", headers=headers, follow_redirects=True)
    assert response.status_code == 200, response.text
    assert response.request.args.get("tx"), "GET /login should redirect to /login?tx=…"
    return response.text


def test_login_page_is_french_by_default(client):
    page = _login_page(client)
    assert 'lang="fr"' in page
    assert "Se connecter" in page
    assert "Identifiant ou adresse e-mail" in page
    assert "Mot de passe" in page
    assert "Portail de santé" in page
    assert "Sign in" not in page


@pytest.mark.parametrize("accept", ["en", "en-US", "en-GB,en;q=0.9,fr;q=0.5"])
def test_login_page_follows_an_english_browser(client, accept):
    page = _login_page(client, **{"Accept-Language": accept})
    assert 'lang="en"' in page
    assert "Sign in" in page
    assert "Identifier or e-mail address" in page
    assert "Se connecter" not in page


def test_unsupported_browser_language_falls_back_to_french(client):
    page = _login_page(client, **{"Accept-Language": "de-DE,de;q=0.9"})
    assert 'lang="fr"' in page
    assert "Se connecter" in page


def test_login_error_is_translated(client):
    login_url = client.get("/login").location
    response = LoginActions(client).submit_password(login_url, "nobody", "wrong-Password-1")
    assert "Identifiant ou mot de passe incorrect." in response.text


@pytest.fixture
def rp(app):
    with app.app_context():
        return make_client()


@pytest.mark.parametrize(
    ("ui_locales", "browser", "lang", "title", "error"),
    [
        ("en", None, "en", "Sign in", "Incorrect identifier or password."),
        ("en-GB fr", "fr", "en", "Sign in", "Incorrect identifier or password."),
        ("fr", "en", "fr", "Se connecter", "Identifiant ou mot de passe incorrect."),
        ("de en", "fr", "en", "Sign in", "Incorrect identifier or password."),
    ],
)
def test_ui_locales_of_the_authorization_request_wins(
    client, rp, ui_locales, browser, lang, title, error
):
    if browser:
        client.environ_base["HTTP_ACCEPT_LANGUAGE"] = browser
    login = LoginActions(client)
    response = login.authorize(ui_locales=ui_locales)
    assert response.status_code == 302, response.text
    assert "/login?tx=" in response.location
    page = client.get(response.location)
    assert page.status_code == 200
    assert f'lang="{lang}"' in page.text
    assert f"<h1>{title}</h1>" in page.text
    # The choice holds for the whole login, not only the first page.
    failed = login.submit_password(response.location, "nobody", "wrong-Password-1")
    assert error in failed.text
    assert f'lang="{lang}"' in failed.text
