"""What authentication a request demands (OpenID Connect Core 1.0 §3.1.2.1, §5.5.1.1).

Sources: an ``acr`` claim in the ``claims`` parameter, else the ``acr_values``
parameter, never below the client's registered ``default_acr_values``; and an
essential ``amr`` claim. An essential demand is met or refused
(``unmet_authentication_requirements``), never lowered; a stronger level than
asked for meets it. ``max_age=0`` with the second-factor level, or an
essential ``amr`` naming ``otp``, asks for a code typed in this
very login: a remembered browser does not stand in (docs/RELYING_PARTIES.md).
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


@dataclass(frozen=True)
class AcrDemand:
    needs_mfa: bool
    fresh_code: bool = False  # a code typed in this login, not a remembered browser


def _from_values(values: list[str], levels: Mapping[str, str]) -> bool:
    """Voluntary values: the second factor is needed only if the password level is not listed."""
    return levels["mfa"] in values and levels["pwd"] not in values


def demand(
    params: Mapping[str, str],
    claims_request: dict | None,
    client: Client,
    levels: Mapping[str, str],
) -> AcrDemand:
    """Raise ``InvalidRequestError`` for a malformed acr/amr request and
    ``UnmetAuthenticationRequirements`` for an essential one we cannot give."""
    needs_mfa = _acr_needs_mfa(params, claims_request, client, levels)
    amr_mfa, fresh_code = _amr_demand(claims_request)
    max_age = params.get("max_age") or ""  # digits only: checked before (authorize.py)
    if needs_mfa and max_age.isdigit() and int(max_age) == 0:
        fresh_code = True  # "authenticate again, with the second factor, now"
    return AcrDemand(needs_mfa=needs_mfa or amr_mfa, fresh_code=fresh_code)


def _acr_needs_mfa(params, claims_request, client: Client, levels: Mapping[str, str]) -> bool:
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
        return floor or _from_values(wanted, levels)
    requested = (params.get("acr_values") or "").split()
    return floor or _from_values(requested, levels)


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
    return user_requires_mfa(sso.user) and sso.acr != current_app.config["IDP"]["acr"]["mfa"]
