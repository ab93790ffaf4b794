"""The authorization endpoint as small named checks (OpenID Connect Core 1.0 §3.1.2).

``start`` validates an incoming request and either issues a code from the SSO
session or hands off to the login; ``resume`` finishes a stored request once
the login is done (docs/CONVENTIONS.md, convention 5).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import InvalidRequestError, OAuth2Request
from authlib.oidc.core.errors import InteractionRequiredError, LoginRequiredError
from flask import current_app, render_template

from .. import clock
from ..models import SsoSession, db
from . import backchannel
from .acr import AcrDemand, demand, levels_of, reported, satisfies, session_lacks_mfa
from .claims import parse_claims_request
from .grants import GrantUser
from .server import oidc, refusing_malformed_input


class RequestNotSupported(OAuth2Error):
    error = "request_not_supported"


class RequestUriNotSupported(OAuth2Error):
    error = "request_uri_not_supported"


@dataclass(frozen=True)
class Decision:
    """What to do with a valid request: ``issue``, ``login``, ``step_up`` or an OAuth ``error``."""

    action: str
    error: type[OAuth2Error] | None = None


def prompts_of(params: Mapping[str, str]) -> set[str]:
    return set((params.get("prompt") or "").split())


def max_age_of(params: Mapping[str, str]) -> int | None:
    raw = params.get("max_age")
    if raw in (None, ""):
        return None
    if not re.fullmatch(r"[0-9]{1,10}", raw):
        raise InvalidRequestError("'max_age' must be a non-negative integer of seconds.")
    return int(raw)


MAX_REQUEST_BYTES = 16 * 1024  # a whole authorization request, query or body
MAX_ECHOED_BYTES = 512  # ``state`` and ``nonce``: stored, and sent back to the RP
# What a pending request keeps while the user signs in: nothing else is stored, so an
# anonymous visitor cannot make the database carry arbitrary data (SECURITY.md).
STORED_PARAMETERS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "max_age",
    "login_hint",
    "ui_locales",
    "claims",
    "acr_values",
    "response_mode",
    "display",
)


def check_size(params: Mapping[str, str]) -> None:
    """``state`` and ``nonce`` ≤ 512 bytes, the whole request ≤ 16 kB."""
    for name in ("state", "nonce"):
        if len((params.get(name) or "").encode()) > MAX_ECHOED_BYTES:
            raise InvalidRequestError(f"'{name}' is longer than {MAX_ECHOED_BYTES} bytes.")
    size = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in params.items())
    if size > MAX_REQUEST_BYTES:
        raise InvalidRequestError(f"The request is larger than {MAX_REQUEST_BYTES} bytes.")


def check_parameters(params: Mapping[str, str]) -> None:
    """Refuse what we do not do, clearly (Core §6, §3.1.2.1)."""
    check_size(params)
    if params.get("request"):
        raise RequestNotSupported("Request objects are not supported.")
    if params.get("request_uri"):
        raise RequestUriNotSupported("'request_uri' is not supported.")
    prompts = prompts_of(params)
    if "none" in prompts and len(prompts) > 1:
        raise InvalidRequestError("'prompt=none' cannot be combined with other values.")
    max_age_of(params)
    try:
        parse_claims_request(params.get("claims"))
    except ValueError as exc:
        raise InvalidRequestError("'claims' must be a JSON object.") from exc


def decide(
    params: Mapping[str, str], sso: SsoSession | None, now: int, *, acr: AcrDemand, levels: dict
) -> Decision:
    """Can the SSO session answer this request, or must the user sign in or step up?

    ``acr`` is the request's demand; a session user whose roles require the
    second factor is checked here too (M1). A demand for a code typed now is
    never met by the session: the user types a new code (step-up, no password).
    """
    prompts = prompts_of(params)
    silent = "none" in prompts
    max_age = max_age_of(params)
    must_login = (
        sso is None
        or bool(prompts & {"login", "select_account"})
        # max_age=0 means "always": it is prompt=login (Core §3.1.2.1, errata set 2)
        or (max_age is not None and (max_age == 0 or now - sso.auth_time > max_age))
    )
    if must_login:
        return Decision("error", LoginRequiredError) if silent else Decision("login")
    if acr.needs_psc and sso.acr != levels["psc"]:  # only a PSC login meets it: no step-up
        return Decision("error", InteractionRequiredError) if silent else Decision("login")
    lacks_mfa = acr.needs_mfa and not satisfies(sso.acr, levels["mfa"], levels)
    if lacks_mfa or acr.fresh_code or session_lacks_mfa(sso):
        return Decision("error", InteractionRequiredError) if silent else Decision("step_up")
    return Decision("issue")


def validate(request: OAuth2Request):
    """Authlib's validation plus ours. Returns ``(grant, None)`` or ``(None, response)``."""
    server = oidc().server
    try:
        with refusing_malformed_input():
            grant = server.get_authorization_grant(request)
            grant.validate_no_multiple_request_parameter(request)  # RFC 6749 §3.1
            if (
                "openid" in (request.payload.scope or "").split()
                and not request.payload.redirect_uri
            ):
                raise InvalidRequestError("'redirect_uri' is required for OpenID Connect requests.")
            redirect_uri = grant.validate_authorization_request()
    except OAuth2Error as error:
        return None, _error_response(request, error)
    try:
        check_parameters(request.payload.data)
    except OAuth2Error as error:
        error.redirect_uri = redirect_uri
        return None, _error_response(request, error)
    request.claims_request = parse_claims_request(request.payload.data.get("claims"))
    request.validated_redirect_uri = redirect_uri
    return grant, None


def _error_response(request: OAuth2Request, error: OAuth2Error):
    """Redirect to a trusted redirect URI; otherwise an error page, never a redirect."""
    state = request.payload.state
    error.state = state if state and len(state.encode()) <= MAX_ECHOED_BYTES else None
    if error.redirect_uri:
        return oidc().server.authorization_error(request, error)
    return (
        render_template(
            "oidc/error.html", error=error.error, description=error.get_error_description()
        ),
        400,
    )


def issue(request: OAuth2Request, grant, sso: SsoSession):
    """Send the code back to the RP, with the authentication facts of the session."""
    levels = levels_of(current_app.config["IDP"])
    acr = reported(sso.acr, request.payload.data, getattr(request, "claims_request", None), levels)
    granted = GrantUser(
        user=sso.user, sid=sso.sid, auth_time=sso.auth_time, acr=acr, amr=tuple(sso.amr)
    )
    # The session's RPs hear of its end (back-channel logout); committed with the code.
    backchannel.record_participation(sso.sid, request.client.client_id)
    response = oidc().server.create_authorization_response(request, grant_user=granted, grant=grant)
    db.session.commit()  # the code, with the sign-in that led here when there was one
    return response


def start(request: OAuth2Request, sso: SsoSession | None, handoff):
    """Entry point of ``/authorize``; ``handoff(action, args, hint, acr)`` starts a login."""
    grant, failure = validate(request)
    if failure is not None:
        return failure
    params = request.payload.data
    levels = levels_of(current_app.config["IDP"])
    try:
        acr = demand(params, request.claims_request, request.client, levels)
    except OAuth2Error as error:
        error.redirect_uri = request.validated_redirect_uri
        return _error_response(request, error)
    decision = decide(params, sso, clock.now(), acr=acr, levels=levels)
    if decision.action == "issue":
        return issue(request, grant, sso)
    if decision.action == "error":
        error = decision.error(redirect_uri=request.validated_redirect_uri)
        return _error_response(request, error)
    return handoff(decision.action, _stored_args(params), params.get("login_hint") or "", acr)


def _stored_args(params: Mapping[str, str]) -> dict[str, str]:
    return {
        key: params[key]
        for key in STORED_PARAMETERS
        if key in params and isinstance(params[key], str)
    }


def resume(args: dict[str, str], sso: SsoSession):
    """Finish a stored request right after the login (prompt and max_age are now met)."""
    request = oidc().server.request_from_args(args)
    grant, failure = validate(request)
    if failure is not None:
        return failure
    return issue(request, grant, sso)
