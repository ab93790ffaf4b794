"""HTTP routes of the OpenID Connect endpoints; each view hands off to one function."""

from __future__ import annotations

from authlib.oauth2 import OAuth2Error
from flask import Blueprint, current_app, jsonify, redirect, render_template, request, url_for

from ..auth import flow, sessions, transaction
from ..extensions import csrf
from ..subjects import subject_for
from . import authorize as authz
from .acr import AcrDemand
from .discovery import provider_metadata
from .keys import JWKS_MAX_AGE
from .server import oidc

bp = Blueprint("oidc", __name__)


@bp.record_once
def _register(state) -> None:
    """A POSTed authorization request gets a small body limit (413 past it), set before
    any other hook reads the form."""

    def limit_body() -> None:
        if request.endpoint == "oidc.authorize":
            request.max_content_length = authz.MAX_REQUEST_BYTES

    state.app.before_request_funcs.setdefault(None, []).insert(0, limit_body)


@bp.get("/.well-known/openid-configuration")
def discovery():
    meta = current_app.extensions.get("idp_metadata")
    if meta is None:
        meta = current_app.extensions["idp_metadata"] = provider_metadata(current_app.config["IDP"])
    response = jsonify(meta)
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


@bp.get("/jwks.json")
def jwks():
    response = jsonify(oidc().keyring.public_jwks())
    response.headers["Cache-Control"] = f"public, max-age={JWKS_MAX_AGE}"
    return response


def _handoff(action: str, args: dict, login_hint: str, acr: AcrDemand):
    """Open a login transaction: the password step, or the second factor only (step-up)."""
    if action == "step_up":
        return flow.step_up(sessions.current(), args, fresh_code=acr.fresh_code)
    tx_id = transaction.begin(
        args, login_hint, require_mfa=acr.needs_mfa, fresh_code=acr.fresh_code
    )
    return redirect(url_for("auth.login", tx=tx_id))


@bp.route("/authorize", methods=["GET", "POST"])
@csrf.exempt
def authorize():
    server = oidc().server
    oauth_request = server.create_oauth2_request(request)
    return authz.start(oauth_request, sessions.current(), _handoff)


@bp.post("/token")
@csrf.exempt
def token():
    return oidc().server.create_token_response()


@bp.route("/userinfo", methods=["GET", "POST"])
@csrf.exempt
def userinfo():
    return oidc().server.create_endpoint_response("userinfo")


@bp.post("/revoke")
@csrf.exempt
def revoke():
    return oidc().server.create_endpoint_response("revocation")


@bp.post("/introspect")
@csrf.exempt
def introspect():
    return oidc().server.create_endpoint_response("introspection")


def _needs_confirmation(end_request) -> bool:
    """Ask first unless the ID token hint names the user signed in here (RP-Initiated §2)."""
    if end_request.needs_confirmation:
        return True
    sso = sessions.current()
    claims = end_request.id_token_claims or {}
    if sso is None:
        return False
    # A pairwise client knows the user by its own ``sub``: the hint's audience (Authlib
    # checked that ``client_id``, when sent, is it) says which one to compare.
    return claims.get("sub") != subject_for(sso.user, end_request.client)


@bp.route("/logout", methods=["GET", "POST"])
@csrf.exempt
def logout():
    """RP-initiated logout; without a valid ``id_token_hint`` the user confirms first."""
    server = oidc().server
    try:
        end_request = server.validate_endpoint_request("end_session")
    except OAuth2Error as error:
        return render_template(
            "oidc/error.html", error=error.error, description=error.get_error_description()
        ), 400
    if _needs_confirmation(end_request):
        if request.method == "GET" or request.form.get("confirm") != "yes":
            return render_template("oidc/logout_confirm.html", params=request.values)
        csrf.protect()  # the confirmation is a form of ours: check its token
    response = server.create_endpoint_response("end_session", end_request)
    return response or render_template("oidc/logged_out.html")
