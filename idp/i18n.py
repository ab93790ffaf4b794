"""Locale choice: French first, English when ``ui_locales`` or the browser asks."""

from __future__ import annotations

from flask import g, has_request_context, request

SUPPORTED = ("fr", "en")


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
    if forced := g.get("ui_locale"):
        return forced
    if chosen := pick(request.args.get("ui_locales")):
        return chosen
    return request.accept_languages.best_match(SUPPORTED, default="fr") or "fr"


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
