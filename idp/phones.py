"""Backup mobile numbers: parsed with ``phonenumbers``, French by default, stored E.164."""

from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType


class PhoneError(ValueError):
    """Not a valid mobile number; the message says what is wrong."""


MOBILE_TYPES = {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}


def normalize_mobile(raw: str, region: str = "FR") -> str:
    """``06 12 34 56 78`` → ``+33612345678``; refuses landlines and invalid numbers."""
    try:
        number = phonenumbers.parse(raw, region)
    except NumberParseException as exc:
        raise PhoneError(f"not a phone number: {raw!r}") from exc
    if not phonenumbers.is_valid_number(number):
        raise PhoneError(f"not a valid phone number: {raw!r}")
    if phonenumbers.number_type(number) not in MOBILE_TYPES:
        raise PhoneError(f"not a mobile number: {raw!r}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
