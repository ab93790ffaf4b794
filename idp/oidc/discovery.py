"""Provider metadata (OpenID Connect Discovery 1.0 §3), derived from configuration."""

from __future__ import annotations

from .acr import levels_of
from .claims import CLAIMS_SUPPORTED
from .client_auth import ALGORITHMS as ASSERTION_ALGORITHMS
from .endpoints import Introspection, Revocation
from .grants import AUTH_METHODS
from .keys import ALGORITHMS

SCOPES_SUPPORTED = ["openid", "profile", "email", "phone", "offline_access"]


def provider_metadata(settings: dict) -> dict:
    """Built once per process; every value follows from settings and code."""
    issuer = settings["issuer"]
    grant_types = ["authorization_code"]
    if settings["tokens"]["refresh_token_days"] > 0:
        grant_types.append("refresh_token")
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "userinfo_endpoint": f"{issuer}/userinfo",
        "jwks_uri": f"{issuer}/jwks.json",
        "revocation_endpoint": f"{issuer}/revoke",
        "introspection_endpoint": f"{issuer}/introspect",
        "end_session_endpoint": f"{issuer}/logout",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": grant_types,
        "subject_types_supported": ["public", "pairwise"],
        "id_token_signing_alg_values_supported": list(ALGORITHMS),
        "scopes_supported": SCOPES_SUPPORTED,
        "claims_supported": CLAIMS_SUPPORTED,
        "claims_parameter_supported": True,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": Revocation.CLIENT_AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": Introspection.CLIENT_AUTH_METHODS,
        # private_key_jwt assertions: asymmetric algorithms only (SECURITY.md)
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
        "revocation_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
        "introspection_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
        "code_challenge_methods_supported": ["S256"],
        "acr_values_supported": list(levels_of(settings).values()),  # eidas1: [psc] enabled
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "ui_locales_supported": ["fr", "en"],
        "claims_locales_supported": ["fr", "en"],
        "authorization_response_iss_parameter_supported": True,
        "frontchannel_logout_supported": False,
        "backchannel_logout_supported": True,  # idp/oidc/backchannel.py
        "backchannel_logout_session_supported": True,
    }
