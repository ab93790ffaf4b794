"""HTTP routes of the OpenID Connect endpoints; each view hands off to one function."""

from __future__ import annotations

from authlib.oauth2 import OAuth2Error
from flask import Blueprint, current_app, g, jsonify, redirect, render_template, request, url_for

from ..auth import flow, sessions, transaction
from ..extensions import csrf
from . import authorize as authz
from .acr import AcrDemand
from .keys import JWKS_MAX_AGE
from .published import DISCOVERY_MAX_AGE
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
    """Reached only with a query string or another method: ``idp.oidc.published``
    answers the plain GET from precomputed bytes."""
    response = jsonify(current_app.extensions["idp_metadata"])
    response.headers["Cache-Control"] = f"public, max-age={DISCOVERY_MAX_AGE}"
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
        args,
        login_hint,
        require_mfa=acr.needs_mfa,
        fresh_code=acr.fresh_code,
        require_psc=acr.needs_psc,
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


def _names_this_session(end_request) -> bool:
    """The hint's ``sid`` is this browser's session (a signed ID token of ours, so the
    ``sid`` cannot be forged; ``sub`` is not compared: it may be per client)."""
    sso = sessions.current()
    claims = end_request.id_token_claims or {}
    return sso is not None and claims.get("sid") == sso.sid


def _needs_confirmation(end_request) -> bool:
    """Ask first unless the ID token hint names this browser's session by its ``sid``
    (RP-Initiated §2, §6; SECURITY.md, "Logout"). A hint from the same user's other
    session, or anyone else's, is no reason to sign this browser out unasked. With no
    session here, a valid hint ends nothing and is not asked about either."""
    if end_request.needs_confirmation:
        return True
    return sessions.current() is not None and not _names_this_session(end_request)


@bp.route("/logout", methods=["GET", "POST"])
@csrf.exempt
def logout():
    """RP-initiated logout; without a hint naming this session the user confirms first."""
    server = oidc().server
    try:
        end_request = server.validate_endpoint_request("end_session")
    except OAuth2Error as error:
        return render_template(
            "oidc/error.html", error=error.error, description=error.get_error_description()
        ), 400
    confirmed = False
    if _needs_confirmation(end_request):
        if request.method == "GET" or request.form.get("confirm") != "yes":
            return render_template("oidc/logout_confirm.html", params=request.values)
        csrf.protect()  # the confirmation is a form of ours: check its token
        confirmed = True
    # Only what the user confirmed, or the session the hint names, ends: a valid hint
    # without a session here leaves the browser's state (a login in progress) alone.
    g.end_browser_session = confirmed or _names_this_session(end_request)
    sso = sessions.current()
    psc_token = sso.psc_id_token if sso is not None and g.end_browser_session else None
    response = server.create_endpoint_response("end_session", end_request)
    if psc_token and current_app.config["IDP"]["psc"]["enabled"]:
        # A Pro Santé Connect session ends at PSC too, then goes on (idp/psc/views.py).
        from ..psc.views import logout_at_psc

        onward = logout_at_psc(psc_token, response.location if response is not None else "")
        if onward is not None:
            return onward
    return response or render_template("oidc/logged_out.html")
