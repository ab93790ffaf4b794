"""One clock for the whole provider, so tests inject time instead of sleeping."""

from __future__ import annotations

import time
from collections.abc import Callable

_source: Callable[[], float] = time.time


def now() -> int:
    """Current time as integer seconds since the epoch (all stored times use this)."""
    return int(_source())


def set_source(source: Callable[[], float] | None) -> None:
    """Replace the time source (tests); ``None`` restores the real clock."""
    global _source
    _source = source or time.time
