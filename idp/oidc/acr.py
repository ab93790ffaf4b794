"""What authentication level a request demands (OpenID Connect Core §3.1.2.1, §5.5.1.1).

Sources, in order: an ``acr`` claim in the ``claims`` parameter, the
``acr_values`` parameter, the client's registered ``default_acr_values``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from authlib.oauth2 import OAuth2Error
from flask import current_app

from ..models import Client


class UnmetAuthenticationRequirements(OAuth2Error):
    """OpenID Connect Unmet Authentication Requirements 1.0 §3."""

    error = "unmet_authentication_requirements"


@dataclass(frozen=True)
class AcrDemand:
    needs_mfa: bool


def _from_values(values: list[str], levels: Mapping[str, str]) -> bool:
    """Voluntary values: the second factor is needed only if the password level is not listed."""
    return levels["mfa"] in values and levels["pwd"] not in values


def demand(
    params: Mapping[str, str],
    claims_request: dict | None,
    client: Client,
    levels: Mapping[str, str],
) -> AcrDemand:
    """Raise ``UnmetAuthenticationRequirements`` for an essential acr we cannot give."""
    acr_claim = ((claims_request or {}).get("id_token") or {}).get("acr")
    wanted = _claim_values(acr_claim)
    if wanted:
        if acr_claim.get("essential") is True:
            known = [v for v in wanted if v in levels.values()]
            if not known:
                raise UnmetAuthenticationRequirements(
                    "None of the essential acr values is offered."
                )
            return AcrDemand(_from_values(known, levels))
        return AcrDemand(_from_values(wanted, levels))
    if requested := (params.get("acr_values") or "").split():
        return AcrDemand(_from_values(requested, levels))
    return AcrDemand(_from_values(list(client.default_acr_values), levels))


def _claim_values(spec: object) -> list[str]:
    """``{"values": [...]}`` or ``{"value": "..."}`` of a claims request, strings only."""
    if not isinstance(spec, dict):
        return []
    values = spec.get("values")
    if not isinstance(values, list):
        values = [spec.get("value")]
    return [v for v in values if isinstance(v, str)]


def user_requires_mfa(user) -> bool:
    """M1: some rights (administrators, patient data) always need the second factor."""
    required = current_app.config["IDP"]["mfa"]["required_roles"]
    return bool(set(user.roles) & set(required))


def session_lacks_mfa(sso) -> bool:
    """The session's user needs the second factor and this session has not had it."""
    return user_requires_mfa(sso.user) and sso.acr != current_app.config["IDP"]["acr"]["mfa"]
