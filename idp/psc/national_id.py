"""National identifiers of health professionals: RPPS and ADELI.

A Pro Santé Connect login is linked to an account by this identifier only
(docs/OPERATING.md, "Pro Santé Connect"), never by e-mail or name. PSC's
``SubjectNameID`` carries it with a one-character type prefix (``8`` + the
11-digit RPPS, ``0`` + the 9-character ADELI); operators type it bare.
"""

from __future__ import annotations

import re

_RPPS = re.compile(r"[0-9]{11}")
_ADELI = re.compile(r"(?:[0-9]{2}|2[AB])[0-9]{7}")


class InvalidNationalId(ValueError):
    """Neither an RPPS number (11 digits, Luhn key) nor an ADELI number (9 characters)."""


def luhn_ok(digits: str) -> bool:
    """The Luhn check the RPPS key is (its last digit)."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def normalize(raw: str) -> str:
    """The identifier as stored: bare RPPS or ADELI, upper case; ``InvalidNationalId``."""
    value = (raw or "").strip().upper()
    if _RPPS.fullmatch(value):
        if not luhn_ok(value):
            raise InvalidNationalId("the RPPS number's key (last digit) is wrong")
        return value
    if _ADELI.fullmatch(value):
        return value
    raise InvalidNationalId("expected an RPPS number (11 digits) or an ADELI number (9 characters)")


def from_subject_name_id(raw: str) -> str | None:
    """PSC's ``SubjectNameID`` as stored (type prefix dropped), or None if it is neither."""
    value = (raw or "").strip().upper()
    if len(value) == 12 and value[0] == "8":
        value = value[1:]
    elif len(value) == 10 and value[0] == "0":
        value = value[1:]
    try:
        return normalize(value)
    except InvalidNationalId:
        return None
