"""User claims per scope (OpenID Connect Core 1.0 §5.4) and the ``claims`` parameter (§5.5)."""

from __future__ import annotations

import json

from authlib.oauth2.rfc6749 import scope_to_list
from authlib.oidc.core import UserInfo

from ..models import Client, User
from ..subjects import subject_for

SCOPE_CLAIMS = {
    "profile": (
        "name",
        "given_name",
        "family_name",
        "preferred_username",
        "locale",
        "updated_at",
    ),
    "email": ("email", "email_verified"),
    "phone": ("phone_number", "phone_number_verified"),
}
CLAIMS_SUPPORTED = [
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "azp",
    "sid",
    "at_hash",
    *[claim for names in SCOPE_CLAIMS.values() for claim in names],
]


def all_claims(user: User) -> dict:
    """Every claim this provider can state about a user, but ``sub``: that one depends on
    who asks (``idp.subjects.subject_for``)."""
    claims = {
        "name": user.name or user.username,
        "given_name": user.given_name,
        "family_name": user.family_name,
        "preferred_username": user.username,
        "locale": user.locale,
        "updated_at": user.updated_at,
        "email": user.email,
        # Only once the user proved control of the mailbox (``idp.users.mark_email_verified``):
        # an address the operator typed is an assertion, not a proof (OIDC Core §5.1).
        "email_verified": bool(user.email_verified),
    }
    if user.backup_phone:
        claims["phone_number"] = user.backup_phone
        # Verified either way: a number set from the console is stored only once the code
        # sent to it by SMS was typed (idp.account.phone; a pending one is never stated),
        # and a number set by the operator (``idp user add --phone``) is the operator's
        # assertion, as the e-mail address is.
        claims["phone_number_verified"] = True
    return {k: v for k, v in claims.items() if v not in ("", None)}


def _with_subject(user: User, client: Client | None, wanted: set[str]) -> UserInfo:
    available = all_claims(user)
    claims = {k: available[k] for k in wanted if k in available}
    return UserInfo(sub=subject_for(user, client), **claims)


def parse_claims_request(raw: str | None) -> dict | None:
    """The ``claims`` request parameter as a dict, or None; ValueError if malformed."""
    if not raw:
        return None
    if len(raw) > 8192:
        raise ValueError("claims parameter too long")
    try:
        value = json.loads(raw)
    except RecursionError as exc:
        raise ValueError("claims parameter nested too deeply") from exc
    if not isinstance(value, dict):
        raise ValueError("claims must be a JSON object")
    for part in ("userinfo", "id_token"):
        member = value.get(part)
        if member is None:
            continue
        if not isinstance(member, dict) or not all(
            isinstance(spec, dict | type(None)) for spec in member.values()
        ):
            raise ValueError(f"claims.{part} must map claim names to objects or null")
    return value


def _requested(claims_request: dict | None, member: str) -> set[str]:
    return set((claims_request or {}).get(member) or {})


def userinfo_claims(
    user: User, client: Client | None, scope: str, claims_request: dict | None = None
) -> UserInfo:
    """What ``/userinfo`` returns to ``client``: its ``sub``, the scope claims, and those
    named in ``claims.userinfo``."""
    wanted = _requested(claims_request, "userinfo")
    for name in scope_to_list(scope) or []:
        wanted.update(SCOPE_CLAIMS.get(name, ()))
    return _with_subject(user, client, wanted)


def id_token_claims(
    user: User, client: Client | None, claims_request: dict | None = None
) -> UserInfo:
    """ID tokens carry ``sub`` and only what ``claims.id_token`` asked for (data minimisation)."""
    return _with_subject(user, client, _requested(claims_request, "id_token"))
