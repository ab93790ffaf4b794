"""The professional's record (A1–A3): the list of signed-in devices.

The backup phone changes only through ``idp.account.phone`` (codes to the account's
e-mail and to the new number): a password alone never sets a second factor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select

from ..auth import sessions
from ..models import SsoSession, User, db
from ..phones import PhoneError


@dataclass(frozen=True)
class Device:
    sid: str  # the session's public id: what the console's URLs carry
    label: str
    first_seen: int
    last_seen: int
    ip_hint: str
    current: bool


_BROWSERS = [
    ("Edg", "Edge"),
    ("OPR", "Opera"),
    ("Firefox", "Firefox"),
    ("Chrome", "Chrome"),
    ("Safari", "Safari"),
]
_SYSTEMS = [
    ("Windows", "Windows"),
    ("Android", "Android"),
    ("iPhone", "iOS"),
    ("iPad", "iPadOS"),
    ("Mac OS X", "macOS"),
    ("Linux", "Linux"),
]


def describe_agent(user_agent: str) -> str:
    """A label like "Firefox / Windows" from a User-Agent; crude on purpose, never trusted."""
    browser = next((name for key, name in _BROWSERS if re.search(key, user_agent)), "")
    system = next((name for key, name in _SYSTEMS if key in user_agent), "")
    if browser and system:
        return f"{browser} / {system}"
    return browser or system or (user_agent[:40] or "?")


def devices(user: User, current: SsoSession | None) -> list[Device]:
    return [
        Device(
            row.sid,
            describe_agent(row.user_agent),
            row.created_at,
            row.last_seen_at,
            row.ip_hint,
            current is not None and row.id == current.id,
        )
        for row in sessions.sessions_of(user)
    ]


def end_device(user: User, sid: str) -> bool:
    """End one of the user's own sessions (never someone else's), named by its ``sid``."""
    row = db.session.scalars(select(SsoSession).where(SsoSession.sid == sid)).first()
    if row is None or row.user_id != user.id:
        return False
    return sessions.end(row, "ended_from_console")


__all__ = ["Device", "PhoneError", "describe_agent", "devices", "end_device"]
