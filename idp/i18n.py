"""Locale choice: French first, English when the user, ``ui_locales`` or the browser asks.

Order (docs/ARCHITECTURE.md, "Languages"): the language switch just clicked
(``?lang=``), then the choice made with it during this very login, then the RP's
``ui_locales`` for the login it started, then the switch's remembered choice, then
``Accept-Language``, then French.
"""

from __future__ import annotations

from urllib.parse import urlencode

from flask import g, has_request_context, request, session

SUPPORTED = ("fr", "en")
NAMES = {"fr": "Français", "en": "English"}
CHOICE = "lang"  # Flask session key: {"lang": "en", "tx": "<login id>" or None}


def pick(ui_locales: str | None) -> str | None:
    """First supported tag in an OIDC ``ui_locales`` list (``en-GB fr`` → ``en``)."""
    for tag in (ui_locales or "").split():
        base = tag.split("-")[0].lower()
        if base in SUPPORTED:
            return base
    return None


def select_locale() -> str:
    if not has_request_context():
        return "fr"
    if clicked := _clicked():
        return clicked
    stored = _stored()
    if stored and stored.get("tx") and stored["tx"] == request.args.get("tx"):
        return stored["lang"]  # switched during this login: kept through its steps
    if forced := g.get("ui_locale"):
        return forced
    if chosen := pick(request.args.get("ui_locales")):
        return chosen
    if stored:
        return stored["lang"]
    return request.accept_languages.best_match(SUPPORTED, default="fr") or "fr"


def _clicked() -> str | None:
    value = request.args.get("lang", "")
    return value if value in SUPPORTED else None


def _stored() -> dict | None:
    stored = session.get(CHOICE)
    if isinstance(stored, dict) and stored.get("lang") in SUPPORTED:
        return stored
    return None


def remember_choice() -> None:
    """``before_request``: a click on the language switch is kept in the browser's
    (signed) session, tied to the login in progress (``tx``) if there is one."""
    if (clicked := _clicked()) and _stored() != {"lang": clicked, "tx": request.args.get("tx")}:
        session[CHOICE] = {"lang": clicked, "tx": request.args.get("tx")}


def switch_links() -> list[dict]:
    """The language switch: this page again (same path and query) in each language."""
    args = [(k, v) for k, v in request.args.items(multi=True) if k != "lang"]
    return [
        {
            "code": code,
            "name": NAMES[code],
            "url": f"{request.path}?{urlencode([*args, ('lang', code)])}",
        }
        for code in SUPPORTED
    ]


def wait_message(seconds: int) -> str:
    """ "Too many attempts", saying honestly how long to wait (whole minutes, rounded up)."""
    from flask_babel import ngettext

    minutes = max(1, -(-seconds // 60))
    return ngettext(
        "Too many attempts. Try again in %(num)d minute.",
        "Too many attempts. Try again in %(num)d minutes.",
        minutes,
    )


def time_of_day(timestamp: int) -> str:
    """``14:05``: a clock time in the portal's time zone (Europe/Paris)."""
    from datetime import UTC, datetime

    from flask_babel import format_time

    return format_time(datetime.fromtimestamp(timestamp, tz=UTC), "HH:mm")


def minutes(seconds: int) -> int:
    """Whole minutes, rounded up: never promise less waiting than there is."""
    return max(1, -(-seconds // 60))
