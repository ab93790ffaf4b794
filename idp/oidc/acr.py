"""What authentication a request demands (OpenID Connect Core 1.0 §3.1.2.1, §5.5.1.1).

Sources: an ``acr`` claim in the ``claims`` parameter, else the ``acr_values``
parameter, never below the client's registered ``default_acr_values``; and an
essential ``amr`` claim. An essential demand is met or refused
(``unmet_authentication_requirements``), never lowered; a stronger level than
asked for meets it. ``max_age=0`` with the second-factor level, or an
essential ``amr`` naming ``otp``, asks for a code typed in this
very login: a remembered browser does not stand in (docs/RELYING_PARTIES.md).

Levels, weakest first: the password (``pwd``), password and code (``mfa``), and,
when ``[psc]`` is enabled, Pro Santé Connect's ``eidas1`` (``psc``). A PSC
session meets the three; a password and code session the first two.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import InvalidRequestError
from flask import current_app

from ..models import Client


class UnmetAuthenticationRequirements(OAuth2Error):
    """OpenID Connect Unmet Authentication Requirements 1.0 §3."""

    error = "unmet_authentication_requirements"


PSC_ACR = "eidas1"  # Pro Santé Connect's level, stated as PSC states it (DESIGN contract)
RANKS = ("pwd", "mfa", "psc")


@dataclass(frozen=True)
class AcrDemand:
    needs_mfa: bool
    fresh_code: bool = False  # a code typed in this login, not a remembered browser
    needs_psc: bool = False  # only a Pro Santé Connect login meets it


def levels_of(settings: Mapping) -> dict[str, str]:
    """The levels offered, by rank name: ``[acr]``, and ``eidas1`` when PSC is enabled."""
    levels = dict(settings["acr"])
    if settings["psc"]["enabled"]:
        levels["psc"] = PSC_ACR
    return levels


def _from_values(values: list[str], levels: Mapping[str, str]) -> int:
    """Voluntary values: the weakest level listed is the one needed (its rank)."""
    ranks = [RANKS.index(name) for name, value in levels.items() if value in values]
    return min(ranks) if ranks else 0


def satisfies(session_acr: str, value: str, levels: Mapping[str, str]) -> bool:
    """A session of level ``session_acr`` meets ``value``: the same level or a weaker one."""
    rank = {level: RANKS.index(name) for name, level in levels.items()}
    return session_acr in rank and value in rank and rank[session_acr] >= rank[value]


def reported(
    session_acr: str, params: Mapping[str, str], claims_request: dict | None, levels
) -> str:
    """The ``acr`` an ID token states: the session's own level, except that a PSC
    session asked only for our own levels states the first one asked (it meets them
    all), so that an RP written for ``urn:idp:acr:2fa`` works unchanged; an RP asking
    ``eidas1`` gets ``eidas1`` (docs/RELYING_PARTIES.md, "Pro Santé Connect")."""
    if session_acr != levels.get("psc"):
        return session_acr
    wanted = (
        _spec_values(claim_spec(claims_request, "acr")) or (params.get("acr_values") or "").split()
    )
    if session_acr in wanted:
        return session_acr
    met = [value for value in wanted if satisfies(session_acr, value, levels)]
    return met[0] if met else session_acr


def demand(
    params: Mapping[str, str],
    claims_request: dict | None,
    client: Client,
    levels: Mapping[str, str],
) -> AcrDemand:
    """Raise ``InvalidRequestError`` for a malformed acr/amr request and
    ``UnmetAuthenticationRequirements`` for an essential one we cannot give."""
    rank = _acr_rank(params, claims_request, client, levels)
    needs_mfa, needs_psc = rank >= 1, rank >= 2
    amr_mfa, fresh_code = _amr_demand(claims_request)
    max_age = params.get("max_age") or ""  # digits only: checked before (authorize.py)
    if needs_mfa and not needs_psc and max_age.isdigit() and int(max_age) == 0:
        fresh_code = True  # "authenticate again, with the second factor, now"
    return AcrDemand(needs_mfa=needs_mfa or amr_mfa, fresh_code=fresh_code, needs_psc=needs_psc)


def _acr_rank(params, claims_request, client: Client, levels: Mapping[str, str]) -> int:
    """The request's acr demand, never below the level the operator registered for the
    client (``idp client add --acr``): a request cannot lower that floor."""
    floor = _from_values(list(client.default_acr_values), levels)
    acr_claim = claim_spec(claims_request, "acr")
    wanted = _spec_values(acr_claim)
    if wanted:
        if acr_claim.get("essential") is True:
            wanted = [v for v in wanted if v in levels.values()]
            if not wanted:
                raise UnmetAuthenticationRequirements(
                    "None of the essential acr values is offered."
                )
        return max(floor, _from_values(wanted, levels))
    requested = (params.get("acr_values") or "").split()
    return max(floor, _from_values(requested, levels))


def _amr_demand(claims_request: dict | None) -> tuple[bool, bool]:
    """An essential ``amr`` claim → (second factor, code typed in this login); any listed
    value met is enough ("one of", Core §5.5.1), and every login here has a password
    step. ``otp`` asks for a code typed now, as ``max_age=0`` does, even in a session
    that typed one before. "sms" alone cannot be promised (the user may choose the
    e-mail): it is refused."""
    spec = claim_spec(claims_request, "amr")
    wanted = set(_spec_values(spec))
    if not wanted or spec.get("essential") is not True or "pwd" in wanted:
        return False, False
    if "mfa" in wanted:
        return True, False
    if "otp" in wanted:
        return True, True
    raise UnmetAuthenticationRequirements("None of the essential amr values is offered.")


def claim_spec(claims_request: dict | None, name: str) -> dict | None:
    """The ``claims.id_token`` request for ``name``, checked (Core §5.5.1); None if absent."""
    spec = ((claims_request or {}).get("id_token") or {}).get(name)
    if spec is None:
        return None
    if "essential" in spec and not isinstance(spec["essential"], bool):
        raise InvalidRequestError(f"'claims': '{name}.essential' must be true or false.")
    if "value" in spec and not isinstance(spec["value"], str):
        raise InvalidRequestError(f"'claims': '{name}.value' must be a string.")
    values = spec.get("values", [])
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise InvalidRequestError(f"'claims': '{name}.values' must be an array of strings.")
    return spec


def _spec_values(spec: dict | None) -> list[str]:
    if spec is None:
        return []
    values = list(spec.get("values", []))
    if "value" in spec:
        values.append(spec["value"])
    return values


def user_requires_mfa(user) -> bool:
    """M1: some rights (administrators, patient data) always need the second factor."""
    required = current_app.config["IDP"]["mfa"]["required_roles"]
    return bool(set(user.roles) & set(required))


def session_lacks_mfa(sso) -> bool:
    """The session's user needs the second factor and this session has not had it."""
    levels = levels_of(current_app.config["IDP"])
    return user_requires_mfa(sso.user) and not satisfies(sso.acr, levels["mfa"], levels)
