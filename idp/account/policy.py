"""Password policy (P3, R6): every unmet rule is reported, not just the first."""

from __future__ import annotations

import string

from flask_babel import lazy_gettext as _l

SPECIALS = set(string.punctuation) | {" ", "€", "£", "§"}


def policy_errors(
    password: str, min_length: int = 12, *, username: str = "", email: str = ""
) -> list[str]:
    """Messages for each rule the password breaks (empty list: acceptable)."""
    errors = []
    if len(password) < min_length:
        errors.append(str(_l("At least %(n)d characters.", n=min_length)))
    if not any(c.isdigit() for c in password):
        errors.append(str(_l("At least one digit.")))
    if not any(c.isupper() for c in password):
        errors.append(str(_l("At least one upper-case letter.")))
    if not any(c.islower() for c in password):
        errors.append(str(_l("At least one lower-case letter.")))
    if not any(c in SPECIALS or not c.isalnum() for c in password):
        errors.append(str(_l("At least one special character (for example @ # & _ *).")))
    lowered = password.lower()
    if (username and lowered == username.lower()) or (email and lowered == email.lower()):
        errors.append(str(_l("Must not be your identifier or e-mail address.")))
    return errors
