"""Cookie names: ``__Host-`` prefixed on https, so no sibling domain can plant them."""

from __future__ import annotations

from flask import current_app


def cookie_name(base: str) -> str:
    return f"__Host-{base}" if current_app.config["SESSION_COOKIE_SECURE"] else base
